/**
 * A hostile driver, case by case: each misbehaviour ends in a counted drop or a QueueError,
 * never another exception, a hang, or a write outside guest RAM.
 */
import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import {
  QueueError, SplitQueue, VIRTQ_DESC_F_INDIRECT as IND, VIRTQ_DESC_F_NEXT as NEXT, VIRTQ_DESC_F_WRITE as WRITE,
  type DropReason,
} from '../../../src/virtio/index.js';
import { GuestDriver, type Desc } from './driver.js';

/** Build a hostile chain at head 0 of an 8-entry queue (with indirect descriptors negotiated unless said). */
interface Case {
  name: string;
  reason: DropReason;
  indirectDesc?: boolean;
  maxChainBytes?: number;
  maxIndirectEntries?: number;
  ramBytes?: number;
  tableBytes?: number;
  /** Descriptors 0.. of the queue's table; `table` puts `tableDescs` in an indirect table at that address. */
  descs: (d: GuestDriver, table: number) => Desc[];
  tableDescs?: (d: GuestDriver) => Desc[];
}

const CASES: Case[] = [
  { name: 'a loop in the descriptor table (0 -> 1 -> 0)', reason: 'chainLength',
    descs: (d) => [{ addr: d.dataBase, len: 4, flags: NEXT, next: 1 }, { addr: d.dataBase, len: 4, flags: NEXT, next: 0 }] },
  { name: 'a self-loop', reason: 'chainLength', descs: (d) => [{ addr: d.dataBase, len: 1, flags: NEXT, next: 0 }] },
  { name: 'a next index ≥ the queue size', reason: 'descIndex', descs: (d) => [{ addr: d.dataBase, len: 4, flags: NEXT, next: 8 }] },
  { name: 'a buffer below guest RAM', reason: 'address', descs: () => [{ addr: 0x1000, len: 4 }] },
  { name: 'a buffer running past the end of RAM', reason: 'address', descs: (d) => [{ addr: d.dataEnd - 2, len: 4 }] },
  { name: 'a buffer address ≥ 2^53', reason: 'address', descs: () => [{ addr: 0xffff_ffff_ffff_f000n, len: 4 }] },
  { name: 'a writable buffer past the end of RAM', reason: 'address', descs: (d) => [{ addr: d.dataEnd, len: 1, flags: WRITE }] },
  { name: 'lengths over the byte cap', reason: 'byteCap', maxChainBytes: 100,
    descs: (d) => [{ addr: d.dataBase, len: 60, flags: NEXT, next: 1 }, { addr: d.dataBase, len: 60, flags: WRITE }] },
  { name: 'lengths whose sum wraps 32 bits (32768 in-RAM buffers of 128 KiB, through an indirect table)', reason: 'byteCap',
    ramBytes: 0x100000, tableBytes: 16 * 32768,
    descs: (_d, t) => [{ addr: t, len: 16 * 32768, flags: IND }],
    tableDescs: (d) => Array.from({ length: 32768 }, (_, i) => ({ addr: d.dataEnd - 0x20000, len: 0x20000, flags: NEXT, next: i + 1 })) },
  { name: 'a readable buffer after a writable one', reason: 'order',
    descs: (d) => [{ addr: d.dataBase, len: 4, flags: WRITE | NEXT, next: 1 }, { addr: d.dataBase, len: 4 }] },
  { name: 'INDIRECT without the feature', reason: 'indirect', indirectDesc: false,
    descs: (_d, t) => [{ addr: t, len: 16, flags: IND }], tableDescs: (d) => [{ addr: d.dataBase, len: 4 }] },
  { name: 'INDIRECT together with NEXT', reason: 'indirect',
    descs: (d, t) => [{ addr: t, len: 16, flags: IND | NEXT, next: 1 }, { addr: d.dataBase, len: 1 }], tableDescs: (d) => [{ addr: d.dataBase, len: 4 }] },
  { name: 'a nested indirect table', reason: 'indirect',
    descs: (_d, t) => [{ addr: t, len: 32, flags: IND }], tableDescs: (d) => [{ addr: d.dataBase, len: 4, flags: NEXT, next: 1 }, { addr: d.dataBase, len: 16, flags: IND }] },
  { name: 'an indirect table length not a multiple of 16', reason: 'indirect',
    descs: (_d, t) => [{ addr: t, len: 24, flags: IND }], tableDescs: (d) => [{ addr: d.dataBase, len: 4 }] },
  { name: 'an empty indirect table', reason: 'indirect', descs: (_d, t) => [{ addr: t, len: 0, flags: IND }] },
  { name: 'an indirect table outside RAM', reason: 'indirect', descs: (d) => [{ addr: d.dataEnd - 16, len: 32, flags: IND }] },
  { name: 'an indirect table larger than the limit', reason: 'indirect', maxIndirectEntries: 4,
    descs: (_d, t) => [{ addr: t, len: 5 * 16, flags: IND }], tableDescs: (d) => [{ addr: d.dataBase, len: 4 }] },
  { name: 'a loop inside an indirect table', reason: 'chainLength',
    descs: (_d, t) => [{ addr: t, len: 32, flags: IND }],
    tableDescs: (d) => [{ addr: d.dataBase, len: 4, flags: NEXT, next: 1 }, { addr: d.dataBase, len: 4, flags: NEXT, next: 0 }] },
  { name: 'an indirect next index ≥ the table length', reason: 'descIndex',
    descs: (_d, t) => [{ addr: t, len: 32, flags: IND }],
    tableDescs: (d) => [{ addr: d.dataBase, len: 4, flags: NEXT, next: 2 }, { addr: d.dataBase, len: 4 }] },
  { name: 'a bad buffer inside an indirect table', reason: 'address',
    descs: (_d, t) => [{ addr: t, len: 16, flags: IND }], tableDescs: () => [{ addr: 2 ** 40, len: 4 }] },
];

describe('hostile chains are dropped, counted, and returned with length 0', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const d = new GuestDriver({
        size: 8, indirectDesc: c.indirectDesc ?? true, ramBytes: c.ramBytes,
        queueOptions: { maxChainBytes: c.maxChainBytes, maxIndirectEntries: c.maxIndirectEntries },
      });
      const q = d.enable();
      const table = d.alloc(c.tableBytes ?? 64);
      const descs = c.descs(d, table);
      descs.forEach((x, i) => d.writeDesc(i, x));
      d.reserve(descs.map((_, i) => i));
      c.tableDescs?.(d).forEach((x, i) => d.writeDesc(i, x, table));
      d.publish(0);
      const good = d.add([Uint8Array.of(7)]); // a good chain behind the bad one still gets served
      const chain = q.pop()!;
      expect(chain.head).toBe(good.head);
      expect(q.errors[c.reason]).toBe(1);
      expect(q.errors.dropped).toBe(1);
      expect(q.error).toBeUndefined();
      q.pushUsed(chain, 0);
      expect(d.used()).toEqual([{ id: 0, len: 0 }, { id: good.head, len: 0 }]);
      expect(q.needsNotification()).toBe(true);
      expect(d.ram.guardsIntact()).toBe(true);
    });
  }
});

describe('hostile heads are dropped and not returned', () => {
  it('a head index ≥ the queue size', () => {
    const d = new GuestDriver({ size: 4 });
    const q = d.enable();
    d.publish(4);
    d.publish(0xffff);
    expect(q.pop()).toBeNull();
    expect(q.errors.headIndex).toBe(2);
    expect(d.used()).toEqual([]);
    expect(q.needsNotification()).toBe(false);
  });

  it('a head the device already holds', () => {
    const d = new GuestDriver({ size: 4 });
    const q = d.enable();
    const p = d.add([Uint8Array.of(1)]);
    const held = q.pop()!;
    d.publish(p.head);
    expect(q.pop()).toBeNull();
    expect(q.errors.headInFlight).toBe(1);
    q.pushUsed(held, 0);
    expect(d.used()).toEqual([{ id: p.head, len: 0 }]);
  });

  it('at most one ring of drops per pop(), so a flood cannot pin one call', () => {
    const d = new GuestDriver({ size: 4 });
    const q = d.enable();
    for (let i = 0; i < 4; i++) d.publish(9);
    expect(q.pop()).toBeNull();
    expect(q.errors.headIndex).toBe(4);
  });
});

describe('writable buffers in read-only memory', () => {
  it('are dropped as readOnly; readable ones are fine', () => {
    const m = new GuestMemory();
    const rom = new Uint8Array(0x1000).fill(0xee);
    m.addSegment(0, new Uint8Array(0x10000));
    m.addSegment(0x10000, rom, true);
    const q = new SplitQueue(m, { maxSize: 4 });
    q.size = 4;
    q.descAddr = 0;
    q.availAddr = 0x100;
    q.usedAddr = 0x200;
    q.enable({ eventIdx: false, indirectDesc: false });
    const desc = (i: number, addr: number, len: number, flags: number, next = 0) => {
      m.writeU64(16 * i, BigInt(addr)); m.writeU32(16 * i + 8, len); m.writeU16(16 * i + 12, flags); m.writeU16(16 * i + 14, next);
    };
    desc(0, 0x10000, 16, 0); // read ROM: fine
    desc(1, 0xfff0, 0x20, WRITE); // write RAM and ROM
    m.writeU16(0x104, 0);
    m.writeU16(0x106, 1);
    m.writeU16(0x102, 2);
    const c = q.pop()!;
    expect(c.head).toBe(0);
    expect(c.readBytes(1)[0]).toBe(0xee);
    expect(q.pop()).toBeNull();
    expect(q.errors.readOnly).toBe(1);
    expect(rom.every((b) => b === 0xee)).toBe(true);
  });
});

describe('ring-level corruption is a QueueError that stops the queue until reset', () => {
  const kindOf = (f: () => unknown): string | undefined => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(QueueError);
      return (e as QueueError).kind;
    }
    return undefined;
  };

  it('avail.idx jumping more than the queue size ahead: avail-idx; then pop is null, pushUsed false; reset recovers', () => {
    const d = new GuestDriver({ size: 8 });
    const q = d.enable();
    d.add([Uint8Array.of(1)]);
    const held = q.pop()!;
    d.setAvailIdx(d.availIdx + 9);
    expect(kindOf(() => q.pop())).toBe('avail-idx');
    expect(q.error?.kind).toBe('avail-idx');
    expect(q.pop()).toBeNull();
    expect(q.pushUsed(held, 0)).toBe(false);
    expect(q.needsNotification()).toBe(false);
    expect(q.enableNotifications()).toBe(false);
    q.disableNotifications();
    q.reset();
    const d2 = new GuestDriver({ size: 8 }); // fresh rings, same kind of queue
    const q2 = d2.enable();
    d2.add([Uint8Array.of(2)]);
    expect(q2.pop()!.readBytes(1)[0]).toBe(2);
  });

  it('a ring moved while in use: ring-moved', () => {
    const d = new GuestDriver({ size: 8 });
    const q = d.enable();
    expect(kindOf(() => { q.descAddr = d.descAddr + 0x1000; })).toBe('ring-moved');
    expect(kindOf(() => { q.size = 4; })).toBe('ring-moved');
    expect(q.error?.kind).toBe('ring-moved');
  });

  it('guest memory removed under the rings: remap() gives ring-unmapped', () => {
    const d = new GuestDriver({ size: 8 });
    const q = d.enable();
    d.mem.removeSegment(d.ram.base);
    expect(kindOf(() => q.remap())).toBe('ring-unmapped');
    expect(q.pop()).toBeNull();
  });

  it('guest memory removed under a popped chain: reads and writes give memory', () => {
    for (const op of ['read', 'write'] as const) {
      const d = new GuestDriver({ size: 8 });
      const q = d.enable();
      d.add([Uint8Array.of(1)], [4]);
      const c = q.pop()!;
      d.mem.removeSegment(d.ram.base);
      expect(kindOf(() => (op === 'read' ? c.readBytes(4) : c.writeBytes(Uint8Array.of(1, 2))))).toBe('memory');
      expect(q.error?.kind).toBe('memory');
      expect(q.pushUsed(c, 0)).toBe(false);
    }
  });

  it('a used ring in read-only memory: ring-unmapped at enable (the device would write the ROM)', () => {
    const m = new GuestMemory();
    m.addSegment(0, new Uint8Array(0x4000));
    const rom = new Uint8Array(0x1000).fill(0xee);
    m.addSegment(0x4000, rom, true);
    const q = new SplitQueue(m, { maxSize: 8 });
    q.size = 8;
    q.descAddr = 0;
    q.availAddr = 0x1000;
    q.usedAddr = 0x4000;
    expect(kindOf(() => q.enable({ eventIdx: true, indirectDesc: false }))).toBe('ring-unmapped');
    expect(rom.every((b) => b === 0xee)).toBe(true);
  });

  it('a detached (transferred) non-shared buffer under the rings: memory', () => {
    const buf = new ArrayBuffer(0x4000);
    const m = new GuestMemory();
    m.addSegment(0, buf);
    const q = new SplitQueue(m, { maxSize: 8 });
    q.size = 8;
    q.descAddr = 0;
    q.availAddr = 0x1000;
    q.usedAddr = 0x2000;
    q.enable({ eventIdx: true, indirectDesc: false });
    structuredClone(buf, { transfer: [buf] });
    expect(buf.byteLength).toBe(0);
    expect(kindOf(() => q.pop())).toBe('memory');
  });
});

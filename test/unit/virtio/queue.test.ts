/** SplitQueue and DescriptorChain with a well-behaved driver. */
import { describe, expect, it } from 'vitest';
import {
  DescriptorChain, QueueError, SplitQueue, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, queueFeatures, ringBytes,
} from '../../../src/virtio/index.js';
import { bufferMemory, type GuestMemory } from '../../../src/memory/guest-memory.js';
import { GuestDriver, accessorOnly } from './driver.js';

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);

describe('SplitQueue: normal chains', () => {
  for (const [name, queueMemory] of [['live views', undefined], ['accessors only', (m: GuestMemory) => accessorOnly(m, true)]] as const) {
    it(`pops a readable+writable chain, copies both ways and returns it through the used ring (${name})`, () => {
      const d = new GuestDriver({ size: 8, queueMemory });
      const q = d.enable();
      const posted = d.add([text('hello '), text('world')], [4, 8]);
      const c = q.pop()!;
      expect(c).toBeInstanceOf(DescriptorChain);
      expect(c.head).toBe(posted.head);
      expect(c.readableBytes).toBe(11);
      expect(c.writableBytes).toBe(12);
      expect(c.readable.map((s) => s.len)).toEqual([6, 5]);
      expect(c.writable.map((s) => s.len)).toEqual([4, 8]);
      expect(c.descriptors).toBe(4);
      expect(c.indirect).toBe(false);
      expect(str(c.readBytes(100))).toBe('hello world');
      expect(c.writeBytes(text('0123456789'))).toBe(10); // across the two writable buffers
      expect(q.inFlight).toBe(1);
      expect(q.pushUsed(c, 10)).toBe(true);
      expect(q.inFlight).toBe(0);
      expect(q.pop()).toBeNull();
      expect(d.used()).toEqual([{ id: posted.head, len: 10 }]);
      expect(str(d.mem.readBytes(posted.inBufs[0].gpa, 4))).toBe('0123');
      expect(str(d.mem.readBytes(posted.inBufs[1].gpa, 6))).toBe('456789');
      expect(q.errors.dropped).toBe(0);
    });
  }

  it('returns chains in available-ring order and null when the ring is empty', () => {
    const d = new GuestDriver({ size: 4 });
    const q = d.enable();
    expect(q.pop()).toBeNull();
    const heads = [d.add([text('a')]).head, d.add([text('b')]).head, d.add([text('c')]).head];
    const got = [q.pop()!, q.pop()!, q.pop()!];
    expect(q.pop()).toBeNull();
    expect(got.map((c) => c.head)).toEqual(heads);
    expect(got.map((c) => str(c.readBytes(9)))).toEqual(['a', 'b', 'c']);
    // completions may come back in any order
    q.pushUsed(got[2], 0);
    q.pushUsed(got[0], 0);
    q.pushUsed(got[1], 0);
    expect(d.used().map((u) => u.id)).toEqual([heads[2], heads[0], heads[1]]);
  });

  it('walks an indirect table, and direct descriptors followed by an indirect one', () => {
    const d = new GuestDriver({ size: 4, indirectDesc: true });
    const q = d.enable();
    const p = d.add([text('in'), text('direct')], [3, 5], true);
    const c = q.pop()!;
    expect(c.indirect).toBe(true);
    expect(c.descriptors).toBe(5); // the table's 4 and the descriptor naming it
    expect(str(c.readBytes(64))).toBe('indirect');
    expect(c.writeBytes(text('abcdefgh'))).toBe(8);
    q.pushUsed(c, 8);
    expect(d.used()).toEqual([{ id: p.head, len: 8 }]);
    expect(str(d.mem.readBytes(p.inBufs[1].gpa, 5))).toBe('defgh');

    // descriptor 0 (direct, readable) -> descriptor 1 (INDIRECT, with WRITE set, which is ignored)
    const table = d.alloc(32);
    const a = d.alloc(4);
    const b = d.alloc(4);
    const w = d.alloc(4);
    d.mem.writeBytes(a, text('head'));
    d.mem.writeBytes(b, text('tail'));
    d.writeDesc(0, { addr: b, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 1 }, table);
    d.writeDesc(1, { addr: w, len: 4, flags: VIRTQ_DESC_F_WRITE }, table);
    d.writeDesc(2, { addr: a, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 3 });
    d.writeDesc(3, { addr: table, len: 32, flags: VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE });
    d.publish(2);
    const m = q.pop()!;
    expect(m.head).toBe(2);
    expect(str(m.readBytes(64))).toBe('headtail');
    expect(m.writableBytes).toBe(4);
    expect(m.descriptors).toBe(4);
  });

  it('reads and writes at offsets, bounded by max and by the buffers', () => {
    const d = new GuestDriver({ size: 4 });
    const q = d.enable();
    const p = d.add([text('abc'), text('defg')], [2, 3]);
    const c = q.pop()!;
    expect(str(c.readBytes(3, 2))).toBe('cde');
    expect(str(c.readBytes(100, 5))).toBe('fg');
    expect(c.readBytes(100, 7).length).toBe(0);
    expect(c.readBytes(100, 1000).length).toBe(0);
    expect(c.readBytes(0).length).toBe(0);
    const dst = new Uint8Array(4);
    expect(c.readInto(dst, 1)).toBe(4);
    expect(str(dst)).toBe('bcde');
    expect(c.writeBytes(text('XYZW'), 1)).toBe(4);
    expect(c.writeBytes(text('Q'), 0)).toBe(1);
    expect(c.writeBytes(text('nope'), 5)).toBe(0);
    expect(str(d.mem.readBytes(p.inBufs[0].gpa, 2))).toBe('QX');
    expect(str(d.mem.readBytes(p.inBufs[1].gpa, 3))).toBe('YZW');
    expect(() => c.readBytes(-1)).toThrow(/max/);
    expect(() => c.readBytes(1, 0.5)).toThrow(/offset/);
    expect(() => c.writeBytes('x' as unknown as Uint8Array)).toThrow(TypeError);
  });

  it('checks the device\'s own calls: len in range, a chain returned once, chains of an earlier life ignored', () => {
    const d = new GuestDriver({ size: 4 });
    const q = d.enable();
    d.add([text('x')], [4]);
    const c = q.pop()!;
    expect(() => q.pushUsed(c, 5)).toThrow(/len must be an integer in \[0, 4\]/);
    expect(() => q.pushUsed(c, -1)).toThrow(RangeError);
    expect(() => q.pushUsed({} as DescriptorChain, 0)).toThrow(TypeError);
    expect(q.pushUsed(c, 4)).toBe(true);
    expect(() => q.pushUsed(c, 4)).toThrow(/already returned/);
    d.add([text('y')]);
    const stale = q.pop()!;
    q.reset();
    expect(q.pushUsed(stale, 0)).toBe(false);
    expect(q.enabled).toBe(false);
    expect(q.size).toBe(4);
    expect(q.descAddr).toBe(0);
  });

  it('zero-length descriptors add no segment', () => {
    const d = new GuestDriver({ size: 4 });
    const q = d.enable();
    d.writeDesc(0, { addr: 0, len: 0, flags: VIRTQ_DESC_F_NEXT, next: 1 }); // address 0 is not RAM, but nothing is read
    d.writeDesc(1, { addr: d.dataBase, len: 2 });
    d.publish(0);
    const c = q.pop()!;
    expect(c.readable).toEqual([{ gpa: d.dataBase, len: 2 }]);
    expect(c.descriptors).toBe(2);
  });
});

describe('SplitQueue: configuration', () => {
  const mem = () => bufferMemory(0x10000);
  const setUp = (q: SplitQueue, size: number, desc: number, avail: number, used: number) => {
    q.size = size;
    q.descAddr = desc;
    q.availAddr = avail;
    q.usedAddr = used;
  };
  const noFeatures = { eventIdx: false, indirectDesc: false };

  it('refuses bad sizes and misaligned rings with a bad-config QueueError, and stays stopped until reset', () => {
    for (const [size, desc, avail, used] of [[3, 0, 0x1000, 0x2000], [0, 0, 0x1000, 0x2000], [512, 0, 0x1000, 0x2000], [8, 8, 0x1000, 0x2000], [8, 0, 0x1001, 0x2000], [8, 0, 0x1000, 0x2002]]) {
      const q = new SplitQueue(mem(), { maxSize: 256 });
      setUp(q, size, desc, avail, used);
      let err: unknown;
      try {
        q.enable(noFeatures);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(QueueError);
      expect((err as QueueError).kind).toBe('bad-config');
      expect(q.error).toBe(err);
      expect(q.enabled).toBe(false);
      q.enable(noFeatures); // stopped: a no-op until reset
      expect(q.pop()).toBeNull();
      q.reset();
      expect(q.error).toBeUndefined();
    }
  });

  it('refuses rings outside guest memory with ring-unmapped', () => {
    for (const [desc, avail, used] of [[0xf800, 0x1000, 0x2000], [0, 0xfffe, 0x2000], [0, 0x1000, 0xfff0], [2 ** 60, 0x1000, 0x2000]]) {
      const q = new SplitQueue(mem(), { maxSize: 256 });
      setUp(q, 256, desc, avail, used);
      expect(() => q.enable(noFeatures)).toThrow(expect.objectContaining({ kind: 'ring-unmapped' }));
    }
  });

  it('treats a ring register changed while enabled as ring-moved; rewriting the same value is fine', () => {
    const d = new GuestDriver({ size: 8 });
    const q = d.enable();
    q.descAddr = d.descAddr;
    q.size = 8;
    expect(q.error).toBeUndefined();
    expect(() => { q.usedAddr = d.usedAddr + 0x100; }).toThrow(expect.objectContaining({ kind: 'ring-moved' }));
    expect(q.usedAddr).toBe(d.usedAddr);
    d.add([text('x')]);
    expect(q.pop()).toBeNull();
    q.reset();
    q.usedAddr = 0x1234; // fine while disabled
    expect(q.usedAddr).toBe(0x1234);
  });

  it('checks the device\'s arguments with TypeError/RangeError naming them', () => {
    expect(() => new SplitQueue(mem(), { maxSize: 3 })).toThrow(/options.maxSize/);
    expect(() => new SplitQueue(mem(), { maxSize: 65536 })).toThrow(/options.maxSize/);
    expect(() => new SplitQueue(mem(), { maxSize: 8, maxChainBytes: 2 ** 32 })).toThrow(/options.maxChainBytes/);
    expect(() => new SplitQueue(mem(), { maxSize: 8, maxIndirectEntries: 0 })).toThrow(/options.maxIndirectEntries/);
    expect(() => new SplitQueue(null as never, { maxSize: 8 })).toThrow(/mem/);
    const q = new SplitQueue(mem(), { maxSize: 8 });
    expect(() => { q.size = 0x10000; }).toThrow(/size/);
    expect(() => { q.descAddr = -1; }).toThrow(/descAddr/);
    expect(() => { q.availAddr = 'x' as never; }).toThrow(TypeError);
    q.usedAddr = 0x1000n;
    expect(q.usedAddr).toBe(0x1000);
    expect(() => q.enable({ eventIdx: 1 } as never)).toThrow(/features.eventIdx/);
    expect(() => q.enable(noFeatures, { availIdx: 70000, usedIdx: 0 })).toThrow(/start.availIdx/);
  });

  it('derives the ring features from a negotiated feature word, and the ring sizes', () => {
    expect(queueFeatures(1n << BigInt(VIRTIO_F_EVENT_IDX))).toEqual({ eventIdx: true, indirectDesc: false });
    expect(queueFeatures((1n << BigInt(VIRTIO_F_INDIRECT_DESC)) | (1n << 32n))).toEqual({ eventIdx: false, indirectDesc: true });
    expect(ringBytes(256)).toEqual({ desc: 4096, avail: 518, used: 2054 });
    expect(() => ringBytes(0)).toThrow(/size/);
  });

  it('enable writes used.flags, used.idx and avail_event; a second enable is a no-op', () => {
    const d = new GuestDriver({ size: 8, eventIdx: true, start: 300 });
    d.mem.writeU16(d.usedAddr, 0xffff);
    d.mem.writeU16(d.usedAddr + 2, 7);
    const q = d.enable();
    expect(d.usedFlags()).toBe(0);
    expect(d.usedIdx()).toBe(300);
    expect(d.availEvent()).toBe(300);
    expect([q.nextAvail, q.nextUsed]).toEqual([300, 300]);
    q.enable({ eventIdx: false, indirectDesc: false });
    expect(q.features.eventIdx).toBe(true);
  });
});

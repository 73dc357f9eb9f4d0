/** SplitQueue snapshot/restore: round trips mid-stream, and hostile states. */
import { describe, expect, it } from 'vitest';
import { SplitQueue, type DescriptorChain, type SplitQueueState } from '../../../src/virtio/index.js';
import { GuestDriver } from './driver.js';
import { moveToCopy, viaJson } from './state-helpers.js';

const text = (s: string) => new TextEncoder().encode(s);

/**
 * A device that answers each chain with its readable bytes upper-cased, completing chains
 * in LIFO order two at a time: chains stay in flight across steps.
 */
function step(q: SplitQueue, held: DescriptorChain[], log: string[]): void {
  for (let c; (c = q.pop()); ) held.push(c);
  while (held.length >= 2) {
    const c = held.pop()!;
    const up = text(new TextDecoder().decode(c.readBytes(64)).toUpperCase());
    q.pushUsed(c, c.writeBytes(up));
  }
  log.push(`needs=${q.needsNotification()} used=${q.nextUsed}`);
}

function scenario(snapshotAt: number | undefined) {
  let d = new GuestDriver({ size: 8, eventIdx: true, start: 0xfffa });
  let q = d.enable();
  let held: DescriptorChain[] = [];
  const log: string[] = [];
  const results: string[] = [];
  for (let i = 0; i < 12; i++) {
    if (i === snapshotAt) {
      const state = viaJson(q.snapshot());
      const heads = held.map((c) => c.head);
      moveToCopy(d.ram, d);
      q = new SplitQueue(d.mem, { maxSize: 8 });
      q.restore(state);
      held = heads.map((h) => q.reclaim(h));
    }
    const posted = [d.add([text(`req ${i}a`)], [16]), d.add([text(`req ${i}b`)], [16])];
    void posted;
    step(q, held, log);
    for (const u of d.used()) results.push(`${u.id}:${u.len}`);
    log.push(`avail_event=${d.availEvent()} flags=${d.usedFlags()}`);
  }
  return { log, results, used: d.usedIdx() };
}

describe('SplitQueue state', () => {
  it('a queue restored mid-stream (across the u16 wrap, chains in flight) goes on like an uninterrupted one', () => {
    const straight = scenario(undefined);
    for (const at of [1, 3, 6]) expect(scenario(at)).toEqual(straight);
  });

  it('restores a disabled queue and a stopped one', () => {
    const d = new GuestDriver({ size: 4 });
    const q = new SplitQueue(d.mem, { maxSize: 4 });
    q.size = 2;
    q.descAddr = 0x1234_0000_0000n;
    const s1 = viaJson(q.snapshot());
    const r = new SplitQueue(d.mem, { maxSize: 4 });
    r.restore(s1);
    expect(r.size).toBe(2);
    expect(r.descAddr).toBe(0x1234_0000_0000);
    expect(r.enabled).toBe(false);
    const e = d.enable();
    d.setAvailIdx(9); // 9 ahead: avail-idx error
    expect(() => e.pop()).toThrow();
    const s2 = viaJson(e.snapshot());
    expect(s2.error?.kind).toBe('avail-idx');
    const r2 = new SplitQueue(d.mem, { maxSize: 4 });
    r2.restore(s2);
    expect(r2.error?.kind).toBe('avail-idx');
    expect(r2.pop()).toBeNull();
  });

  it('refuses hostile states, naming the field, and stays unchanged', () => {
    const d = new GuestDriver({ size: 8 });
    const q = d.enable();
    d.add([text('x')], [4]);
    q.pop();
    d.writeDesc(5, { addr: 0xffff_0000, len: 16 });
    const good = q.snapshot();
    const fresh = new SplitQueue(d.mem, { maxSize: 8 });
    const before = fresh.snapshot();
    const bad: [Partial<Record<keyof SplitQueueState, unknown>>, RegExp][] = [
      [{ size: 16 }, /state.size must be a power of two in \[1, 8\]/],
      [{ size: 6 }, /state.size/],
      [{ size: -1 }, /state.size/],
      [{ size: '8' }, /state.size must be an integer/],
      [{ descAddr: 0x10000 }, /state.descAddr must be a hex string/],
      [{ descAddr: '0x10008' }, /state.descAddr 0x10008 is not 16-byte aligned/],
      [{ usedAddr: '0x10001' }, /state.usedAddr .* aligned/],
      [{ availAddr: '0xffff0000' }, /state.availAddr.*not in guest memory/],
      [{ descAddr: '0x10000000000000000' }, /state.descAddr must be at most/],
      [{ enabled: 'yes' }, /state.enabled must be a boolean/],
      [{ nextAvail: 0x10000 }, /state.nextAvail/],
      [{ availSeen: (good.nextAvail + 9) & 0xffff }, /state.availSeen/],
      [{ pushedSinceSignal: -1 }, /state.pushedSinceSignal/],
      [{ inFlight: [8] }, /state.inFlight heads must be below the queue size 8/],
      [{ inFlight: [0, 0] }, /state.inFlight must be ascending/],
      [{ inFlight: [5] }, /state.inFlight\[0\]: the chain at head 5 .*address/], // a buffer outside guest memory
      [{ inFlight: 'all' }, /state.inFlight must be an array/],
      [{ error: { kind: 'oops', message: '' } }, /state.error.kind must be one of/],
      [{ error: { kind: 'memory', message: 'x'.repeat(2000) } }, /state.error.message/],
      [{ enabled: false }, /state.inFlight must be empty/],
    ];
    for (const [patch, msg] of bad) {
      expect(() => fresh.restore({ ...good, ...patch } as SplitQueueState), JSON.stringify(patch).slice(0, 60)).toThrow(msg);
      expect(fresh.snapshot()).toEqual(before);
    }
    expect(() => fresh.restore(null as never)).toThrow(TypeError);
  });

  it('a queue stopped with chains in flight snapshots without them (they can never come back)', () => {
    const d = new GuestDriver({ size: 4 });
    const q = d.enable();
    d.add([text('x')], [4]);
    q.pop();
    d.setAvailIdx(d.availIdx + 9);
    expect(() => q.pop()).toThrow();
    const s = viaJson(q.snapshot());
    expect(s.inFlight).toEqual([]);
    const r = new SplitQueue(d.mem, { maxSize: 4 });
    r.restore(s);
    expect(r.error?.kind).toBe('avail-idx');
  });

  it('reclaim hands back only the restored in-flight chains, once', () => {
    const d = new GuestDriver({ size: 4 });
    const q = d.enable();
    const p = d.add([text('x')], [4]);
    q.pop();
    const r = new SplitQueue(d.mem, { maxSize: 4 });
    r.restore(q.snapshot());
    expect(r.inFlight).toBe(1);
    expect(r.unreclaimed).toEqual([p.head]);
    expect(() => r.reclaim(p.head + 1)).toThrow(RangeError);
    const c = r.reclaim(p.head);
    expect(() => r.reclaim(p.head)).toThrow(/reclaimed already/);
    expect(r.pushUsed(c, 4)).toBe(true);
    expect(d.used()).toEqual([{ id: p.head, len: 4 }]);
  });
});

/** 16-bit ring indices wrapping from 65535 to 0. */
import { describe, expect, it } from 'vitest';
import { QueueError } from '../../../src/virtio/index.js';
import { GuestDriver } from './driver.js';

describe('16-bit index wrap-around', () => {
  for (const eventIdx of [false, true]) {
    it(`keeps FIFO order and used.idx through 65535 -> 0 (start 65530, EVENT_IDX ${eventIdx})`, () => {
      const d = new GuestDriver({ size: 4, eventIdx, start: 65530 });
      const q = d.enable();
      const seen: number[] = [];
      for (let round = 0; round < 6; round++) {
        const posted = [d.add([Uint8Array.of(round, 0)]).head, d.add([Uint8Array.of(round, 1)]).head];
        for (let i = 0; i < 2; i++) {
          const c = q.pop()!;
          expect(c.head).toBe(posted[i]);
          seen.push(c.readBytes(2)[1] + 2 * c.readBytes(2)[0]);
          q.pushUsed(c, 0);
        }
        expect(q.pop()).toBeNull();
        expect(d.used().map((u) => u.id)).toEqual(posted);
      }
      expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => i));
      expect(q.nextAvail).toBe((65530 + 12) & 0xffff);
      expect(d.usedIdx()).toBe((65530 + 12) & 0xffff);
    });
  }

  it('EVENT_IDX comparisons work across the wrap in both directions', () => {
    const d = new GuestDriver({ size: 8, eventIdx: true, start: 65534 });
    const q = d.enable();
    d.setUsedEvent(0); // the element with index 0 is the third one used (65534, 65535, 0)
    for (let i = 0; i < 4; i++) d.add([Uint8Array.of(i)]);
    expect(d.availEvent()).toBe(65534);
    const c = [q.pop()!, q.pop()!, q.pop()!, q.pop()!];
    expect(d.availEvent()).toBe(2);
    q.pushUsed(c[0], 0);
    q.pushUsed(c[1], 0);
    expect(q.needsNotification()).toBe(false); // used.idx 65534 -> 0
    q.pushUsed(c[2], 0);
    expect(q.needsNotification()).toBe(true); // 0 -> 1 passes 0
    q.pushUsed(c[3], 0);
    expect(q.needsNotification()).toBe(false);
    const old = d.availIdx;
    d.add([Uint8Array.of(9)]);
    expect(d.wouldKick(old)).toBe(true); // 2 -> 3 passes avail_event 2
  });

  it('accepts avail.idx exactly size ahead across the wrap, and refuses size + 1 as avail-idx', () => {
    const ok = new GuestDriver({ size: 4, start: 65534 });
    const q = ok.enable();
    for (let i = 0; i < 4; i++) ok.add([Uint8Array.of(i)]);
    expect(ok.availIdx).toBe(2);
    for (let i = 0; i < 4; i++) expect(q.pop()).not.toBeNull();
    expect(q.pop()).toBeNull();

    const bad = new GuestDriver({ size: 4, start: 65534 });
    const b = bad.enable();
    bad.setAvailIdx(65534 + 5);
    let err: unknown;
    try {
      b.pop();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QueueError);
    expect((err as QueueError).kind).toBe('avail-idx');
    // a driver moving avail.idx backwards looks the same
    const back = new GuestDriver({ size: 4, start: 10 });
    const k = back.enable();
    back.setAvailIdx(9);
    expect(() => k.enableNotifications()).toThrow(expect.objectContaining({ kind: 'avail-idx' }));
  });

  it('runs 70 000 requests through a 2-entry queue (more than one full turn of the indices)', () => {
    const d = new GuestDriver({ size: 2, eventIdx: true });
    const q = d.enable();
    let kicks = 0;
    let irqs = 0;
    let wrong = 0;
    for (let i = 0; i < 70_000; i++) {
      const old = d.availIdx;
      const p = d.add([Uint8Array.of(i & 0xff)], [1]);
      if (d.wouldKick(old)) kicks++;
      const c = q.pop()!;
      if (c.readBytes(1)[0] !== (i & 0xff)) wrong++;
      c.writeBytes(Uint8Array.of(~i & 0xff));
      q.pushUsed(c, 1);
      d.setUsedEvent(d.lastUsed); // the driver wants every completion
      if (q.needsNotification()) irqs++;
      const u = d.used();
      if (u.length !== 1 || u[0].id !== p.head || u[0].len !== 1 || d.mem.readU8(p.inBufs[0].gpa) !== (~i & 0xff)) wrong++;
    }
    expect(wrong).toBe(0);
    expect(kicks).toBe(70_000);
    expect(irqs).toBe(70_000);
    expect(q.errors.dropped).toBe(0);
  });
});

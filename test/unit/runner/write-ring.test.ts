/** The posted-write ring and its delivery, without KVM. */
import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'eventemitter3';
import { MmioBus, PioBus } from '../../../src/bus/bus.js';
import { newAccess, type Access } from '../../../src/bus/dispatch.js';
import { RING_SPACE, WriteRing, ringWords } from '../../../src/runner/write-ring.js';
import { deliverClaimedPostedWrites, deliverPostedWrites, handleExit, type ExitContext } from '../../../src/runner/exit-handler.js';
import type { RunnerEvents } from '../../../src/runner/types.js';
import type { AccessSize } from '../../../src/devices/device.js';

const LAYOUT = { head: 0, tail: 1, base: 2, capacity: 8 };
const cells = () => new Int32Array(new SharedArrayBuffer((2 + ringWords(8)) * 4));

function write(addr: number, size: AccessSize, value: bigint): Access {
  const a = newAccess();
  a.addr = addr;
  a.size = size;
  a.write = true;
  a.data.setBigUint64(0, value, true);
  return a;
}

function context(): ExitContext & { events: EventEmitter<RunnerEvents> } {
  return { pio: new PioBus(), mmio: new MmioBus(), events: new EventEmitter<RunnerEvents>(), counters: { unhandled: 0 } };
}

describe('WriteRing', () => {
  it('keeps order across many wrap-arounds of the index and of the Int32 counters', () => {
    const c = cells();
    // start just below the Int32 wrap so the counters overflow during the test
    c[0] = c[1] = 0x7ffffffc;
    const producer = new WriteRing(c, LAYOUT);
    const consumer = new WriteRing(c, LAYOUT);
    const got: number[] = [];
    const out = newAccess();
    let next = 0;
    for (let round = 0; round < 50; round++) {
      for (let k = 0; k < 5; k++) expect(producer.push(RING_SPACE.PIO, write(0x80, 1, BigInt(next++ & 0xff)))).toBeGreaterThan(0);
      while (consumer.peek(out) !== 0) {
        got.push(out.data.getUint8(0));
        consumer.consume();
      }
    }
    expect(got).toEqual(Array.from({ length: 250 }, (_, i) => i & 0xff));
    expect(c[0] | 0).toBe(c[1] | 0);
    expect(c[0]).toBeLessThan(0); // the counters wrapped
  });

  it('refuses a push when full and takes more once the consumer frees a slot', () => {
    const c = cells();
    const r = new WriteRing(c, LAYOUT);
    for (let i = 0; i < 8; i++) expect(r.push(RING_SPACE.PIO, write(0x80, 1, BigInt(i)))).toBe(i + 1);
    expect(r.full()).toBe(true);
    expect(r.push(RING_SPACE.PIO, write(0x80, 1, 99n))).toBe(0);
    r.consume();
    expect(r.push(RING_SPACE.PIO, write(0x80, 1, 8n))).toBe(8);
  });

  it('carries 8-byte MMIO writes and addresses above 4 GiB', () => {
    const r = new WriteRing(cells(), LAYOUT);
    r.push(RING_SPACE.MMIO, write(0xf_fee0_0010, 8, 0x1122334455667788n));
    const out = newAccess();
    expect(r.peek(out)).toBe(RING_SPACE.MMIO);
    expect(out).toMatchObject({ addr: 0xf_fee0_0010, size: 8, count: 1, write: true });
    expect(out.data.getBigUint64(0, true)).toBe(0x1122334455667788n);
  });

  it('rejects a capacity that is not a power of two or does not fit', () => {
    expect(() => new WriteRing(cells(), { ...LAYOUT, capacity: 6 })).toThrow(RangeError);
    expect(() => new WriteRing(new Int32Array(4), LAYOUT)).toThrow(/does not fit/);
  });
});

describe('delivering posted writes', () => {
  it('delivers every write before a following read is served (ordering)', async () => {
    const ctx = context();
    const log: string[] = [];
    ctx.pio.register(0x70, 2, {
      read: (o) => (log.push(`read ${o}`), 0),
      write: (o, _s, v) => void log.push(`write ${o}=${v}`),
    });
    const ring = new WriteRing(cells(), LAYOUT);
    ring.push(RING_SPACE.PIO, write(0x70, 1, 0x0fn));
    ring.push(RING_SPACE.PIO, write(0x71, 1, 0x42n));
    // the server delivers the ring, then answers the read that followed the writes
    expect(deliverClaimedPostedWrites(ring, ctx, newAccess())).toBe(true);
    await handleExit({ kind: 'inout', vcpu: 0, port: 0x71, bytes: 1, in: true, count: 1, value: 0, data: new Uint8Array(1) }, ctx);
    expect(log).toEqual(['write 0=15', 'write 1=66', 'read 1']);
    expect(ring.pending()).toBe(0);
  });

  it("with 'exit' observers, each posted write becomes an exit (a copy of its value) and is delivered once", async () => {
    const ctx = context();
    const writes: number[] = [];
    ctx.pio.register(0x80, 1, { read: () => 0, write: (_o, _s, v) => void writes.push(Number(v)) });
    const seen: string[] = [];
    ctx.events.on('exit', (e) => void seen.push(e.kind === 'inout' ? `out 0x${e.port.toString(16)}=${e.value}` : e.kind));
    const ring = new WriteRing(cells(), LAYOUT);
    ring.push(RING_SPACE.PIO, write(0x80, 1, 7n));
    ring.push(RING_SPACE.PIO, write(0x80, 1, 9n));
    expect(deliverClaimedPostedWrites(ring, ctx, newAccess())).toBe(false); // needs the async path
    await deliverPostedWrites(ring, 0, ctx, newAccess());
    expect(seen).toEqual(['out 0x80=7', 'out 0x80=9']);
    expect(writes).toEqual([7, 9]);
    expect(ring.pending()).toBe(0);
  });

  it('a posted write whose device is gone is reported unhandled, not lost silently', async () => {
    const ctx = context();
    const unhandled: number[] = [];
    ctx.events.on('unhandled', (e) => void unhandled.push(e.kind === 'mmio' ? e.gpa : -1));
    const ring = new WriteRing(cells(), LAYOUT);
    ring.push(RING_SPACE.MMIO, write(0xd000_0000, 4, 1n));
    expect(deliverClaimedPostedWrites(ring, ctx, newAccess())).toBe(false);
    await deliverPostedWrites(ring, 0, ctx, newAccess());
    expect(unhandled).toEqual([0xd000_0000]);
    expect(ctx.mmio.counters.unhandledWrites).toBe(1);
  });
});

/** VirtioRng over a real SplitQueue. */
import { describe, expect, it } from 'vitest';
import { VIRTIO_DEVICE_TYPE } from '../../../../src/virtio/index.js';
import { VirtioRng } from '../../../../src/virtio/devices/index.js';
import { activate, driversFor, turn, text } from './harness.js';

describe('VirtioRng', () => {
  it('offers one queue, no features and no configuration space', () => {
    const rng = new VirtioRng();
    expect(rng.deviceType).toBe(VIRTIO_DEVICE_TYPE.ENTROPY);
    expect(rng.features).toBe(0n);
    expect(rng.queueSizes).toEqual([64]);
    expect(rng.configSize).toBe(0);
    expect(() => rng.readConfig(0, 1)).toThrow(RangeError);
    expect(() => rng.writeConfig(0, 4, 0)).toThrow(RangeError);
    expect(() => new VirtioRng({ queueSize: 3 })).toThrow(/options.queueSize/);
    expect(() => new VirtioRng({ maxBytesPerRequest: 0 })).toThrow(/options.maxBytesPerRequest/);
    expect(() => new VirtioRng('x' as never)).toThrow(TypeError);
  });

  it('fills each writable chain, across segments, and interrupts once per batch', () => {
    const rng = new VirtioRng();
    const [d] = driversFor(rng, { size: 8 });
    const ctx = activate(rng, [d]);
    const a = d.add([], [64]);
    const b = d.add([text('ignored')], [16, 48]);
    rng.notify(0);
    expect(d.used()).toEqual([{ id: a.head, len: 64 }, { id: b.head, len: 64 }]);
    expect(ctx.interrupts).toEqual([0]);
    const bytes = [...d.mem.readBytes(a.inBufs[0].gpa, 64), ...d.mem.readBytes(b.inBufs[1].gpa, 48)];
    expect(new Set(bytes).size).toBeGreaterThan(16); // random, not a constant fill
    expect(rng.stats).toEqual({ requests: 2, bytes: 128, empty: 0 });
    expect(d.ram.guardsIntact()).toBe(true);
  });

  it('bounds the bytes per request and returns chains without writable buffers empty', () => {
    const rng = new VirtioRng({ maxBytesPerRequest: 100 });
    const [d] = driversFor(rng, { size: 8 });
    activate(rng, [d]);
    const big = d.add([], [300]);
    const none = d.add([text('only readable')]);
    rng.notify(0);
    expect(d.used()).toEqual([{ id: big.head, len: 100 }, { id: none.head, len: 0 }]);
    expect([...d.mem.readBytes(big.inBufs[0].gpa + 100, 200)].every((x) => x === 0)).toBe(true);
    expect(rng.stats.empty).toBe(1);
  });

  it('serves what was posted before activation, defers past its turn budget, and stops at reset', async () => {
    const rng = new VirtioRng({ queueSize: 128 });
    const [d] = driversFor(rng);
    for (let i = 0; i < 100; i++) d.add([], [8]);
    const ctx = activate(rng, [d]);
    expect(d.used().length).toBe(64);
    await turn();
    expect(d.used().length).toBe(36);
    expect(ctx.interrupts).toEqual([0, 0]);
    for (let i = 0; i < 100; i++) d.add([], [8]);
    rng.notify(0);
    rng.reset();
    await turn();
    expect(d.used().length).toBe(64); // the deferred rest was dropped by the reset
    rng.notify(0); // not active: ignored
    expect(d.used().length).toBe(0);
    expect(() => rng.notify(1)).toThrow(/index must be an integer in \[0, 0\]/);
  });

  it('reports a broken ring once through needsReset and then ignores the queue', () => {
    const rng = new VirtioRng({ queueSize: 8 });
    const [d] = driversFor(rng);
    const ctx = activate(rng, [d]);
    d.setAvailIdx(200);
    rng.notify(0);
    rng.notify(0);
    expect(ctx.resets.length).toBe(1);
    expect(ctx.resets[0]).toMatch(/^avail-idx/);
  });
});

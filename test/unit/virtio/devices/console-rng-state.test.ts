/** VirtioConsole and VirtioRng snapshot/restore over synthetic queues. */
import { describe, expect, it } from 'vitest';
import { VirtioConsole, VirtioRng, type VirtioConsoleState } from '../../../../src/virtio/devices/index.js';
import { toBase64 } from '../../../../src/pci/state-check.js';
import { restoreDevice, snapshotDevice } from '../state-helpers.js';
import { activate, driversFor, str, text } from './harness.js';

function consoleSetup(inputLimit = 64) {
  const out: string[] = [];
  const dev = new VirtioConsole({ output: (b) => out.push(str(b)), cols: 80, rows: 24, inputLimit, queueSize: 8 });
  const drivers = driversFor(dev);
  const ctx = activate(dev, drivers);
  return { out, dev, drivers, ctx };
}

describe('VirtioConsole state', () => {
  it('keeps pending input across a restore; output waiting in the ring goes out after resume', async () => {
    const { dev, drivers } = consoleSetup();
    const [rx, tx] = drivers;
    dev.input(text('typed before the driver posted buffers'));
    tx.add([text('queued output')]); // not notified yet
    const snap = await snapshotDevice(dev, drivers);
    expect(Buffer.from((snap.device as VirtioConsoleState).input, 'base64').toString()).toBe('typed before the driver posted buffers');
    const out: string[] = [];
    const fresh = new VirtioConsole({ output: (b) => out.push(str(b)), cols: 80, rows: 24, inputLimit: 64, queueSize: 8 });
    restoreDevice(fresh, drivers, snap, dev.features);
    expect(out).toEqual(['queued output']);
    expect(fresh.buffered).toBe(38);
    const p = rx.add([], [64]);
    fresh.notify(0);
    const [u] = rx.used();
    expect(u.id).toBe(p.head);
    expect(str(rx.mem.readBytes(p.inBufs[0].gpa, u.len))).toBe('typed before the driver posted buffers');
  });

  it('input arriving while quiesced waits; the size survives a resize', async () => {
    const { dev, drivers } = consoleSetup();
    const [rx] = drivers;
    const p = rx.add([], [16]);
    await dev.quiesce();
    dev.notify(0);
    dev.input(text('later'));
    expect(rx.used()).toEqual([]);
    dev.resize(120, 40);
    const snap = dev.snapshot();
    expect(snap).toMatchObject({ cols: 120, rows: 40 });
    dev.resume();
    expect(rx.used()).toEqual([{ id: p.head, len: 5 }]);
  });

  it('refuses hostile states, naming the field, and stays unchanged', () => {
    const { dev } = consoleSetup(8);
    dev.input(text('abc'));
    const good = dev.snapshot();
    const unsized = new VirtioConsole({ output: () => {} });
    for (const [target, state, msg] of [
      [dev, { ...good, input: toBase64(new Uint8Array(9)) }, /state.input must hold at most 8 bytes/],
      [dev, { ...good, input: 'a b' }, /state.input must be a base64 string/],
      [dev, { ...good, cols: 0 }, /state.cols/],
      [dev, { ...good, rows: 65536 }, /state.rows/],
      [unsized, { ...good, cols: 80, rows: 24 }, /state.cols must be in \[0x0, 0x0\]/],
      [dev, { ...good, failed: 'no' }, /state.failed/],
    ] as const) {
      expect(() => target.prepareRestore(state as VirtioConsoleState, undefined), msg.source).toThrow(msg);
    }
    expect(dev.snapshot()).toEqual(good);
  });
});

describe('VirtioRng state', () => {
  it('holds nothing but the failed flag; the queue goes on where it stopped', async () => {
    const rng = new VirtioRng({ queueSize: 8 });
    const drivers = driversFor(rng);
    activate(rng, drivers);
    const [d] = drivers;
    d.add([], [16]);
    rng.notify(0);
    d.add([], [32]);
    const snap = await snapshotDevice(rng, drivers);
    expect(snap.device).toEqual({ failed: false });
    const fresh = new VirtioRng({ queueSize: 8 });
    restoreDevice(fresh, drivers, snap, 0n);
    expect(d.used().map((u) => u.len)).toEqual([16, 32]);
    expect(fresh.stats.requests).toBe(1);
    expect(() => fresh.prepareRestore({ failed: 1 } as never, undefined)).toThrow(/state.failed must be a boolean/);
  });

  it('a failed activation stays failed after a restore', async () => {
    const rng = new VirtioRng({ queueSize: 8 });
    const drivers = driversFor(rng);
    const ctx = activate(rng, drivers);
    drivers[0].setAvailIdx(100); // avail-idx error: needsReset
    rng.notify(0);
    expect(ctx.resets.length).toBe(1);
    const snap = await snapshotDevice(rng, drivers);
    expect(snap.device).toEqual({ failed: true });
    const fresh = new VirtioRng({ queueSize: 8 });
    const fctx = restoreDevice(fresh, drivers, snap, 0n)!;
    fresh.notify(0);
    expect(fresh.stats.requests).toBe(0);
    expect(fctx.resets).toEqual([]);
  });
});

/**
 * The exit handler as a pure function: made-up exits, real buses and listeners, no KVM
 * (the way Firecracker tests handle_kvm_exit).
 */
import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'eventemitter3';
import { MmioBus, PioBus } from '../../../src/bus/bus.js';
import { newAccess } from '../../../src/bus/dispatch.js';
import { RUN, type InoutExit, type MmioExit, type VmExit } from '../../../src/exits.js';
import { KVM_EXIT } from '../../../src/kvm/constants.js';
import { GuestError } from '../../../src/runner/errors.js';
import { handleClaimedIo, handleExit, type ExitContext } from '../../../src/runner/exit-handler.js';
import type { RunnerEvents } from '../../../src/runner/types.js';
import type { Device } from '../../../src/devices/device.js';

function context(): ExitContext & { events: EventEmitter<RunnerEvents> } {
  return { pio: new PioBus(), mmio: new MmioBus(), events: new EventEmitter<RunnerEvents>(), counters: { unhandled: 0 } };
}

/** A device that records every access and answers reads from a counter. */
function recorder(): Device & { log: string[] } {
  let n = 0;
  const log: string[] = [];
  return {
    log,
    read: (off, size) => {
      log.push(`r${size}@${off}`);
      return ++n;
    },
    write: (off, size, v) => void log.push(`w${size}@${off}=${v.toString(16)}`),
  };
}

const inExit = (port: number, bytes: 1 | 2 | 4, count = 1): InoutExit => ({ kind: 'inout', vcpu: 0, port, bytes, in: true, count, value: 0, data: new Uint8Array(bytes * count) });
const outExit = (port: number, bytes: 1 | 2 | 4, data: number[]): InoutExit => ({
  kind: 'inout', vcpu: 0, port, bytes, in: false, count: data.length / bytes, value: data[0], data: Uint8Array.from(data),
});
const mmioExit = (gpa: number, bytes: 1 | 2 | 4 | 8, write: boolean, data: number[] = new Array(bytes).fill(0)): MmioExit => ({
  kind: 'mmio', vcpu: 1, gpa, bytes, write, value: 0n, data: Uint8Array.from(data),
});

describe('handleExit', () => {
  it('IN goes to the device at its offset; the answer lands in exit.data, little-endian', async () => {
    const ctx = context();
    const d = recorder();
    ctx.pio.register(0x3f8, 8, d);
    const e = inExit(0x3fd, 2);
    expect(await handleExit(e, ctx)).toEqual({ kind: 'continue' });
    expect(d.log).toEqual(['r2@5']);
    expect(Array.from(e.data)).toEqual([1, 0]);
    expect(ctx.pio.counters).toMatchObject({ reads: 1, writes: 0 });
  });

  it('string I/O (rep insw / rep outsb) is served element by element', async () => {
    const ctx = context();
    const d = recorder();
    ctx.pio.register(0x60, 1, d);
    const e = inExit(0x60, 2, 3);
    await handleExit(e, ctx);
    expect(Array.from(e.data)).toEqual([1, 0, 2, 0, 3, 0]);
    await handleExit(outExit(0x60, 1, [0xa, 0xb]), ctx);
    expect(d.log.slice(3)).toEqual(['w1@0=a', 'w1@0=b']);
  });

  it('MMIO of every width, 8 bytes included, reaches the device with the offset', async () => {
    const ctx = context();
    const seen: [number, number, bigint | number][] = [];
    ctx.mmio.register(0xfee00000, 0x1000, { read: () => 0x1122334455667788n, write: (o, s, v) => void seen.push([o, s, v]) });
    for (const w of [1, 2, 4, 8] as const) await handleExit(mmioExit(0xfee00010, w, true, [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11].slice(0, w)), ctx);
    expect(seen).toEqual([[0x10, 1, 0x88], [0x10, 2, 0x7788], [0x10, 4, 0x55667788], [0x10, 8, 0x1122334455667788n]]);
    const r = mmioExit(0xfee00020, 8, false);
    await handleExit(r, ctx);
    expect(Buffer.from(r.data).readBigUInt64LE()).toBe(0x1122334455667788n);
  });

  it('an unclaimed read reads all-ones, goes to the listener, and is unhandled only if nobody answers', async () => {
    const ctx = context();
    const unhandled: VmExit[] = [];
    ctx.events.on('unhandled', (e) => void unhandled.push(e));
    const a = inExit(0x99, 4);
    await handleExit(a, ctx);
    expect(Array.from(a.data)).toEqual([0xff, 0xff, 0xff, 0xff]);
    expect(unhandled).toEqual([a]);
    expect(ctx.counters.unhandled).toBe(1);
    ctx.events.on('inout', (e) => void e.data.fill(0x5a));
    const b = inExit(0x99, 1);
    await handleExit(b, ctx);
    expect(Array.from(b.data)).toEqual([0x5a]);
    expect(ctx.counters.unhandled).toBe(1);
    expect(ctx.pio.counters).toMatchObject({ unhandledReads: 2 });
  });

  it("'exit' listeners see every exit first; an async listener is awaited", async () => {
    const ctx = context();
    const order: string[] = [];
    ctx.pio.register(0x80, 1, { read: () => 0, write: () => void order.push('device') });
    ctx.events.on('exit', async (e) => {
      await new Promise((r) => setTimeout(r, 5));
      order.push(`exit ${e.kind}`);
    });
    await handleExit(outExit(0x80, 1, [1]), ctx);
    expect(order).toEqual(['exit inout', 'device']);
  });

  it('HLT halts this vCPU; shutdown and system events end the run; internal errors and unknown exits fail', async () => {
    const ctx = context();
    const hlts: number[] = [];
    ctx.events.on('hlt', (e) => void hlts.push(e.vcpu));
    expect(await handleExit({ kind: 'hlt', vcpu: 3 }, ctx)).toEqual({ kind: 'halt' });
    expect(hlts).toEqual([3]);
    expect(await handleExit({ kind: 'shutdown', vcpu: 0 }, ctx)).toEqual({ kind: 'end', reason: 'shutdown' });
    expect(await handleExit({ kind: 'system-event', vcpu: 0, type: 1, typeName: 'shutdown', data: [] }, ctx)).toEqual({ kind: 'end', reason: 'system-event' });
    expect(await handleExit({ kind: 'interrupted', vcpu: 0 }, ctx)).toEqual({ kind: 'continue' });
    const ie = await handleExit({ kind: 'internal-error', vcpu: 0, suberror: 1, suberrorName: 'emulation failure', data: [], message: 'KVM emulation failure' }, ctx);
    expect(ie.kind).toBe('fail');
    expect(ie.kind === 'fail' && ie.error).toBeInstanceOf(GuestError);
    const unk = await handleExit({ kind: 'unknown', vcpu: 0, reason: 99, hardwareReason: 0n }, ctx);
    expect(unk.kind === 'fail' && unk.error.message).toMatch(/unknown exit reason 99/);
  });

  it('a throwing listener makes handleExit reject (the runner then fails the run)', async () => {
    const ctx = context();
    ctx.events.on('debug', () => {
      throw new Error('handler bug');
    });
    await expect(handleExit({ kind: 'debug', vcpu: 0, exception: 1, pc: 0n, dr6: 0n, dr7: 0n }, ctx)).rejects.toThrow('handler bug');
  });
});

describe('handleClaimedIo (the synchronous shortcut over kvm_run)', () => {
  function ioRun(port: number, size: number, isOut: boolean, count = 1, dataOffset = 4096): DataView {
    const v = new DataView(new ArrayBuffer(8192));
    v.setUint32(RUN.exitReason, KVM_EXIT.IO, true);
    v.setUint8(RUN.ioDirection, isOut ? 1 : 0);
    v.setUint8(RUN.ioSize, size);
    v.setUint16(RUN.ioPort, port, true);
    v.setUint32(RUN.ioCount, count, true);
    v.setBigUint64(RUN.ioDataOffset, BigInt(dataOffset), true);
    return v;
  }

  it('answers a claimed IN in place, like handleExit, without an exit object', () => {
    const ctx = context();
    ctx.pio.register(0x90, 1, { read: () => 0x42, write: () => {} });
    const v = ioRun(0x90, 1, false);
    expect(handleClaimedIo(v, 8192, ctx, newAccess())).toBe(true);
    expect(v.getUint8(4096)).toBe(0x42);
  });

  it("declines unclaimed ports, 'exit' observers, malformed exits and data outside kvm_run", () => {
    const ctx = context();
    ctx.pio.register(0x90, 1, { read: () => 0x42, write: () => {} });
    expect(handleClaimedIo(ioRun(0x91, 1, false), 8192, ctx, newAccess())).toBe(false);
    expect(handleClaimedIo(ioRun(0x90, 3, false), 8192, ctx, newAccess())).toBe(false);
    expect(handleClaimedIo(ioRun(0x90, 1, false, 0), 8192, ctx, newAccess())).toBe(false);
    expect(handleClaimedIo(ioRun(0x90, 4, false, 2, 8190), 8192, ctx, newAccess())).toBe(false);
    expect(handleClaimedIo(ioRun(0x90, 1, false, 1, 2 ** 40), 8192, ctx, newAccess())).toBe(false);
    ctx.events.on('exit', () => {});
    expect(handleClaimedIo(ioRun(0x90, 1, false), 8192, ctx, newAccess())).toBe(false);
    expect(ctx.pio.counters.reads).toBe(0);
  });
});

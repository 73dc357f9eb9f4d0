/**
 * The worker-thread runner against real KVM guests.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { GuestError, KvmError, Reg, RunnerError, VcpuRunner, Vm, prestartVcpuWorkers, type Device } from '../../src/index.js';
import { flat32, smpVm } from './guests.js';
import { uniqueName } from '../helpers.js';

const vms: Vm[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) vm.destroy();
});
function track<T extends Vm>(vm: T): T {
  vms.push(vm);
  return vm;
}

/** A device that records every write and answers reads with `value`. */
function sink(value = 0): Device & { writes: number[] } {
  const writes: number[] = [];
  return { writes, read: () => value, write: (_o, _s, v) => void writes.push(Number(v)) };
}

/** A real-mode VM with `code` at 0x1000 (and more vCPUs made runnable at `apStarts`). */
function codeVm(code: number[], opts: { vcpus?: number; apCode?: number[][] } = {}): Vm {
  const vm = track(Vm.create(uniqueName('run'), { vcpus: opts.vcpus ?? 1 }));
  vm.setupMemory(0, 0x100000);
  vm.memory.writeBytes(0x1000, Uint8Array.from(code));
  const starts = [0x1000];
  (opts.apCode ?? []).forEach((c, i) => {
    const at = 0x2000 + i * 0x100;
    vm.memory.writeBytes(at, Uint8Array.from(c));
    starts.push(at);
  });
  starts.forEach((at, v) => {
    vm.setDesc(v, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
    vm.setRegisters(v, [[Reg.CS, 0], [Reg.RIP, at], [Reg.RFLAGS, 2]]);
    if (v > 0) vm.vcpuFd(v).setMpState(new Uint8Array(4)); // RUNNABLE without INIT/SIPI
  });
  return vm;
}

const CLI_HLT = [0xfa, 0xf4];

describe('VcpuRunner', () => {
  it('2 vCPUs: the BSP starts the AP with INIT-SIPI-SIPI; each prints its APIC id; both halt', async () => {
    const vm = track(smpVm());
    const runner = new VcpuRunner(vm);
    const out = sink();
    runner.pio.register(0x500, 4, out, { name: 'apic-id printer' });
    const states: string[] = [];
    runner.on('vcpu-state', (v, s) => states.push(`${v}:${s}`));
    const result = await runner.start();
    expect(result).toEqual({ reason: 'halted', vcpus: ['halted', 'halted'] });
    expect(out.writes.sort()).toEqual([0, 1]);
    expect(states).toContain('0:finished');
    expect(states).toContain('1:finished');
  });

  it('unclaimed reads get all-ones; unclaimed accesses emit unhandled and are counted', async () => {
    // in $0x99,%al ; out %al,$0x98 ; out %al,$0x97 ; cli ; hlt
    const vm = codeVm([0xe4, 0x99, 0xe6, 0x98, 0xe6, 0x97, ...CLI_HLT]);
    const runner = new VcpuRunner(vm);
    const out = sink();
    runner.pio.register(0x98, 1, out);
    const unhandled: string[] = [];
    runner.on('unhandled', (e) => unhandled.push(`${e.kind === 'inout' && e.in ? 'in' : 'out'} 0x${(e as { port: number }).port.toString(16)}`));
    await runner.start();
    expect(out.writes).toEqual([0xff]);
    expect(unhandled).toEqual(['in 0x99', 'out 0x97']);
    expect(runner.counters.unhandled).toBe(2);
  });

  it('a listener can answer an unclaimed IN by filling exit.data', async () => {
    const vm = codeVm([0xe4, 0x99, 0xe6, 0x98, ...CLI_HLT]);
    const runner = new VcpuRunner(vm);
    const out = sink();
    runner.pio.register(0x98, 1, out);
    runner.on('inout', (e) => {
      if (e.in && e.port === 0x99) e.data[0] = 0x5a;
    });
    await runner.start();
    expect(out.writes).toEqual([0x5a]);
    expect(runner.counters.unhandled).toBe(0);
  });

  it('an async handler parks only its vCPU while the others run on', async () => {
    // vCPU 0: mov $0x600,%dx ; out %al,%dx ; cli ; hlt
    // vCPU 1: mov $0x601,%dx ; 1: out %al,%dx ; jmp 1b
    const vm = codeVm([0xba, 0x00, 0x06, 0xee, ...CLI_HLT], { vcpus: 2, apCode: [[0xba, 0x01, 0x06, 0xee, 0xeb, 0xfd]] });
    const runner = new VcpuRunner(vm);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let parkedAt = -1;
    let ap = 0;
    runner.pio.register(0x601, 1, { read: () => 0, write: () => void ap++ });
    runner.on('inout', (e) => {
      if (e.port !== 0x600) return;
      parkedAt = ap;
      return gate;
    });
    runner.on('hlt', () => runner.stop());
    const done = runner.start();
    while (parkedAt < 0) await new Promise((r) => setTimeout(r, 5));
    const before = ap;
    // the other vCPU keeps running while vCPU 0 is parked
    while (ap < before + 200) await new Promise((r) => setTimeout(r, 5));
    expect(runner.states[0]).toBe('running'); // parked in its handler, not finished
    release();
    const result = await done;
    expect(result.vcpus[0]).toBe('halted');
    expect(ap).toBeGreaterThan(parkedAt + 200);
  });

  it('pause → getRegister/setRegister → resume; register access while running is EBUSY', async () => {
    const vm = codeVm([0x66, 0x40, 0xeb, 0xfc]); // 1: inc %eax ; jmp 1b
    const runner = new VcpuRunner(vm);
    const done = runner.start();
    await new Promise((r) => setTimeout(r, 50));
    expect(() => vm.getRegister(0, Reg.RAX)).toThrow(KvmError);
    await runner.pause();
    expect(runner.states).toEqual(['paused']);
    const a = vm.getRegister(0, Reg.RAX);
    await new Promise((r) => setTimeout(r, 30));
    expect(vm.getRegister(0, Reg.RAX)).toBe(a); // really paused
    vm.setRegister(0, Reg.RAX, 0x40000000);
    runner.resume();
    await new Promise((r) => setTimeout(r, 50));
    await runner.pause();
    expect(vm.getRegister(0, Reg.RAX)).toBeGreaterThan(0x40000000n);
    runner.resume();
    runner.stop();
    expect(await done).toMatchObject({ reason: 'stopped' });
  });

  it('stop() while a vCPU spins in jmp $', async () => {
    const vm = codeVm([0xeb, 0xfe]);
    const runner = new VcpuRunner(vm);
    const done = runner.start();
    await new Promise((r) => setTimeout(r, 100));
    runner.stop();
    expect(await done).toEqual({ reason: 'stopped', vcpus: ['stopped'] });
    expect(vm.getRegister(0, Reg.RIP)).toBe(0x1000n); // accessible again after the run
  });

  it('a throwing handler emits error and stops every vCPU cleanly', async () => {
    const vm = codeVm([0xe6, 0x70, 0xeb, 0xfe], { vcpus: 2, apCode: [[0xeb, 0xfe]] });
    const runner = new VcpuRunner(vm);
    runner.pio.register(0x70, 1, {
      read: () => 0,
      write: () => {
        throw new Error('device on fire');
      },
    });
    const errors: string[] = [];
    runner.on('error', (e) => errors.push(e.message));
    await expect(runner.start()).rejects.toThrow('device on fire');
    expect(errors).toEqual(['device on fire']);
    expect(runner.states).toEqual(['finished', 'finished']);
  });

  it('a triple fault is a shutdown exit that ends the run', async () => {
    // ud2 in protected mode with an empty IDT: #UD → #GP → #DF → triple fault
    const vm = codeVm([0x0f, 0x0b]);
    flat32(vm, 0, 0x1000);
    vm.setDesc(0, Reg.IDTR, { base: 0n, limit: 0, access: 0 });
    const runner = new VcpuRunner(vm);
    const kinds: string[] = [];
    runner.on('shutdown', (e) => void kinds.push(e.kind));
    expect(await runner.start()).toMatchObject({ reason: 'shutdown' });
    expect(kinds).toEqual(['shutdown']);
  });

  it('posted writes arrive in order, before a later read of the same vCPU is answered', async () => {
    // out 1..3 to 0x80 (posted), in 0x81 (main thread), out to 0x82, cli, hlt
    const vm = codeVm([0xb0, 1, 0xe6, 0x80, 0xb0, 2, 0xe6, 0x80, 0xb0, 3, 0xe6, 0x80, 0xe4, 0x81, 0xe6, 0x82, ...CLI_HLT]);
    const runner = new VcpuRunner(vm);
    const log: string[] = [];
    runner.pio.register(0x80, 1, { read: () => 0, write: (_o, _s, v) => void log.push(`w${v}`) }, { posted: true });
    runner.pio.register(0x81, 1, { read: () => (log.push('r'), 7), write: () => {} });
    runner.pio.register(0x82, 1, { read: () => 0, write: (_o, _s, v) => void log.push(`out${v}`) });
    await runner.start();
    expect(log).toEqual(['w1', 'w2', 'w3', 'r', 'out7']);
    expect(runner.counters.postedWrites[0]).toBe(3);
  });

  it('a stream of posted writes is delivered whole and in order while the vCPU runs on without exiting', async () => {
    // mov $2000,%cx ; l: mov %cl,%al ; out %al,$0x80 (posted) ; loop l ; jmp .  (no exit after the last write)
    const vm = codeVm([0xb9, 0xd0, 0x07, 0x88, 0xc8, 0xe6, 0x80, 0xe2, 0xfa, 0xeb, 0xfe]);
    const runner = new VcpuRunner(vm);
    const out = sink();
    runner.pio.register(0x80, 1, out, { posted: true });
    const run = runner.start();
    // more writes than the ring rings for while the main thread polls it; the rest arrive by the poll
    for (let i = 0; i < 1000 && out.writes.length < 2000; i++) await new Promise((r) => setTimeout(r, 10));
    await runner.stop();
    await run;
    expect(out.writes.length).toBe(2000);
    expect(out.writes.every((v, i) => v === ((2000 - i) & 0xff))).toBe(true);
    expect(runner.counters.postedWrites[0]).toBe(2000);
  });

  it('worker devices answer in the vCPU thread without a hop', async () => {
    // in $0x90,%al ; out %al,$0x91 ; cli ; hlt
    const vm = codeVm([0xe4, 0x90, 0xe6, 0x91, ...CLI_HLT]);
    const runner = new VcpuRunner(vm);
    runner.pio.register(0x90, 1, { worker: { module: new URL('./worker-device.mjs', import.meta.url).href, export: 'ConstantDevice', options: { value: 0x33 } } });
    const out = sink();
    runner.pio.register(0x91, 1, out);
    await runner.start();
    expect(out.writes).toEqual([0x33]);
    expect(runner.counters.workerHandled[0]).toBe(1);
  });

  it('worker devices serve string I/O (rep insb) element by element', async () => {
    // mov $3,%cx ; mov $0x90,%dx ; mov $0x3000,%di ; rep insb ; mov (0x3002),%al ; out %al,$0x91 ; cli ; hlt
    const vm = codeVm([0xb9, 3, 0, 0xba, 0x90, 0, 0xbf, 0x00, 0x30, 0xf3, 0x6c, 0xa0, 0x02, 0x30, 0xe6, 0x91, ...CLI_HLT]);
    const runner = new VcpuRunner(vm);
    runner.pio.register(0x90, 1, { worker: { module: new URL('./worker-device.mjs', import.meta.url).href, export: 'CountingDevice' } });
    const out = sink();
    runner.pio.register(0x91, 1, out);
    await runner.start();
    expect(Array.from(vm.memory.readBytes(0x3000, 3))).toEqual([1, 2, 3]);
    expect(out.writes).toEqual([3]);
  });

  it('stop() ends a run whose worker-side device never returns: the worker is terminated after stopGraceMs', async () => {
    const vm = codeVm([0xe4, 0x90, ...CLI_HLT]); // in $0x90,%al
    const runner = new VcpuRunner(vm, { stopGraceMs: 300 });
    const entered = new SharedArrayBuffer(4);
    runner.pio.register(0x90, 1, { worker: { module: new URL('./worker-device.mjs', import.meta.url).href, export: 'HangingDevice', options: { entered } } });
    const done = runner.start();
    // stop only once the device's read has begun (and so never returns)
    while (Atomics.load(new Int32Array(entered), 0) === 0) await new Promise((r) => setTimeout(r, 10));
    runner.stop();
    await expect(done).rejects.toThrow(RunnerError);
    await expect(done).rejects.toThrow(/vCPU 0: the worker did not stop within 300 ms of stop\(\)/);
    expect(runner.states).toEqual(['finished']);
  });

  it('a KvmError raised in a worker reaches start() as a KvmError with its code and errno', async () => {
    const vm = codeVm([0xe4, 0x90, ...CLI_HLT]);
    const runner = new VcpuRunner(vm);
    runner.pio.register(0x90, 1, { worker: { module: new URL('./worker-device.mjs', import.meta.url).href, export: 'FailingSyscallDevice' } });
    const err = await runner.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvmError);
    expect(err).toMatchObject({ code: 'ENOENT', errno: 2 });
    expect((err as Error).message).toMatch(/^vCPU 0 worker: /);
  });

  it('lapicIrq and getStats work while the target vCPU runs', async () => {
    const vm = codeVm([0xeb, 0xfe]);
    const runner = new VcpuRunner(vm);
    vm.getStats(0); // opens the stats fd before the run
    const done = runner.start();
    await new Promise((r) => setTimeout(r, 50));
    expect(() => vm.lapicIrq(0, 0x40)).not.toThrow();
    expect(vm.getStats(0).values.length).toBeGreaterThan(0);
    runner.stop();
    await done;
  });

  it('rejects misuse with typed errors', async () => {
    const vm = codeVm([...CLI_HLT]);
    expect(() => new VcpuRunner({} as Vm)).toThrow(TypeError);
    expect(() => new VcpuRunner(vm, { haltPollMs: -1 })).toThrow(RangeError);
    expect(() => new VcpuRunner(vm, { haltPollMs: Infinity })).toThrow(/opts.haltPollMs must be a finite number/);
    expect(() => new VcpuRunner(vm, { haltPollMs: NaN })).toThrow(RangeError);
    expect(() => new VcpuRunner(vm, { stopGraceMs: 0 })).toThrow(/opts.stopGraceMs/);
    expect(() => new VcpuRunner(vm, null as never)).toThrow(TypeError);
    const bad = new VcpuRunner(vm);
    expect(() => bad.pio.register(0x80, 1, null as never)).toThrow(new TypeError('device must be a Device or { worker: { module, export } }, got null'));
    expect(() => bad.pio.register(0x80, 1, 5 as never)).toThrow(/device must be a Device .*got number/);
    expect(() => bad.pio.register(0x80, 1, { read: () => 0, write: () => {} }, null as never)).toThrow(new TypeError('opts must be an object'));
    expect(() => bad.pio.register(0x80, 1, { read: () => 0, write: () => {} }, { posted: 1 as never })).toThrow(/opts.posted must be a boolean/);
    expect(() => bad.mmio.register(0x1000, 1, { worker: null as never })).toThrow(/device.worker must be/);
    expect(bad.pio.bus.ranges).toHaveLength(0); // nothing was registered by the refused calls
    const runner = new VcpuRunner(vm);
    await expect(runner.pause()).rejects.toThrow(/before start/);
    await runner.start();
    await expect(runner.start()).rejects.toThrow(/already/);
    expect(vm.getRegister(0, Reg.RIP)).toBe(0x1002n); // the vCPU is released after the run
  });
});

describe('GuestError', () => {
  it('carries the exit', () => {
    const e = new GuestError({ kind: 'shutdown', vcpu: 0 });
    expect(e.message).toMatch(/vcpu0 shutdown/);
  });
});

describe('prestartVcpuWorkers', () => {
  it('rejects a count that is not an integer in [1, 255] with a typed error', () => {
    expect(() => prestartVcpuWorkers('1' as unknown as number)).toThrow(TypeError);
    expect(() => prestartVcpuWorkers(0)).toThrow(RangeError);
    expect(() => prestartVcpuWorkers(1.5)).toThrow(/count must be an integer/);
  });

  it('a runner takes the started pool of its size, and starts its own when the size differs', async () => {
    for (const started of [1, 2]) {
      prestartVcpuWorkers(started);
      const vm = codeVm([0xb0, 0x07, 0xe6, 0x80, ...CLI_HLT]); // mov al,7 ; out 0x80,al ; cli ; hlt
      const runner = new VcpuRunner(vm);
      const out = sink();
      runner.pio.register(0x80, 1, out);
      expect(await runner.start()).toEqual({ reason: 'halted', vcpus: ['halted'] });
      expect(out.writes).toEqual([7]);
    }
  });
});

describe('warm vCPU threads', () => {
  /** The worker thread id's low byte, as a vCPU of a fresh VM saw it (pinned to host CPU `pin`, if given). */
  async function threadSeen(pin?: number): Promise<number> {
    const vm = codeVm([0xe4, 0x90, 0xe6, 0x91, ...CLI_HLT]); // in $0x90,%al ; out %al,$0x91 ; cli ; hlt
    if (pin !== undefined) vm.setPinning(0, pin);
    const runner = new VcpuRunner(vm);
    runner.pio.register(0x90, 1, { worker: { module: new URL('./worker-device.mjs', import.meta.url).href, export: 'ThreadIdDevice' } });
    const out = sink();
    runner.pio.register(0x91, 1, out);
    expect(await runner.start()).toEqual({ reason: 'halted', vcpus: ['halted'] });
    return out.writes[0];
  }

  it('the next runner with as many vCPUs runs on the threads a finished runner handed back; a pinned thread is not reused', async () => {
    const first = await threadSeen();
    expect(await threadSeen()).toBe(first);
    expect(await threadSeen(0)).toBe(first); // still warm: this run pins it, so it is not handed back
    expect(await threadSeen()).not.toBe(first);
  });
});

describe('VcpuRunner.addHostWorkProbe', () => {
  it('a TypeError for a non-function; a run with host work pending (event-loop waits only) still completes, and the probe is removable', async () => {
    const vm = codeVm([0xb0, 0x07, 0xe6, 0x80, 0xe6, 0x80, ...CLI_HLT]); // two OUTs, cli ; hlt
    const runner = new VcpuRunner(vm);
    expect(() => runner.addHostWorkProbe(5 as unknown as () => boolean)).toThrow(TypeError);
    let asked = 0;
    const remove = runner.addHostWorkProbe(() => (asked++, true));
    const out = sink();
    runner.pio.register(0x80, 1, out);
    expect(await runner.start()).toEqual({ reason: 'halted', vcpus: ['halted'] });
    expect(out.writes).toEqual([7, 7]);
    expect(asked).toBeGreaterThan(0);
    remove();
    remove(); // idempotent
  });
});

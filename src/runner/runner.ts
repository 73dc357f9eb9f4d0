/**
 * `VcpuRunner`: runs every vCPU of a VM in its own worker thread (a piscina pool with one
 * long task per vCPU) and services their exits on the main thread as events.
 *
 * Exits travel through a SharedArrayBuffer mailbox per vCPU (src/runner/protocol.ts).
 * Fast paths that avoid the main-thread hop: writes to "posted" ports/ranges go to an
 * ordered ring the main thread drains before it services the next exit of that vCPU, and
 * devices registered with `{ worker: ... }` are loaded and run inside each vCPU worker.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EventEmitter } from 'eventemitter3';
import { Piscina } from 'piscina';
import type { Vm } from '../vm.js';
import { native, packageRoot } from '../kvm/native.js';
import { RUN, decodeExit, type InoutExit, type MmioExit, type VmExit } from '../exits.js';
import { KVM_EXIT } from '../kvm/constants.js';
import { MmioBus, PioBus, type BusRange } from '../bus/bus.js';
import type { AccessSize, Device } from '../devices/device.js';
import { StatsReader } from '../stats.js';
import {
  CB, CONTROL, CONTROL_BLOCK_BYTES, MAILBOX, POSTED, REPLY, RING_CAPACITY, RING_ENTRY_INTS, RING_KIND, STATUS,
  type VcpuTask, type VcpuTaskResult, type WorkerDeviceRange, type WorkerDeviceSpec,
} from './protocol.js';
import { spinWhileEqual } from './spin.js';
import { readLE, writeLE } from './le.js';
import { COUNTED_MNEMONICS as SUPPORTED_MNEMONICS } from '../emulate/fallback.js';
import { SYSCALL_REPAIR_BYTES, removeRepairBreakpoint } from '../emulate/syscall-repair.js';
import { GuestError, RunnerError } from './errors.js';
import { errnoError } from '../errors.js';
import { installExitHook, type Kickable } from './exit-hook.js';

/** A vCPU's state as the runner reports it. */
export type VcpuState = 'starting' | 'running' | 'paused' | 'finished';

/** A handler's result: nothing, or a promise that parks only its vCPU until it settles. */
export type HandlerResult = void | Promise<void>;

/** The runner's events (typed for eventemitter3). */
export interface RunnerEvents {
  /** Every exit the main thread sees (posted writes included), before it is serviced. */
  exit: (exit: VmExit) => HandlerResult;
  /** A port I/O exit that no device claimed: fill `exit.data` to answer an IN. */
  inout: (exit: InoutExit) => HandlerResult;
  /** An MMIO exit that no device claimed: fill `exit.data` to answer a read. */
  mmio: (exit: MmioExit) => HandlerResult;
  /**
   * A vCPU halted with interrupts disabled. It stays halted (another vCPU may still wake it:
   * NMI/INIT IPIs, KVM's paravirtual unhalt kick) and finishes once every vCPU is halted so.
   */
  hlt: (exit: Extract<VmExit, { kind: 'hlt' }>) => HandlerResult;
  /** The guest triple-faulted: every vCPU stops. */
  shutdown: (exit: Extract<VmExit, { kind: 'shutdown' }>) => HandlerResult;
  /** Single-step, breakpoint or watchpoint. */
  debug: (exit: Extract<VmExit, { kind: 'debug' }>) => HandlerResult;
  /** KVM gave up on the guest (e.g. its emulator failed): every vCPU stops, start() rejects. */
  'internal-error': (exit: Extract<VmExit, { kind: 'internal-error' }>) => HandlerResult;
  /** The guest asked for shutdown/reset: every vCPU stops. */
  'system-event': (exit: Extract<VmExit, { kind: 'system-event' }>) => HandlerResult;
  /** An access nobody claimed (no device, no listener): reads got all-ones. */
  unhandled: (exit: InoutExit | MmioExit) => void;
  /** The instruction fallback finished instructions for `vcpu` (counts since the last event). */
  emulated: (vcpu: number, counts: Record<string, number>) => void;
  /** A vCPU changed state. */
  'vcpu-state': (vcpu: number, state: VcpuState) => void;
  /** The runner failed (a handler threw, a worker died, the guest failed); it stops. */
  error: (err: Error) => void;
}

/** Options for {@link VcpuRunner}. */
export interface VcpuRunnerOptions {
  /**
   * How often (ms) to look for vCPUs that halted with interrupts disabled (the in-kernel
   * APIC keeps HLT in the kernel, so this is how the runner notices). 0 disables. Default 50.
   */
  haltPollMs?: number;
  /**
   * Finish, in the vCPU's thread, instructions KVM's emulator gives up on (PVM hosts), and
   * count them in the VM's stats as `emulated_<mnemonic>` (default true). When off, such an
   * exit ends the run with a GuestError naming the instruction bytes.
   */
  emulate?: boolean;
  /**
   * Repair 64-bit `syscall` from guest user mode where the host leaves it at CPL 3 (PVM hosts
   * running unmodified kernels; see src/emulate/syscall-repair.ts). Patches an `int3` into the
   * guest's page-fault handler, so it must stay off where `int3` at CPL 0 reaches the guest
   * (hardware KVM). `'auto'` (default): on when the host's KVM is PVM (`/sys/module/kvm_pvm`)
   * and `emulate` is on.
   */
  syscallRepair?: boolean | 'auto';
}

/** Whether the host's KVM is PVM (the kvm_pvm module is loaded). */
export function hostIsPvm(): boolean {
  return existsSync('/sys/module/kvm_pvm');
}

/** Options for registering a device. */
export interface RegisterOptions {
  /** A name for error messages and traces. */
  name?: string;
  /**
   * Writes are posted: the vCPU continues at once and the device sees the write later, in
   * order, before that vCPU's next exit is serviced. Reads still go through the mailbox.
   */
  posted?: boolean;
}

/** What `start()` resolves to. */
export interface RunResult {
  /** Why the run ended: every vCPU halted, stop() was called, or the guest shut down. */
  reason: 'halted' | 'stopped' | 'shutdown' | 'system-event';
  /** Why each vCPU finished. */
  vcpus: ('halted' | 'stopped' | 'shutdown' | 'system-event')[];
}

/** Counters of the runner (exits seen, hops, posted writes …). */
export interface RunnerCounters {
  /** Exits per vCPU, as counted by the workers (kicks included). */
  exits: number[];
  /** Exits handled inside the workers by worker devices. */
  workerHandled: number[];
  /** Writes posted to the ring. */
  postedWrites: number[];
  /** Round trips to the main thread. */
  hops: number[];
  /** Accesses no device or listener claimed. */
  unhandled: number;
}

interface VcpuSlot {
  index: number;
  /** The vCPU fd number (for kicks). */
  fd: number;
  ctl: Int32Array;
  run: Uint8Array;
  view: DataView;
  status: VcpuState;
  finished?: RunResult['vcpus'][number];
  stats?: StatsReader;
  blockingIndex: number;
  /** The worker's task settled (returned or threw). */
  taskDone: boolean;
  /** Reported halted with interrupts disabled, and no exit since. */
  halted?: boolean;
}

/** A bus bound to the runner: `register(base, len, device | { worker })`. */
export class RunnerBus {
  readonly #bus: PioBus | MmioBus;
  readonly #runner: VcpuRunner;
  readonly #space: 'pio' | 'mmio';
  /** @internal */
  readonly posted: { base: number; length: number }[] = [];
  /** @internal */
  readonly workerDevices: WorkerDeviceRange[] = [];

  /** @internal */
  constructor(runner: VcpuRunner, space: 'pio' | 'mmio') {
    this.#runner = runner;
    this.#space = space;
    this.#bus = space === 'pio' ? new PioBus() : new MmioBus();
  }

  /** The underlying bus (lookups, counters). */
  get bus(): PioBus | MmioBus {
    return this.#bus;
  }

  /**
   * Register a main-thread `device` over `[base, base + length)`, or a worker device
   * (`{ worker: { module, export, options } }`) that each vCPU worker loads and runs without
   * a hop to the main thread. Overlapping, zero-length and wrapping ranges throw RangeError.
   */
  register(base: number, length: number, device: Device | { worker: WorkerDeviceSpec }, opts: RegisterOptions = {}): BusRange {
    if ('worker' in device && device.worker) {
      if (this.#runner.started) throw new RunnerError('worker devices must be registered before start()');
      const spec = device.worker;
      if (typeof spec.module !== 'string' || typeof spec.export !== 'string') throw new TypeError('worker.module and worker.export must be strings');
      const stub: Device = {
        read: () => {
          throw new RunnerError('worker device reached on the main thread');
        },
        write: () => {
          throw new RunnerError('worker device reached on the main thread');
        },
      };
      const r = this.#bus.register(base, length, stub, opts.name ?? `${spec.export} (worker)`);
      this.workerDevices.push({ space: this.#space, base, length, ...spec });
      return r;
    }
    const r = this.#bus.register(base, length, device as Device, opts.name);
    if (opts.posted) {
      if (this.#runner.started) throw new RunnerError('posted devices must be registered before start()');
      this.posted.push({ base, length });
    }
    return r;
  }
}

const runnerPool = new Set<Kickable>();

function statusName(st: number): VcpuState {
  return st === STATUS.RUNNING ? 'running' : st === STATUS.PAUSED ? 'paused' : st === STATUS.FINISHED ? 'finished' : 'starting';
}

/** A sleeping serve loop re-checks its vCPU at least this often (ms). */
const SAFETY_WAKE_MS = 250;

/** How long (ms) a serve loop spins for its vCPU's next event before sleeping. */
const SPIN_MS = 0.05;

/** Runs a VM's vCPUs concurrently, one worker thread each. */
export class VcpuRunner extends EventEmitter<RunnerEvents> {
  /** The VM being run. */
  readonly vm: Vm;
  /** The port I/O bus. */
  readonly pio: RunnerBus;
  /** The MMIO bus. */
  readonly mmio: RunnerBus;
  readonly #counters: RunnerCounters;

  #opts: { haltPollMs: number; emulate: boolean; syscallRepair: boolean };
  #slots: VcpuSlot[] = [];
  #pool: Piscina<VcpuTask, VcpuTaskResult> | undefined;
  #started = false;
  #stopping = false;
  #error: Error | undefined;
  #haltTimer: NodeJS.Timeout | undefined;
  #kickable: Kickable;
  #endReason: RunResult['reason'] | undefined;
  #emuCounts: Int32Array[] = [];
  #emuSeen: number[][] = [];

  constructor(vm: Vm, opts: VcpuRunnerOptions = {}) {
    super();
    if (!vm || typeof vm.vcpuFdNumber !== 'function') throw new TypeError('vm must be a Vm');
    const haltPollMs = opts.haltPollMs ?? 50;
    if (typeof haltPollMs !== 'number' || !(haltPollMs >= 0)) throw new RangeError('opts.haltPollMs must be a non-negative number');
    this.vm = vm;
    const emulate = opts.emulate ?? true;
    if (typeof emulate !== 'boolean') throw new TypeError('opts.emulate must be a boolean');
    const repair = opts.syscallRepair ?? 'auto';
    if (repair !== 'auto' && typeof repair !== 'boolean') throw new TypeError("opts.syscallRepair must be a boolean or 'auto'");
    if (repair === true && !emulate) throw new RangeError('opts.syscallRepair needs opts.emulate (the repair runs in the instruction fallback)');
    const syscallRepair = emulate && (repair === 'auto' ? hostIsPvm() : repair);
    this.#opts = { haltPollMs, emulate, syscallRepair };
    this.pio = new RunnerBus(this, 'pio');
    this.mmio = new RunnerBus(this, 'mmio');
    const z = () => new Array(vm.vcpuCount).fill(0);
    this.#counters = { exits: z(), workerHandled: z(), postedWrites: z(), hops: z(), unhandled: 0 };
    this.#kickable = { kickAll: () => this.#requestAll(CONTROL.STOP) };
  }

  /** Counters: exits, worker-handled exits, posted writes and hops per vCPU; unhandled accesses. */
  get counters(): RunnerCounters {
    this.#syncCounters();
    return this.#counters;
  }

  /** The raw control-block words of each vCPU, for diagnosing a stuck run. */
  debugState(): Record<string, number>[] {
    return this.#slots.map((s) => {
      const o: Record<string, number> = {};
      for (const [k, i] of Object.entries(CB)) if (k !== 'RING') o[k] = Atomics.load(s.ctl, i);

      return o;
    });
  }

  /** True once start() was called. */
  get started(): boolean {
    return this.#started;
  }

  /** Each vCPU's state. */
  get states(): VcpuState[] {
    return this.#slots.map((s) => (s.taskDone ? 'finished' : statusName(Atomics.load(s.ctl, CB.STATUS))));
  }

  /**
   * Start every vCPU. Resolves when all have finished (halted, guest shutdown, stop());
   * rejects if the run fails (a handler throws, a worker dies, the guest hits an internal
   * error), after every vCPU has been stopped.
   */
  async start(): Promise<RunResult> {
    if (this.#started) throw new RunnerError('start() was already called');
    this.#started = true;
    const vm = this.vm;
    const workerPath = join(packageRoot(), 'dist', 'workers', 'vcpu-worker.js');
    if (!existsSync(workerPath)) {
      throw new RunnerError(`the vCPU worker is not built (${workerPath}): run \`npm run build\``);
    }
    // claim first: a VM already run by another runner is refused before anything is opened
    vm.claim('a VcpuRunner', (v, syscall) => this.#guardVcpu(v, syscall), () => this.stop());
    try {
      return await this.#run(workerPath);
    } finally {
      vm.claim(undefined);
    }
  }

  async #run(workerPath: string): Promise<RunResult> {
    const vm = this.vm;
    const postedPorts = new SharedArrayBuffer(0x10000);
    const pp = new Uint8Array(postedPorts);
    for (const r of this.pio.posted) pp.fill(1, r.base, r.base + r.length);
    const tasks: VcpuTask[] = [];
    try {
      this.#setupSlots(tasks, postedPorts);
    } catch (e) {
      for (const s of this.#slots) s.stats?.close();
      throw e;
    }
    try {
      return await this.#launch(tasks, workerPath);
    } finally {
      // every worker has ended: the guest's page-fault handler gets its original byte back
      const record = tasks[0]?.syscallRepair;
      if (record && !vm.destroyed) removeRepairBreakpoint(vm.memory, record);
    }
  }

  #setupSlots(tasks: VcpuTask[], postedPorts: SharedArrayBuffer): void {
    const vm = this.vm;
    // one patch record for the whole VM: any vCPU may take the guest's page faults
    const repairRecord = this.#opts.syscallRepair ? new SharedArrayBuffer(SYSCALL_REPAIR_BYTES) : undefined;
    for (let v = 0; v < vm.vcpuCount; v++) {
      const fd = vm.vcpuFdNumber(v);
      const control = new SharedArrayBuffer(CONTROL_BLOCK_BYTES);
      const run = new Uint8Array(vm.vcpuFd(v).runBuffer());
      // vCPU ioctls block while the vCPU is in KVM_RUN: open the stats fd (used to notice
      // halts) now, before the worker starts.
      let stats: StatsReader | undefined;
      try {
        stats = new StatsReader(new (native().FileFd)(vm.vcpuFd(v).getStatsFd()));
      } catch {
        stats = undefined; // no binary stats: halts are then only seen as HLT exits
      }
      this.#slots.push({ index: v, fd, ctl: new Int32Array(control), run, view: new DataView(run.buffer), status: 'starting', stats, blockingIndex: stats ? stats.descriptors.findIndex((d) => d.name === 'blocking') : -1, taskDone: false });
      const emulationCounts = new SharedArrayBuffer((SUPPORTED_MNEMONICS.length + 1) * 4);
      this.#emuCounts.push(new Int32Array(emulationCounts));
      tasks.push({
        syscallRepair: repairRecord,
        vcpu: v, fd, pin: vm.getPinning(v), control, postedPorts, postedMmio: this.mmio.posted,
        workerDevices: [...this.pio.workerDevices, ...this.mmio.workerDevices],
        emulate: this.#opts.emulate, memory: vm.memorySegments().map(({ gpa, buffer, readonly }) => ({ gpa, buffer, readonly })), emulationCounts,
      });
    }
  }

  async #launch(tasks: VcpuTask[], workerPath: string): Promise<RunResult> {
    const vm = this.vm;
    this.#pool = new Piscina<VcpuTask, VcpuTaskResult>({
      filename: workerPath,
      minThreads: vm.vcpuCount,
      maxThreads: vm.vcpuCount,
      idleTimeout: 1000,
      concurrentTasksPerWorker: 1,
    });
    runnerPool.add(this.#kickable);
    installExitHook(runnerPool);
    if (this.#opts.haltPollMs > 0) this.#haltTimer = setInterval(() => this.#poll(), this.#opts.haltPollMs);

    const loops = this.#slots.map((s, i) =>
      Promise.all([
        this.#pool!
          .run(tasks[i])
          .catch((e: unknown) => this.#fail(e instanceof Error ? e : new Error(String(e))))
          .finally(() => {
            s.taskDone = true;
            Atomics.add(s.ctl, CB.SEQ, 1);
            Atomics.notify(s.ctl, CB.SEQ);
          }),
        this.#serve(s).catch((e: unknown) => this.#fail(e instanceof Error ? e : new Error(String(e)))),
      ]),
    );
    try {
      await Promise.all(loops);
    } finally {
      clearInterval(this.#haltTimer);
      runnerPool.delete(this.#kickable);
      for (const s of this.#slots) s.stats?.close();
      try {
        this.#syncCounters();
      } finally {
        await this.#pool.destroy();
      }
    }
    if (this.#error) throw this.#error;
    const per = this.#slots.map((s) => s.finished ?? 'stopped');
    const reason = this.#endReason ?? (per.every((r) => r === 'halted') ? 'halted' : 'stopped');
    return { reason, vcpus: per };
  }

  /** Throws unless vCPU `v` is outside KVM_RUN (paused, finished, or parked on an exit). */
  #guardVcpu(v: number, syscall: string): void {
    const s = this.#slots[v];
    if (!s) return;
    const st = Atomics.load(s.ctl, CB.STATUS);
    if (st === STATUS.FINISHED || s.taskDone) return;
    if (st === STATUS.PAUSED && Atomics.load(s.ctl, CB.CONTROL) === CONTROL.PAUSE) return;
    if (Atomics.load(s.ctl, CB.STATE) === MAILBOX.POSTED) return;
    throw errnoError('EBUSY', syscall, `vCPU ${v} is running in a VcpuRunner: pause() first, or access it from an exit handler`);
  }

  /** Stop every vCPU (kicks them out of KVM_RUN). start() then resolves. */
  stop(): void {
    this.#stopping = true;
    this.#endReason ??= 'stopped';
    this.#requestAll(CONTROL.STOP);
  }

  /**
   * Pause every vCPU: resolves when none is inside KVM_RUN, so registers and memory can be
   * read and written from the main thread. vCPUs parked on a pending handler pause once it
   * settles.
   */
  async pause(): Promise<void> {
    if (!this.#started) throw new RunnerError('pause() before start()');
    this.#requestAll(CONTROL.PAUSE);
    await Promise.all(
      this.#slots.map(
        (s) =>
          new Promise<void>((resolve) => {
            const check = () => {
              const st = Atomics.load(s.ctl, CB.STATUS);
              if (st === STATUS.PAUSED || st === STATUS.FINISHED || s.taskDone) {
                this.off('vcpu-state', onState);
                resolve();
                return true;
              }
              return false;
            };
            const onState = () => void check();
            this.on('vcpu-state', onState);
            check();
          }),
      ),
    );
  }

  /** Resume after pause(). */
  resume(): void {
    if (!this.#started) throw new RunnerError('resume() before start()');
    for (const s of this.#slots) {
      if (Atomics.compareExchange(s.ctl, CB.CONTROL, CONTROL.PAUSE, CONTROL.RUN) === CONTROL.PAUSE) {
        // from now on the vCPU counts as running (the guard must refuse ioctls at once)
        Atomics.compareExchange(s.ctl, CB.STATUS, STATUS.PAUSED, STATUS.RUNNING);
        Atomics.notify(s.ctl, CB.CONTROL);
      }
    }
  }

  #requestAll(c: number): void {
    const n = native();
    for (const s of this.#slots) {
      const prev = Atomics.load(s.ctl, CB.CONTROL);
      if (prev === CONTROL.STOP) {
        // already stopping: kick again in case it re-entered
      } else {
        Atomics.store(s.ctl, CB.CONTROL, c);
      }
      Atomics.notify(s.ctl, CB.CONTROL);
      Atomics.notify(s.ctl, CB.STATE);
      Atomics.notify(s.ctl, CB.RING_HEAD);
      // a finished worker's vCPU is not in KVM_RUN; a kick would only leave immediate_exit set
      if (!s.taskDone) n.kick(s.fd);
    }
  }

  #fail(err: Error): void {
    if (!this.#error) {
      this.#error = err;
      if (this.listenerCount('error') > 0) this.emit('error', err);
    }
    this.stop();
  }

  /** Copy the workers' emulation counters into the VM's stats; emit 'emulated' for changes. */
  #syncEmulation(): void {
    this.#emuCounts.forEach((c, v) => {
      const seen = (this.#emuSeen[v] ??= new Array(c.length).fill(0));
      const delta: Record<string, number> = {};
      let changed = false;
      for (let i = 0; i < c.length; i++) {
        const now = Atomics.load(c, i);
        if (now === seen[i]) continue;
        const name = i < SUPPORTED_MNEMONICS.length ? SUPPORTED_MNEMONICS[i] : 'exceptions';
        if (!this.vm.destroyed) this.vm.addStat(v, `emulated_${name}`, BigInt(now - seen[i]));
        delta[name] = now - seen[i];
        seen[i] = now;
        changed = true;
      }
      if (changed) {
        try {
          this.emit('emulated', v, delta);
        } catch (e) {
          this.#fail(e instanceof Error ? e : new Error(String(e)));
        }
      }
    });
  }

  #syncCounters(): void {
    this.#syncEmulation();
    for (const s of this.#slots) {
      this.#counters.exits[s.index] = Atomics.load(s.ctl, CB.EXITS);
      this.#counters.workerHandled[s.index] = Atomics.load(s.ctl, CB.WORKER_HANDLED);
      this.#counters.postedWrites[s.index] = Atomics.load(s.ctl, CB.POSTED_WRITES);
      this.#counters.hops[s.index] = Atomics.load(s.ctl, CB.HOPS);
    }
  }

  #setStatus(s: VcpuSlot, st: number): void {
    const name = statusName(st);
    if (name !== s.status) {
      s.status = name;
      this.emit('vcpu-state', s.index, name);
    }
  }

  /** The main-thread side of one vCPU: wait, drain posted writes, service the mailbox. */
  async #serve(s: VcpuSlot): Promise<void> {
    const ctl = s.ctl;
    for (;;) {
      const seen = Atomics.load(ctl, CB.SEQ);
      this.#setStatus(s, Atomics.load(ctl, CB.STATUS));
      if (Atomics.load(ctl, CB.RING_HEAD) !== Atomics.load(ctl, CB.RING_TAIL)) await this.#drain(s);
      if (Atomics.load(ctl, CB.STATE) === MAILBOX.POSTED) {
        // the worker pushes before it posts: drain again so every earlier write lands first
        if (Atomics.load(ctl, CB.RING_HEAD) !== Atomics.load(ctl, CB.RING_TAIL)) await this.#drain(s);
        let stop = false;
        if (this.#fastIo(s)) s.halted = false;
        else {
          try {
            stop = await this.#service(s);
          } catch (e) {
            this.#fail(e instanceof Error ? e : new Error(String(e)));
            stop = true;
          }
        }
        Atomics.store(ctl, CB.REPLY, stop || this.#stopping ? REPLY.STOP : REPLY.CONTINUE);
        Atomics.store(ctl, CB.STATE, MAILBOX.REPLIED);
        Atomics.notify(ctl, CB.STATE);
        continue;
      }
      if (s.status === 'finished' || s.taskDone) {
        s.finished ??= s.halted ? 'halted' : 'stopped';
        if (s.status !== 'finished') this.#setStatus(s, STATUS.FINISHED);
        return;
      }
      // The next exit of a busy vCPU usually arrives within microseconds, far sooner than a
      // sleeping thread is woken (tens of µs on nested hosts): spin for a moment first
      // (blocking the event loop for at most SPIN_MS), then wait asynchronously.
      if (spinWhileEqual(ctl, CB.SEQ, seen, SPIN_MS)) continue;
      Atomics.store(ctl, CB.MAIN_SLEEPING, 1);
      // the timeout is a safety net: the loop re-reads everything after any wake-up anyway
      const w = Atomics.waitAsync(ctl, CB.SEQ, seen, SAFETY_WAKE_MS);
      if (w.async) await w.value;
      Atomics.store(ctl, CB.MAIN_SLEEPING, 0);
    }
  }

  /**
   * The synchronous path for the common exit: port I/O or MMIO claimed by a main-thread
   * device, nobody observing 'exit'. Reads kvm_run directly, no exit object. Returns false
   * when the exit needs the general path.
   */
  #fastIo(s: VcpuSlot): boolean {
    if (Atomics.load(s.ctl, CB.POSTED_KIND) !== POSTED.EXIT || this.listenerCount('exit') !== 0) return false;
    const v = s.view;
    const reason = v.getUint32(RUN.exitReason, true);
    if (reason === KVM_EXIT.IO) {
      if (v.getUint32(RUN.ioCount, true) !== 1) return false;
      const port = v.getUint16(RUN.ioPort, true);
      const r = this.pio.bus.find(port);
      if (!r) return false;
      const size = v.getUint8(RUN.ioSize);
      const off = Number(v.getBigUint64(RUN.ioDataOffset, true));
      if ((size !== 1 && size !== 2 && size !== 4) || off + size > s.run.length) return false;
      if (v.getUint8(RUN.ioDirection) === 0) {
        this.pio.bus.counters.reads++;
        writeLE(v, off, size, r.device.read(port - r.base, size));
      } else {
        this.pio.bus.counters.writes++;
        r.device.write(port - r.base, size, readLE(v, off, size));
      }
      return true;
    }
    if (reason === KVM_EXIT.MMIO) {
      const gpa = Number(v.getBigUint64(RUN.mmioPhysAddr, true));
      const r = this.mmio.bus.find(gpa);
      const len = v.getUint32(RUN.mmioLen, true);
      if (!r || (len !== 1 && len !== 2 && len !== 4)) return false;
      if (v.getUint8(RUN.mmioIsWrite) === 0) {
        this.mmio.bus.counters.reads++;
        writeLE(v, RUN.mmioData, len, r.device.read(gpa - r.base, len));
      } else {
        this.mmio.bus.counters.writes++;
        r.device.write(gpa - r.base, len, readLE(v, RUN.mmioData, len));
      }
      return true;
    }
    return false;
  }

  /** Deliver posted writes in order. */
  async #drain(s: VcpuSlot): Promise<void> {
    const ctl = s.ctl;
    let head = Atomics.load(ctl, CB.RING_HEAD);
    const tail = Atomics.load(ctl, CB.RING_TAIL);
    if (head === tail) return;
    const observed = this.listenerCount('exit') > 0;
    while (head !== tail) {
      const o = CB.RING + (head & (RING_CAPACITY - 1)) * RING_ENTRY_INTS;
      const kind = ctl[o] & 0xff;
      const size = ((ctl[o] >> 8) & 0xff) as AccessSize;
      if (!observed) {
        // fast path: straight to the device, no exit object
        const bus = kind === RING_KIND.PIO_WRITE ? this.pio.bus : this.mmio.bus;
        const addr = kind === RING_KIND.PIO_WRITE ? ctl[o + 1] & 0xffff : (ctl[o + 1] >>> 0) + (ctl[o + 3] >>> 0) * 2 ** 32;
        const mask = size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
        const r = bus.find(addr);
        if (r) {
          bus.counters.writes++;
          r.device.write(addr - r.base, size, (ctl[o + 2] & mask) >>> 0);
          head = (head + 1) | 0;
          continue;
        }
      }
      const bytes = new Uint8Array(8);
      const dv = new DataView(bytes.buffer);
      let exit: VmExit;
      if (kind === RING_KIND.PIO_WRITE) {
        dv.setUint32(0, ctl[o + 2] >>> 0, true);
        const value = dv.getUint32(0, true) & (size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff);
        exit = { kind: 'inout', vcpu: s.index, port: ctl[o + 1] & 0xffff, bytes: size as 1 | 2 | 4, in: false, count: 1, value: value >>> 0, data: bytes.subarray(0, size) };
      } else {
        dv.setUint32(0, ctl[o + 2] >>> 0, true);
        const gpa = (ctl[o + 1] >>> 0) + (ctl[o + 3] >>> 0) * 2 ** 32;
        exit = { kind: 'mmio', vcpu: s.index, gpa, bytes: size, write: true, value: BigInt(dv.getUint32(0, true)), data: bytes.subarray(0, size) };
      }
      head = (head + 1) | 0;
      await this.#dispatch(exit);
    }
    Atomics.store(ctl, CB.RING_HEAD, head);
    Atomics.notify(ctl, CB.RING_HEAD);
  }

  async #callListeners(event: keyof RunnerEvents, exit: VmExit): Promise<boolean> {
    const ls = this.listeners(event) as ((e: VmExit) => HandlerResult)[];
    if (ls.length === 0) return false;
    const pending: Promise<void>[] = [];
    for (const l of ls) {
      const r = l.call(this, exit);
      if (r && typeof (r as Promise<void>).then === 'function') pending.push(r as Promise<void>);
    }
    if (pending.length) await Promise.all(pending);
    return true;
  }

  /** Bus dispatch for I/O exits; listeners for the rest. Returns true to stop this vCPU. */
  async #dispatch(exit: VmExit): Promise<boolean> {
    await this.#callListeners('exit', exit);
    switch (exit.kind) {
      case 'inout':
        await this.#io(exit, this.pio.bus, exit.port);
        return false;
      case 'mmio':
        await this.#io(exit, this.mmio.bus, exit.gpa);
        return false;
      case 'debug':
        await this.#callListeners('debug', exit);
        return false;
      case 'interrupted':
        return false;
      case 'hlt':
        await this.#callListeners('hlt', exit);
        return true;
      case 'shutdown':
      case 'system-event': {
        await this.#callListeners(exit.kind, exit);
        this.#endReason ??= exit.kind;
        this.#slots[exit.vcpu].finished = exit.kind;
        this.stop();
        this.#endReason = exit.kind;
        return true;
      }
      case 'internal-error':
        await this.#callListeners('internal-error', exit);
        this.#fail(new GuestError(exit));
        return true;
      default:
        this.#fail(new GuestError(exit));
        return true;
    }
  }

  async #io(exit: InoutExit | MmioExit, bus: PioBus | MmioBus, addr: number): Promise<void> {
    const width = exit.bytes as AccessSize;
    const isRead = exit.kind === 'inout' ? exit.in : !exit.write;
    const r = bus.find(addr);
    if (r) {
      if (isRead) {
        // one device read per element: `rep ins` from a FIFO (fw_cfg data, a UART) must see
        // successive values
        bus.counters.reads++;
        const d = new DataView(exit.data.buffer, exit.data.byteOffset, exit.data.byteLength);
        for (let i = 0; i + width <= d.byteLength; i += width) writeLE(d, i, width, r.device.read(addr - r.base, width));
      } else {
        bus.counters.writes++;
        const d = new DataView(exit.data.buffer, exit.data.byteOffset, exit.data.byteLength);
        for (let i = 0; i + width <= d.byteLength; i += width) r.device.write(addr - r.base, width, readLE(d, i, width));
      }
      return;
    }
    if (isRead) {
      exit.data.fill(0xff);
      bus.counters.unhandledReads++;
    } else {
      bus.counters.unhandledWrites++;
    }
    const answered = await this.#callListeners(exit.kind, exit);
    if (!answered) {
      this.#counters.unhandled++;
      this.emit('unhandled', exit);
    }
  }

  /** Service the posted mailbox entry of `s`; true to stop the vCPU. */
  async #service(s: VcpuSlot): Promise<boolean> {
    const kind = Atomics.load(s.ctl, CB.POSTED_KIND);
    if (kind === POSTED.HALTED || kind === POSTED.PARKED) return this.#halted(s, kind === POSTED.PARKED);
    s.halted = false;
    const exit = decodeExit(s.index, s.run, s.view);
    const stop = await this.#dispatch(exit);
    if (stop && exit.kind === 'hlt') s.finished = 'halted';
    return stop;
  }

  /**
   * A vCPU halted with interrupts disabled, or parked waiting for INIT/SIPI (an AP nobody
   * started). Another vCPU can still wake it (an NMI or INIT IPI,
   * KVM's paravirtual unhalt kick for spinlocks), so it only finishes once every vCPU is
   * finished or halted like this; until then it stays halted inside KVM_RUN. 'hlt' is emitted
   * when it halts.
   */
  async #halted(s: VcpuSlot, parked: boolean): Promise<boolean> {
    if (!s.halted) {
      s.halted = true;
      if (!parked) await this.#callListeners('hlt', { kind: 'hlt', vcpu: s.index });
    }
    const others = this.#slots.filter((o) => o !== s && !o.taskDone && o.finished === undefined);
    if (!others.every((o) => o.halted && this.#stillBlocked(o))) return false;
    for (const o of others) {
      o.finished = 'halted';
      Atomics.store(o.ctl, CB.CONTROL, CONTROL.STOP);
      Atomics.notify(o.ctl, CB.CONTROL);
      Atomics.notify(o.ctl, CB.STATE);
      native().kick(o.fd);
    }
    s.finished = 'halted';
    return true;
  }

  /** True if KVM says the vCPU is blocked (halted) right now. */
  #stillBlocked(s: VcpuSlot): boolean {
    if (!s.stats || s.blockingIndex < 0) return true; // no stats: trust the worker's report
    try {
      return s.stats.read()[s.blockingIndex] === 1n;
    } catch {
      return true;
    }
  }

  /**
   * Periodic duties: wake serve loops that have posted writes waiting (the worker batches its
   * notifications), and ask workers whose vCPU is blocked in the kernel whether it halted for
   * good.
   */
  #poll(): void {
    const n = native();
    this.#syncEmulation();
    for (const s of this.#slots) {
      if (Atomics.load(s.ctl, CB.RING_HEAD) !== Atomics.load(s.ctl, CB.RING_TAIL)) Atomics.notify(s.ctl, CB.SEQ);
      if (!this.vm.irqchip) continue;
      if (s.status !== 'running' || Atomics.load(s.ctl, CB.STATE) !== MAILBOX.IDLE) continue;
      if (!s.stats || s.blockingIndex < 0) continue;
      try {
        if (s.stats.read()[s.blockingIndex] === 1n && Atomics.load(s.ctl, CB.CHECK_HALT) === 0) {
          Atomics.store(s.ctl, CB.CHECK_HALT, 1);
          n.kick(s.fd);
        }
      } catch {
        /* stats unavailable: halts are then only seen as HLT exits */
      }
    }
  }
}

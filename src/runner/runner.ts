/**
 * `VcpuRunner`: runs every vCPU of a VM in its own worker thread (a piscina pool with one
 * long task per vCPU) and services their exits on the main thread as events. This file is
 * the lifecycle — start, stop, pause, resume, halt detection, counters; the roles it drives:
 *
 * - workers/vcpu-loop.ts: the KVM_RUN loop in each worker (worker-side devices, posted
 *   writes, the instruction fallback);
 * - src/runner/mailbox.ts + vcpu-server.ts: the mailbox and the main thread's serve loop;
 * - src/runner/exit-handler.ts: what an exit means (a pure function, unit-tested);
 * - src/bus/dispatch.ts: the one seam every path serves device accesses through.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EventEmitter } from 'eventemitter3';
import type { Vm } from '../vm.js';
import { native } from '../kvm/native.js';
import { StatsReader } from '../stats.js';
import { BELL_BYTES, CB, CONTROL, CONTROL_BLOCK_BYTES, MAILBOX, RING_LAYOUT, STATUS, ENGINE_COUNT, type EngineChoice, type VcpuTask } from './protocol.js';
import { WriteRing } from './write-ring.js';
import { ringBell, wakeWaitingWorker } from './mailbox.js';
import { COUNTED_MNEMONICS } from '../emulate/mnemonics.js';
import { SYSCALL_REPAIR_BYTES, removeRepairBreakpoint } from '../emulate/syscall-repair.js';
import { RunnerError, fromWorkerFailure } from './errors.js';
import { errnoError } from '../errors.js';
import { installExitHook, type Kickable } from './exit-hook.js';
import { RunnerBus } from './runner-bus.js';
import { releaseVcpuPool, takeVcpuPool, vcpuWorkerPath, type VcpuPool } from './worker-pool.js';
import { hostLoad } from './host-load.js';
import { VcpuServer, serveAll, type ServerHooks, type VcpuSlot } from './vcpu-server.js';
import { callListeners, type ExitAction, type ExitContext } from './exit-handler.js';
import type { RunResult, RunnerCounters, RunnerEvents, VcpuRunnerOptions, VcpuState } from './types.js';

export { RunnerBus } from './runner-bus.js';
export type { HandlerResult, RegisterOptions, RunResult, RunnerCounters, RunnerEvents, VcpuRunnerOptions, VcpuState } from './types.js';

/** Whether the host's KVM is PVM (the kvm_pvm module is loaded). */
export function hostIsPvm(): boolean {
  return existsSync('/sys/module/kvm_pvm');
}

const runnerPool = new Set<Kickable>();

function statusName(st: number): VcpuState {
  return st === STATUS.RUNNING ? 'running' : st === STATUS.PAUSED ? 'paused' : st === STATUS.FINISHED ? 'finished' : 'starting';
}

function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

interface RunnerSettings {
  haltPollMs: number;
  emulate: boolean;
  syscallRepair: boolean;
  stopGraceMs: number;
  engine: EngineChoice;
}

function milliseconds(v: unknown, name: string, dflt: number, allowZero: boolean): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0) || v > 2 ** 31 - 1) {
    throw new RangeError(`${name} must be a finite number of milliseconds from ${allowZero ? 0 : 'above 0'} to 2^31-1, got ${String(v)}`);
  }
  return v;
}

/** The engine when the options name none: `VMMAPI_ENGINE` (kvm or cpl0; `npm run test:engine` sets it), else KVM. */
function defaultEngine(): EngineChoice {
  const env = process.env.VMMAPI_ENGINE;
  if (env === undefined || env === '' || env === 'kvm') return 'kvm';
  if (env === 'cpl0') return 'cpl0';
  throw new RangeError(`VMMAPI_ENGINE must be kvm or cpl0, got '${env}'`);
}

function settings(opts: VcpuRunnerOptions): RunnerSettings {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  const haltPollMs = milliseconds(opts.haltPollMs, 'opts.haltPollMs', 50, true);
  const stopGraceMs = milliseconds(opts.stopGraceMs, 'opts.stopGraceMs', 2000, false);
  const emulate = opts.emulate ?? true;
  if (typeof emulate !== 'boolean') throw new TypeError('opts.emulate must be a boolean');
  const repair = opts.syscallRepair ?? 'auto';
  if (repair !== 'auto' && typeof repair !== 'boolean') throw new TypeError("opts.syscallRepair must be a boolean or 'auto'");
  if (repair === true && !emulate) throw new RangeError('opts.syscallRepair needs opts.emulate (the repair runs in the instruction fallback)');
  const engine = opts.engine ?? defaultEngine();
  if (engine !== 'kvm' && engine !== 'cpl0') throw new RangeError(`opts.engine must be 'kvm' or 'cpl0', got ${String(engine)}`);
  return { haltPollMs, emulate, stopGraceMs, syscallRepair: emulate && (repair === 'auto' ? hostIsPvm() : repair), engine };
}

/** Runs a VM's vCPUs concurrently, one worker thread each. */
export class VcpuRunner extends EventEmitter<RunnerEvents> {
  /** The VM being run. */
  readonly vm: Vm;
  /** The port I/O bus. */
  readonly pio: RunnerBus;
  /** The MMIO bus. */
  readonly mmio: RunnerBus;
  readonly #counters: RunnerCounters;
  readonly #opts: RunnerSettings;
  readonly #ctx: ExitContext;
  readonly #hooks: ServerHooks;
  /** The doorbell every worker rings (src/runner/protocol.ts BELL). */
  readonly #bell = new Int32Array(new SharedArrayBuffer(BELL_BYTES));
  #repairRecord: SharedArrayBuffer | undefined;
  #repairSeed: Uint8Array | undefined;
  #slots: VcpuSlot[] = [];
  #pool: VcpuPool | undefined;
  /** The pool's threads can run the next runner's tasks (none was terminated, failed or pinned). */
  #poolReusable = true;
  #started = false;
  #stopping = false;
  #error: Error | undefined;
  #haltTimer: NodeJS.Timeout | undefined;
  #graceTimer: NodeJS.Timeout | undefined;
  #kickable: Kickable;
  #endReason: RunResult['reason'] | undefined;
  #emuCounts: Int32Array[] = [];
  readonly #hostWork: (() => boolean)[] = [];
  #emuSeen: number[][] = [];
  /** Per vCPU: the CPL0 engine's counters ({@link ENGINE_COUNT}), and what the VM's stats have of them. */
  #engineCounts: BigInt64Array[] = [];
  #engineSeen: bigint[][] = [];

  /** A runner for `vm` (nothing starts until {@link start}). Throws TypeError/RangeError for bad options. */
  constructor(vm: Vm, opts: VcpuRunnerOptions = {}) {
    super();
    if (!vm || typeof vm.vcpuFdNumber !== 'function') throw new TypeError('vm must be a Vm');
    this.#opts = settings(opts);
    this.vm = vm;
    this.pio = new RunnerBus(this, 'pio');
    this.mmio = new RunnerBus(this, 'mmio');
    const z = () => new Array(vm.vcpuCount).fill(0);
    this.#counters = { exits: z(), workerHandled: z(), postedWrites: z(), hops: z(), unhandled: 0 };
    this.#ctx = { pio: this.pio.bus, mmio: this.mmio.bus, events: this, counters: this.#counters };
    this.#kickable = { kickAll: () => this.#requestAll(CONTROL.STOP) };
    this.#hooks = {
      ctx: this.#ctx,
      bell: this.#bell,
      stopping: () => this.#stopping,
      apply: (s, a) => this.#apply(s, a),
      halted: (s, parked) => this.#halted(s, parked),
      status: (s, st) => this.#setStatus(s, st),
      fail: (e) => this.#fail(e),
    };
  }

  /** Counters: exits, worker-handled exits, posted writes and hops per vCPU; unhandled accesses. */
  get counters(): RunnerCounters {
    this.#syncCounters();
    return this.#counters;
  }

  /**
   * Tell the runner how to see that a device has host work in flight that completes on the
   * event loop (file I/O, a socket): while `probe()` is true the main thread waits for exits
   * through the event loop instead of spinning or blocking, so the completion runs at once.
   * `probe` is called often: keep it a field read. Returns a function that removes it.
   */
  addHostWorkProbe(probe: () => boolean): () => void {
    if (typeof probe !== 'function') throw new TypeError(`probe must be a function, got ${typeof probe}`);
    this.#hostWork.push(probe);
    return () => {
      const i = this.#hostWork.indexOf(probe);
      if (i >= 0) this.#hostWork.splice(i, 1);
    };
  }

  /** The raw control-block words of each vCPU, for diagnosing a stuck run. */
  debugState(): Record<string, number>[] {
    return this.#slots.map((s) => {
      const o: Record<string, number> = {};
      for (const [k, i] of Object.entries(CB)) if (k !== 'RING') o[k] = Atomics.load(s.ctl, i);
      return o;
    });
  }

  /**
   * The SYSCALL repair's patch record (src/emulate/syscall-repair.ts: where its breakpoint
   * sits in guest memory and the byte it displaced), a copy, for a snapshot taken while the
   * runner is paused; undefined before start() or without the repair. A snapshot's memory
   * holds the breakpoint, so the runner of a restored VM needs the record:
   * {@link seedSyscallRepair}.
   */
  syscallRepairRecord(): Uint8Array | undefined {
    return this.#repairRecord ? new Uint8Array(this.#repairRecord).slice() : undefined;
  }

  /** Before start(): continue from a patch record {@link syscallRepairRecord} gave (a restored snapshot's). */
  seedSyscallRepair(record: Uint8Array): void {
    if (this.#started) throw new RunnerError('seedSyscallRepair() after start()');
    if (!(record instanceof Uint8Array) || record.length !== SYSCALL_REPAIR_BYTES) {
      throw new RangeError(`record must be a Uint8Array of ${SYSCALL_REPAIR_BYTES} bytes`);
    }
    this.#repairSeed = record.slice();
  }

  /** True once start() was called. */
  get started(): boolean {
    return this.#started;
  }

  /** True once the run is ending: stop() was called, or the guest or a failure ended it. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Each vCPU's state. */
  get states(): VcpuState[] {
    return this.#slots.map((s) => (s.taskDone ? 'finished' : statusName(Atomics.load(s.ctl, CB.STATUS))));
  }

  /**
   * Start every vCPU. Resolves when all have finished (halted, guest shutdown, stop());
   * rejects if the run fails (a handler throws, a worker dies or does not stop, the guest
   * hits an internal error), after every vCPU has been stopped.
   */
  async start(): Promise<RunResult> {
    if (this.#started) throw new RunnerError('start() was already called');
    vcpuWorkerPath(); // a RunnerError now, before anything is claimed, when it is not built
    // claim first: a VM already run by another runner is refused before anything is opened
    this.vm.claim('a VcpuRunner', (v, syscall) => this.#guardVcpu(v, syscall), () => this.stop());
    this.#started = true;
    try {
      return await this.#run();
    } finally {
      this.vm.claim(undefined);
    }
  }

  async #run(): Promise<RunResult> {
    const tasks: VcpuTask[] = [];
    try {
      this.#setupSlots(tasks);
    } catch (e) {
      for (const s of this.#slots) s.stats?.close();
      throw e;
    }
    try {
      return await this.#launch(tasks);
    } finally {
      // every worker has ended: the guest's page-fault handler gets its original byte back
      const record = tasks[0]?.syscallRepair;
      if (record && !this.vm.destroyed) removeRepairBreakpoint(this.vm.memory, record);
    }
  }

  #setupSlots(tasks: VcpuTask[]): void {
    const vm = this.vm;
    const postedPorts = new SharedArrayBuffer(0x10000);
    const pp = new Uint8Array(postedPorts);
    for (const r of this.pio.posted) pp.fill(1, r.base, r.base + r.length);
    // one patch record for the whole VM: any vCPU may take the guest's page faults
    const repairRecord = this.#opts.syscallRepair ? new SharedArrayBuffer(SYSCALL_REPAIR_BYTES) : undefined;
    if (repairRecord && this.#repairSeed) new Uint8Array(repairRecord).set(this.#repairSeed);
    this.#repairRecord = repairRecord;
    const memory = vm.memorySegments().map(({ gpa, buffer, readonly }) => ({ gpa, buffer, readonly }));
    const workerDevices = [...this.pio.workerDevices, ...this.mmio.workerDevices];
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
      const blockingIndex = stats ? stats.descriptors.findIndex((d) => d.name === 'blocking') : -1;
      this.#slots.push({ index: v, fd, ctl: new Int32Array(control), run, view: new DataView(run.buffer), status: 'starting', stats, blockingIndex, taskDone: false });
      const emulationCounts = new SharedArrayBuffer((COUNTED_MNEMONICS.length + 1) * 4);
      this.#emuCounts.push(new Int32Array(emulationCounts));
      const engineCounts = new SharedArrayBuffer(16);
      this.#engineCounts.push(new BigInt64Array(engineCounts));
      tasks.push({
        syscallRepair: repairRecord, vcpu: v, fd, pin: vm.getPinning(v), control, bell: this.#bell.buffer as SharedArrayBuffer, spare: hostLoad.flag.buffer as SharedArrayBuffer, postedPorts, postedMmio: this.mmio.posted,
        workerDevices, emulate: this.#opts.emulate, engine: this.#opts.engine, engineCounts, memory, emulationCounts,
      });
    }
  }

  async #launch(tasks: VcpuTask[]): Promise<RunResult> {
    const vm = this.vm;
    const pool = (this.#pool = takeVcpuPool(vm.vcpuCount));
    runnerPool.add(this.#kickable);
    installExitHook(runnerPool);
    hostLoad.acquire(vm.vcpuCount);
    if (this.#opts.haltPollMs > 0) this.#haltTimer = setInterval(() => this.#poll(), this.#opts.haltPollMs);
    const done = this.#slots.map((s, i) =>
      pool
        .run(tasks[i])
        .then((r) => {
          if (!r.reusable) this.#poolReusable = false;
          if (r.failure) this.#fail(fromWorkerFailure(r.failure, s.index));
        })
        .catch((e: unknown) => {
          this.#poolReusable = false;
          this.#fail(toError(e));
        })
        .finally(() => {
          s.taskDone = true;
          ringBell(this.#bell);
        }),
    );
    const servers = this.#slots.map((s) => new VcpuServer(s, this.#hooks));
    const probes = this.#hostWork;
    const hostWork = (): boolean => {
      for (let i = 0; i < probes.length; i++) if (probes[i]()) return true;
      return false;
    };
    const loops = [...done, serveAll(servers, this.#bell, hostWork).catch((e: unknown) => this.#fail(toError(e)))];
    try {
      await Promise.all(loops);
    } finally {
      clearInterval(this.#haltTimer);
      clearTimeout(this.#graceTimer);
      hostLoad.release(vm.vcpuCount);
      runnerPool.delete(this.#kickable);
      for (const s of this.#slots) s.stats?.close();
      try {
        this.#syncCounters();
      } finally {
        await releaseVcpuPool(pool, vm.vcpuCount, this.#poolReusable);
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
    if (Atomics.load(s.ctl, CB.STATE) === MAILBOX.WAITING) return;
    throw errnoError('EBUSY', syscall, `vCPU ${v} is running in a VcpuRunner: pause() first, or access it from an exit handler`);
  }

  /**
   * Stop every vCPU (kicks them out of KVM_RUN). start() then resolves — or, if a worker has
   * not finished within `stopGraceMs` (a worker-side device that never returns), the runner
   * terminates it and start() rejects with a RunnerError naming the vCPU.
   */
  stop(): void {
    this.#stopping = true;
    this.#endReason ??= 'stopped';
    this.#requestAll(CONTROL.STOP);
    if (this.#started && this.#graceTimer === undefined) {
      this.#graceTimer = setTimeout(() => void this.#terminateStuck(), this.#opts.stopGraceMs);
    }
  }

  /** The grace period after stop() ran out: terminate the workers that are still running. */
  async #terminateStuck(): Promise<void> {
    const stuck = this.#slots.filter((s) => !s.taskDone);
    if (stuck.length === 0 || !this.#pool) return;
    const which = stuck.map((s) => s.index).join(', ');
    this.#fail(new RunnerError(`vCPU ${which}: the worker did not stop within ${this.#opts.stopGraceMs} ms of stop() (a worker-side device that never returns?); it was terminated`));
    this.#poolReusable = false;
    try {
      await this.#pool.destroy();
    } catch {
      /* the tasks' own rejections settle the run */
    }
  }

  /**
   * Pause every vCPU: resolves when none is inside KVM_RUN and every posted write has reached
   * its device, so registers, memory and device state can be read and written from the main
   * thread (a snapshot's pause). A paused vCPU has finished the instruction of its last exit
   * (workers/vcpu-loop.ts). vCPUs parked on a pending handler pause once it settles.
   */
  async pause(): Promise<void> {
    if (!this.#started) throw new RunnerError('pause() before start()');
    this.#requestAll(CONTROL.PAUSE);
    await Promise.all(this.#slots.map((s) => this.#whenPaused(s)));
    await this.#postedWritesDelivered();
  }

  /** Until the serve loop has emptied every vCPU's posted-write ring (bounded: RunnerError after 10 s). */
  async #postedWritesDelivered(): Promise<void> {
    const rings = this.#slots.map((s) => new WriteRing(s.ctl, RING_LAYOUT));
    const deadline = performance.now() + 10_000;
    while (rings.some((r) => r.pending() !== 0)) {
      if (performance.now() > deadline) throw new RunnerError('pause(): posted writes were not delivered within 10 s (a device handler that never settles?)');
      ringBell(this.#bell);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  #whenPaused(s: VcpuSlot): Promise<void> {
    return new Promise<void>((resolve) => {
      const check = (): boolean => {
        const st = Atomics.load(s.ctl, CB.STATUS);
        if (st !== STATUS.PAUSED && st !== STATUS.FINISHED && !s.taskDone) return false;
        this.off('vcpu-state', onState);
        resolve();
        return true;
      };
      const onState = (): void => void check();
      this.on('vcpu-state', onState);
      check();
    });
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
    for (const s of this.#slots) {
      // already stopping: only kick again, in case it re-entered
      if (Atomics.load(s.ctl, CB.CONTROL) !== CONTROL.STOP) Atomics.store(s.ctl, CB.CONTROL, c);
      this.#wake(s);
    }
  }

  /** Wake vCPU `s` wherever it waits: the mailbox, the full ring, a pause, or KVM_RUN. */
  #wake(s: VcpuSlot): void {
    Atomics.notify(s.ctl, CB.CONTROL);
    wakeWaitingWorker(s.ctl);
    Atomics.notify(s.ctl, CB.RING_HEAD);
    // a finished worker's vCPU is not in KVM_RUN; a kick would only leave immediate_exit set
    if (!s.taskDone) native().kick(s.fd);
  }

  #fail(err: Error): void {
    if (!this.#error) {
      this.#error = err;
      if (this.listenerCount('error') > 0) this.emit('error', err);
    }
    this.stop();
  }

  /** Carry out an exit action for vCPU `s`; true to stop that vCPU. */
  #apply(s: VcpuSlot, a: ExitAction): boolean {
    switch (a.kind) {
      case 'continue':
        return false;
      case 'halt':
        s.finished = 'halted';
        return true;
      case 'end':
        // the guest's own end wins over a 'stopped' set by a racing stop()
        if (this.#endReason === undefined || this.#endReason === 'stopped') this.#endReason = a.reason;
        s.finished = a.reason;
        this.stop();
        return true;
      case 'fail':
        this.#fail(a.error);
        return true;
    }
  }

  /**
   * A vCPU halted with interrupts disabled, or parked waiting for INIT/SIPI (an AP nobody
   * started). Another vCPU can still wake it (an NMI or INIT IPI, KVM's paravirtual unhalt
   * kick for spinlocks), so it only finishes once every vCPU is finished or halted like
   * this; until then it stays halted inside KVM_RUN. 'hlt' is emitted when it halts.
   */
  async #halted(s: VcpuSlot, parked: boolean): Promise<boolean> {
    if (!s.halted) {
      s.halted = true;
      if (!parked) await callListeners(this, 'hlt', { kind: 'hlt', vcpu: s.index });
    }
    const others = this.#slots.filter((o) => o !== s && !o.taskDone && o.finished === undefined);
    if (!others.every((o) => o.halted && this.#stillBlocked(o))) return false;
    for (const o of others) {
      o.finished = 'halted';
      Atomics.store(o.ctl, CB.CONTROL, CONTROL.STOP);
      this.#wake(o);
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

  /** Copy the workers' engine counters into the VM's stats (`engine_turns`, `engine_instructions`). */
  #syncEngine(): void {
    this.#engineCounts.forEach((c, v) => {
      const seen = (this.#engineSeen[v] ??= [0n, 0n]);
      for (const [i, name] of [[ENGINE_COUNT.TURNS, 'engine_turns'], [ENGINE_COUNT.INSTRUCTIONS, 'engine_instructions']] as const) {
        const now = Atomics.load(c, i);
        if (now !== seen[i] && !this.vm.destroyed) this.vm.addStat(v, name, now - seen[i]);
        seen[i] = now;
      }
    });
  }

  /** Copy the workers' emulation counters into the VM's stats; emit 'emulated' for changes. */
  #syncEmulation(): void {
    this.#syncEngine();
    this.#emuCounts.forEach((c, v) => {
      const seen = (this.#emuSeen[v] ??= new Array(c.length).fill(0));
      const delta: Record<string, number> = {};
      let changed = false;
      for (let i = 0; i < c.length; i++) {
        const now = Atomics.load(c, i);
        if (now === seen[i]) continue;
        const name = i < COUNTED_MNEMONICS.length ? COUNTED_MNEMONICS[i] : 'exceptions';
        if (!this.vm.destroyed) this.vm.addStat(v, `emulated_${name}`, BigInt(now - seen[i]));
        delta[name] = now - seen[i];
        seen[i] = now;
        changed = true;
      }
      if (!changed) return;
      try {
        this.emit('emulated', v, delta);
      } catch (e) {
        this.#fail(toError(e));
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

  /**
   * Periodic duties: wake serve loops that have posted writes waiting (the worker batches its
   * notifications), and ask workers whose vCPU is blocked in the kernel whether it halted for
   * good.
   */
  #poll(): void {
    this.#syncEmulation();
    for (const s of this.#slots) {
      if (Atomics.load(s.ctl, CB.RING_HEAD) !== Atomics.load(s.ctl, CB.RING_TAIL)) ringBell(this.#bell);
      if (!this.vm.irqchip || s.status !== 'running' || Atomics.load(s.ctl, CB.STATE) !== MAILBOX.IDLE) continue;
      if (!s.stats || s.blockingIndex < 0) continue;
      try {
        if (s.stats.read()[s.blockingIndex] === 1n && Atomics.load(s.ctl, CB.CHECK_HALT) === 0) {
          Atomics.store(s.ctl, CB.CHECK_HALT, 1);
          native().kick(s.fd);
        }
      } catch {
        /* stats unavailable: halts are then only seen as HLT exits */
      }
    }
  }
}

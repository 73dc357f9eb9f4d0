/**
 * One vCPU's KVM_RUN loop inside its worker thread, and the handlers for what the worker
 * answers itself: accesses claimed by worker-side devices (through the dispatch seam),
 * posted writes (to the ring), instructions KVM's emulator gave up on (the instruction
 * fallback), and halts it cannot wake from. Everything else goes to the main thread through
 * the mailbox.
 */
import { KVM_EXIT, KVM_INTERNAL_ERROR, KVM_MP_STATE } from '../src/kvm/constants.js';
import type { NativeVcpuFd } from '../src/kvm/native.js';
import { RUN, peekAccess } from '../src/exits.js';
import type { Bus } from '../src/bus/bus.js';
import { newAccess, serveAccess, type Access } from '../src/bus/dispatch.js';
import { InstructionFallback, sharedMemory } from '../src/emulate/fallback.js';
import { COUNTED_MNEMONICS } from '../src/emulate/mnemonics.js';
import type { SyscallRepair } from '../src/emulate/syscall-repair.js';
import { ACCESS_SPACE, BELL, CB, CONTROL, MAIN_WAIT, REPLY, REQUEST, RING_BATCH, RING_LAYOUT, RING_POLL_BATCH, STATUS, type VcpuTask } from '../src/runner/protocol.js';
import { MailboxClient, wakeMain } from '../src/runner/mailbox.js';
import { RING_SPACE, WriteRing } from '../src/runner/write-ring.js';
import { EngineTurns, KVM_STINT_MS } from './engine-turn.js';

/** The buses a worker serves itself: its worker-side devices, and the posted ranges. */
export interface WorkerBuses {
  /** Worker-side devices (port I/O and MMIO). */
  readonly pio: Bus;
  readonly mmio: Bus;
  /** Ports whose OUTs are posted (65536 flags). */
  readonly postedPorts: Uint8Array;
  /** MMIO ranges whose writes are posted (markers only: the devices live on the main thread). */
  readonly postedMmio: Bus;
}

/** Why the loop ended: told to stop, or answered "stop" by the main thread. */
export type LoopEnd = 'stopped' | 'replied-stop';

/** Byte offset of ACCESS_VALUE in the control block. */
const VALUE_BYTE = CB.ACCESS_VALUE * 4;

const MNEMONIC_INDEX = new Map(COUNTED_MNEMONICS.map((m, i) => [m, i]));

/** One vCPU's run loop (construct, then {@link run}). */
export class VcpuLoop {
  readonly #vcpu: NativeVcpuFd;
  readonly #ctl: Int32Array;
  readonly #ctlView: DataView;
  readonly #bell: Int32Array;
  readonly #mail: MailboxClient;
  readonly #ring: WriteRing;
  readonly #buses: WorkerBuses;
  readonly #run: Uint8Array;
  readonly #view: DataView;
  readonly #access: Access = newAccess();
  readonly #fallback: InstructionFallback | undefined;
  readonly #repair: RepairRation | undefined;
  readonly #emuCounts: Int32Array;
  /** The CPL0 engine's turns (`engine: 'cpl0'`), or undefined. */
  readonly #engine: EngineTurns | undefined;

  constructor(task: VcpuTask, vcpu: NativeVcpuFd, buses: WorkerBuses) {
    this.#vcpu = vcpu;
    this.#ctl = new Int32Array(task.control);
    this.#ctlView = new DataView(task.control);
    this.#bell = new Int32Array(task.bell);
    this.#mail = new MailboxClient(this.#ctl, this.#bell, new Int32Array(task.spare));
    this.#ring = new WriteRing(this.#ctl, RING_LAYOUT);
    this.#buses = buses;
    this.#run = new Uint8Array(vcpu.runBuffer());
    this.#view = new DataView(this.#run.buffer);
    const memory = sharedMemory(task.memory); // one view of guest RAM for the fallback and the engine
    this.#fallback = task.emulate ? new InstructionFallback(vcpu, memory, task.syscallRepair) : undefined;
    this.#repair = this.#fallback?.repair ? new RepairRation(this.#fallback, this.#fallback.repair) : undefined;
    this.#emuCounts = new Int32Array(task.emulationCounts);
    if (task.engine === 'cpl0') {
      this.#engine = new EngineTurns(vcpu, memory, new BigInt64Array(task.engineCounts), {
        serve: (space, a) => this.#serve(space, a),
        interrupted: () => Atomics.load(this.#ctl, CB.CONTROL) !== CONTROL.RUN,
      });
    }
  }

  /** Run the vCPU until told to stop. */
  run(): LoopEnd {
    const ctl = this.#ctl;
    this.#mail.setStatus(STATUS.RUNNING);
    for (;;) {
      const c = Atomics.load(ctl, CB.CONTROL);
      if (c === CONTROL.STOP) break;
      if (c === CONTROL.PAUSE) {
        this.#pause();
        continue;
      }
      if (Atomics.load(ctl, CB.CHECK_HALT) === 1 && this.#checkHalt()) break;
      let bound = 0;
      if (this.#engine) {
        const t = this.#engine.take();
        if (t.kind === 'stop') break;
        if (t.bounded) bound = KVM_STINT_MS;
      }
      const reason = bound ? this.#vcpu.run(bound) : this.#vcpu.run();
      Atomics.add(ctl, CB.EXITS, 1);
      this.#repair?.tick();
      if (reason === KVM_EXIT.INTR) continue;
      if (this.#afterExit(reason)) break;
    }
    this.#mail.setStatus(STATUS.FINISHED);
    return this.#mail.stopRequested() ? 'stopped' : 'replied-stop';
  }

  #pause(): void {
    this.#completeLastExit();
    this.#mail.setStatus(STATUS.PAUSED);
    while (Atomics.load(this.#ctl, CB.CONTROL) === CONTROL.PAUSE) Atomics.wait(this.#ctl, CB.CONTROL, CONTROL.PAUSE);
    this.#mail.setStatus(STATUS.RUNNING);
  }

  /**
   * Finish the last exit's instruction without running the guest on: KVM completes port I/O
   * and MMIO reads on the next KVM_RUN, and with immediate_exit set that KVM_RUN does only
   * this and returns EINTR. A paused vCPU's registers are then those of an instruction
   * boundary, as KVM's API documentation requires before userspace saves vCPU state. The
   * completion can exit again (the next element of a `rep ins`, the second half of an MMIO
   * access across a page): such exits are handled as usual, a bounded number of times.
   */
  #completeLastExit(): void {
    for (let i = 0; i < 64; i++) {
      this.#run[RUN.immediateExit] = 1;
      const reason = this.#vcpu.run(); // EINTR clears immediate_exit
      if (reason === KVM_EXIT.INTR) return;
      this.#run[RUN.immediateExit] = 0;
      Atomics.add(this.#ctl, CB.EXITS, 1);
      if (this.#afterExit(reason)) return;
    }
  }

  /** Handle the exit: in the worker if it can be, else through the mailbox. True to stop. */
  #afterExit(reason: number): boolean {
    if (reason === KVM_EXIT.INTERNAL_ERROR && this.#tryFallback()) return false;
    const a = this.#access;
    const space = peekAccess(this.#view, this.#run.length, a);
    if (space === undefined) return (this.#mail.request(REQUEST.EXIT) & REPLY.STOP) !== 0;
    return this.#serve(space, a);
  }

  /**
   * The worker's end of the dispatch seam, for KVM's exits and the CPL0 engine's accesses
   * alike: a worker-side device, else a posted write into the ring, else the main thread
   * (a multi-element access as the whole exit, a single one described inline). True to stop.
   */
  #serve(space: 'pio' | 'mmio', a: Access): boolean {
    const b = this.#buses;
    if (serveAccess(space === 'pio' ? b.pio : b.mmio, a)) {
      Atomics.add(this.#ctl, CB.WORKER_HANDLED, 1);
      return false;
    }
    if (a.count !== 1) return (this.#mail.request(REQUEST.EXIT) & REPLY.STOP) !== 0;
    if (a.write && (space === 'pio' ? b.postedPorts[a.addr] !== 0 : b.postedMmio.find(a.addr) !== undefined)) {
      this.#post(space === 'pio' ? RING_SPACE.PIO : RING_SPACE.MMIO, a);
      return false;
    }
    return this.#requestAccess(space === 'pio' ? ACCESS_SPACE.PIO : ACCESS_SPACE.MMIO, a);
  }

  /**
   * Hand a single-element access to the main thread described inline in the control block
   * (the main thread then need not touch kvm_run); a read's answer comes back there too,
   * unless the main thread answered in kvm_run itself. True to stop.
   */
  #requestAccess(space: number, a: Access): boolean {
    const ctl = this.#ctl;
    const v = this.#ctlView;
    ctl[CB.ACCESS] = space | (a.size << 8) | (a.write ? 1 << 16 : 0);
    ctl[CB.ACCESS_ADDR_LO] = a.addr | 0;
    ctl[CB.ACCESS_ADDR_HI] = Math.floor(a.addr / 2 ** 32) | 0;
    if (a.write) {
      v.setInt32(VALUE_BYTE, a.size === 8 || a.size === 4 ? a.data.getInt32(a.offset, true) : a.size === 2 ? a.data.getUint16(a.offset, true) : a.data.getUint8(a.offset), true);
      v.setInt32(VALUE_BYTE + 4, a.size === 8 ? a.data.getInt32(a.offset + 4, true) : 0, true);
    }
    const reply = this.#mail.request(REQUEST.ACCESS);
    if ((reply & REPLY.STOP) !== 0) return true;
    if (!a.write && (reply & REPLY.INLINE) !== 0) {
      for (let i = 0; i < a.size; i++) a.data.setUint8(a.offset + i, v.getUint8(VALUE_BYTE + i));
    }
    return false;
  }

  /** Append a posted write to the ring; waits while the ring is full. */
  #post(space: number, a: Access): void {
    const ctl = this.#ctl;
    let pending: number;
    while ((pending = this.#ring.push(space, a)) === 0) {
      if (this.#mail.stopRequested()) return;
      Atomics.wait(ctl, CB.RING_HEAD, this.#ring.headCounter(), 100);
    }
    Atomics.add(ctl, CB.POSTED_WRITES, 1);
    const bell = this.#bell;
    // A polling main thread finds the write within RING_POLL_MS. MAIN_POLLING is read after
    // the push published the entry: a main thread that stops polling later re-reads the rings.
    const polling = Atomics.load(bell, BELL.MAIN_POLLING) === 1;
    if (polling && pending < RING_POLL_BATCH) return;
    Atomics.add(bell, BELL.SEQ, 1);
    // Wake a sleeping main thread at once; an awake one (it spins or waits briefly after
    // each round) sees the doorbell move, and is only notified when a batch has piled up.
    // MAIN_SLEEPING is read after the bump: a main thread that goes to sleep later sees the
    // new SEQ and does not sleep.
    const how = Atomics.load(bell, BELL.MAIN_SLEEPING);
    if (how === MAIN_WAIT.ASLEEP || (how === MAIN_WAIT.BLOCKED && (polling || pending >= RING_BATCH))) wakeMain(bell, how);
  }

  /** The main thread asked whether the blocked vCPU halted for good; true to stop. */
  #checkHalt(): boolean {
    Atomics.store(this.#ctl, CB.CHECK_HALT, 0);
    const stuck = this.#stuckKind();
    return stuck !== 0 && (this.#mail.request(stuck) & REPLY.STOP) !== 0;
  }

  /**
   * Why the blocked vCPU cannot wake by itself: HALTED (HLT with interrupts disabled),
   * PARKED (waiting for INIT/SIPI), or 0 (it will wake on an interrupt).
   */
  #stuckKind(): number {
    const mp = new DataView(this.#vcpu.getMpState()).getUint32(0, true);
    if (mp === KVM_MP_STATE.UNINITIALIZED || mp === KVM_MP_STATE.INIT_RECEIVED) return REQUEST.PARKED;
    if (mp !== KVM_MP_STATE.HALTED) return 0;
    const rflags = new DataView(this.#vcpu.getRegs()).getBigUint64(17 * 8, true);
    return (rflags & 0x200n) === 0n ? REQUEST.HALTED : 0;
  }

  /** Try the instruction fallback on an emulation failure; true if the vCPU can resume. */
  #tryFallback(): boolean {
    const view = this.#view;
    if (!this.#fallback || view.getUint32(RUN.internalSuberror, true) !== KVM_INTERNAL_ERROR.EMULATION) return false;
    if (view.getUint32(RUN.internalNdata, true) < 3 || (view.getBigUint64(RUN.emuFlags, true) & 1n) === 0n) return false;
    const n = Math.min(view.getUint8(RUN.emuInsnSize), 15);
    const r = this.#fallback.handle(this.#run.slice(RUN.emuInsnBytes, RUN.emuInsnBytes + n));
    if (r.kind === 'unsupported') return false;
    const i = MNEMONIC_INDEX.get(r.mnemonic);
    if (i !== undefined) Atomics.add(this.#emuCounts, i, 1);
    if (r.kind === 'exception') Atomics.add(this.#emuCounts, COUNTED_MNEMONICS.length, 1);
    Atomics.add(this.#ctl, CB.EMULATED, 1);
    return true;
  }
}

/**
 * The SYSCALL repair installs once the guest is ready (src/emulate/syscall-repair.ts).
 * Looking costs a KVM_GET_SREGS, so it is rationed: the clock is read every 32 exits, and
 * the interval starts at 1 ms and doubles up to 256 ms until installed, then 1 s (the guest
 * may rewrite or move its handler).
 */
class RepairRation {
  readonly #fallback: InstructionFallback;
  readonly #repair: SyscallRepair;
  #next = 0;
  #interval = 1;
  #exitsUntilClock = 1;

  constructor(fallback: InstructionFallback, repair: SyscallRepair) {
    this.#fallback = fallback;
    this.#repair = repair;
  }

  /** Called after every exit. */
  tick(): void {
    if (--this.#exitsUntilClock > 0) return;
    this.#exitsUntilClock = 32;
    const now = performance.now();
    if (now < this.#next) return;
    this.#fallback.maybeInstallRepair();
    this.#interval = this.#repair.installed ? 1000 : Math.min(this.#interval * 2, 256);
    this.#next = now + this.#interval;
  }
}

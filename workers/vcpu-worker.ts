/**
 * The vCPU worker: runs one vCPU's blocking KVM_RUN loop in a piscina worker thread.
 *
 * Exits that need the main thread go through the mailbox in the control block
 * (src/runner/protocol.ts); posted writes go to the ring without waiting; exits claimed by a
 * worker-side device are answered here. Nothing else lives in this file.
 */
import { pathToFileURL } from 'node:url';
import { native } from '../src/kvm/native.js';
import { KVM_EXIT, KVM_INTERNAL_ERROR, KVM_MP_STATE } from '../src/kvm/constants.js';
import { RUN } from '../src/exits.js';
import type { AccessSize, Device } from '../src/devices/device.js';
import { spinWhileEqual } from '../src/runner/spin.js';
import { readLE, writeLE } from '../src/runner/le.js';
import { COUNTED_MNEMONICS as SUPPORTED_MNEMONICS, InstructionFallback, sharedMemory } from '../src/emulate/fallback.js';
import {
  CB, CONTROL, MAILBOX, POSTED, REPLY, RING_BATCH, RING_CAPACITY, RING_ENTRY_INTS, RING_KIND, STATUS,
  type VcpuTask, type VcpuTaskResult,
} from '../src/runner/protocol.js';

/** How long (ms) the worker spins for the main thread's answer before sleeping. */
const SPIN_MS = 0.1;

interface LocalDevice {
  base: number;
  length: number;
  device: Device;
}

async function loadDevices(task: VcpuTask, space: 'pio' | 'mmio'): Promise<LocalDevice[]> {
  const out: LocalDevice[] = [];
  for (const d of task.workerDevices.filter((x) => x.space === space)) {
    const url = d.module.startsWith('file:') ? d.module : pathToFileURL(d.module).href;
    const mod = (await import(url)) as Record<string, new (o: unknown) => Device>;
    const Cls = mod[d.export];
    if (typeof Cls !== 'function') throw new TypeError(`worker device: ${d.module} has no export '${d.export}'`);
    out.push({ base: d.base, length: d.length, device: new Cls(d.options) });
  }
  return out;
}

function find<T extends { base: number; length: number }>(devs: readonly T[], addr: number): T | undefined {
  for (const d of devs) if (addr >= d.base && addr < d.base + d.length) return d;
  return undefined;
}

/** The piscina task: run vCPU `task.vcpu` until told to stop. */
export default async function runVcpu(task: VcpuTask): Promise<VcpuTaskResult> {
  const n = native();
  const vcpu = new n.VcpuFd(task.fd);
  try {
    if (task.pin >= 0) n.setThreadAffinity(task.pin);
    const pioDevs = await loadDevices(task, 'pio');
    const mmioDevs = await loadDevices(task, 'mmio');
    const ctl = new Int32Array(task.control);
    const posted = new Uint8Array(task.postedPorts);
    const run = new Uint8Array(vcpu.runBuffer());
    const view = new DataView(run.buffer);
    const signal = () => {
      Atomics.add(ctl, CB.SEQ, 1);
      Atomics.notify(ctl, CB.SEQ);
    };
    const setStatus = (s: number) => {
      Atomics.store(ctl, CB.STATUS, s);
      signal();
    };
    const stopRequested = () => Atomics.load(ctl, CB.CONTROL) === CONTROL.STOP;

    /** Hand an exit to the main thread and wait for its reply; true if told to stop. */
    const post = (kind: number): boolean => {
      Atomics.add(ctl, CB.HOPS, 1);
      Atomics.store(ctl, CB.POSTED_KIND, kind);
      Atomics.store(ctl, CB.STATE, MAILBOX.POSTED);
      signal();
      // spin briefly: a main-thread device usually answers within microseconds
      spinWhileEqual(ctl, CB.STATE, MAILBOX.POSTED, SPIN_MS);
      while (Atomics.load(ctl, CB.STATE) === MAILBOX.POSTED) {
        if (stopRequested()) return true;
        Atomics.wait(ctl, CB.STATE, MAILBOX.POSTED);
      }
      Atomics.store(ctl, CB.STATE, MAILBOX.IDLE);
      return Atomics.load(ctl, CB.REPLY) === REPLY.STOP;
    };

    /** Append a posted write to the ring; waits while the ring is full. */
    const push = (kind: number, size: number, addr: number, value: number): void => {
      // head/tail are free-running Int32 counters: all arithmetic wraps with `| 0`
      const tail = Atomics.load(ctl, CB.RING_TAIL);
      let head = Atomics.load(ctl, CB.RING_HEAD);
      while (((tail - head) | 0) >= RING_CAPACITY) {
        if (stopRequested()) return;
        Atomics.wait(ctl, CB.RING_HEAD, head, 100);
        head = Atomics.load(ctl, CB.RING_HEAD);
      }
      const o = CB.RING + (tail & (RING_CAPACITY - 1)) * RING_ENTRY_INTS;
      ctl[o] = kind | (size << 8);
      ctl[o + 1] = addr | 0;
      ctl[o + 2] = value | 0;
      ctl[o + 3] = kind === RING_KIND.MMIO_WRITE ? Math.floor(addr / 2 ** 32) | 0 : 0;
      Atomics.store(ctl, CB.RING_TAIL, (tail + 1) | 0);
      Atomics.add(ctl, CB.POSTED_WRITES, 1);
      Atomics.add(ctl, CB.SEQ, 1);
      // Wake a sleeping main thread at once; an awake one (it spins after each drain) sees
      // SEQ move, and is only notified when a batch has piled up. MAIN_SLEEPING is read after
      // the SEQ bump: a main thread that goes to sleep later sees the new SEQ and does not.
      const pending = (tail + 1 - Atomics.load(ctl, CB.RING_HEAD)) | 0;
      if (pending >= RING_BATCH || Atomics.load(ctl, CB.MAIN_SLEEPING) === 1) Atomics.notify(ctl, CB.SEQ);
    };

    /**
     * Why the blocked vCPU cannot wake by itself: HALTED (HLT with interrupts disabled),
     * PARKED (waiting for INIT/SIPI), or 0 (it will wake on an interrupt).
     */
    const stuckKind = (): number => {
      const mp = new DataView(vcpu.getMpState()).getUint32(0, true);
      if (mp === KVM_MP_STATE.UNINITIALIZED || mp === KVM_MP_STATE.INIT_RECEIVED) return POSTED.PARKED;
      if (mp !== KVM_MP_STATE.HALTED) return 0;
      const rflags = new DataView(vcpu.getRegs()).getBigUint64(17 * 8, true);
      return (rflags & 0x200n) === 0n ? POSTED.HALTED : 0;
    };

    const postedMmio = task.postedMmio;
    const fallback = task.emulate ? new InstructionFallback(vcpu, sharedMemory(task.memory), task.syscallRepair) : undefined;
    // The SYSCALL repair installs once the guest is ready (syscall-repair.ts). Looking costs
    // a KVM_GET_SREGS, so it is rationed: the clock is read every 32 exits, and the interval
    // starts at 1 ms and doubles up to 256 ms until installed, then 1 s (the guest may rewrite
    // or move its handler).
    const repair = fallback?.repair;
    let nextRepairCheck = 0;
    let repairInterval = 1;
    let exitsUntilClock = 1;
    const emuCounts = new Int32Array(task.emulationCounts);
    const mnemonicIndex = new Map(SUPPORTED_MNEMONICS.map((m, i) => [m, i]));
    /** Try the instruction fallback on an emulation failure; true if the vCPU can resume. */
    const tryFallback = (): boolean => {
      if (!fallback || view.getUint32(RUN.internalSuberror, true) !== KVM_INTERNAL_ERROR.EMULATION) return false;
      if (view.getUint32(RUN.internalNdata, true) < 3 || (view.getBigUint64(RUN.emuFlags, true) & 1n) === 0n) return false;
      const n = Math.min(view.getUint8(RUN.emuInsnSize), 15);
      const r = fallback.handle(run.slice(RUN.emuInsnBytes, RUN.emuInsnBytes + n));
      if (r.kind === 'unsupported') return false;
      const i = mnemonicIndex.get(r.mnemonic);
      if (i !== undefined) Atomics.add(emuCounts, i, 1);
      if (r.kind === 'exception') Atomics.add(emuCounts, SUPPORTED_MNEMONICS.length, 1);
      Atomics.add(ctl, CB.EMULATED, 1);
      return true;
    };
    setStatus(STATUS.RUNNING);
    for (;;) {
      const c = Atomics.load(ctl, CB.CONTROL);
      if (c === CONTROL.STOP) break;
      if (c === CONTROL.PAUSE) {
        setStatus(STATUS.PAUSED);
        while (Atomics.load(ctl, CB.CONTROL) === CONTROL.PAUSE) Atomics.wait(ctl, CB.CONTROL, CONTROL.PAUSE);
        setStatus(STATUS.RUNNING);
        continue;
      }
      if (Atomics.load(ctl, CB.CHECK_HALT) === 1) {
        Atomics.store(ctl, CB.CHECK_HALT, 0);
        const stuck = stuckKind();
        if (stuck !== 0 && post(stuck)) break;
      }
      const reason = vcpu.run();
      Atomics.add(ctl, CB.EXITS, 1);
      if (repair && --exitsUntilClock <= 0) {
        exitsUntilClock = 32;
        const now = performance.now();
        if (now >= nextRepairCheck) {
          fallback!.maybeInstallRepair();
          repairInterval = repair.installed ? 1000 : Math.min(repairInterval * 2, 256);
          nextRepairCheck = now + repairInterval;
        }
      }
      if (reason === KVM_EXIT.INTR) continue;
      if (reason === KVM_EXIT.IO) {
        const count = view.getUint32(RUN.ioCount, true);
        const port = view.getUint16(RUN.ioPort, true);
        const size = view.getUint8(RUN.ioSize) as AccessSize;
        const isOut = view.getUint8(RUN.ioDirection) === 1;
        const off = Number(view.getBigUint64(RUN.ioDataOffset, true));
        if (count >= 1 && (size === 1 || size === 2 || size === 4) && off + size * count <= run.length) {
          const d = pioDevs.length ? find(pioDevs, port) : undefined;
          if (d) {
            // string I/O (rep ins/outs) element by element
            for (let k = 0; k < count; k++) {
              const at = off + k * size;
              if (isOut) d.device.write(port - d.base, size, readLE(view, at, size));
              else writeLE(view, at, size, d.device.read(port - d.base, size));
            }
            Atomics.add(ctl, CB.WORKER_HANDLED, 1);
            continue;
          }
          if (count === 1) {
            if (isOut && posted[port] !== 0) {
              push(RING_KIND.PIO_WRITE, size, port, readLE(view, off, size) as number);
              continue;
            }
          }
        }
      } else if (reason === KVM_EXIT.MMIO) {
        const gpa = Number(view.getBigUint64(RUN.mmioPhysAddr, true));
        const len = view.getUint32(RUN.mmioLen, true);
        const write = view.getUint8(RUN.mmioIsWrite) !== 0;
        if (len === 1 || len === 2 || len === 4 || len === 8) {
          const d = mmioDevs.length ? find(mmioDevs, gpa) : undefined;
          if (d) {
            if (write) d.device.write(gpa - d.base, len, readLE(view, RUN.mmioData, len));
            else writeLE(view, RUN.mmioData, len, d.device.read(gpa - d.base, len));
            Atomics.add(ctl, CB.WORKER_HANDLED, 1);
            continue;
          }
          if (write && len <= 4 && postedMmio.length && find(postedMmio, gpa)) {
            push(RING_KIND.MMIO_WRITE, len, gpa, readLE(view, RUN.mmioData, len) as number);
            continue;
          }
        }
      } else if (reason === KVM_EXIT.INTERNAL_ERROR && tryFallback()) {
        continue;
      }
      if (post(POSTED.EXIT)) break;
    }
    setStatus(STATUS.FINISHED);
    return { vcpu: task.vcpu, reason: stopRequested() ? 'stopped' : 'replied-stop' };
  } finally {
    vcpu.close();
  }
}

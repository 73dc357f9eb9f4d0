/**
 * The JavaScript floor under the runner's rows: the bench's guest loop with the runner taken
 * away. One worker thread per vCPU calls `fd.run()` in a loop and answers each IN exit
 * - `none`: itself, with nothing else per exit — what any path whose answers come from a
 *   worker (the worker-side device rows) can reach at best;
 * - through a mailbox of its own that the main thread answers, the main thread waiting on a
 *   doorbell every worker rings — bench/baseline.c's hand-offs written in JavaScript, what a
 *   main-thread device answer can reach at best: `spin` (both sides spin without limit),
 *   `futex` (both sleep at once in a bare futex), `server-spins` (the main thread spins, the
 *   workers sleep at once: the runner's policy when vCPUs outnumber the spare CPUs).
 *
 * The rows show how much of a gap between a runner row and the C loop is the runner's, and
 * how much any JavaScript hand-off pays on this host. The main thread makes the VMs (one
 * with `vcpus` vCPUs, as the runner rows do); the clock runs from the moment every worker
 * is ready to the last vCPU's "done" write, after an unmeasured warm-up guest on the same
 * threads (the runner rows' threads are warm too).
 */
import { once } from 'node:events';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import type { Access } from '../src/bus/dispatch.js';
import { peekAccess } from '../src/exits.js';
import { native } from '../src/kvm/native.js';
import { futexWait, futexWake } from '../src/runner/handoff.js';
import { DONE_PORT, loopGuest } from './guest-loop.js';

/** How a bare exit is answered (see the module comment). */
export type BareMode = 'none' | 'spin' | 'futex' | 'server-spins';

/** Int32 cells of the shared block: the doorbell and the phase counters, on a line of their own. */
const CELL = {
  /** Bumped by a worker for each request. */
  BELL: 0,
  /** 1 while the main thread sleeps on BELL (a worker then wakes it). */
  MAIN_SLEEPING: 1,
  /** Workers ready for the next guest. */
  READY: 2,
  /** The guest (1: warm-up, 2: measured) the main thread released. */
  GO: 3,
  /** Workers finished with the current guest. */
  DONE: 4,
  /** A worker failed (it finishes its guests without running them). */
  FAILED: 5,
} as const;
/** Cells of vCPU v's mailbox, at MAILBOX + v * MAILBOX_STRIDE (a 64-byte line each). */
const BOX = { REQ: 0, ANS: 1, VALUE: 2, SLEEPING: 3 } as const;
const MAILBOX = 16;
const MAILBOX_STRIDE = 16;
const MAX_VCPUS = 8;
const CELLS = MAILBOX + MAILBOX_STRIDE * MAX_VCPUS;

interface BareData {
  bareHandoff: true;
  mode: BareMode;
  sab: SharedArrayBuffer;
  vcpu: number;
  /** The vCPU's fd number in the warm-up VM and in the measured one. */
  fds: [number, number];
}

/** Exits the warm-up guest runs, unmeasured, while V8 compiles both threads' loops. */
const WARMUP_EXITS = 5000;

/**
 * Run `exits` IN exits on each of `vcpus` vCPUs through a bare loop answered per `mode`;
 * returns the exits of all vCPUs and the seconds.
 */
export async function bareHandoff(mode: BareMode, exits: number, vcpus = 1): Promise<{ exits: number; seconds: number }> {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) throw new RangeError(`bareHandoff: vcpus must be an integer in [1, ${MAX_VCPUS}], got ${vcpus}`);
  const vms = [loopGuest('in', vcpus, true, Math.min(WARMUP_EXITS, exits)), loopGuest('in', vcpus, true, exits)];
  const sab = new SharedArrayBuffer(CELLS * 4);
  const c = new Int32Array(sab);
  const workers = Array.from({ length: vcpus }, (_, v) => {
    const data: BareData = { bareHandoff: true, mode, sab, vcpu: v, fds: [vms[0].vcpuFdNumber(v), vms[1].vcpuFdNumber(v)] };
    return new Worker(new URL(import.meta.url), { workerData: data });
  });
  let failure: unknown;
  for (const w of workers) w.on('error', (e) => void (failure ??= e));
  const exited = Promise.all(workers.map((w) => once(w, 'exit')));
  let ended = false;
  void exited.then(() => void (ended = true));
  try {
    let seconds = NaN;
    const answered = new Int32Array(vcpus); // each mailbox's last answered request, across guests
    for (const guest of [1, 2]) {
      // wait on the event loop until every worker is ready (a worker that fails to load only ends)
      while (Atomics.load(c, CELL.READY) < vcpus * guest && !ended) await new Promise((r) => setTimeout(r, 1));
      if (ended) break;
      const t0 = performance.now();
      Atomics.store(c, CELL.GO, guest);
      futexWake(c, CELL.GO);
      serve(c, mode, answered, vcpus * guest);
      seconds = (performance.now() - t0) / 1000;
    }
    await exited;
    if (failure !== undefined) throw failure;
    if (Atomics.load(c, CELL.FAILED) !== 0) throw new Error('bare hand-off: a worker failed');
    return { exits: exits * vcpus, seconds };
  } finally {
    for (const vm of vms) vm.destroy();
  }
}

/**
 * The main thread's side: answer every mailbox until `done` workers have finished. `seen`
 * holds each mailbox's last answered request number.
 */
function serve(c: Int32Array, mode: BareMode, seen: Int32Array, done: number): void {
  const vcpus = seen.length;
  const sleep = mode === 'futex';
  for (;;) {
    const bell = Atomics.load(c, CELL.BELL);
    for (let v = 0; v < vcpus; v++) {
      const box = MAILBOX + v * MAILBOX_STRIDE;
      const req = Atomics.load(c, box + BOX.REQ);
      if (req === seen[v]) continue;
      seen[v] = req;
      c[box + BOX.VALUE] = 0x42;
      Atomics.store(c, box + BOX.ANS, req);
      if (Atomics.load(c, box + BOX.SLEEPING) !== 0) futexWake(c, box + BOX.ANS);
    }
    if (Atomics.load(c, CELL.DONE) >= done) return;
    if (mode === 'none') futexWait(c, CELL.DONE, Atomics.load(c, CELL.DONE), 1000);
    else if (!sleep) while (Atomics.load(c, CELL.BELL) === bell && Atomics.load(c, CELL.DONE) < done);
    else {
      // SLEEPING is set before the last look at BELL: a ring after it sees the flag and wakes
      Atomics.store(c, CELL.MAIN_SLEEPING, 1);
      if (Atomics.load(c, CELL.BELL) === bell && Atomics.load(c, CELL.DONE) < done) futexWait(c, CELL.BELL, bell, 0);
      Atomics.store(c, CELL.MAIN_SLEEPING, 0);
    }
  }
}

/** A worker's side: the warm-up guest, then the measured one, each IN answered per `mode`. */
function workerLoop({ mode, sab, vcpu, fds }: BareData): void {
  const c = new Int32Array(sab);
  let failed = false;
  for (const [i, fd] of fds.entries()) {
    const guest = i + 1;
    Atomics.add(c, CELL.READY, 1);
    while (Atomics.load(c, CELL.GO) < guest) futexWait(c, CELL.GO, Atomics.load(c, CELL.GO), 0);
    try {
      if (!failed) runGuest(c, mode, vcpu, fd);
    } catch (e) {
      failed = true;
      Atomics.store(c, CELL.FAILED, 1);
      console.error(e);
    } finally {
      Atomics.add(c, CELL.DONE, 1);
      Atomics.add(c, CELL.BELL, 1);
      futexWake(c, CELL.BELL);
      futexWake(c, CELL.DONE);
    }
  }
}

/** One guest's loop on vCPU `fd`, until its "done" write. */
function runGuest(c: Int32Array, mode: BareMode, vcpu: number, fd: number): void {
  const run = new (native().VcpuFd)(fd);
  try {
    const view = new DataView(run.runBuffer());
    const a: Access = { addr: 0, size: 1, count: 1, write: false, data: view, offset: 0 };
    const box = MAILBOX + vcpu * MAILBOX_STRIDE;
    const spin = mode === 'spin';
    let n = c[box + BOX.REQ];
    for (;;) {
      run.run();
      if (peekAccess(view, view.byteLength, a) !== 'pio') throw new Error(`bare hand-off: unexpected exit reason ${view.getUint32(8, true)}`);
      if (a.addr === DONE_PORT) return;
      if (mode === 'none') {
        view.setUint8(a.offset, 0x42);
        continue;
      }
      Atomics.store(c, box + BOX.REQ, ++n);
      Atomics.add(c, CELL.BELL, 1);
      if (Atomics.load(c, CELL.MAIN_SLEEPING) !== 0) futexWake(c, CELL.BELL);
      if (spin) while (Atomics.load(c, box + BOX.ANS) !== n);
      else if (Atomics.load(c, box + BOX.ANS) !== n) {
        // SLEEPING is set before the last look at ANS: an answer after it sees the flag and wakes
        Atomics.store(c, box + BOX.SLEEPING, 1);
        while (Atomics.load(c, box + BOX.ANS) !== n) futexWait(c, box + BOX.ANS, n - 1, 0);
        Atomics.store(c, box + BOX.SLEEPING, 0);
      }
      view.setUint8(a.offset, c[box + BOX.VALUE]);
    }
  } finally {
    run.close();
  }
}

if (!isMainThread && (workerData as Partial<BareData> | undefined)?.bareHandoff === true) workerLoop(workerData as BareData);

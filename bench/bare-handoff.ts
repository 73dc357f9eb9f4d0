/**
 * The JavaScript floor under the runner's rows: the bench's guest loop with the runner taken
 * away. A worker thread calls `fd.run()` in a loop and answers each IN exit
 * - `none`: itself, with nothing else per exit — what any path whose answers come from a
 *   worker (the worker-side device rows) can reach at best;
 * - `spin` / `futex`: through one shared cell that the main thread answers, both sides either
 *   spinning without limit or sleeping at once in a bare futex — bench/baseline.c's two
 *   hand-offs written in JavaScript, what a main-thread device answer can reach at best.
 *
 * The rows show how much of a gap between a runner row and the C loop is the runner's, and
 * how much any JavaScript hand-off pays on this host. The clock runs from the worker's first
 * KVM_RUN to the guest's "done" write, as the runner rows' does, after an unmeasured warm-up
 * guest on the same thread (the runner rows' threads are warm too).
 */
import { once } from 'node:events';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import type { Access } from '../src/bus/dispatch.js';
import { peekAccess } from '../src/exits.js';
import { KVM_EXIT } from '../src/kvm/constants.js';
import { futexWait, futexWake } from '../src/runner/handoff.js';
import { DONE_PORT, loopGuest } from './guest-loop.js';

/** How a bare exit is answered (see the module comment). */
export type BareMode = 'none' | 'spin' | 'futex';

/** The shared cells (Int32Array indices). */
const CELL = {
  /** The worker's request number (1, 2, …); -1 once it has finished, in success or failure. */
  REQ: 0,
  /** The main thread's answered request number. */
  ANS: 1,
  /** The answer to the request. */
  VALUE: 2,
  /** 1 once the worker's loop has started (its modules loaded). */
  READY: 3,
} as const;
const CELLS = 4;
/** Float64Array index (after the Int32 cells) of the measured seconds. */
const SECONDS = CELLS / 2;

interface BareData {
  bareHandoff: true;
  mode: BareMode;
  exits: number;
  sab: SharedArrayBuffer;
}

/** Run `exits` IN exits through a bare loop answered by `mode`; returns the count and the seconds. */
export async function bareHandoff(mode: BareMode, exits: number): Promise<{ exits: number; seconds: number }> {
  const sab = new SharedArrayBuffer(CELLS * 4 + 8);
  const c = new Int32Array(sab, 0, CELLS);
  const data: BareData = { bareHandoff: true, mode, exits, sab };
  const w = new Worker(new URL(import.meta.url), { workerData: data });
  let failure: unknown;
  w.on('error', (e) => void (failure = e));
  let ended = false;
  const exited = once(w, 'exit').then(() => void (ended = true));
  // wait on the event loop until the worker runs (a worker that fails to load only ends),
  // then serve synchronously from the start: the warm-up's exits need answers too
  while (Atomics.load(c, CELL.READY) === 0 && !ended) await new Promise((r) => setTimeout(r, 1));
  if (mode !== 'none' && !ended) serve(c, mode);
  await exited;
  if (failure !== undefined) throw failure;
  return { exits, seconds: new Float64Array(sab)[SECONDS] };
}

/** The main thread's side: answer every request until the worker says it has finished. */
function serve(c: Int32Array, mode: 'spin' | 'futex'): void {
  let seen = 0;
  for (;;) {
    let req: number;
    if (mode === 'spin') while ((req = Atomics.load(c, CELL.REQ)) === seen);
    else while ((req = Atomics.load(c, CELL.REQ)) === seen) futexWait(c, CELL.REQ, seen, 0);
    if (req === -1) return;
    seen = req;
    c[CELL.VALUE] = 0x42;
    Atomics.store(c, CELL.ANS, req);
    if (mode === 'futex') futexWake(c, CELL.ANS);
  }
}

/** Exits the worker runs unmeasured first, on a VM of their own, while V8 compiles the loop. */
const WARMUP_EXITS = 5000;

/** The worker's side: a warm-up guest, then the measured one, each IN answered per `mode`. */
function workerLoop({ mode, exits, sab }: BareData): void {
  const c = new Int32Array(sab, 0, CELLS);
  const req = { n: 0 };
  Atomics.store(c, CELL.READY, 1);
  try {
    runGuest(c, mode, Math.min(WARMUP_EXITS, exits), req);
    new Float64Array(sab)[SECONDS] = runGuest(c, mode, exits, req);
  } finally {
    Atomics.store(c, CELL.REQ, -1);
    futexWake(c, CELL.REQ);
  }
}

/** One guest's loop; returns the seconds from its first KVM_RUN to its "done" write. */
function runGuest(c: Int32Array, mode: BareMode, exits: number, req: { n: number }): number {
  const vm = loopGuest('in', 1, false, exits); // no in-kernel irqchip: the final HLT exits, as in the C loop
  try {
    const fd = vm.vcpuFd(0);
    const view = new DataView(fd.runBuffer());
    const a: Access = { addr: 0, size: 1, count: 1, write: false, data: view, offset: 0 };
    let seconds = NaN;
    const t0 = performance.now();
    for (;;) {
      const reason = fd.run();
      if (reason === KVM_EXIT.HLT) return seconds;
      if (peekAccess(view, view.byteLength, a) !== 'pio') throw new Error(`bare hand-off: unexpected exit reason ${reason}`);
      if (a.addr === DONE_PORT) {
        seconds = (performance.now() - t0) / 1000;
        continue;
      }
      if (mode === 'none') {
        view.setUint8(a.offset, 0x42);
        continue;
      }
      const n = ++req.n;
      Atomics.store(c, CELL.REQ, n);
      if (mode === 'futex') {
        futexWake(c, CELL.REQ);
        while (Atomics.load(c, CELL.ANS) !== n) futexWait(c, CELL.ANS, n - 1, 0);
      } else while (Atomics.load(c, CELL.ANS) !== n);
      view.setUint8(a.offset, c[CELL.VALUE]);
    }
  } finally {
    vm.destroy();
  }
}

if (!isMainThread && (workerData as Partial<BareData> | undefined)?.bareHandoff === true) workerLoop(workerData as BareData);

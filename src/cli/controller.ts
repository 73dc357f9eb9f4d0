/**
 * What the control socket of `vmmapi run --api-socket` does to the machine: pause, resume,
 * snapshot, stop, info (the protocol is src/control/protocol.ts). Requests that change the
 * machine are carried out one at a time, in arrival order, whichever client sent them; info
 * answers at once.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ControlOutcome } from '../control/server.js';
import type { ControlRequest } from '../control/protocol.js';
import { packageVersion } from '../package-version.js';
import type { Pc } from '../platform/pc.js';

/** What the controller needs to know besides the machine. */
export interface ControllerOptions {
  /** The meta a snapshot stores (the CLI's device specs; src/cli/meta.ts). */
  meta: () => Record<string, unknown>;
  /** The devices, for info (JSON-safe objects, e.g. `{ type: 'disk', path, readonly }`). */
  devices: () => Record<string, unknown>[];
  /** End the run (as Pc.stop; the run then exits 0). */
  stop: () => void;
  /** The snapshot this machine was restored from, if any (for info). */
  restoredFrom?: string;
  /** The control socket's path (for info). */
  apiSocket?: string;
}

/** Bytes the files of `dir` occupy on disk (allocated blocks: a sparse memory.bin counts what it holds). */
export function diskUsage(dir: string): number {
  let bytes = 0;
  for (const f of readdirSync(dir)) {
    const st = statSync(join(dir, f));
    if (st.isFile()) bytes += st.blocks * 512;
  }
  return bytes;
}

/** The control socket's requests, carried out on a running {@link Pc}. */
export class RunController {
  readonly #pc: Pc;
  readonly #opts: ControllerOptions;
  #queue: Promise<unknown> = Promise.resolve();
  #startedAt: number | undefined;

  /** A controller for `pc`, which {@link started} says is running. */
  constructor(pc: Pc, opts: ControllerOptions) {
    this.#pc = pc;
    this.#opts = opts;
  }

  /** The machine's run has begun (uptime counts from here; requests before it are refused). */
  started(): void {
    this.#startedAt = performance.now();
  }

  /** 'starting', 'running', 'paused' or 'ended'. */
  get state(): string {
    if (this.#startedAt === undefined) return 'starting';
    if (this.#pc.result !== undefined) return 'ended';
    return this.#pc.paused ? 'paused' : 'running';
  }

  /** Carry out `req` (the ControlServer's handler). Rejects with a one-line reason on failure. */
  readonly handle = (req: ControlRequest): Promise<ControlOutcome> => {
    if (req.cmd === 'info') return Promise.resolve({ reply: this.#info() });
    const run = this.#queue.then(() => this.#change(req));
    this.#queue = run.catch(() => {});
    return run;
  };

  async #change(req: Exclude<ControlRequest, { cmd: 'info' }>): Promise<ControlOutcome> {
    this.#mustRun();
    switch (req.cmd) {
      case 'pause':
        await this.#pc.pause();
        return { reply: { ok: true, state: this.state } };
      case 'resume':
        if (this.#pc.paused) this.#pc.resume();
        return { reply: { ok: true, state: this.state } };
      case 'snapshot':
        return { reply: await this.#snapshot(req.dir, req.leavePaused ?? false) };
      case 'stop':
        // the reply first: the process exits once the run has ended
        return { reply: { ok: true, state: 'stopping' }, after: () => this.#opts.stop() };
    }
  }

  #mustRun(): void {
    const s = this.state;
    if (s === 'starting') throw new Error('the guest has not started yet');
    if (s === 'ended') throw new Error('the guest has ended');
  }

  /** Pause if running, write the snapshot, resume if it was running (unless `leavePaused`). */
  async #snapshot(dir: string, leavePaused: boolean): Promise<{ ok: true } & Record<string, unknown>> {
    const abs = resolve(dir);
    const t0 = performance.now();
    const wasRunning = !this.#pc.paused;
    if (wasRunning) await this.#pc.pause();
    let info;
    try {
      info = await this.#pc.snapshot(abs, { meta: this.#opts.meta() });
    } finally {
      if (wasRunning && !leavePaused && this.#pc.result === undefined) this.#pc.resume();
    }
    const stateBytes = statSync(join(abs, 'snapshot.json')).size;
    return {
      ok: true,
      dir: abs,
      diskBytes: diskUsage(abs),
      memoryBytes: info.memoryBytes,
      writtenBytes: info.writtenBytes + stateBytes,
      ms: Math.round(info.ms * 10) / 10,
      pausedMs: wasRunning && !leavePaused ? Math.round((performance.now() - t0) * 10) / 10 : undefined,
      state: this.state,
    };
  }

  #info(): { ok: true } & Record<string, unknown> {
    const up = this.#startedAt === undefined ? 0 : performance.now() - this.#startedAt;
    return {
      ok: true,
      state: this.state,
      vcpus: this.#pc.cpus,
      memory: this.#pc.memoryBytes,
      uptimeMs: Math.round(up),
      devices: this.#opts.devices(),
      version: packageVersion(),
      pid: process.pid,
      restoredFrom: this.#opts.restoredFrom === undefined ? undefined : resolve(this.#opts.restoredFrom),
      apiSocket: this.#opts.apiSocket === undefined ? undefined : resolve(this.#opts.apiSocket),
    };
  }
}

/**
 * The control socket's requests on a machine (src/cli/controller.ts), with a stand-in for the
 * Pc: pause/resume are idempotent, a snapshot of a running guest pauses it and resumes it
 * after (unless leavePaused) even when writing fails, requests that change the machine run
 * one at a time, stop replies before it stops, info answers in every state.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RunController } from '../../../src/cli/controller.js';
import type { Pc } from '../../../src/platform/pc.js';
import type { ControlRequest } from '../../../src/control/protocol.js';

const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-controller-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** What the stand-in machine was asked to do, in order. */
type Log = string[];

function fakePc(log: Log, opts: { failSnapshot?: boolean } = {}) {
  const pc = {
    paused: false,
    result: undefined as unknown,
    cpus: 2,
    memoryBytes: 64 * 2 ** 20,
    async pause() {
      log.push('pause');
      await new Promise((r) => setTimeout(r, 5));
      pc.paused = true;
    },
    resume() {
      if (!pc.paused) throw new Error('resume(): the machine is not paused');
      log.push('resume');
      pc.paused = false;
    },
    async snapshot(dir: string, o: { meta: Record<string, unknown> }) {
      if (!pc.paused) throw new Error('snapshot(): pause() the machine first');
      log.push(`snapshot ${JSON.stringify(o.meta)}`);
      await new Promise((r) => setTimeout(r, 5));
      if (opts.failSnapshot) throw new Error(`EACCES: permission denied, mkdir '${dir}'`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'snapshot.json'), 'x'.repeat(1000));
      writeFileSync(join(dir, 'memory.bin'), new Uint8Array(8192).fill(1));
      return { dir, format: 'vmmapi-snapshot', memoryBytes: 8192, writtenBytes: 8192, ms: 12.34 };
    },
  };
  return pc;
}

function controller(log: Log, opts: { failSnapshot?: boolean } = {}) {
  const pc = fakePc(log, opts);
  const c = new RunController(pc as unknown as Pc, {
    meta: () => ({ vmmapiRun: { marker: 1 } }),
    devices: () => [{ type: 'rng' }],
    stop: () => log.push('stop'),
    apiSocket: '/run/vm.sock',
  });
  const ask = async (req: ControlRequest) => (await c.handle(req)).reply;
  return { pc, c, ask };
}

describe('RunController', () => {
  it('before the run starts and after it ends, only info answers', async () => {
    const log: Log = [];
    const { c, pc, ask } = controller(log);
    await expect(ask({ cmd: 'pause' })).rejects.toThrow('the guest has not started yet');
    expect(await ask({ cmd: 'info' })).toMatchObject({ ok: true, state: 'starting' });
    c.started();
    pc.result = { reason: 'halted' };
    await expect(ask({ cmd: 'snapshot', dir: join(tmp, 'x') })).rejects.toThrow('the guest has ended');
    expect(await ask({ cmd: 'info' })).toMatchObject({ ok: true, state: 'ended' });
    expect(log).toEqual([]);
  });

  it('pause and resume, each idempotent; info says the state, vCPUs, memory, devices, version', async () => {
    const log: Log = [];
    const { c, ask } = controller(log);
    c.started();
    expect(await ask({ cmd: 'resume' })).toEqual({ ok: true, state: 'running' });
    expect(await ask({ cmd: 'pause' })).toEqual({ ok: true, state: 'paused' });
    const info = await ask({ cmd: 'info' });
    expect(info).toMatchObject({ ok: true, state: 'paused', vcpus: 2, memory: 64 * 2 ** 20, devices: [{ type: 'rng' }], pid: process.pid, apiSocket: '/run/vm.sock' });
    expect(typeof info.version).toBe('string');
    expect(typeof info.uptimeMs).toBe('number');
    expect(await ask({ cmd: 'resume' })).toEqual({ ok: true, state: 'running' });
    expect(log).toEqual(['pause', 'resume']);
  });

  it('a snapshot of a running guest pauses it, writes the meta, resumes it; the reply has the size on disk, bytes written, ms', async () => {
    const log: Log = [];
    const { c, ask } = controller(log);
    c.started();
    const dir = join(tmp, 'snap1');
    const r = await ask({ cmd: 'snapshot', dir });
    expect(log).toEqual(['pause', 'snapshot {"vmmapiRun":{"marker":1}}', 'resume']);
    expect(r).toMatchObject({ ok: true, dir, memoryBytes: 8192, writtenBytes: 8192 + 1000, ms: 12.3, state: 'running' });
    expect(r.diskBytes).toBeGreaterThanOrEqual(8192);
    expect(typeof r.pausedMs).toBe('number');
  });

  it('leavePaused keeps it paused; a paused guest stays paused; a failed snapshot still resumes what it paused', async () => {
    const log: Log = [];
    const { c, pc, ask } = controller(log);
    c.started();
    expect(await ask({ cmd: 'snapshot', dir: join(tmp, 'snap2'), leavePaused: true })).toMatchObject({ ok: true, state: 'paused' });
    expect(pc.paused).toBe(true);
    expect(await ask({ cmd: 'snapshot', dir: join(tmp, 'snap3') })).toMatchObject({ ok: true, state: 'paused' });
    expect(log).toEqual(['pause', expect.stringMatching(/^snapshot/), expect.stringMatching(/^snapshot/)]);

    const flog: Log = [];
    const f = controller(flog, { failSnapshot: true });
    f.c.started();
    await expect(f.ask({ cmd: 'snapshot', dir: join(tmp, 'nope') })).rejects.toThrow(/EACCES/);
    expect(flog).toEqual(['pause', expect.stringMatching(/^snapshot/), 'resume']);
    expect(f.pc.paused).toBe(false);
  });

  it('requests from many clients that change the machine run one at a time, in order', async () => {
    const log: Log = [];
    const { c, ask } = controller(log);
    c.started();
    const replies = await Promise.all([
      ask({ cmd: 'snapshot', dir: join(tmp, 'a') }),
      ask({ cmd: 'pause' }),
      ask({ cmd: 'snapshot', dir: join(tmp, 'b') }),
      ask({ cmd: 'resume' }),
    ]);
    expect(replies.map((r) => r.state)).toEqual(['running', 'paused', 'paused', 'running']);
    expect(log).toEqual(['pause', expect.stringMatching(/^snapshot/), 'resume', 'pause', expect.stringMatching(/^snapshot/), 'resume']);
  });

  it('stop replies first and stops after the reply was written', async () => {
    const log: Log = [];
    const { c } = controller(log);
    c.started();
    const o = await c.handle({ cmd: 'stop' });
    expect(o.reply).toEqual({ ok: true, state: 'stopping' });
    expect(log).toEqual([]);
    o.after?.();
    expect(log).toEqual(['stop']);
  });
});

/**
 * Every way out of a process running vCPUs ends it, with the right exit code: no hang, no
 * zombie thread (each case runs in a child process; margins are generous on purpose).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const child = fileURLToPath(new URL('./runner-child.mjs', import.meta.url));

interface Outcome { code: number | null; signal: NodeJS.Signals | null; out: string; err: string }

function run(mode: string, signal?: NodeJS.Signals): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const killer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`child '${mode}' did not end within 30 s (stdout: ${out}; stderr: ${err})`));
    }, 30_000);
    p.stdout.on('data', (d: Buffer) => {
      out += d;
      if (signal && out.includes('READY')) p.kill(signal);
    });
    p.stderr.on('data', (d: Buffer) => (err += d));
    p.on('exit', (code, sig) => {
      clearTimeout(killer);
      resolve({ code, signal: sig, out, err });
    });
  });
}

describe('shutdown paths (child processes)', () => {
  it('process.exit() while vCPUs spin exits with its code', async () => {
    const r = await run('exit');
    expect(r.out).toContain('READY');
    expect(r.code).toBe(3);
  });
  it('an uncaught exception exits with code 1', async () => {
    const r = await run('uncaught');
    expect(r.err).toContain('uncaught on purpose');
    expect(r.code).toBe(1);
  });
  it('SIGINT ends the process', async () => {
    const r = await run('sigint', 'SIGINT');
    expect(r.signal).toBe('SIGINT');
  });
  it('SIGTERM ends the process', async () => {
    const r = await run('sigterm', 'SIGTERM');
    expect(r.signal).toBe('SIGTERM');
  });
  it('stop() lets start() resolve and the process end by itself', async () => {
    const r = await run('stop');
    expect(r.out).toContain('RESULT stopped');
    expect(r.code).toBe(0);
  });
  it('a throwing handler rejects start(): unhandled, the process exits 1', async () => {
    const r = await run('handler-throws');
    expect(r.err).toContain('handler failed on purpose');
    expect(r.code).toBe(1);
  });
  it('a worker that dies (device module missing) rejects start(): exit 1', async () => {
    const r = await run('worker-dies');
    expect(r.err).toMatch(/missing-device|Cannot find/);
    expect(r.code).toBe(1);
  });
});

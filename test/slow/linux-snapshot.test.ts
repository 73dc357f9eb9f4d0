/**
 * Issue 14's end-to-end test: Debian's 6.1 kernel on 2 vCPUs booted by `vmmapi run --kernel …
 * --api-socket S` to the busybox shell of the shell initramfs (scripts/fetch-linux.mjs:
 * /init prints VMMAPI-SHELL-READY and execs `sh` on ttyS0); a line typed on its serial console
 * is answered; `vmmapi ctl S snapshot DIR` writes a snapshot (pausing and resuming the guest),
 * `vmmapi ctl S stop` ends the first process. Then:
 * - `vmmapi run --restore DIR` in a new process: its shell answers a command typed on stdin
 *   (the time from process start to that answer is printed: a benchmark, not asserted);
 * - two `vmmapi run --restore DIR` at the same time each answer their own command;
 * - the snapshot's files are byte for byte what they were before any restore;
 * - a copy with a corrupted state file is refused (exit 2) with a one-line message.
 *
 * Slow (a boot takes minutes on PVM hosts): only with VMMAPI_SLOW=1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, KERNEL, LIMIT_MS, hostTscKhz, linuxCommandLine, requireFetched } from './linux-guest.js';

const INITRD_SHELL = join(KERNEL, '..', 'initramfs-shell.cpio');

/** A `vmmapi` child process whose stdout is collected, with a wait for text to appear in it. */
class Vmmapi {
  out = '';
  err = '';
  readonly child: ChildProcess;
  readonly started = performance.now();
  readonly exited: Promise<number | null>;

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.out += d.toString('latin1')));
    this.child.stderr!.on('data', (d: Buffer) => (this.err += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  /** Resolves with the ms since spawn when `pattern` shows in stdout after `from`; throws after `ms`. */
  async waitFor(pattern: RegExp, ms: number, from = 0): Promise<number> {
    const end = Date.now() + ms;
    while (!pattern.test(this.out.slice(from))) {
      if (Date.now() > end) throw new Error(`no ${pattern} within ${ms / 1000} s\nstderr: ${this.err}\nlast output: ${this.out.slice(-1500)}`);
      if (this.child.exitCode !== null) throw new Error(`exited ${this.child.exitCode} before ${pattern}\nstderr: ${this.err}\nlast output: ${this.out.slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return performance.now() - this.started;
  }

  type(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

async function ctl(socket: string, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const p = new Vmmapi(['ctl', socket, ...args]);
  const code = await p.exited;
  return { code, out: p.out, err: p.err };
}

function digests(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).sort().map((f) => [f, createHash('sha256').update(readFileSync(join(dir, f))).digest('hex')]));
}

describe.skipIf(!process.env.VMMAPI_SLOW)('Linux snapshot, restore and clones through the control socket (VMMAPI_SLOW=1)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-linux-snap-'));
  const children: Vmmapi[] = [];
  afterAll(() => {
    for (const c of children) c.kill();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('2 vCPUs: boot to a shell, snapshot, stop; restore answers; two clones at once; files unchanged; a corrupt copy is refused', async () => {
    requireFetched(KERNEL, INITRD_SHELL);
    const socket = join(tmp, 'api.sock');
    const snap = join(tmp, 'snap');
    const first = new Vmmapi([
      'run', '--kernel', KERNEL, '--decompress-on-host', '--initrd', INITRD_SHELL, '--cpus', '2', '--memory', '512M',
      '--append', linuxCommandLine(hostTscKhz()), '--api-socket', socket,
    ]);
    children.push(first);
    const bootMs = await first.waitFor(/VMMAPI-SHELL-READY/, LIMIT_MS);
    let mark = first.out.length;
    first.type('echo first-$((6*7)) $(busybox nproc)');
    await first.waitFor(/first-42 2/, 10 * 60_000, mark);

    const snapped = await ctl(socket, 'snapshot', snap);
    expect(snapped.code, `${snapped.out}${snapped.err}`).toBe(0);
    // the first machine runs on after its snapshot
    mark = first.out.length;
    first.type('echo still-$((6*7))');
    await first.waitFor(/still-42/, 10 * 60_000, mark);
    const stopped = await ctl(socket, 'stop');
    expect(stopped.code, `${stopped.out}${stopped.err}`).toBe(0);
    await first.exited;
    const before = digests(snap);

    const restored = new Vmmapi(['run', '--restore', snap]);
    children.push(restored);
    restored.type('echo restored-$((6*7))');
    const answerMs = await restored.waitFor(/restored-42/, 5 * 60_000);
    restored.kill();
    await restored.exited;

    const clones = ['a', 'b'].map((name) => {
      const c = new Vmmapi(['run', '--restore', snap]);
      children.push(c);
      c.type(`echo clone-${name}-$((1+1))`);
      return { name, c };
    });
    for (const { name, c } of clones) {
      await c.waitFor(new RegExp(`clone-${name}-2`), 5 * 60_000);
      expect(c.out).not.toMatch(new RegExp(`clone-${name === 'a' ? 'b' : 'a'}-2`));
    }
    for (const { c } of clones) c.kill();
    await Promise.all(clones.map(({ c }) => c.exited));
    expect(digests(snap)).toEqual(before);

    const corrupt = join(tmp, 'corrupt');
    mkdirSync(corrupt);
    for (const f of readdirSync(snap)) copyFileSync(join(snap, f), join(corrupt, f));
    const state = readFileSync(join(corrupt, 'snapshot.json'));
    state[state.length - 20] ^= 0x01;
    writeFileSync(join(corrupt, 'snapshot.json'), state);
    const refused = new Vmmapi(['run', '--restore', corrupt]);
    expect(await refused.exited).toBe(2);
    expect(refused.err).toMatch(/^vmmapi: .*snapshot\.json: corrupt: the state does not match its SHA-256 checksum\n$/);

    console.log(`boot to the shell ${(bootMs / 1000).toFixed(0)} s; vmmapi run --restore: process start to the shell's answer ${answerMs.toFixed(0)} ms`);
  }, LIMIT_MS + 20 * 60_000);
});

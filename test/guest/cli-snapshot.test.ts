/**
 * Snapshot, restore and clone from the command line, real KVM: `vmmapi run --api-socket`
 * with the snap-compute fixture is paused, inspected, snapshotted and resumed by `vmmapi ctl`
 * and ends as an uninterrupted run does; `vmmapi run --restore DIR` prints the rest of the
 * same output and exits as the original did, also twice at once (one of them with its own
 * control socket); a corrupt, truncated or mismatched snapshot and options the snapshot
 * fixes are refused with exit 2 and one line; ctl against a missing socket exits 1; the
 * control socket survives garbage and stops a paused run. Needs the build (dist/) and the
 * guest fixtures.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixturePath } from '../../src/fixtures.js';
import { packageRoot } from '../../src/kvm/native.js';
import { readStateFile } from '../../src/snapshot/format.js';
import { runProcess, type ProcessOutcome } from '../helpers.js';

const CLI = join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
const GUEST = ['--multiboot', fixturePath('snap-compute.elf'), '--append', 'rounds=60'];
const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-cli-snap-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

/** A `vmmapi` child whose stdout can be watched while it runs. */
interface Vmm {
  out: { stdout: string; stderr: string; firstOutputMs?: number };
  /** Resolves once stdout contains `text` (rejects if the process ends first). */
  waitFor(text: string): Promise<void>;
  done: Promise<ProcessOutcome>;
}

function vmmapi(args: string[], limitMs = 120_000): Vmm {
  const t0 = performance.now();
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const out: Vmm['out'] = { stdout: '', stderr: '' };
  const waiters: { text: string; resolve: () => void }[] = [];
  const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  child.stdout!.on('data', (d: Buffer) => {
    out.firstOutputMs ??= performance.now() - t0;
    out.stdout += d.toString('latin1');
    for (const w of waiters.filter((x) => out.stdout.includes(x.text))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  child.stderr!.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const done = new Promise<ProcessOutcome>((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout: out.stdout, stderr: out.stderr });
    }),
  );
  const waitFor = (text: string): Promise<void> =>
    out.stdout.includes(text)
      ? Promise.resolve()
      : Promise.race([
          new Promise<void>((resolve) => waiters.push({ text, resolve })),
          done.then((o) => {
            throw new Error(`the process ended (${o.code}) without "${text}" on stdout; stderr: ${o.stderr}`);
          }),
        ]);
  return { out, waitFor, done };
}

/** `vmmapi ctl ARGS` to its end. */
const ctl = (...args: string[]): Promise<ProcessOutcome> => runProcess(process.execPath, [CLI, 'ctl', ...args], { limitMs: 60_000 });

/** Exit 2 with one `vmmapi: …` line matching `re`, no stack trace. */
function expectUsageLine(o: ProcessOutcome, re: RegExp): void {
  expect(o.code).toBe(2);
  const lines = o.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^vmmapi: /);
  expect(lines[0]).toMatch(re);
}

const rounds = (text: string): string[] => text.split('\n').filter((l) => /^round \d+ digest 0x[0-9a-f]{8}$/.test(l));
const resultLine = (text: string): string | undefined => /^snap-compute: result 0x[0-9a-f]{8}$/m.exec(text)?.[0];

/** A copy of the snapshot with its own snapshot.json (`edit`ed) and memory.bin linked to the original's. */
function copySnapshot(from: string, name: string, edit: (state: Buffer) => Buffer): string {
  const d = join(tmp, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'snapshot.json'), edit(readFileSync(join(from, 'snapshot.json'))));
  symlinkSync(join(from, 'memory.bin'), join(d, 'memory.bin'));
  return d;
}

let reference: ProcessOutcome; // an uninterrupted run
let snapDir: string;
let atSnapshot: string; // the first process's stdout up to its snapshot

describe('vmmapi run --api-socket, vmmapi ctl, vmmapi run --restore', () => {
  it('a run paused, inspected, snapshotted and resumed through the control socket ends as an uninterrupted run', async () => {
    const uninterrupted = runProcess(process.execPath, [CLI, 'run', ...GUEST], { limitMs: 120_000 });
    const api = join(tmp, 'api.sock');
    snapDir = join(tmp, 'snap');
    const vmm = vmmapi(['run', ...GUEST, '--api-socket', api]);
    await vmm.waitFor('round 10 ');

    const paused = await ctl(api, 'pause');
    expect(paused).toEqual({ code: 0, signal: null, stdout: 'paused\n', stderr: '' });
    const atPause = vmm.out.stdout;
    const info = await ctl(api, 'info');
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(/^state: paused\nvcpus: 1\nmemory: 128 MiB\nuptime: [\d.]+ s\nversion: \d+\.\d+\.\d+\npid: \d+\napi socket: .*\ndevices: none\n$/);
    const snap = await ctl(api, 'snapshot', snapDir);
    expect(snap.code).toBe(0);
    expect(snap.stdout).toMatch(new RegExp(`^snapshot written to ${snapDir}: [\\d.]+ (KiB|MiB) on disk, \\d+ ms\\n$`));
    // nothing ran while paused
    atSnapshot = vmm.out.stdout;
    expect(atSnapshot).toBe(atPause);
    expect(atSnapshot).toContain('round 10 ');
    expect(atSnapshot).not.toContain('snap-compute: result');
    expect((await ctl(api, 'info')).stdout).toMatch(/^state: paused$/m); // the snapshot left it paused, as it found it
    expect(await ctl(api, 'resume')).toEqual({ code: 0, signal: null, stdout: 'running\n', stderr: '' });

    const first = await vmm.done;
    reference = await uninterrupted;
    expect(reference.code).toBe(1);
    expect(reference.stdout).toMatch(/snap-compute: PASS\n$/);
    expect(rounds(reference.stdout)).toHaveLength(60);
    expect(first).toEqual({ code: 1, signal: null, stdout: reference.stdout, stderr: '' });
    expect(existsSync(api)).toBe(false); // removed at exit

    // what the CLI stored to restore it
    expect(readStateFile(snapDir).meta).toEqual({
      vmmapiRun: { version: 1, devices: { disks: [], rng: false, console: { kind: 'off' }, nets: [] }, serial: 'stdio', debugcon: null, boot: { kind: 'multiboot', file: fixturePath('snap-compute.elf') } },
    });
    console.log(`ctl snapshot: ${snap.stdout.trim()}`);
  }, 180_000);

  it('vmmapi run --restore prints the rest of the same output and exits as the original did', async () => {
    const t0 = performance.now();
    const vmm = vmmapi(['run', '--restore', snapDir]);
    const restored = await vmm.done;
    const totalMs = performance.now() - t0;
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(reference.code);
    expect(atSnapshot + restored.stdout).toBe(reference.stdout);
    expect(rounds(atSnapshot + restored.stdout)).toEqual(rounds(reference.stdout));
    expect(resultLine(restored.stdout)).toBe(resultLine(reference.stdout));
    console.log(`vmmapi run --restore: first output after ${vmm.out.firstOutputMs?.toFixed(0)} ms, done after ${totalMs.toFixed(0)} ms`);
  }, 180_000);

  it('two restores at once (one with its own control socket) give the same; info says where it came from', async () => {
    const api = join(tmp, 'clone.sock');
    const a = vmmapi(['run', '--restore', snapDir, '--api-socket', api]);
    const b = vmmapi(['run', '--restore', snapDir]);
    await a.waitFor('round');
    const info = await ctl(api, 'info', '--json');
    const reply = JSON.parse(info.stdout) as Record<string, unknown>;
    expect(reply).toMatchObject({ ok: true, vcpus: 1, memory: 128 * 2 ** 20, restoredFrom: snapDir, devices: [] });
    expect(['running', 'ended']).toContain(reply.state);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    for (const r of [ra, rb]) {
      expect(r.stderr).toBe('');
      expect(r.code).toBe(reference.code);
      expect(rounds(atSnapshot + r.stdout)).toEqual(rounds(reference.stdout));
      expect(resultLine(r.stdout)).toBe(resultLine(reference.stdout));
      expect(atSnapshot + r.stdout).toBe(reference.stdout);
    }
    expect(existsSync(api)).toBe(false);
  }, 180_000);

  it('a snapshot with devices: restored with the stored ones, and as a clone with its own disk, MAC, CID and console', async () => {
    // a peer for --net socket= (QEMU's stream protocol: it only has to accept)
    const peers: Socket[] = [];
    const netServers = await Promise.all(
      ['n1.sock', 'n2.sock'].map(async (name) => {
        const srv = createServer((c) => peers.push(c.resume()));
        await new Promise<void>((r) => srv.listen(join(tmp, name), () => r()));
        return srv;
      }),
    );
    for (const img of ['a.img', 'b.img']) writeFileSync(join(tmp, img), new Uint8Array(1 << 20));
    const api = join(tmp, 'dev.sock');
    const dir = join(tmp, 'snap-dev');
    const devices = ['--disk', `path=${join(tmp, 'a.img')}`, '--net', `socket=${join(tmp, 'n1.sock')}`, '--vsock', `cid=5,socket=${join(tmp, 'v5.sock')}`, '--rng', '--console', `file=${join(tmp, 'hvc-a.log')}`];
    const vmm = vmmapi(['run', ...GUEST, ...devices, '--api-socket', api]);
    await vmm.waitFor('round 5 ');
    const snap = await ctl(api, 'snapshot', dir, '--leave-paused');
    expect(snap.code).toBe(0);
    const at = vmm.out.stdout;
    expect(await ctl(api, 'stop')).toMatchObject({ code: 0 });
    expect((await vmm.done).code).toBe(0);
    expect((readStateFile(dir).meta.vmmapiRun as { devices: unknown }).devices).toEqual({
      disks: [{ path: join(tmp, 'a.img'), readonly: false }],
      rng: true,
      console: { kind: 'file', path: join(tmp, 'hvc-a.log') },
      nets: [{ kind: 'socket', path: join(tmp, 'n1.sock') }],
      vsock: { cid: 5, socket: join(tmp, 'v5.sock') },
    });

    const cloneApi = join(tmp, 'clone-dev.sock');
    const same = vmmapi(['run', '--restore', dir]);
    const clone = vmmapi(['run', '--restore', dir, '--api-socket', cloneApi, '--disk', `path=${join(tmp, 'b.img')}`, '--net', `socket=${join(tmp, 'n2.sock')},mac=52:54:00:00:00:99`,
      '--vsock', `cid=6,socket=${join(tmp, 'v6.sock')}`, '--console', `file=${join(tmp, 'hvc-b.log')}`]);
    await clone.waitFor('round');
    const info = JSON.parse((await ctl(cloneApi, 'info', '--json')).stdout) as { devices: unknown };
    expect(info.devices).toEqual([
      { type: 'disk', path: join(tmp, 'b.img'), readonly: false },
      { type: 'net', socket: join(tmp, 'n2.sock'), mac: '52:54:00:00:00:99' },
      { type: 'vsock', cid: 6, socket: join(tmp, 'v6.sock') },
      { type: 'rng' },
      { type: 'console', file: join(tmp, 'hvc-b.log') },
    ]);
    for (const r of await Promise.all([same.done, clone.done])) {
      expect(r.stderr).toBe('');
      expect(r.code).toBe(reference.code);
      expect(at + r.stdout).toBe(reference.stdout);
    }
    expect(existsSync(join(tmp, 'hvc-b.log'))).toBe(true);
    // a device option the snapshot's set does not allow
    expectUsageLine(await runProcess(process.execPath, [CLI, 'run', '--restore', dir, '--console', 'off']), /^vmmapi: --console off: the snapshot's machine has a virtio console/);
    // a clone's disk of another size: the snapshot's device state does not fit it
    writeFileSync(join(tmp, 'small.img'), new Uint8Array(4096));
    expectUsageLine(await runProcess(process.execPath, [CLI, 'run', '--restore', dir, '--disk', join(tmp, 'small.img')]), /snapshot\.json: devices\.pci: .*capacity/);
    for (const p of peers) p.destroy();
    for (const srv of netServers) srv.close();
  }, 180_000);

  it('a corrupt, truncated or missing snapshot, options it fixes, devices it lacks: exit 2 with one line', async () => {
    const corrupt = copySnapshot(snapDir, 'corrupt', (s) => {
      s[s.length - 10] ^= 0x20;
      return s;
    });
    expectUsageLine(await runProcess(process.execPath, [CLI, 'run', '--restore', corrupt]), /^vmmapi: .*corrupt\/snapshot\.json: corrupt: the state does not match its SHA-256 checksum$/);
    const cut = copySnapshot(snapDir, 'cut', (s) => s.subarray(0, s.indexOf(0x0a) + 100));
    expectUsageLine(await runProcess(process.execPath, [CLI, 'run', '--restore', cut]), /cut\/snapshot\.json: truncated: the header announces \d+ bytes of state, the file holds 99$/);
    const shortMem = join(tmp, 'short-mem');
    mkdirSync(shortMem);
    writeFileSync(join(shortMem, 'snapshot.json'), readFileSync(join(snapDir, 'snapshot.json')));
    writeFileSync(join(shortMem, 'memory.bin'), '');
    truncateSync(join(shortMem, 'memory.bin'), 4096);
    expectUsageLine(await runProcess(process.execPath, [CLI, 'run', '--restore', shortMem]), /memory\.bin: truncated or foreign: 4096 bytes, the state says \d+$/);
    expectUsageLine(await runProcess(process.execPath, [CLI, 'run', '--restore', join(tmp, 'none')]), /none\/snapshot\.json: cannot read the snapshot's state file/);
    expectUsageLine(await runProcess(process.execPath, [CLI, 'run', '--restore', snapDir, '--cpus', '2']), /^vmmapi: --cpus cannot be combined with --restore/);
    expectUsageLine(await runProcess(process.execPath, [CLI, 'run', '--restore', snapDir, '--rng']), /^vmmapi: --rng: the snapshot's machine has no virtio-rng device$/);
    expectUsageLine(await runProcess(process.execPath, [CLI, 'run', '--restore', snapDir, '--disk', 'x.img']), /^vmmapi: --restore: the snapshot's machine has no disks, 1 --disk given/);
  }, 120_000);

  it('vmmapi ctl: a missing socket exits 1 with a clear message; usage errors exit 2', async () => {
    const missing = join(tmp, 'missing.sock');
    const o = await ctl(missing, 'info');
    expect(o).toEqual({ code: 1, signal: null, stdout: '', stderr: `vmmapi: cannot connect to '${missing}': no such socket\n` });
    expectUsageLine(await ctl(missing, 'snapshot'), /^vmmapi: ctl snapshot needs a directory/);
    expectUsageLine(await ctl(missing, 'reboot'), /^vmmapi: ctl: unknown command 'reboot'/);
  });

  it('the control socket survives garbage, refuses a second VMM on its path, and stops a paused run (exit 0)', async () => {
    const api = join(tmp, 'stop.sock');
    const vmm = vmmapi(['run', ...GUEST, '--api-socket', api]);
    await vmm.waitFor('round 2 ');
    // another VMM on the same live path: refused before its guest starts
    expectUsageLine(await runProcess(process.execPath, [CLI, 'run', ...GUEST, '--api-socket', api]), /^vmmapi: --api-socket '.*stop\.sock' is in use: another process is listening on it$/);
    // garbage, an unknown command, an overlong line, a client that leaves mid-request
    const replies = await new Promise<string[]>((resolve, reject) => {
      const s = connect(api);
      let buf = '';
      s.on('error', reject);
      s.on('data', (d: Buffer) => (buf += d.toString()));
      s.on('close', () => resolve(buf.trimEnd().split('\n')));
      s.write(`not json\n{"cmd":"reboot"}\n{"cmd":"info"}\n${'x'.repeat(100_000)}\n`);
    });
    expect(replies.map((l) => (JSON.parse(l) as { ok: boolean }).ok)).toEqual([false, false, true, false]);
    expect(replies[3]).toBe('{"ok":false,"error":"request line longer than 65536 bytes; closing the connection"}');
    const leaver = connect(api);
    leaver.on('connect', () => {
      leaver.write('{"cmd":"pause"}\n');
      leaver.destroy();
    });
    await new Promise((r) => setTimeout(r, 300));
    expect((await ctl(api, 'pause')).stdout).toBe('paused\n');
    expect(await ctl(api, 'stop')).toEqual({ code: 0, signal: null, stdout: 'stopping\n', stderr: '' });
    const o = await vmm.done;
    expect(o.code).toBe(0);
    expect(o.stderr).toBe('');
    expect(o.stdout).not.toContain('snap-compute: result');
    expect(existsSync(api)).toBe(false);
  }, 120_000);
});

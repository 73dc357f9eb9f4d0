/**
 * `npm run bench:snapshot`: what a snapshot costs to write and how fast a machine is back.
 *
 * 1. Linux: Debian's 6.1 kernel on 2 vCPUs and 512 MiB with the shell initramfs
 *    (scripts/fetch-linux.mjs; /init hands ttyS0 to busybox's shell) is booted once, in this
 *    process, to its shell prompt — minutes on PVM hosts — and snapshotted into
 *    .cache/linux/snapshot-shell (kept for the next run; remade when it no longer restores).
 *    Then, BENCH_ROUNDS times (default 5): restorePc in this process with the vCPU worker
 *    threads started beforehand (as `vmmapi run` starts them while it parses its arguments),
 *    timed to "every vCPU running", and to the restored shell's answer to a line typed on its
 *    serial console; and `vmmapi run --restore` as a whole process, start to the shell's
 *    answer.
 * 2. RAM size: the snap-compute fixture on 128 MiB and on 2 GiB, snapshotted mid-run and
 *    restored the same way: restore time should not grow with RAM (memory.bin is mapped, not
 *    read), snapshot time does (it scans RAM for pages of zeros).
 * Every time is wall-clock on the host; medians of the rounds.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPc, fixturePath, restorePc, type Pc } from '../src/index.js';
import { packageRoot } from '../src/kvm/native.js';
import { prestartVcpuWorkers } from '../src/runner/worker-pool.js';
import { CLI, KERNEL, hostTscKhz, linuxCommandLine, requireFetched } from '../test/slow/linux-guest.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CACHE = join(packageRoot(), '.cache', 'linux');
const INITRD_SHELL = join(CACHE, 'initramfs-shell.cpio');
const LINUX_SNAPSHOT = join(CACHE, 'snapshot-shell');
const MiB = 2 ** 20;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** COM1 output of a machine, with a wait for text to appear. */
class Console {
  text = '';
  readonly onOutput = (b: number): void => void (this.text += String.fromCharCode(b));

  async waitFor(pattern: RegExp, ms: number, from = 0): Promise<void> {
    const end = Date.now() + ms;
    while (!pattern.test(this.text.slice(from))) {
      if (Date.now() > end) throw new Error(`no ${pattern} on the serial console within ${ms / 1000} s; last output: ${this.text.slice(-400)}`);
      await sleep(2);
    }
  }
}

/** Boot Linux to its shell and snapshot it into LINUX_SNAPSHOT; the time it took. */
async function makeLinuxSnapshot(): Promise<{ bootS: number; snapshotMs: number; writtenMiB: number; diskMiB: number }> {
  rmSync(LINUX_SNAPSHOT, { recursive: true, force: true });
  const con = new Console();
  const pc = createPc({ memory: 512 * MiB, cpus: 2, serial: { onOutput: con.onOutput } });
  try {
    pc.loadLinux(readFileSync(KERNEL), { cmdline: linuxCommandLine(hostTscKhz()), initrd: readFileSync(INITRD_SHELL), decompress: 'host' });
    const t0 = Date.now();
    const run = pc.run({ timeoutMs: 40 * 60_000 });
    run.catch(() => {});
    console.log('booting Linux to its shell (minutes on PVM hosts) …');
    await con.waitFor(/VMMAPI-SHELL-READY/, 40 * 60_000);
    const mark = con.text.length;
    pc.sendSerial(Buffer.from('echo ready-$((6*7))\n'));
    await con.waitFor(/ready-42/, 10 * 60_000, mark);
    const bootS = (Date.now() - t0) / 1000;
    await pc.pause();
    const info = await pc.snapshot(LINUX_SNAPSHOT, { meta: { bench: 'snapshot-shell' } });
    pc.stop();
    pc.resume();
    await run;
    const diskMiB = statSync(join(LINUX_SNAPSHOT, 'memory.bin')).blocks * 512 / MiB;
    return { bootS, snapshotMs: info.ms, writtenMiB: info.writtenBytes / MiB, diskMiB };
  } finally {
    pc.destroy();
  }
}

/** One in-process restore of `dir`: ms to restorePc, to every vCPU running, and to `answer` after typing `line`. */
async function restoreOnce(dir: string, cpus: number, line?: string, answer?: RegExp): Promise<{ restoreMs: number; runningMs: number; answerMs?: number }> {
  prestartVcpuWorkers(cpus);
  await sleep(1500); // the threads boot (Node, then their modules), as they do while vmmapi run parses its arguments
  const con = new Console();
  const t0 = performance.now();
  const pc = await restorePc(dir, { serial: { onOutput: con.onOutput } });
  const restoreMs = performance.now() - t0;
  let run: Promise<unknown> | undefined;
  try {
    run = pc.run({ timeoutMs: 10 * 60_000 });
    run.catch(() => {});
    while (!pc.runner.states.every((s) => s === 'running')) await new Promise((r) => setImmediate(r));
    const runningMs = performance.now() - t0;
    let answerMs: number | undefined;
    if (line && answer) {
      pc.sendSerial(Buffer.from(line));
      await con.waitFor(answer, 60_000);
      answerMs = performance.now() - t0;
    }
    return { restoreMs, runningMs, answerMs };
  } finally {
    pc.stop();
    await run;
    pc.destroy();
  }
}

/** `vmmapi run --restore dir` as a process: ms from spawn to the shell's answer to `line`. */
async function cliRestoreOnce(dir: string, line: string, answer: RegExp): Promise<number> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [CLI, 'run', '--restore', dir], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.write(line);
  const ms = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vmmapi run --restore: no ${answer} within 60 s; stderr: ${err}`)), 60_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (answer.test(out)) {
        clearTimeout(timer);
        resolve(performance.now() - t0);
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`vmmapi run --restore exited ${code} before answering; stderr: ${err.trim()}`));
    });
  });
  child.kill('SIGKILL');
  return ms;
}

/** snap-compute on `memory` bytes: snapshot mid-run, then ROUNDS restores. */
async function fixtureRow(memory: number): Promise<{ snapshotMs: number; restoreMs: number; runningMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'vmmapi-bench-snap-'));
  try {
    const con = new Console();
    const pc: Pc = createPc({ memory, serial: { onOutput: con.onOutput } });
    let snapshotMs: number;
    try {
      pc.loadMultiboot(readFileSync(fixturePath('snap-compute.elf')), { cmdline: 'rounds=10000' });
      const run = pc.run({ timeoutMs: 10 * 60_000 });
      await con.waitFor(/round 3 /, 60_000);
      await pc.pause();
      snapshotMs = (await pc.snapshot(dir)).ms;
      pc.stop();
      pc.resume();
      await run;
    } finally {
      pc.destroy();
    }
    const rs = [];
    for (let i = 0; i < ROUNDS; i++) rs.push(await restoreOnce(dir, 1));
    return { snapshotMs, restoreMs: median(rs.map((r) => r.restoreMs)), runningMs: median(rs.map((r) => r.runningMs)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  requireFetched(KERNEL, INITRD_SHELL);
  console.log(`vmmapi bench:snapshot: ${ROUNDS} rounds, medians`);
  let made: Awaited<ReturnType<typeof makeLinuxSnapshot>> | undefined;
  if (existsSync(LINUX_SNAPSHOT)) {
    try {
      await restoreOnce(LINUX_SNAPSHOT, 2);
    } catch (e) {
      console.log(`the cached Linux snapshot does not restore (${(e as Error).message.split('\n')[0]}): making it again`);
      made = await makeLinuxSnapshot();
    }
  } else {
    made = await makeLinuxSnapshot();
  }
  if (made) {
    console.log(`Linux (2 vCPUs, 512 MiB) booted to its shell in ${made.bootS.toFixed(0)} s; snapshot written in ${made.snapshotMs.toFixed(0)} ms:`);
    console.log(`  ${made.writtenMiB.toFixed(1)} MiB of guest memory written, memory.bin ${made.diskMiB.toFixed(1)} MiB on disk of 512 MiB`);
  } else {
    console.log(`Linux snapshot: the cached one in ${LINUX_SNAPSHOT} (remove it to boot and measure the snapshot again)`);
  }
  const linux = [];
  for (let i = 0; i < ROUNDS; i++) linux.push(await restoreOnce(LINUX_SNAPSHOT, 2, `echo answer-$((${i}+40))\n`, new RegExp(`answer-${i + 40}`)));
  const cli = [];
  for (let i = 0; i < ROUNDS; i++) {
    try {
      cli.push(await cliRestoreOnce(LINUX_SNAPSHOT, `echo cli-$((${i}+50))\n`, new RegExp(`cli-${i + 50}`)));
    } catch (e) {
      console.log(`vmmapi run --restore: ${(e as Error).message}`);
      break;
    }
  }
  const rows: [string, string][] = [
    ['in-process restorePc (Linux, 2 vCPUs, 512 MiB)', `${median(linux.map((r) => r.restoreMs)).toFixed(1)} ms`],
    ['  … to every vCPU running', `${median(linux.map((r) => r.runningMs)).toFixed(1)} ms   (target ≤ 20 ms)`],
    ['  … to the shell\'s answer to a typed line', `${median(linux.map((r) => r.answerMs!)).toFixed(1)} ms`],
  ];
  if (cli.length) rows.push(['vmmapi run --restore: process start to the answer', `${median(cli).toFixed(0)} ms   (target ≤ 1000 ms)`]);
  for (const memory of [128 * MiB, 2048 * MiB]) {
    const r = await fixtureRow(memory);
    const name = `snap-compute, ${memory / MiB} MiB`;
    rows.push([`${name}: snapshot`, `${r.snapshotMs.toFixed(1)} ms`]);
    rows.push([`${name}: restorePc / to running`, `${r.restoreMs.toFixed(1)} ms / ${r.runningMs.toFixed(1)} ms`]);
  }
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log('');
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    console.error(`bench:snapshot: ${e.message}`);
    process.exit(1);
  },
);

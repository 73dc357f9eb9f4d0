/**
 * `npm run bench`: exits per second for each way vmmapi can service a guest's port I/O,
 * against an in-tree C KVM_RUN loop (bench/baseline.c) measured in the same invocation.
 *
 * The guest is the same everywhere: a real-mode loop of N `in` (or `out`) instructions, then
 * one `out` to a "done" port and `cli; hlt`. On PVM hosts real-mode code is emulated, so
 * absolute numbers are low; compare ratios. A runner row's time runs from the moment every
 * vCPU is running to the last vCPU's "done" write, as the C loop's runs from its first
 * KVM_RUN to its last exit: the runner's notice of the final halt (its halt poll, 50 ms by
 * default) and its teardown are a per-run cost, not a per-exit one.
 *
 * Each scenario first runs once unmeasured (BENCH_WARMUP=0 skips that): JavaScript is slow
 * for the first few thousand exits of a thread, while V8 compiles the exit path, and the
 * runner keeps its worker threads warm between runs (src/runner/worker-pool.ts). The
 * "first run" row shows what a fresh thread costs.
 *
 * Every scenario runs on an idle machine and with one core kept busy by another process
 * (the bench starts and stops that loop itself); BENCH_LOAD=idle|busy picks one.
 * BENCH_EXITS and BENCH_ROUNDS set the size.
 *
 * Then the virtio-blk rows (bench/virtio-blk.ts): a guest's 4 KiB reads, sequential and
 * random, at queue depth 1 and 8 and on each notification path, as IOPS and MB/s next to the
 * host's own pread of the same blocks (BENCH_VIRTIO_READS sets the reads per run).
 *
 * Then the CPL0 compute rows (bench/engine.ts): a ring-0 sieve under KVM's emulator, under
 * vmmapi's engine and under QEMU-TCG when it is installed.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { VcpuRunner, prestartVcpuWorkers, type Device } from '../src/index.js';
import { packageRoot } from '../src/kvm/native.js';
import { bareHandoff } from './bare-handoff.js';
import { engineBench } from './engine.js';
import { DONE_PORT, loopGuest as guest } from './guest-loop.js';
import { virtioBlkBench } from './virtio-blk.js';

const N = Number(process.env.BENCH_EXITS ?? 50_000);

type CMode = 'direct' | 'futex' | 'spin' | 'spin-server';

/** Exits per second of bench/baseline.c: `vcpus` vCPU threads, each exit answered per `mode`. */
function cBaseline(kind: 'in' | 'out', mode: CMode = 'direct', vcpus = 1): number {
  const bin = join(packageRoot(), 'build', 'vmmapi_bench_baseline');
  if (!existsSync(bin)) throw new Error(`C baseline not built (${bin}): run npm run build`);
  const out = execFileSync(bin, [kind, String(N), mode, String(vcpus)], { encoding: 'utf8' });
  const m = /exits=(\d+) seconds=([\d.]+)/.exec(out);
  if (!m) throw new Error(`unexpected baseline output: ${out}`);
  return Number(m[1]) / Number(m[2]);
}

function mainThreadRun(kind: 'in' | 'out'): { exits: number; seconds: number } {
  const vm = guest(kind, 1, false, N);
  let exits = 0;
  const t0 = process.hrtime.bigint();
  for (;;) {
    const e = vm.run(0);
    if (e.kind === 'inout') {
      exits++;
      if (e.in) e.data[0] = 0x42;
    } else if (e.kind === 'hlt') break;
    else throw new Error(`unexpected exit ${e.kind}`);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  vm.destroy();
  return { exits, seconds };
}

/** The OUT loop with its port absorbed by KVM_IOEVENTFD: the guest never exits until its HLT. */
async function ioeventfdRun(): Promise<{ exits: number; seconds: number }> {
  const vm = guest('out', 1, false, N);
  let writes = 0;
  const reg = vm.addIoEventFd({ space: 'pio', addr: 0x91, length: 1 }, (n) => void (writes += n));
  const t0 = process.hrtime.bigint();
  let e = vm.run(0); // the first exit is the "done" write
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (e.kind === 'inout' && e.port === DONE_PORT) e = vm.run(0);
  if (e.kind !== 'hlt') throw new Error(`unexpected exit ${e.kind}`);
  await new Promise((r) => setTimeout(r, 10)); // the event loop hears the eventfd
  reg.close();
  vm.destroy();
  if (writes !== N) throw new Error(`ioeventfd counted ${writes} writes, expected ${N}`);
  return { exits: N, seconds };
}

async function runner(kind: 'in' | 'out', vcpus: number, how: 'main' | 'posted' | 'worker'): Promise<{ exits: number; seconds: number }> {
  const vm = guest(kind, vcpus, true, N);
  const r = new VcpuRunner(vm);
  const port = kind === 'in' ? 0x90 : 0x91;
  if (how === 'worker') {
    const module = pathToFileURL(join(packageRoot(), 'dist', 'bench', 'constant-device.js')).href;
    r.pio.register(port, 1, { worker: { module, export: 'ConstantDevice', options: { value: 0x42 } } });
  } else {
    const dev: Device = { read: () => 0x42, write: () => {} };
    r.pio.register(port, 1, dev, { posted: how === 'posted' });
  }
  // time from the moment every vCPU worker is running (thread start-up is not an exit cost)
  // to the last vCPU's "done" write (the halt that follows is noticed by a poll)
  let t0 = process.hrtime.bigint();
  let t1 = 0n;
  let running = 0;
  let done = 0;
  r.on('vcpu-state', (_v, st) => {
    if (st === 'running' && ++running === vcpus) t0 = process.hrtime.bigint();
  });
  r.pio.register(DONE_PORT, 1, { read: () => 0, write: () => void (++done === vcpus && (t1 = process.hrtime.bigint())) });
  const dbg = process.env.BENCH_DEBUG ? setInterval(() => console.error('states', r.states, r.debugState()), 1000) : undefined;
  await r.start();
  clearInterval(dbg);
  if (done !== vcpus) throw new Error(`${done} of ${vcpus} vCPUs reached the done port`);
  const seconds = Number(t1 - t0) / 1e9;
  vm.destroy();
  return { exits: N * vcpus, seconds };
}

/** The main-thread IN row on a thread that never ran a vCPU: what a process's first run costs. */
function firstRun(): Promise<{ exits: number; seconds: number }> {
  prestartVcpuWorkers(1); // the next runner takes this fresh pool, not a warm one
  return runner('in', 1, 'main');
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Which host conditions to measure: an idle machine, one core kept busy by another process, or both. */
const LOADS = (process.env.BENCH_LOAD ?? 'both') === 'both' ? (['idle', 'busy'] as const) : ([process.env.BENCH_LOAD] as ('idle' | 'busy')[]);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Keep one core busy with another process (`sh -c 'while :; do :; done'`) until the returned stop function is called. */
function busyLoop(): () => void {
  const child = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
  return () => void child.kill('SIGKILL');
}

type Peer = 'C IN' | 'C OUT' | 'itself';
interface Scenario {
  name: string;
  peer: Peer;
  /** Targets as ratios to the peer: on an idle machine, with one core busy. */
  target?: { idle?: number; busy?: number };
  /** False: no unmeasured first run (the row measures the cold start itself). */
  warmup?: boolean;
  run: () => Promise<{ exits: number; seconds: number }> | { exits: number; seconds: number };
}

const c = (kind: 'in' | 'out', mode: CMode = 'direct', vcpus = 1) => () => ({ exits: N * vcpus, seconds: (N * vcpus) / cBaseline(kind, mode, vcpus) });
const ALL: Scenario[] = [
  { name: 'C KVM_RUN loop, IN (baseline)', peer: 'itself', run: c('in') },
  { name: 'C KVM_RUN loop, OUT (baseline)', peer: 'itself', run: c('out') },
  { name: 'C hand-off to a thread, futex, IN', peer: 'C IN', run: c('in', 'futex') },
  { name: 'C hand-off to a thread, spin 50 µs, IN', peer: 'C IN', run: c('in', 'spin') },
  { name: 'C hand-off, 2 vCPUs to one thread, futex, IN (total)', peer: 'C IN', run: c('in', 'futex', 2) },
  { name: 'C hand-off, 2 vCPUs to one thread, spin 50 µs, IN (total)', peer: 'C IN', run: c('in', 'spin', 2) },
  { name: 'C hand-off, 2 vCPUs to one thread, server spins, IN (total)', peer: 'C IN', run: c('in', 'spin-server', 2) },
  { name: 'vm.run on the main thread, IN', peer: 'C IN', run: () => mainThreadRun('in') },
  { name: 'JS floor: worker fd.run loop, no hand-off, IN', peer: 'C IN', run: () => bareHandoff('none', N) },
  { name: 'JS floor: bare hand-off to the main thread, spin, IN', peer: 'C IN', run: () => bareHandoff('spin', N) },
  { name: 'JS floor: bare hand-off to the main thread, futex, IN', peer: 'C IN', run: () => bareHandoff('futex', N) },
  { name: 'JS floor: bare hand-off, 2 vCPUs to the main thread, server spins, IN (total)', peer: 'C IN', run: () => bareHandoff('server-spins', N, 2) },
  { name: 'JS floor: bare hand-off, 2 vCPUs to the main thread, futex, IN (total)', peer: 'C IN', run: () => bareHandoff('futex', N, 2) },
  { name: 'runner: main-thread device answers IN', peer: 'C IN', target: { idle: 0.85, busy: 0.45 }, run: () => runner('in', 1, 'main') },
  { name: 'runner: main-thread IN, first run of a thread', peer: 'C IN', warmup: false, run: () => firstRun() },
  { name: 'runner: posted OUT (ordered ring)', peer: 'C OUT', target: { idle: 0.9, busy: 0.8 }, run: () => runner('out', 1, 'posted') },
  { name: 'ioeventfd OUT: no exit (writes/s), vm.run', peer: 'C OUT', run: () => ioeventfdRun() },
  { name: 'runner: worker-side device answers IN', peer: 'C IN', target: { idle: 0.95 }, run: () => runner('in', 1, 'worker') },
  { name: 'runner: 2 vCPUs, worker-side IN (total)', peer: 'C IN', run: () => runner('in', 2, 'worker') },
  { name: 'runner: 2 vCPUs, main-thread IN (total)', peer: 'C IN', target: { idle: 0.8, busy: 0.45 }, run: () => runner('in', 2, 'main') },
];

/** BENCH_ONLY=regex keeps matching scenarios (and the two C baselines, the peers). */
const only = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : undefined;
const SCENARIOS = ALL.filter((sc, i) => i < 2 || !only || only.test(sc.name));

function report(load: 'idle' | 'busy', rates: number[][]): void {
  const med = rates.map(median);
  const peerRate = (p: Peer, i: number) => (p === 'C IN' ? med[0] : p === 'C OUT' ? med[1] : med[i]);
  const w = Math.max(...SCENARIOS.map((r) => r.name.length));
  console.log(`\n${load === 'idle' ? 'Idle machine' : 'One core kept busy by another process'}:`);
  console.log(`${'scenario'.padEnd(w)}  ${'exits/s'.padStart(9)}  ${'vs'.padEnd(6)}  ${'ratio'.padStart(6)}  ${'spread'.padStart(11)}  target`);
  SCENARIOS.forEach((sc, i) => {
    const ratio = med[i] / peerRate(sc.peer, i);
    const lo = Math.min(...rates[i]) / peerRate(sc.peer, i);
    const hi = Math.max(...rates[i]) / peerRate(sc.peer, i);
    const t = sc.target?.[load];
    const verdict = t === undefined ? '' : `≥ ${t} ${ratio >= t ? 'met' : 'MISSED'}`;
    console.log(
      `${sc.name.padEnd(w)}  ${Math.round(med[i]).toString().padStart(9)}  ${sc.peer.padEnd(6)}  ${ratio.toFixed(2).padStart(6)}  ${`${lo.toFixed(2)}–${hi.toFixed(2)}`.padStart(11)}  ${verdict}`,
    );
  });
}

async function main(): Promise<void> {
  console.log(`vmmapi bench: ${N} port-I/O exits per vCPU per run, ${ROUNDS} interleaved rounds, medians (real-mode guest loop)`);
  console.log('Ratios are against the C loop measured in the same run under the same load.');
  const rates = new Map(LOADS.map((l) => [l, SCENARIOS.map(() => [] as number[])]));
  if (process.env.BENCH_WARMUP !== '0') for (const sc of SCENARIOS) if (sc.warmup !== false) await sc.run();
  for (let round = 0; round < ROUNDS; round++) {
    for (const load of LOADS) {
      const stop = load === 'busy' ? busyLoop() : undefined;
      try {
        for (let i = 0; i < SCENARIOS.length; i++) {
          const r = await SCENARIOS[i].run();
          rates.get(load)![i].push(r.exits / r.seconds);
        }
      } finally {
        stop?.();
      }
    }
  }
  for (const load of LOADS) report(load, rates.get(load)!);
  console.log('\nMedians of interleaved runs on a shared machine; the spread column shows min–max ratios.');
  await virtioBlkBench(ROUNDS, only);
  engineBench(only);
  if (!only || only.test('start-up')) startupRows();
}

// --- start-up: process start to exit of a trivial guest through the CLI, next to `node -e 0` ---

/** One process run: wall time (ms) and peak RSS (MB, from /usr/bin/time when present). */
function timeProcess(argv: string[]): { ms: number; mb: number | undefined } {
  const gnuTime = existsSync('/usr/bin/time');
  const cmd = gnuTime ? '/usr/bin/time' : argv[0];
  const args = gnuTime ? ['-f', 'VMMAPI_BENCH_RSS_KB=%M', ...argv] : argv.slice(1);
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { cwd: packageRoot(), encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const kb = /VMMAPI_BENCH_RSS_KB=(\d+)/.exec(r.stderr ?? '')?.[1];
  return { ms, mb: kb === undefined ? undefined : Number(kb) / 1024 };
}

/**
 * `vmmapi run --multiboot guests/out/mb-fwcfg.elf` (a guest that reads fw_cfg, prints a line
 * and exits through the debug-exit port) as a whole process, interleaved with `node -e 0`
 * (Node's own start-up) in the same run: medians of BENCH_STARTUP_RUNS (default 11) each.
 */
function startupRows(): void {
  const runs = Number(process.env.BENCH_STARTUP_RUNS ?? 11);
  // the installed command: package.json's bin
  const bin = (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin.vmmapi;
  const cli = [process.execPath, bin, 'run', '--multiboot', join('guests', 'out', 'mb-fwcfg.elf')];
  const bare = [process.execPath, '-e', '0'];
  const rows: Record<'node' | 'cli', { ms: number[]; mb: number[] }> = { node: { ms: [], mb: [] }, cli: { ms: [], mb: [] } };
  timeProcess(cli); // warm the page cache
  for (let i = 0; i < runs; i++) {
    for (const [k, argv] of [['node', bare], ['cli', cli]] as const) {
      const r = timeProcess(argv);
      rows[k].ms.push(r.ms);
      if (r.mb !== undefined) rows[k].mb.push(r.mb);
    }
  }
  const mb = (xs: number[]) => (xs.length ? `${median(xs).toFixed(0)} MB` : 'n/a');
  console.log(`\nStart-up (process start to exit, medians of ${runs} interleaved runs; peak RSS from /usr/bin/time):`);
  console.log(`${'command'.padEnd(52)}  ${'ms'.padStart(6)}  ${'peak RSS'.padStart(8)}  vs node -e 0`);
  const base = median(rows.node.ms);
  for (const [k, name] of [['node', 'node -e 0'], ['cli', 'vmmapi run --multiboot guests/out/mb-fwcfg.elf']] as const) {
    const ms = median(rows[k].ms);
    console.log(`${name.padEnd(52)}  ${ms.toFixed(0).padStart(6)}  ${mb(rows[k].mb).padStart(8)}  ${(ms / base).toFixed(2)}×  (+${(ms - base).toFixed(0)} ms)`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

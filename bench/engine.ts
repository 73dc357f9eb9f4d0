/**
 * The CPL0 compute rows of `npm run bench` (issue 15): the ring-0 sieve of
 * guests/src/cpl0-sieve.S run as a whole `vmmapi run` process under KVM (whose in-kernel
 * emulator runs ring-0 code on PVM hosts), under vmmapi's own engine (`--engine cpl0`), and
 * under QEMU's software emulator (`qemu-system-x86_64 -accel tcg`) when it is installed.
 *
 * Each is timed at two pass counts; the difference divided by the extra passes is the cost
 * of a pass with process start-up, boot and set-up cancelled out. Medians of
 * BENCH_ENGINE_ROUNDS (default 3) interleaved rounds. The guest's prime count (COM1) is
 * checked on every run. BENCH_ENGINE_PASSES="LOW,HIGH" sets the pass counts per runner.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Vm } from '../src/index.js';
import { readEngineState, writeEngineState } from '../src/engine/kvm-state.js';
import { engineMips } from './engine-mips.js';
import { packageRoot } from '../src/kvm/native.js';

/** Instructions in one pass of the sieve (counted by simulating the loop: guests/src/cpl0-sieve.S). */
const INSNS_PER_PASS = 743_769;

/** The sieve's prime count (numbers below 2^17) as the guest prints it. */
const PRIMES_LINE = /cpl0-sieve: primes 0x00002fdb passes 0x([0-9a-f]{8})/;

interface Runner {
  name: string;
  /** Pass counts: low and high. */
  passes: [number, number];
  /** The argv for a run of `passes`, or undefined when this runner is not available. */
  argv(passes: number): string[] | undefined;
}

function elf(): string {
  const p = join(packageRoot(), 'guests', 'out', 'cpl0-sieve.elf');
  if (!existsSync(p)) throw new Error(`guest fixture missing (${p}): run npm run build`);
  return p;
}

function onPath(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  return undefined;
}

function vmmapi(extra: string[]): (passes: number) => string[] {
  const cli = join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
  return (passes) => [process.execPath, cli, 'run', '--multiboot', elf(), '--append', `passes=${passes}`, ...extra];
}

/** Does this build's CLI know `--engine`? (Until it does, the engine row says so.) */
function engineAvailable(): boolean {
  const cli = join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
  const r = spawnSync(process.execPath, [cli, 'run', '--help'], { encoding: 'utf8' });
  return /--engine\b/.test(r.stdout + r.stderr);
}

function passesFor(def: [number, number]): [number, number] {
  const env = process.env.BENCH_ENGINE_PASSES?.split(',').map(Number);
  return env && env.length === 2 && env.every((n) => Number.isInteger(n) && n >= 0) && env[1] > env[0] ? [env[0], env[1]] : def;
}

function runners(): Runner[] {
  const qemu = onPath('qemu-system-x86_64');
  const engine = engineAvailable();
  return [
    { name: "KVM (its in-kernel emulator runs ring 0 here)", passes: passesFor([1, 3]), argv: vmmapi([]) },
    { name: 'vmmapi engine (--engine cpl0)', passes: passesFor([2, 1002]), argv: engine ? vmmapi(['--engine', 'cpl0']) : () => undefined },
    {
      name: 'QEMU software emulator (-accel tcg)',
      passes: passesFor([2, 5002]),
      argv: qemu
        ? (passes) => [qemu, '-accel', 'tcg', '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot', '-m', '64',
            '-device', 'isa-debug-exit,iobase=0x501,iosize=4', '-kernel', elf(), '-append', `passes=${passes}`]
        : () => undefined,
    },
  ];
}

/** Wall-clock seconds of one run; throws if the guest did not print the right count. */
function timeRun(argv: string[], passes: number): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const m = PRIMES_LINE.exec(r.stdout ?? '');
  if (passes > 0 && (!m || parseInt(m[1], 16) !== passes))
    throw new Error(`${argv.slice(0, 3).join(' ')} … passes=${passes}: no correct result line (status ${r.status}): ${(r.stdout + r.stderr).slice(-400)}`);
  return s;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** µs for one move of a vCPU's state out of KVM and back (readEngineState + writeEngineState). */
function switchMicros(): number {
  const vm = Vm.create('bench-engine-switch', { irqchip: false });
  try {
    vm.setupMemory(0, 0x10000);
    const fd = vm.vcpuFd(0);
    for (let i = 0; i < 100; i++) writeEngineState(fd, readEngineState(fd));
    const n = 2000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) writeEngineState(fd, readEngineState(fd));
    return Number(process.hrtime.bigint() - t0) / 1e3 / n;
  } finally {
    vm.destroy();
  }
}

/** Print the CPL0 compute rows (see the module documentation). */
export function engineBench(only: RegExp | undefined): void {
  if (only && !only.test('cpl0')) return;
  console.log(`\nMoving a vCPU between KVM and the engine (3 ioctls each way: regs, sregs, MSRs): ${switchMicros().toFixed(1)} µs a round trip`);
  const rounds = Number(process.env.BENCH_ENGINE_ROUNDS ?? 3);
  const rs = runners();
  const perPass = rs.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++) {
    rs.forEach((r, i) => {
      const lo = r.argv(r.passes[0]);
      const hi = r.argv(r.passes[1]);
      if (!lo || !hi) return;
      const a = timeRun(lo, r.passes[0]);
      const b = timeRun(hi, r.passes[1]);
      perPass[i].push((b - a) / (r.passes[1] - r.passes[0]));
    });
  }
  console.log(`\nCPL0 compute: guests/out/cpl0-sieve.elf, a ring-0 long-mode sieve (743,769 instructions a pass); the cost of a pass,`);
  console.log(`from whole-process runs at two pass counts (start-up cancels out), medians of ${rounds} interleaved rounds:`);
  const w = Math.max(...rs.map((r) => r.name.length));
  const rate = perPass.map((xs) => (xs.length ? 1 / median(xs) : undefined));
  const kvm = rate[0];
  for (const [i, r] of rs.entries()) {
    const pr = rate[i];
    const what = pr === undefined ? (i === 1 ? 'not available: the CLI has no --engine yet' : 'not installed') : `${(1000 / pr).toFixed(1).padStart(8)} ms a pass  ${((pr * INSNS_PER_PASS) / 1e6).toFixed(1).padStart(7)} M instructions/s`;
    const vs = pr !== undefined && kvm !== undefined && i > 0 ? `  ${(pr / kvm).toFixed(1)}× KVM` : '';
    console.log(`${r.name.padEnd(w)}  ${what}${vs}`);
  }
  const mips = engineMips(Number(process.env.BENCH_ENGINE_LAPS ?? 1_000_000));
  console.log(`engine alone (bench/engine-mips.ts, SoftMmu with 4-level paging): integer loop ${(mips.integer / 1e6).toFixed(1)} M instructions/s, memory loop ${(mips.memory / 1e6).toFixed(1)} M instructions/s`);
  if (rate[1] !== undefined && rate[2] !== undefined) {
    console.log(`engine vs QEMU-TCG: ${(rate[1] / rate[2]).toFixed(2)}× (target ≥ 0.5); engine vs KVM: ${kvm ? (rate[1] / kvm).toFixed(1) : '?'}× (target ≥ 30)`);
  }
}

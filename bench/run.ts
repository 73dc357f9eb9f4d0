/**
 * `npm run bench`: exits per second for each way vmmapi can service a guest's port I/O,
 * against an in-tree C KVM_RUN loop (bench/baseline.c) measured in the same invocation.
 *
 * The guest is the same everywhere: a real-mode loop of N `in` (or `out`) instructions.
 * On PVM hosts real-mode code is emulated, so absolute numbers are low; compare ratios.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Reg, VcpuRunner, Vm, type Device } from '../src/index.js';
import { packageRoot } from '../src/kvm/native.js';

const N = Number(process.env.BENCH_EXITS ?? 100_000);

/** mov $n,%ecx ; 1: in $0x90,%al | out %al,$0x91 ; dec %ecx ; jnz 1b ; cli ; hlt */
function loop(kind: 'in' | 'out', n: number): Uint8Array {
  const code = Uint8Array.from([0x66, 0xb9, 0, 0, 0, 0, 0xe4, 0x90, 0x66, 0x49, 0x75, 0xfa, 0xfa, 0xf4]);
  new DataView(code.buffer).setUint32(2, n, true);
  if (kind === 'out') code.set([0xe6, 0x91], 6);
  return code;
}

let seq = 0;
function guest(kind: 'in' | 'out', vcpus: number, irqchip: boolean, n: number): Vm {
  const vm = Vm.create(`bench-${seq++}`, { vcpus, irqchip });
  vm.setupMemory(0, 0x100000);
  for (let v = 0; v < vcpus; v++) {
    const at = 0x1000 + v * 0x100;
    vm.memory.writeBytes(at, loop(kind, n));
    vm.setDesc(v, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
    vm.setRegisters(v, [[Reg.CS, 0], [Reg.RIP, at], [Reg.RFLAGS, 2]]);
    if (v > 0) vm.vcpuFd(v).setMpState(new Uint8Array(4));
  }
  return vm;
}

interface Row { name: string; exits: number; seconds: number; peer: string; peerRate: number; target?: number }

function cBaseline(kind: 'in' | 'out'): number {
  const bin = join(packageRoot(), 'build', 'vmmapi_bench_baseline');
  if (!existsSync(bin)) throw new Error(`C baseline not built (${bin}): run npm run build`);
  const out = execFileSync(bin, [kind, String(N)], { encoding: 'utf8' });
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
  let t0 = process.hrtime.bigint();
  let running = 0;
  r.on('vcpu-state', (_v, st) => {
    if (st === 'running' && ++running === vcpus) t0 = process.hrtime.bigint();
  });
  const dbg = process.env.BENCH_DEBUG ? setInterval(() => console.error('states', r.states, r.debugState()), 1000) : undefined;
  await r.start();
  clearInterval(dbg);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  vm.destroy();
  return { exits: N * vcpus, seconds };
}

async function main(): Promise<void> {
  console.log(`vmmapi bench: ${N} port-I/O exits per vCPU per scenario (real-mode guest loop)\n`);
  const cIn = cBaseline('in');
  const cOut = cBaseline('out');
  const rows: Row[] = [];
  const add = (name: string, r: { exits: number; seconds: number }, peer: string, peerRate: number, target?: number) =>
    rows.push({ name, ...r, peer, peerRate, target });
  rows.push({ name: 'C KVM_RUN loop, IN (baseline)', exits: N, seconds: N / cIn, peer: 'itself', peerRate: cIn });
  rows.push({ name: 'C KVM_RUN loop, OUT (baseline)', exits: N, seconds: N / cOut, peer: 'itself', peerRate: cOut });
  add('vm.run on the main thread, IN', mainThreadRun('in'), 'C IN', cIn);
  add('runner: main-thread device answers IN', await runner('in', 1, 'main'), 'C IN', cIn, 0.6);
  add('runner: posted OUT (ordered ring)', await runner('out', 1, 'posted'), 'C OUT', cOut, 0.9);
  add('runner: worker-side device answers IN', await runner('in', 1, 'worker'), 'C IN', cIn, 0.95);
  add('runner: 2 vCPUs, worker-side IN (total)', await runner('in', 2, 'worker'), 'C IN', cIn);
  add('runner: 2 vCPUs, main-thread IN (total)', await runner('in', 2, 'main'), 'C IN', cIn);

  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(`${'scenario'.padEnd(w)}  ${'exits/s'.padStart(9)}  ${'vs'.padEnd(6)}  ${'ratio'.padStart(6)}  target`);
  for (const r of rows) {
    const rate = r.exits / r.seconds;
    const ratio = rate / r.peerRate;
    console.log(
      `${r.name.padEnd(w)}  ${Math.round(rate).toString().padStart(9)}  ${r.peer.padEnd(6)}  ${ratio.toFixed(2).padStart(6)}  ${r.target ? `≥ ${r.target}` : ''}`,
    );
  }
  console.log('\nRatios compare runs made seconds apart on a shared machine: expect ±20% noise.');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

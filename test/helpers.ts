/** Shared test helpers: fixtures and small real-mode guests. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach } from 'vitest';
import { Reg, Vm, type VmCreateOptions } from '../src/index.js';
import { fixturePath } from '../src/fixtures.js';

let counter = 0;
/** A VM name unique within this test process. */
export function uniqueName(prefix = 'test'): string {
  return `${prefix}-${process.pid}-${counter++}`;
}

/** The bytes of a bundled guest fixture. */
export function fixture(name: string): Uint8Array {
  return readFileSync(fixturePath(name));
}

/**
 * A VM with 1 MiB of RAM at 0 and `code` loaded at `at` (default 0x1000), vCPU 0 in real
 * mode with CS = 0 and IP = `at`.
 */
export function realModeVm(code: Uint8Array | number[], opts: VmCreateOptions & { at?: number } = {}): Vm {
  const at = opts.at ?? 0x1000;
  const vm = Vm.create(uniqueName('rm'), opts);
  vm.setupMemory(0, 0x100000);
  vm.memory.writeBytes(at, Uint8Array.from(code));
  for (let i = 0; i < vm.vcpuCount; i++) {
    vm.setDesc(i, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
    vm.setRegisters(i, [[Reg.CS, 0], [Reg.RIP, at], [Reg.RFLAGS, 2]]);
  }
  return vm;
}

/** Run vCPU 0 until an exit that is not 'interrupted'; fail after `max` exits. */
export function runUntil(vm: Vm, pred: (e: ReturnType<Vm['run']>) => boolean, max = 10_000) {
  for (let i = 0; i < max; i++) {
    const e = vm.run(0);
    if (pred(e)) return e;
  }
  throw new Error(`no matching exit within ${max} exits`);
}

/** What a child process did: its exit code (null if killed), the signal that killed it, stdout (latin1) and stderr. */
export interface ProcessOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run `cmd args` to its end and collect its output; SIGKILL after `limitMs` so a hung guest
 * fails its test instead of hanging it.
 */
export function runProcess(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; limitMs?: number } = {}): Promise<ProcessOutcome> {
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const killer = setTimeout(() => child.kill('SIGKILL'), opts.limitMs ?? 60_000);
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A seeded xorshift32 generator of unsigned 32-bit integers (deterministic fuzz tests). */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
}

/**
 * A `track(vm)` for a test file: every VM it is given is destroyed after each test (call
 * once, at the top level of the file).
 */
export function trackVms(): (vm: Vm) => Vm {
  const vms: Vm[] = [];
  afterEach(() => {
    for (const vm of vms.splice(0)) vm.destroy();
  });
  return (vm) => {
    vms.push(vm);
    return vm;
  };
}

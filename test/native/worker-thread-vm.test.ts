/**
 * A VM made and run inside a worker thread, in a process whose main thread never loaded the
 * addon: the worker's exit must not take the process down. (Node unloads an addon with the
 * last environment that loaded it, and guest RAM's SharedArrayBuffer is released later, when
 * the worker's heap is torn down — through code of the addon. The process died of SIGSEGV.)
 * Needs the build (dist/).
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { packageRoot } from '../../src/kvm/native.js';
import { runProcess } from '../helpers.js';

const INDEX = pathToFileURL(join(packageRoot(), 'dist', 'src', 'index.js')).href;

/** The child: its worker makes a VM with RAM, runs a HLT, and ends without destroying it (or after, with `destroy`). */
const script = (destroy: boolean) => `
import { Worker } from 'node:worker_threads';
const w = new Worker(\`(async () => {
  const { Reg, Vm } = await import(${JSON.stringify(INDEX)});
  const vm = Vm.create('worker-vm', { vcpus: 1, irqchip: false });
  vm.setupMemory(0, 0x10000);
  vm.memory.writeBytes(0x1000, Uint8Array.of(0xf4));
  vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
  vm.setRegisters(0, [[Reg.CS, 0], [Reg.RIP, 0x1000], [Reg.RFLAGS, 2]]);
  console.log('exit', vm.run(0).kind);
  ${destroy ? 'vm.destroy();' : ''}
})()\`, { eval: true });
w.on('exit', (code) => console.log('worker ended', code));
`;

it.each([false, true])('a worker thread that ran a VM ends without crashing the process (destroyed first: %s)', async (destroy) => {
  const out = await runProcess(process.execPath, ['--input-type=module', '-e', script(destroy)], { limitMs: 30_000 });
  expect({ signal: out.signal, code: out.code, stderr: out.stderr }).toEqual({ signal: null, code: 0, stderr: '' });
  expect(out.stdout).toBe('exit hlt\nworker ended 0\n');
});

/**
 * The bench's one guest: a real-mode loop of N `in` (or `out`) instructions, then one `out`
 * to a "done" port and `cli; hlt` — the same code bench/baseline.c runs. Used by the runner
 * rows (bench/run.ts) and the bare hand-off rows (bench/bare-handoff.ts).
 */
import { Reg, Vm } from '../src/index.js';

/** The port of the guest's last write: the rows' clocks stop there. */
export const DONE_PORT = 0x92;

/** The port the loop reads (`in`). */
export const IN_PORT = 0x90;

/** mov $n,%ecx ; 1: in $0x90,%al | out %al,$0x91 ; dec %ecx ; jnz 1b ; out %al,$0x92 ; cli ; hlt */
export function loopCode(kind: 'in' | 'out', n: number): Uint8Array {
  const code = Uint8Array.from([0x66, 0xb9, 0, 0, 0, 0, 0xe4, IN_PORT, 0x66, 0x49, 0x75, 0xfa, 0xe6, DONE_PORT, 0xfa, 0xf4]);
  new DataView(code.buffer).setUint32(2, n, true);
  if (kind === 'out') code.set([0xe6, 0x91], 6);
  return code;
}

let seq = 0;

/** A VM whose `vcpus` vCPUs each run {@link loopCode} for `n` exits; APs start runnable. */
export function loopGuest(kind: 'in' | 'out', vcpus: number, irqchip: boolean, n: number): Vm {
  const vm = Vm.create(`bench-${seq++}`, { vcpus, irqchip });
  vm.setupMemory(0, 0x100000);
  for (let v = 0; v < vcpus; v++) {
    const at = 0x1000 + v * 0x100;
    vm.memory.writeBytes(at, loopCode(kind, n));
    vm.setDesc(v, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
    vm.setRegisters(v, [[Reg.CS, 0], [Reg.RIP, at], [Reg.RFLAGS, 2]]);
    if (v > 0) vm.vcpuFd(v).setMpState(new Uint8Array(4));
  }
  return vm;
}

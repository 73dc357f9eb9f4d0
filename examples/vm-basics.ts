import { readFileSync } from 'node:fs';
import { Vm, Reg, fixturePath } from 'vmmapi';

// A 16-bit guest linked at 0x1000: it writes "Hello from the guest\n" to port 0x3f8, then halts.
const code = readFileSync(fixturePath('hello.bin'));

// irqchip: false, so HLT comes back as a 'hlt' exit. With the default in-kernel irqchip,
// HLT waits inside KVM for an interrupt; bound such a run with { timeoutMs } (an
// 'interrupted' exit), or use the VcpuRunner, which detects halted vCPUs.
const vm = Vm.create('demo', { irqchip: false });
try {
  vm.setupMemory(0, 1 << 20);                       // a SharedArrayBuffer over guest RAM at GPA 0
  vm.memory.writeBytes(0x1000, code);               // bounds-checked, across segments
  vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
  vm.setRegister(0, Reg.CS, 0);
  vm.setRegister(0, Reg.RIP, 0x1000n);
  let text = '';
  for (;;) {
    const exit = vm.run(0, undefined, { timeoutMs: 10_000 });   // runs on the calling thread
    if (exit.kind === 'inout' && !exit.in) text += String.fromCharCode(exit.value & 0xff);
    else if (exit.kind === 'inout') exit.data.fill(0xff);       // answer an IN before the next run
    else if (exit.kind === 'hlt') break;
    else throw new Error(`unexpected exit: ${exit.kind}`);
  }
  process.stdout.write(text);                       // Hello from the guest
} finally {
  vm.destroy();
}

import { readFileSync } from 'node:fs';
import { Vm, Reg, VcpuRunner, Uart16550, KvmIrqLine, fixturePath } from 'vmmapi';

const vm = Vm.create('runner-demo');                // in-kernel PIC/IOAPIC/LAPIC by default
try {
  vm.setupMemory(0, 1 << 20);
  vm.memory.writeBytes(0x1000, readFileSync(fixturePath('hello.bin')));
  vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
  vm.setRegister(0, Reg.CS, 0);
  vm.setRegister(0, Reg.RIP, 0x1000n);

  const runner = new VcpuRunner(vm);
  // a 16550A UART on COM1; its interrupt drives ISA IRQ 4 of the in-kernel PIC/IOAPIC
  const uart = new Uart16550({ irq: new KvmIrqLine(vm, 4), onTransmit: (byte) => process.stdout.write(String.fromCharCode(byte)) });
  runner.pio.register(0x3f8, 8, uart, { name: 'com1' });
  runner.on('inout', (exit) => { if (exit.in) exit.data.fill(0xff); });   // ports nobody claimed
  runner.on('internal-error', (exit) => console.error(exit.message));
  const result = await runner.start();              // every vCPU in its own worker thread
  console.log(`run ended: ${result.reason}`);       // 'halted': the guest's HLT with interrupts off
} finally {
  vm.destroy();
}

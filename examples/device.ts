import { readFileSync } from 'node:fs';
import { Vm, Reg, VcpuRunner, KvmIrqLine, fixturePath, type AccessSize, type Device, type IrqLine } from 'vmmapi';

/** A port-I/O device: a write adds to a running sum, a read returns it. */
class Tally implements Device {
  sum = 0;
  read(offset: number, size: AccessSize): number {
    return offset === 0 ? this.sum : 0xffff;         // undefined registers read as all-ones
  }
  write(offset: number, size: AccessSize, value: number | bigint): void {
    if (offset === 0) this.sum = (this.sum + Number(value)) & 0xffff;
  }
}

/** An MMIO device: writing offset 0 raises its interrupt, offset 4 reads the value back, offset 8 acknowledges. */
class Doorbell implements Device {
  value = 0;
  acks = 0;
  constructor(private readonly irq: IrqLine) {}
  read(offset: number, size: AccessSize): number {
    return offset === 4 ? this.value : 0;
  }
  write(offset: number, size: AccessSize, value: number | bigint): void {
    if (offset === 0) {
      this.value = Number(value);
      this.irq.set(true);                             // level up: the PIC sees an edge
    } else if (offset === 8) {
      this.acks++;
      this.irq.set(false);                            // the guest acknowledged: level down
    }
  }
}

const vm = Vm.create('device-demo');                  // the in-kernel PIC routes IRQ 5 to the vCPU
try {
  vm.setupMemory(0, 0x10000);                         // 64 KiB of RAM; 0xd0000 is nobody's RAM: MMIO
  vm.memory.writeBytes(0x1000, readFileSync(fixturePath('device-demo.bin')));
  vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
  vm.setRegister(0, Reg.CS, 0);
  vm.setRegister(0, Reg.RIP, 0x1000n);

  const runner = new VcpuRunner(vm);
  const tally = new Tally();
  const doorbell = new Doorbell(new KvmIrqLine(vm, 5));   // ISA IRQ 5 of the in-kernel PIC/IOAPIC
  runner.pio.register(0x510, 2, tally, { name: 'tally' });
  runner.mmio.register(0xd0000, 0x1000, doorbell, { name: 'doorbell' });
  const result = await runner.start();

  console.log(`tally: the guest added up to ${tally.sum}`);
  console.log(`doorbell: rang with ${doorbell.value}, interrupt handled and acknowledged ${doorbell.acks} time(s)`);
  console.log(`run ended: ${result.reason}`);
} finally {
  vm.destroy();
}

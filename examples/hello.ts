/**
 * hello: the smallest complete VMM. It creates a VM, gives it 64 KiB of RAM, loads a
 * 16-bit guest that prints a greeting on port 0x3f8, and drives it with `vm.run` until the
 * guest halts.
 *
 * Run it with `npm start` (or `node dist/examples/hello.js`).
 */
import { readFileSync } from 'node:fs';
import { Reg, Vm } from '../src/index.js';
import { fixturePath } from '../src/fixtures.js';

const LOAD_AT = 0x1000;

// No in-kernel irqchip: HLT then comes back to us as an exit.
const vm = Vm.create('hello', { irqchip: false });
try {
  vm.setupMemory(0, 0x10000);
  vm.memory.writeBytes(LOAD_AT, readFileSync(fixturePath('hello.bin')));

  // Real mode, CS base 0, IP at the guest's first instruction.
  vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
  vm.setRegister(0, Reg.CS, 0);
  vm.setRegister(0, Reg.RIP, LOAD_AT);

  let out = '';
  for (;;) {
    const exit = vm.run(0);
    if (exit.kind === 'inout' && !exit.in && exit.port === 0x3f8) {
      out += String.fromCharCode(exit.value & 0xff);
    } else if (exit.kind === 'hlt') {
      break;
    } else {
      throw new Error(`unexpected exit: ${exit.kind}`);
    }
  }
  process.stdout.write(out);
} finally {
  vm.destroy();
}

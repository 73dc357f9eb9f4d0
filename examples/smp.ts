/**
 * smp: two vCPUs on the PC platform. The bundled guest's boot processor (32-bit protected
 * mode at 0x1000) prints its APIC id to port 0x500 and wakes the second vCPU with
 * INIT-SIPI-SIPI (its start-up code is at 0x8000); that one prints its APIC id too; both
 * then halt with interrupts off, which ends the run.
 *
 * Run it with `node dist/examples/smp.js`.
 */
import { readFileSync } from 'node:fs';
import { createPc } from '../src/platform/index.js';
import { fixturePath } from '../src/fixtures.js';

const pc = createPc({ memory: 1 << 20, cpus: 2 });
try {
  // Port 0x500 is not part of the PC: add a device that prints what is written there.
  pc.runner.pio.register(0x500, 1, {
    read: () => 0,
    write: (_offset, _size, value) => console.log(`a vCPU says: my APIC id is ${value}`),
  }, { name: 'APIC id printer' });

  pc.loadFlat(readFileSync(fixturePath('smp-bsp.bin')), 0x1000, { mode: 'protected', stack: 0x7000 });
  pc.memory.writeBytes(0x8000, readFileSync(fixturePath('smp-ap.bin')));

  const result = await pc.run({ timeoutMs: 30_000 });
  console.log(`run ended: ${result.reason}`);
} finally {
  pc.destroy();
}

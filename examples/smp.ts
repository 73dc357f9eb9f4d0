/**
 * smp: a multi-processor guest on the PC platform. The bundled Multiboot kernel
 * (guests/src/mb-smp.S) reads the CPU count from fw_cfg, wakes every other vCPU with
 * INIT-SIPI-SIPI through its local APIC, waits for them to check in, prints one line per
 * CPU on COM1 and exits through the debug-exit port with the number of CPUs it saw.
 *
 * Run it with `node dist/examples/smp.js [cpus]` (default 2).
 */
import { readFileSync } from 'node:fs';
import { createPc } from '../src/platform/index.js';
import { fixturePath } from '../src/fixtures.js';

const cpus = Number(process.argv[2] ?? 2);
const pc = createPc({ memory: 16 << 20, cpus, serial: { onOutput: (byte) => process.stdout.write(String.fromCharCode(byte)) } });
try {
  pc.loadMultiboot(readFileSync(fixturePath('mb-smp.elf')));
  const result = await pc.run({ timeoutMs: 30_000 });
  if (result.reason === 'debug-exit') console.log(`the guest counted ${(result.status - 1) / 2} of ${cpus} CPUs`);
  else console.log(`run ended: ${result.reason}`);
} finally {
  pc.destroy();
}

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPc, fixturePath, restorePc } from 'vmmapi';

const dir = mkdtempSync(join(tmpdir(), 'vmmapi-snapshot-'));
try {
  // a guest that computes for a while, printing a line a round (guests/src/snap-compute.c)
  let first = '';
  const pc = createPc({ memory: 16 << 20, serial: { onOutput: (b) => (first += String.fromCharCode(b)) } });
  pc.loadMultiboot(readFileSync(fixturePath('snap-compute.elf')), { cmdline: 'rounds=30' });
  const running = pc.run();
  while (!first.includes('round 10 ')) await new Promise((r) => setTimeout(r, 5));
  await pc.pause();                                   // no vCPU in KVM_RUN, devices quiet
  const info = await pc.snapshot(dir);                // KVM state, device state, sparse memory
  console.log(`snapshot: ${(info.writtenBytes / 1024).toFixed(0)} KiB of guest memory in ${info.ms.toFixed(0)} ms`);
  pc.stop();
  pc.resume();
  await running;
  pc.destroy();

  // a new machine from the snapshot: memory mapped copy-on-write, so this is quick at any RAM size
  let rest = '';
  const clone = await restorePc(dir, { serial: { onOutput: (b) => (rest += String.fromCharCode(b)) } });
  try {
    console.log(`restored: ${JSON.stringify(await clone.run({ timeoutMs: 60_000 }))}`);
    console.log(rest.trimEnd().split('\n').slice(-2).join('\n'));
  } finally {
    clone.destroy();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

import { readFileSync } from 'node:fs';
import { createPc, fixturePath, formatMac, NetSwitch, VirtioNet } from 'vmmapi';

// An in-process L2 switch: each port is a virtio-net backend (or, as here, a program's own end)
const sw = new NetSwitch();
const host = sw.port('host');
let text = '';
const pc = createPc({ memory: 16 << 20, serial: { onOutput: (b) => (text += String.fromCharCode(b)) } });
try {
  pc.addVirtioDevice(new VirtioNet({ backend: sw.port('guest'), mac: '52:54:00:12:34:56' }));
  // answer the guest's broadcast ping (ethertype 0x88b5) with a pong to its source MAC
  host.onFrame((f) => {
    const type = (f[12] << 8) | f[13];
    const payload = new TextDecoder().decode(f.subarray(14));
    console.log(`host port: ${formatMac(f.subarray(6, 12))} -> ${formatMac(f.subarray(0, 6))} "${payload}"`);
    if (type !== 0x88b5 || !payload.startsWith('vmmapi virtio-net ping')) return;
    const pong = new Uint8Array(14 + 4);
    pong.set(f.subarray(6, 12), 0);                          // to the guest
    pong.set([0x02, 0, 0, 0, 0, 0x02], 6);                   // from a made-up host MAC
    pong.set([0x88, 0xb5], 12);
    pong.set(new TextEncoder().encode('pong'), 14);
    host.send(pong);
  });
  // the guest: a bare-metal virtio-net driver (guests/src/virtio-net.c)
  pc.loadMultiboot(readFileSync(fixturePath('virtio-net.elf')), { cmdline: 'wait=20' });
  await pc.run({ timeoutMs: 60_000 });
  sw.flush();                                                // frames sent just before it exited
  console.log(text.trimEnd().split('\n').filter((l) => /pong from|PASS|FAIL/.test(l)).join('\n'));
  console.log(`switch: ${JSON.stringify(sw.stats)}`);
} finally {
  pc.destroy();
  host.close();
}

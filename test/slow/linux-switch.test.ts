/**
 * Two Linux VMs in one process, their virtio-net devices on one in-process NetSwitch
 * (src/net/switch.ts): each boots Debian's 6.1 cloud kernel with the net initramfs
 * (scripts/fetch-linux.mjs), takes the address its command line names (`vmmapi.ip=`) and
 * pings the other (`vmmapi.peer=`) until it answers. Only with VMMAPI_SLOW=1 (minutes on a
 * PVM host; the two boots share the host's CPUs and this process's main thread).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createPc, NetSwitch, VirtioNet, type Pc } from '../../src/index.js';
import { KERNEL, LIMIT_MS, hostTscKhz, linuxCommandLine, requireFetched } from './linux-guest.js';

const INITRD_NET = join(KERNEL, '..', 'initramfs-net.cpio');

describe.skipIf(!process.env.VMMAPI_SLOW)('two Linux VMs on an in-process switch (VMMAPI_SLOW=1)', () => {
  it('each pings the other through the NetSwitch', async () => {
    requireFetched(KERNEL, INITRD_NET);
    const kernel = readFileSync(KERNEL);
    const initrd = readFileSync(INITRD_NET);
    const sw = new NetSwitch();
    const cmdline = linuxCommandLine(hostTscKhz());
    const vms = [
      { ip: '10.213.2.2', peer: '10.213.2.3', mac: '02:00:00:13:02:02' },
      { ip: '10.213.2.3', peer: '10.213.2.2', mac: '02:00:00:13:02:03' },
    ].map((v) => {
      let out = '';
      const port = sw.port(v.ip);
      const pc: Pc = createPc({
        memory: 512 * 2 ** 20,
        serial: { onOutput: (b) => (out += String.fromCharCode(b)) },
        virtio: [new VirtioNet({ backend: port, mac: v.mac })],
      });
      pc.loadLinux(kernel, { initrd, cmdline: `${cmdline} vmmapi.ip=${v.ip}/24 vmmapi.peer=${v.peer}`, decompress: 'host' });
      return { ...v, pc, output: () => out };
    });
    try {
      const results = await Promise.all(vms.map((v) => v.pc.run({ timeoutMs: LIMIT_MS })));
      for (const [i, v] of vms.entries()) {
        const out = v.output();
        const context = `${v.ip}: ${JSON.stringify(results[i])}\n${out.slice(-3000)}`;
        expect(out, context).toContain(`VMMAPI-ETH0=${v.ip}/24`);
        expect(out, context).toContain(`VMMAPI-ETH0-MAC=${v.mac}`);
        expect(out, context).toMatch(new RegExp(`VMMAPI-PING-OK=${v.peer.replace(/\./g, '\\.')} after \\d+ retries`));
        expect(out, context).toContain('VMMAPI-NET-DONE');
        expect(results[i], context).toEqual({ reason: 'poweroff' });
      }
      expect(sw.macCount).toBe(2);
      console.log(vms.map((v) => `${v.ip}: ${/VMMAPI-PING-OK=[^\n]*/.exec(v.output())?.[0]}`).join('; '));
    } finally {
      for (const v of vms) v.pc.destroy();
    }
  }, LIMIT_MS + 60_000);
});

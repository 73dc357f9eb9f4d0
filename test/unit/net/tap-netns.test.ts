/**
 * TapBackend against a real TAP interface. Runs only inside the private network namespace
 * that test/unit/net/tap.test.ts makes (`unshare -n`, VMMAPI_TAP_NETNS=1, with vmtap0 at
 * 10.213.0.1/24): nothing it sends can leave that namespace. Skipped anywhere else.
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TapBackend } from '../../../src/net/index.js';

const inNetns = process.env.VMMAPI_TAP_NETNS === '1';
const FAKE_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0x99);

function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() > end) reject(new Error('timed out'));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

/** vmtap0's received-packet count, from /proc/net/dev (per namespace, unlike the host's /sys). */
function rxPackets(): number {
  const line = readFileSync('/proc/net/dev', 'utf8').split('\n').find((l) => l.trim().startsWith('vmtap0:'))!;
  return Number(line.split(':')[1].trim().split(/\s+/)[1]);
}

function arpReply(tapMac: Uint8Array): Uint8Array {
  const f = new Uint8Array(42);
  f.set(tapMac, 0);
  f.set(FAKE_MAC, 6);
  f.set([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2], 12);
  f.set(FAKE_MAC, 22);
  f.set([10, 213, 0, 2], 28);
  f.set(tapMac, 32);
  f.set([10, 213, 0, 1], 38);
  return f;
}

describe.skipIf(!inNetns)('TapBackend in a private network namespace', () => {
  it('reads the kernel ARP request, answers it, then reads the UDP datagram the kernel sends', async () => {
    const tap = new TapBackend('vmtap0');
    const got: Uint8Array[] = [];
    tap.onFrame((f) => got.push(f));
    const udp = createSocket('udp4');
    try {
      udp.send(Buffer.from('hello tap'), 9, '10.213.0.2');
      await until(() => got.some((f) => f[12] === 0x08 && f[13] === 0x06));
      const arp = got.find((f) => f[12] === 0x08 && f[13] === 0x06)!;
      expect([...arp.subarray(0, 6)]).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
      expect([...arp.subarray(38, 42)]).toEqual([10, 213, 0, 2]);
      const tapMac = arp.subarray(6, 12);
      const rxBefore = rxPackets();
      tap.send(arpReply(tapMac));
      expect(tap.stats.txFrames).toBe(1);
      await until(() => got.some((f) => f[12] === 0x08 && f[13] === 0x00 && f[23] === 17));
      const ip = got.find((f) => f[12] === 0x08 && f[13] === 0x00 && f[23] === 17)!;
      expect([...ip.subarray(0, 6)]).toEqual([...FAKE_MAC]); // the kernel used our answer
      expect(Buffer.from(ip.subarray(42)).toString()).toBe('hello tap');
      expect(rxPackets()).toBe(rxBefore + 1);
      tap.send(new Uint8Array(10));
      expect(tap.stats.txDropped).toBe(1);
      expect(tap.stats.rxFrames).toBe(got.length);
    } finally {
      udp.close();
      tap.close();
      tap.close();
    }
    expect(tap.closed).toBe(true);
    tap.send(arpReply(FAKE_MAC));
    expect(tap.stats.txDropped).toBe(2);
  });

  it('refuses an interface that is not there, and a second attach while the first holds it', () => {
    expect(() => new TapBackend('nosuch0')).toThrow(expect.objectContaining({ code: 'ENODEV', syscall: 'if_nametoindex' }));
    const a = new TapBackend('vmtap0');
    try {
      expect(() => new TapBackend('vmtap0')).toThrow(expect.objectContaining({ code: 'EBUSY', syscall: 'TUNSETIFF' }));
    } finally {
      a.close();
    }
  });
});

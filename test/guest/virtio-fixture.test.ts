/**
 * The C virtio fixture (guests/src/virtio-blk.c → guests/out/virtio-blk.elf, a Multiboot
 * kernel built by scripts/build-guests.mjs): a firmware-and-driver-in-one that scans PCI bus
 * 0 through 0xCF8/0xCFC, places the BARs of virtio-blk (1af4:1042) and virtio-rng
 * (1af4:1044) below 4 GiB when they are not, initialises them (virtio 1.2 §3.1.1), drives
 * one polled split queue each, and ends with "virtio-fixture: PASS" (debug-exit value 0,
 * status 1) or "virtio-fixture: FAIL <reason>" (value 1, status 3).
 *
 * The first suite runs it on a PC without virtio devices (the scan finds only the host
 * bridge); the second with a virtio-blk disk and a virtio-rng (`pc.addVirtioDevice`), once
 * per queue-notification path (KVM_IOEVENTFD, posted writes, plain exits).
 *
 * The console fixture (guests/src/virtio-console.c, the same driver code in
 * guests/src/include/virtio.c) drives a virtio-console (1af4:1043): a receive buffer on
 * receiveq0, "hello from hvc0\n" on transmitq0, then the input it gets back as
 * "echo: <line>\n" — waiting at most `wait=S` seconds (Multiboot command line) and failing
 * without input only with `input=required`.
 *
 * The last suite checks the bench's guest (guests/src/virtio-blk-bench.c, npm run bench's
 * virtio-blk rows) on a small tagged image: every read returns its block.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createPc, VirtioBlock, VirtioConsole, VirtioRng, type Pc } from '../../src/index.js';
import { fixture } from '../helpers.js';
import { capturedPc } from './guests.js';

const MiB = 2 ** 20;
const pcs: Pc[] = [];
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const pc of pcs.splice(0)) pc.destroy();
  for (const c of cleanups.splice(0)) await c();
});

/** Debug-exit status for a value the guest writes to port 0x501. */
const status = (value: number): number => value * 2 + 1;

describe('virtio fixture: a PC without virtio devices', () => {
  it('scans bus 0, finds no virtio device, and exits with FAIL (value 1) promptly', async () => {
    const m = capturedPc(pcs, { memory: 16 * MiB });
    m.loadMultiboot(fixture('virtio-blk.elf'));
    const result = await m.run({ timeoutMs: 30_000 });
    expect(result).toEqual({ reason: 'debug-exit', status: status(1) });
    const lines = m.out.text.split('\n');
    expect(lines.shift()).toBe('virtio-fixture: start');
    expect(lines.pop()).toBe(''); // the output ends with a newline
    expect(lines.slice(-2)).toEqual(['virtio-fixture: found blk=0 rng=0', 'virtio-fixture: FAIL no virtio devices']);
    // In between: either no host bridge at all (today: 0xCF8 is unclaimed and 0xCFC reads
    // all-ones, so nothing is found) or the functions of bus 0 (none of them virtio).
    const scan = lines.slice(0, -2);
    if (scan[0]?.startsWith('pci: no host bridge')) {
      expect(scan).toEqual(['pci: no host bridge (CONFIG_ADDRESS at 0xcf8 does not read back)', 'pci: no devices on bus 0']);
    } else {
      for (const l of scan) expect(l).toMatch(/^pci 00:[01][0-9a-f]\.0 [0-9a-f]{4}:[0-9a-f]{4}$/);
      expect(scan.join('\n')).not.toMatch(/ 1af4:104[24]$/m);
    }
  });
});

/** Sector 1 as the fixture writes it: the text, then byte i = i & 0xff. */
function writePattern(): Uint8Array {
  const text = new TextEncoder().encode('vmmapi virtio-blk write test');
  const s = new Uint8Array(512).map((_, i) => i & 0xff);
  s.set(text);
  return s;
}

describe('virtio devices on the PC: hostile BAR moves', () => {
  it('a BAR moved over another device\'s notify page: the ioeventfd is refused and counted, nothing throws', () => {
    const pc = createPc({ memory: 32 * MiB, virtio: [new VirtioRng(), new VirtioRng()] });
    pcs.push(pc);
    const [a, b] = pc.virtio.devices;
    const target = a.pci.bars[0].address;
    const bar0 = (slot: number, half: number) => (slot << 15) | (0x10 + 4 * half);
    // the guest programs device b's 64-bit BAR 0 to device a's address, low half then high
    expect(() => {
      pc.pci.ecam.write(bar0(b.pci.slot, 0), 4, target % 2 ** 32);
      pc.pci.ecam.write(bar0(b.pci.slot, 1), 4, Math.floor(target / 2 ** 32));
    }).not.toThrow();
    expect(pc.virtio.ioeventfdRefused).toBeGreaterThan(0);
    expect(pc.pci.counters.barConflicts).toBeGreaterThan(0);
  });
});

describe('virtio fixture: virtio-blk and virtio-rng over virtio-pci', () => {
  it('createPc({ virtio }) attaches the devices as addVirtioDevice does', async () => {
    let text = '';
    const pc = createPc({ memory: 32 * MiB, serial: { onOutput: (b) => (text += String.fromCharCode(b)) }, virtio: [new VirtioRng()] });
    pcs.push(pc);
    expect(pc.virtio.devices.map((d) => [d.pci.slot, d.device.deviceType])).toEqual([[1, 4]]);
    pc.loadMultiboot(fixture('virtio-blk.elf'));
    expect(await pc.run({ timeoutMs: 60_000 })).toEqual({ reason: 'debug-exit', status: status(0) });
    expect(text).toContain('virtio-fixture: found blk=0 rng=1\n');
    expect(() => createPc({ memory: 32 * MiB, virtio: 5 as unknown as [] })).toThrow(/opts.virtio must be an array/);
  });

  it.each(['ioeventfd', 'posted', 'exit'] as const)('notify by %s: drives both devices to PASS and leaves the written sector in the image', async (notify) => {
    const dir = mkdtempSync(join(tmpdir(), 'vmmapi-virtio-fixture-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const img = join(dir, 'disk.img');
    const sectors = 2048; // 1 MiB
    const disk = new Uint8Array(sectors * 512);
    const sector0 = new TextEncoder().encode('vmmapi sector 0!'); // 16 bytes: what the guest prints
    disk.set(sector0);
    writeFileSync(img, disk);

    let text = '';
    const pc = createPc({ memory: 64 * MiB, serial: { onOutput: (b) => (text += String.fromCharCode(b)) } });
    pcs.push(pc);
    const blk = await VirtioBlock.open({ path: img });
    cleanups.unshift(() => blk.close()); // before the directory goes
    const b = pc.addVirtioDevice(blk, { notify });
    const r = pc.addVirtioDevice(new VirtioRng(), { notify });
    expect([b.notify, r.notify]).toEqual([notify, notify]);
    pc.loadMultiboot(fixture('virtio-blk.elf'));
    const result = await pc.run({ timeoutMs: 60_000 });

    expect(text, text).toMatch(/virtio-fixture: PASS\n$/);
    expect(result).toEqual({ reason: 'debug-exit', status: status(0) });
    expect(text).toMatch(/^pci 00:[01][0-9a-f]\.0 1af4:1042$/m);
    expect(text).toMatch(/^pci 00:[01][0-9a-f]\.0 1af4:1044$/m);
    expect(text).toContain('virtio-fixture: found blk=1 rng=1\n');
    expect(text).toContain(`virtio-blk: capacity 0x${sectors.toString(16).padStart(16, '0')} sectors\n`);
    const hex16 = Array.from(sector0, (b) => b.toString(16).padStart(2, '0')).join(' ');
    expect(text).toContain(`virtio-blk: read sector 0: status 0 (OK), used len 513, data ${hex16}\n`);
    expect(text).toContain('virtio-blk: write sector 1: status 0 (OK), used len 1\n');
    expect(text).toMatch(/^virtio-blk: flush: (status 0 \(OK\)|not offered)$/m);
    expect(text).toContain('virtio-blk: read sector 1: status 0 (OK), used len 513, matches what was written\n');
    expect(text).toContain(`(past the end): status 1 (IOERR)\n`);
    expect(text).toMatch(/^virtio-rng: used len (\d+), (\d+) non-zero bytes$/m);
    expect(text).toContain('virtio-blk: ok\nvirtio-rng');
    expect(text).toContain('virtio-rng: ok\n');
    // a 64-bit BAR the VMM put above 4 GiB was moved into the fixture's window
    for (const m of text.matchAll(/: BAR\d \(64-bit, 0x[0-9a-f]+ bytes\) (?:moved from 0x[0-9a-f]{16}|was unassigned,) to (0x[0-9a-f]{8})$/gm)) {
      const at = Number(m[1]);
      expect(at >= 0xc000_0000 && at < 0xe000_0000).toBe(true);
    }

    expect(b.errors).toEqual([]);
    expect(r.errors).toEqual([]);
    const back = readFileSync(img);
    expect(new Uint8Array(back.subarray(512, 1024))).toEqual(writePattern());
    expect(new Uint8Array(back.subarray(0, 16))).toEqual(sector0);
  });
});

describe('virtio fixture: virtio-console over virtio-pci', () => {
  const GREETING = 'hello from hvc0\n';

  /** A PC with a virtio-console whose output is collected; `onOutput` sees it after each chunk. */
  function consolePc(notify: 'ioeventfd' | 'posted' | 'exit' | undefined, onOutput: (hvc0: string, con: VirtioConsole) => void = () => {}) {
    let com1 = '';
    let hvc0 = '';
    const pc = createPc({ memory: 32 * MiB, serial: { onOutput: (b) => (com1 += String.fromCharCode(b)) } });
    pcs.push(pc);
    const con: VirtioConsole = new VirtioConsole({
      output: (bytes) => {
        hvc0 += new TextDecoder().decode(bytes);
        onOutput(hvc0, con);
      },
    });
    const dev = pc.addVirtioDevice(con, notify === undefined ? {} : { notify });
    return { pc, con, dev, text: () => ({ com1, hvc0 }) };
  }

  it.each(['ioeventfd', 'posted', 'exit'] as const)('notify by %s: greets on hvc0, echoes the line fed to input() once the greeting is out', async (notify) => {
    let fed = false;
    const m = consolePc(notify, (hvc0, con) => {
      if (!fed && hvc0 === GREETING) {
        fed = true;
        setImmediate(() => con.input(new TextEncoder().encode('hi there, guest\r\n')));
      }
    });
    m.pc.loadMultiboot(fixture('virtio-console.elf'), { cmdline: 'wait=20 input=required' });
    const result = await m.pc.run({ timeoutMs: 60_000 });
    const { com1, hvc0 } = m.text();

    expect(com1, com1).toMatch(/virtio-console: PASS\n$/);
    expect(result).toEqual({ reason: 'debug-exit', status: status(0) });
    expect(hvc0).toBe(`${GREETING}echo: hi there, guest\n`);
    expect(com1).toContain('virtio-console: wait=20 input=required\n');
    expect(com1).toMatch(/^pci 00:[01][0-9a-f]\.0 1af4:1043$/m);
    // VERSION_1 only, both queues of port 0
    expect(com1).toMatch(/^virtio-console: driver features 0x0000000100000000, queue 0 size 8 \(max \d+\), queue 1 size 8 \(max \d+\), status 0x0f$/m);
    expect(com1).toContain('virtio-console: greeting sent on queue 1 (16 bytes)\n');
    expect(com1).toContain('virtio-console: received 17 bytes: "hi there, guest\\r\\n"\n');
    expect(com1).toContain('virtio-console: input line "hi there, guest" (newline), 1 receive buffer\n');
    expect(com1).toContain('virtio-console: echo sent on queue 1 (22 bytes)\n');
    expect(m.dev.errors).toEqual([]);
    expect(m.con.stats).toMatchObject({ txChains: 2, outputBytes: 16 + 22, inputBytes: 17, delivered: 17, rxChains: 1, empty: 0, inputDropped: 0 });
    expect(m.con.buffered).toBe(0);
  });

  it('input typed before the driver is up waits for the receive buffer; bytes past the newline are not echoed', async () => {
    const m = consolePc(undefined);
    m.con.input(new TextEncoder().encode('early\nlate'));
    m.pc.loadMultiboot(fixture('virtio-console.elf'), { cmdline: 'wait=20 input=required' });
    const result = await m.pc.run({ timeoutMs: 60_000 });
    const { com1, hvc0 } = m.text();
    expect(com1, com1).toMatch(/virtio-console: PASS\n$/);
    expect(result).toEqual({ reason: 'debug-exit', status: status(0) });
    expect(hvc0).toBe(`${GREETING}echo: early\n`);
    expect(com1).toContain('virtio-console: received 10 bytes: "early\\nlate"\n');
  });

  it('no input within wait=1: passes transmit-only, fails with input=required', async () => {
    for (const [cmdline, pass] of [['wait=1', true], ['wait=1 input=required', false]] as const) {
      const m = consolePc(undefined);
      m.pc.loadMultiboot(fixture('virtio-console.elf'), { cmdline });
      const result = await m.pc.run({ timeoutMs: 60_000 });
      const { com1, hvc0 } = m.text();
      expect(hvc0).toBe(GREETING);
      expect(com1).toContain('virtio-console: waiting up to 1 s for input\nvirtio-console: no input within 1 s\n');
      if (pass) {
        expect(com1, com1).toMatch(/virtio-console: PASS\n$/);
        expect(result).toEqual({ reason: 'debug-exit', status: status(0) });
      } else {
        expect(com1, com1).toMatch(/virtio-console: FAIL no input \(input=required\)\n$/);
        expect(result).toEqual({ reason: 'debug-exit', status: status(1) });
      }
    }
  });

  it('a PC without a virtio-console: FAIL naming it', async () => {
    const m = capturedPc(pcs, { memory: 16 * MiB });
    m.loadMultiboot(fixture('virtio-console.elf'), { cmdline: 'wait=0 bogus' });
    const result = await m.run({ timeoutMs: 30_000 });
    expect(result).toEqual({ reason: 'debug-exit', status: status(1) });
    expect(m.out.text).toContain("virtio-console: ignoring command-line word 'bogus'\n");
    expect(m.out.text).toMatch(/virtio-console: FAIL no virtio-console device\n$/);
  });
});

describe('virtio-blk-bench fixture (npm run bench\'s guest)', () => {
  /** The fixture's blocks: i mod blocks, or x = x * 1664525 + 1013904223, block = (x * blocks) >> 32. */
  function blocks(pattern: 'seq' | 'rand', n: number, count: number): number[] {
    let x = 1;
    return Array.from({ length: n }, (_, i) => {
      if (pattern === 'seq') return i % count;
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      return Number((BigInt(x) * BigInt(count)) >> 32n);
    });
  }

  it.each([
    ['seq', 1, ''],
    ['rand', 8, ''],
    ['rand', 3, ' device=self'],
  ] as const)('pattern=%s qd=%i%s: every read returns its block; the sum of the tags is the host\'s', async (pattern, qd, extra) => {
    const dir = mkdtempSync(join(tmpdir(), 'vmmapi-blk-bench-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const img = join(dir, 'tagged.img');
    const count = 40; // 4 KiB blocks, each starting with its index
    const bytes = new Uint8Array(count * 4096);
    for (let k = 0; k < count; k++) new DataView(bytes.buffer).setUint32(k * 4096, k, true);
    writeFileSync(img, bytes);
    const m = capturedPc(pcs, { memory: 32 * MiB });
    const blk = await VirtioBlock.open({ path: img, readonly: true });
    cleanups.unshift(() => blk.close());
    const dev = m.addVirtioDevice(blk);
    const n = 100; // seq wraps past the 40 blocks
    m.loadMultiboot(fixture('virtio-blk-bench.elf'), { cmdline: `pattern=${pattern} n=${n} qd=${qd}${extra}` });
    const result = await m.run({ timeoutMs: 60_000 });
    expect(m.out.text, m.out.text).toMatch(/virtio-blk-bench: PASS\n$/);
    expect(result).toEqual({ reason: 'debug-exit', status: status(0) });
    const sum = blocks(pattern, n, count).reduce((a, b) => (a + b) >>> 0, 0);
    expect(m.out.text).toContain(`virtio-blk-bench: pattern=${pattern} n=${n} qd=${qd} seed=1${extra}\n`);
    expect(m.out.text).toContain(`virtio-blk: capacity 0x${(count * 8).toString(16).padStart(16, '0')} sectors, ${count} blocks of 4 KiB\n`);
    expect(m.out.text).toContain(`virtio-blk-bench: go\nvirtio-blk-bench: done n=${n} sum=0x${sum.toString(16).padStart(8, '0')} bad=0\n`);
    expect(dev.errors).toEqual([]);
    expect(blk.stats.requests).toBe(extra ? 0 : n);
  });
});

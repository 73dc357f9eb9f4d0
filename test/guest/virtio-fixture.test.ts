/**
 * The C virtio fixture (guests/src/virtio-blk.c → guests/out/virtio-blk.elf, a Multiboot
 * kernel built by scripts/build-guests.mjs): a firmware-and-driver-in-one that scans PCI bus
 * 0 through 0xCF8/0xCFC, places the BARs of virtio-blk (1af4:1042) and virtio-rng
 * (1af4:1044) below 4 GiB when they are not, initialises them (virtio 1.2 §3.1.1), drives
 * one polled split queue each, and ends with "virtio-fixture: PASS" (debug-exit value 0,
 * status 1) or "virtio-fixture: FAIL <reason>" (value 1, status 3).
 *
 * On today's platform (no PCI host bridge yet, no virtio-pci transport) only the empty-bus
 * path can run: that is the first suite. The second is the intended end-to-end test; it is
 * skipped until the PC platform's PCI host bridge (`pc.addPciDevice`) and the virtio-pci
 * transport and device models (`VirtioPciFunction`, `VirtioBlock`, `VirtioRng`) land on
 * main. The names it uses are assumptions (see {@link AssumedVirtioApi}): adjust them then,
 * replace the dynamic import with static ones, and drop the `.skip`.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Pc } from '../../src/platform/index.js';
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
    const t0 = performance.now();
    const result = await m.run({ timeoutMs: 30_000 });
    const ms = performance.now() - t0;
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
    // ~70 port accesses and ~150 COM1 bytes: well under a second even with every
    // kernel-mode instruction emulated (PVM); 10 s leaves room for a loaded 2-core host.
    expect(ms).toBeLessThan(10_000);
  });
});

/**
 * The platform and virtio API this test assumes (names to be adjusted when the pci-platform,
 * virtio-pci and virtio-devices branches land).
 */
interface AssumedVirtioApi {
  createPc(opts: { memory: number; serial: { onOutput: (b: number) => void } }): Pc & {
    addPciDevice(fn: unknown): unknown;
    /** The MSI sink the transport signals through (KVM_SIGNAL_MSI). */
    readonly msi: unknown;
  };
  VirtioPciFunction: new (device: unknown, opts: { memory: unknown; msi: unknown }) => unknown;
  VirtioBlock: { open(opts: { path: string }): Promise<{ close(): Promise<void> }> };
  VirtioRng: new () => unknown;
}

/** Sector 1 as the fixture writes it: the text, then byte i = i & 0xff. */
function writePattern(): Uint8Array {
  const text = new TextEncoder().encode('vmmapi virtio-blk write test');
  const s = new Uint8Array(512).map((_, i) => i & 0xff);
  s.set(text);
  return s;
}

// Enabled when the PC platform's PCI host bridge and the virtio-pci / virtio device models
// land on main (branches pci-platform, virtio-pci, virtio-devices): until then createPc has
// no addPciDevice and there is no VirtioPciFunction, VirtioBlock or VirtioRng to attach.
describe.skip('virtio fixture: virtio-blk and virtio-rng over virtio-pci (needs the PCI platform and virtio branches)', () => {
  it('drives both devices to PASS and leaves the written sector in the image', async () => {
    const api = (await import('../../src/index.js')) as unknown as AssumedVirtioApi;
    const dir = mkdtempSync(join(tmpdir(), 'vmmapi-virtio-fixture-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const img = join(dir, 'disk.img');
    const sectors = 2048; // 1 MiB
    const disk = new Uint8Array(sectors * 512);
    const sector0 = new TextEncoder().encode('vmmapi sector 0!'); // 16 bytes: what the guest prints
    disk.set(sector0);
    writeFileSync(img, disk);

    let text = '';
    const pc = api.createPc({ memory: 64 * MiB, serial: { onOutput: (b) => (text += String.fromCharCode(b)) } });
    pcs.push(pc);
    const blk = await api.VirtioBlock.open({ path: img });
    cleanups.unshift(() => blk.close()); // before the directory goes
    pc.addPciDevice(new api.VirtioPciFunction(blk, { memory: pc.vm.memory, msi: pc.msi }));
    pc.addPciDevice(new api.VirtioPciFunction(new api.VirtioRng(), { memory: pc.vm.memory, msi: pc.msi }));
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

    const back = readFileSync(img);
    expect(new Uint8Array(back.subarray(512, 1024))).toEqual(writePattern());
    expect(new Uint8Array(back.subarray(0, 16))).toEqual(sector0);
  });
});

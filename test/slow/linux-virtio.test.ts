/**
 * Issue 12's end-to-end test: Debian's 6.1 cloud kernel with the virtio initramfs
 * (scripts/fetch-linux.mjs: the kernel package's own virtio_pci, virtio_blk, virtio-rng and
 * virtio_console modules; /init in virtioInit there) on `vmmapi run --disk path=A
 * --disk path=B,readonly=on --rng --console file=C`, on 1 and on 2 vCPUs:
 * - A (vda): an ext4 image made here with host.txt: the guest prints it, writes guest.txt,
 *   unmounts; read back here with debugfs (no mount, no root);
 * - B (vdb): a read-only ext4 image with ro.txt: the guest reads it, its write to the device
 *   fails, and B's bytes are unchanged;
 * - --rng: 16 bytes from the guest's /dev/hwrng;
 * - --console file=C: "hello hvc0", written to the guest's /dev/hvc0, lands in C.
 * Every /init step prints a marker and goes on to poweroff -f, so a missing device fails the
 * assertions below rather than hanging the boot.
 *
 * Slow (a boot to /init takes minutes on PVM hosts): only with VMMAPI_SLOW=1, like
 * linux-init.test.ts, whose command line (./linux-guest.ts) this shares.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { INITRD_VIRTIO, KERNEL, LIMIT_MS, requireFetched, runLinux } from './linux-guest.js';

/** An e2fsprogs tool: on PATH, or in the sbin directories a non-root PATH may leave out. */
function e2fsTool(name: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'].filter((d) => d.startsWith('/'));
  const found = dirs.map((d) => join(d, name)).find((p) => existsSync(p));
  if (!found) throw new Error(`${name} not found: install e2fsprogs (the test makes its ext4 images with mkfs.ext4 -d, reads them with debugfs)`);
  return found;
}

/** An ext4 image `img` of `size` (mkfs.ext4 syntax) holding `files`: mkfs.ext4 -d, no mount, no root. */
function ext4Image(img: string, size: string, files: Record<string, string>): void {
  const dir = `${img}.d`;
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  try {
    execFileSync(e2fsTool('mkfs.ext4'), ['-q', '-F', '-d', dir, img, size], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`mkfs.ext4 -d failed (e2fsprogs 1.43 or later needed): ${String((e as { stderr?: Buffer }).stderr ?? e)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A file of an ext4 image, through debugfs (its banner goes to stderr). */
function ext4Cat(img: string, path: string): string {
  return execFileSync(e2fsTool('debugfs'), ['-R', `cat ${path}`, img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

describe.skipIf(!process.env.VMMAPI_SLOW)('Linux with virtio disks, rng and console (VMMAPI_SLOW=1)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-virtio-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it.each([1, 2])('%i vCPU(s): ext4 on a disk read and written, a read-only disk refuses writes, hwrng, hvc0', async (cpus) => {
    requireFetched(KERNEL, INITRD_VIRTIO);
    const dir = join(tmp, `cpus${cpus}`);
    mkdirSync(dir);
    const hostToken = `host-${cpus}-${process.pid}-${Date.now()}`;
    const roToken = `ro-${cpus}-${process.pid}-${Date.now()}`;
    const a = join(dir, 'a.img');
    const b = join(dir, 'b.img');
    const c = join(dir, 'hvc0.txt');
    ext4Image(a, '16M', { 'host.txt': `${hostToken}\n` });
    ext4Image(b, '8M', { 'ro.txt': `${roToken}\n` });
    const bBefore = sha256(b);

    const run = await runLinux({
      initrd: INITRD_VIRTIO,
      cpus,
      extra: ['--disk', `path=${a}`, '--disk', `path=${b},readonly=on`, '--rng', '--console', `file=${c}`],
    });
    const { out, context } = run;
    // the failure markers first: they say what went wrong
    expect(out.match(/VMMAPI-[\w-]*FAILED=.*/g) ?? [], context).toEqual([]);
    expect(out, context).toContain('VMMAPI-INIT-OK');
    expect(out, context).toContain(`VMMAPI-NPROC=${cpus}`);
    expect(out, context).toContain('VMMAPI-VIRTIO-MODULES-OK');
    expect(out, context).toContain('VMMAPI-VDA-RO=0');
    expect(out, context).toContain(`VMMAPI-HOST-FILE=${hostToken}`);
    expect(out, context).toContain('VMMAPI-GUEST-WRITE=ok');
    expect(out, context).toContain('VMMAPI-UMOUNT=ok');
    expect(out, context).toContain('VMMAPI-VDB-RO=1'); // VIRTIO_BLK_F_RO reached the guest's block layer
    expect(out, context).toContain('VMMAPI-RO-REFUSED=yes');
    expect(out, context).toContain(`VMMAPI-RO-FILE=${roToken}`);
    const hwrng = /VMMAPI-HWRNG=([0-9a-f]{32})/.exec(out)?.[1];
    expect(hwrng, context).toBeDefined();
    expect(hwrng, context).not.toMatch(/^(00)+$|^(ff)+$/);
    expect(out, context).toContain('VMMAPI-HVC0=written');
    expect(out, context).toContain('VMMAPI-VIRTIO-DONE');
    expect(run.code, context).toBe(0); // poweroff -f → ACPI S5

    expect(existsSync(c), `--console file=${c} was not created`).toBe(true);
    expect(readFileSync(c, 'latin1')).toContain('hello hvc0');
    expect(ext4Cat(a, '/guest.txt')).toBe('written by the guest\n');
    expect(ext4Cat(a, '/host.txt')).toBe(`${hostToken}\n`);
    expect(sha256(b), 'the read-only disk changed').toBe(bBefore);
    console.log(`${cpus} vCPU(s): virtio /init done after ${run.seconds.toFixed(0)} s; hwrng ${hwrng}; ${run.fallbackSummary}`);
  }, LIMIT_MS + 60_000);
});

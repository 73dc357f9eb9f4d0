/**
 * Boots Debian's 6.1 cloud kernel with a busybox initramfs through `vmmapi run --kernel`.
 *
 * Slow (minutes: the kernel's CPL0 code runs in KVM's instruction emulator on PVM hosts,
 * see DESIGN.md §1) and it needs the kernel downloaded by scripts/fetch-linux.mjs, so it
 * runs only with VMMAPI_SLOW=1 (`npm run test:slow`); otherwise the suite is skipped.
 * It expects the kernel banner and `x86/fpu: x87 FPU will use FXSAVE` on ttyS0 — as far as
 * this kernel is known to get under KVM's emulator — within 6 minutes. If the boot gets all
 * the way to the initramfs, it also checks that /init saw both vCPUs.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/kvm/native.js';

const root = packageRoot();
const CLI = join(root, 'dist', 'src', 'cli', 'main.js');
const KERNEL = join(root, '.cache', 'linux', 'vmlinuz');
const INITRD = join(root, '.cache', 'linux', 'initramfs.cpio');
const FPU_LINE = 'x86/fpu: x87 FPU will use FXSAVE';
const LIMIT_MS = 6 * 60_000;

describe.skipIf(!process.env.VMMAPI_SLOW)('Linux (VMMAPI_SLOW=1)', () => {
  it('boots to the FPU set-up on ttyS0 with 2 vCPUs', async () => {
    if (!existsSync(KERNEL) || !existsSync(INITRD)) throw new Error('run `node scripts/fetch-linux.mjs` first');
    const args = [
      CLI, 'run', '--kernel', KERNEL, '--initrd', INITRD, '--cpus', '2', '--memory', '512M',
      // KVM's emulator (all CPL0 code on PVM) fails on lock cmpxchg16b and xrstor: hide both.
      '--clear-cpuid', 'cx16,xsave',
      '--append', 'console=ttyS0 earlyprintk=ttyS0 noxsave panic=-1',
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const killer = setTimeout(() => child.kill('SIGKILL'), LIMIT_MS);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      // Past the FPU line the kernel either dies in its int3 self-test or reaches /init.
      if (out.includes('VMMAPI-NPROC=') || (out.includes(FPU_LINE) && !process.env.VMMAPI_SLOW_FULL)) child.kill('SIGKILL');
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await done;
    clearTimeout(killer);
    const context = `exit ${code}\nstderr: ${err}\nlast output:\n${out.slice(-2000)}`;
    expect(out, context).toMatch(/Linux version 6\.1\.\S+ /);
    expect(out, context).toContain(FPU_LINE);
    if (out.includes('VMMAPI-INIT-OK')) expect(out, context).toContain('VMMAPI-NPROC=2');
  }, LIMIT_MS + 30_000);
});

/**
 * Boots Debian's 6.1 cloud kernel (scripts/fetch-linux.mjs) through `vmmapi run --kernel` to
 * the busybox initramfs's /init, on 1 and on 2 vCPUs: /init prints VMMAPI-INIT-OK and
 * `nproc`, then powers off (ACPI S5 → exit status 0).
 *
 * On PVM hosts the kernel's CPL0 code runs in KVM's instruction emulator (DESIGN.md §1): this
 * takes minutes, so the suite runs only with VMMAPI_SLOW=1 (`npm run test:slow`). The
 * instruction fallback finishes what the emulator cannot, and the SYSCALL repair makes /init's
 * system calls work (src/emulate/).
 *
 * The kernel command line ({@link linuxCommandLine}) — required:
 * - console=ttyS0: the output this test reads;
 * - noxsave: KVM's emulator cannot run `xrstor` (and the fallback does not either);
 * - panic=-1: a panic reboots, which ends the run instead of hanging.
 * For speed on PVM hosts (each measured; see README "Linux on PVM hosts"):
 * - no-kvmclock tsc_early_khz=<10 × the host TSC rate> tsc=reliable: the guest believes its TSC
 *   runs 10× faster, so its 250 Hz tick fires at 25 Hz real time — timer interrupts had eaten
 *   most of the emulated CPU time;
 * - clearcpuid=smap,erms,fsrm,ssse3,cx16: no `clac`/`stac` exits; `rep stosq/movsq` instead of
 *   `rep stosb/movsb` (8× fewer emulated iterations); generic C instead of SSSE3 in the
 *   kernel's BLAKE2s/ChaCha (each SIMD instruction is a trip to the fallback); no
 *   `cmpxchg16b` trips;
 * - init_on_alloc=0 mitigations=off cryptomgr.notests nowatchdog: less emulated work (page
 *   zeroing, retpolines/return thunks, crypto self-tests, lockup detectors).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/kvm/native.js';
import { Vm } from '../../src/vm.js';

const root = packageRoot();
const CLI = join(root, 'dist', 'src', 'cli', 'main.js');
const KERNEL = join(root, '.cache', 'linux', 'vmlinuz');
const INITRD = join(root, '.cache', 'linux', 'initramfs.cpio');
const LIMIT_MS = 30 * 60_000;

/** The command line documented above, for a host whose TSC runs at `tscKhz`. */
function linuxCommandLine(tscKhz: number): string {
  return [
    'console=ttyS0 noxsave panic=-1',
    `no-kvmclock tsc_early_khz=${tscKhz * 10} tsc=reliable`,
    'clearcpuid=smap,erms,fsrm,ssse3,cx16 init_on_alloc=0 mitigations=off cryptomgr.notests nowatchdog',
  ].join(' ');
}

function hostTscKhz(): number {
  const vm = Vm.create(`tsc-${process.pid}`, { vcpus: 1 });
  try {
    return vm.getTscKhz(0);
  } finally {
    vm.destroy();
  }
}

describe.skipIf(!process.env.VMMAPI_SLOW)('Linux to /init (VMMAPI_SLOW=1)', () => {
  it.each([1, 2])('%i vCPU(s): /init runs, nproc agrees, the guest powers off', async (cpus) => {
    if (!existsSync(KERNEL) || !existsSync(INITRD)) throw new Error('run `node scripts/fetch-linux.mjs` first');
    const args = [
      CLI, 'run', '--kernel', KERNEL, '--decompress-on-host', '--initrd', INITRD, '--cpus', String(cpus), '--memory', '512M',
      '--append', linuxCommandLine(hostTscKhz()),
    ];
    const started = Date.now();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const killer = setTimeout(() => child.kill('SIGKILL'), LIMIT_MS);
    child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await done;
    clearTimeout(killer);
    const context = `exit ${code}\nstderr: ${err}\nlast output:\n${out.slice(-3000)}`;
    expect(out, context).toMatch(/Linux version 6\.1\.\S+ /);
    expect(out, context).toContain('VMMAPI-INIT-OK');
    expect(out, context).toContain(`VMMAPI-NPROC=${cpus}`);
    expect(code, context).toBe(0); // poweroff -f → ACPI S5
    // on PVM hosts the CLI reports the fallback's work; hardware KVM needs none
    const summary = err.split('\n').find((l) => l.includes('finished in userspace')) ?? 'no instructions needed the fallback';
    console.log(`${cpus} vCPU(s): /init after ${((Date.now() - started) / 1000).toFixed(0)} s; ${summary}`);
  }, LIMIT_MS + 60_000);
});

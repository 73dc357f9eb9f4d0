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
 * The kernel command line, each flag and why: linuxCommandLine in ./linux-guest.ts.
 */
import { describe, expect, it } from 'vitest';
import { INITRD, KERNEL, LIMIT_MS, requireFetched, runLinux } from './linux-guest.js';

describe.skipIf(!process.env.VMMAPI_SLOW)('Linux to /init (VMMAPI_SLOW=1)', () => {
  it.each([1, 2])('%i vCPU(s): /init runs, nproc agrees, the guest powers off', async (cpus) => {
    requireFetched(KERNEL, INITRD);
    const { code, out, context, seconds, fallbackSummary } = await runLinux({ initrd: INITRD, cpus });
    expect(out, context).toMatch(/Linux version 6\.1\.\S+ /);
    expect(out, context).toContain('VMMAPI-INIT-OK');
    expect(out, context).toContain(`VMMAPI-NPROC=${cpus}`);
    expect(code, context).toBe(0); // poweroff -f → ACPI S5
    console.log(`${cpus} vCPU(s): /init after ${seconds.toFixed(0)} s; ${fallbackSummary}`);
  }, LIMIT_MS + 60_000);
});

/**
 * What the slow Linux tests share: the files of scripts/fetch-linux.mjs, the kernel command
 * line, and running `vmmapi run` as a child process with a time limit.
 *
 * The kernel command line ({@link linuxCommandLine}) — required:
 * - console=ttyS0: the output the tests read;
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
import { packageRoot } from '../../src/kvm/native.js';
import { Vm } from '../../src/vm.js';

const root = packageRoot();
export const CLI = join(root, 'dist', 'src', 'cli', 'main.js');
export const KERNEL = join(root, '.cache', 'linux', 'vmlinuz');
/** /init prints VMMAPI-INIT-OK and nproc, then powers off. */
export const INITRD = join(root, '.cache', 'linux', 'initramfs.cpio');
/** The same plus the virtio modules; /init exercises the disks, /dev/hwrng and hvc0 (fetch-linux.mjs, virtioInit). */
export const INITRD_VIRTIO = join(root, '.cache', 'linux', 'initramfs-virtio.cpio');
/** Per boot: minutes on PVM hosts (guest kernel code emulated). */
export const LIMIT_MS = 30 * 60_000;

/** Throws unless scripts/fetch-linux.mjs has made `files`. */
export function requireFetched(...files: string[]): void {
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length) throw new Error(`run \`node scripts/fetch-linux.mjs\` first (missing ${missing.join(', ')})`);
}

/** The command line documented above, for a host whose TSC runs at `tscKhz`. */
export function linuxCommandLine(tscKhz: number): string {
  return [
    'console=ttyS0 noxsave panic=-1',
    `no-kvmclock tsc_early_khz=${tscKhz * 10} tsc=reliable`,
    'clearcpuid=smap,erms,fsrm,ssse3,cx16 init_on_alloc=0 mitigations=off cryptomgr.notests nowatchdog',
  ].join(' ');
}

export function hostTscKhz(): number {
  const vm = Vm.create(`tsc-${process.pid}`, { vcpus: 1 });
  try {
    return vm.getTscKhz(0);
  } finally {
    vm.destroy();
  }
}

export interface CliRun {
  /** Exit status (null: killed at the limit). */
  code: number | null;
  /** The guest's COM1 (latin1). */
  out: string;
  err: string;
  seconds: number;
  /** For expect() messages: status, stderr, the output's tail. */
  context: string;
  /** The CLI's report of the instruction fallback's work (PVM hosts), or a note that none was needed. */
  fallbackSummary: string;
}

/**
 * `vmmapi run --kernel KERNEL --decompress-on-host --initrd <initrd> --cpus <cpus> --memory 512M
 * --append <linuxCommandLine> ...extra`, SIGKILLed after `limitMs`.
 */
export async function runLinux(opts: { initrd: string; cpus: number; extra?: string[]; limitMs?: number }): Promise<CliRun> {
  const args = [
    CLI, 'run', '--kernel', KERNEL, '--decompress-on-host', '--initrd', opts.initrd, '--cpus', String(opts.cpus), '--memory', '512M',
    '--append', linuxCommandLine(hostTscKhz()), ...(opts.extra ?? []),
  ];
  const started = Date.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const killer = setTimeout(() => child.kill('SIGKILL'), opts.limitMs ?? LIMIT_MS);
  child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await done;
  clearTimeout(killer);
  return {
    code,
    out,
    err,
    seconds: (Date.now() - started) / 1000,
    context: `exit ${code}\nstderr: ${err}\nlast output:\n${out.slice(-3000)}`,
    // on PVM hosts the CLI reports the fallback's work; hardware KVM needs none
    fallbackSummary: err.split('\n').find((l) => l.includes('finished in userspace')) ?? 'no instructions needed the fallback',
  };
}

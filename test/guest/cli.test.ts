/**
 * `vmmapi run` as a process: SeaBIOS to "No bootable device", the Multiboot fw_cfg guest's
 * exit status, one-line errors with exit code 2, the timeout (124) and a guest failure (1);
 * the C virtio fixtures with --disk/--rng and with --console to a file and to a socket.
 * Needs the build (dist/) and the guest fixtures.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixturePath } from '../../src/fixtures.js';
import { packageRoot } from '../../src/kvm/native.js';

const CLI = join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
const SEABIOS = '/usr/share/seabios/bios.bin';
const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** `until` appeared on stdout (the child was then stopped). */
  matched: boolean;
}

/** Run the CLI; kill it once `until` appears on stdout, or after `limitMs`. */
function vmmapi(args: string[], opts: { until?: string; limitMs?: number } = {}): Promise<Outcome> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let matched = false;
  const killer = setTimeout(() => child.kill('SIGKILL'), opts.limitMs ?? 30_000);
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString('latin1');
    if (opts.until && !matched && stdout.includes(opts.until)) {
      matched = true;
      child.kill('SIGKILL');
    }
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, matched });
    });
  });
}

/** One `vmmapi: ...` line and no stack trace. */
function expectOneLineError(o: Outcome, re: RegExp): void {
  expect(o.code).toBe(2);
  const lines = o.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^vmmapi: /);
  expect(lines[0]).toMatch(re);
  expect(o.stderr).not.toMatch(/^\s+at /m);
}

describe('vmmapi run', () => {
  // Debian's seabios package provides the ROM; .ci/run installs it, so under CI it must exist
  // (a missing ROM fails there). On a developer machine without it the test is skipped.
  it.skipIf(!existsSync(SEABIOS) && !process.env.CI)('--bios SeaBIOS --debugcon -: banner, then "No bootable device"', async () => {
    const o = await vmmapi(['run', '--bios', SEABIOS, '--debugcon', '-'], { until: 'No bootable device', limitMs: 60_000 });
    expect(o.stdout).toContain('SeaBIOS (version');
    expect(o.stdout).toContain('Found QEMU fw_cfg');
    expect(o.matched).toBe(true);
  }, 70_000);

  it('--multiboot mb-fwcfg --cpus 2: the guest\'s debug-exit status is the exit code', async () => {
    const o = await vmmapi(['run', '--multiboot', fixturePath('mb-fwcfg.elf'), '--cpus', '2', '--memory', '4M']);
    // value = 2 | (4 << 4) = 0x42; status = (0x42 << 1) | 1 = 0x85
    expect(o.code).toBe(0x85);
    expect(o.stdout).toBe('mb-fwcfg cpus=0x00000002 ram=0x00000004 MiB\n');
    expect(o.stderr).toBe('');
  });

  it('--multiboot on 1 vCPU with the default 128M', async () => {
    const o = await vmmapi(['run', '--multiboot', fixturePath('mb-fwcfg.elf')]);
    expect(o.code).toBe(((1 | (128 << 4)) * 2 + 1) & 0xff);
    expect(o.stdout).toContain('cpus=0x00000001 ram=0x00000080');
  });

  it('--multiboot cpl0-sieve: a ring-0 long-mode computation reports its prime count', async () => {
    const o = await vmmapi(['run', '--multiboot', fixturePath('cpl0-sieve.elf'), '--append', 'passes=1']);
    expect(o.code).toBe(1); // debug-exit value 0
    expect(o.stdout).toBe('cpl0-sieve: primes 0x00002fdb passes 0x00000001\n'); // 12251 primes below 2^17
  });

  it('--engine cpl0: the same computation with ring 0 in vmmapi\'s engine, same output', async () => {
    const o = await vmmapi(['run', '--multiboot', fixturePath('cpl0-sieve.elf'), '--append', 'passes=3', '--engine', 'cpl0']);
    expect(o.code).toBe(1);
    expect(o.stdout).toBe('cpl0-sieve: primes 0x00002fdb passes 0x00000003\n');
  });

  it('--engine with an unknown engine is a usage error', async () => {
    const o = await vmmapi(['run', '--multiboot', fixturePath('cpl0-sieve.elf'), '--engine', 'tcg']);
    expect(o.code).toBe(2);
    expect(o.stderr).toContain("--engine must be kvm or cpl0, got 'tcg'");
  });

  it('--timeout 1 on a spinning guest: exit 124 and a one-line note', async () => {
    const o = await vmmapi(['run', '--flat', `${fixturePath('spin.bin')}@0x1000`, '--timeout', '1']);
    expect(o.code).toBe(124);
    expect(o.stderr).toBe('vmmapi: timed out after 1 s; guest stopped\n');
  });

  it('a guest that KVM cannot emulate: exit 1 with the instruction bytes', async () => {
    const img = join(tmp, 'aaa.bin');
    writeFileSync(img, Uint8Array.from([0x37, 0xf4])); // aaa in real mode
    const o = await vmmapi(['run', '--flat', `${img}@0x1000`]);
    expect(o.code).toBe(1);
    expect(o.stderr).toMatch(/^vmmapi: guest failed: KVM emulation failure on vCPU 0: instruction bytes 37 f4/);
    expect(o.stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('a triple fault: exit 1 with a one-line note', async () => {
    const img = join(tmp, 'ud2.bin');
    writeFileSync(img, Uint8Array.from([0x0f, 0x0b])); // ud2 in protected mode without an IDT
    const o = await vmmapi(['run', '--flat', `${img}@0x100000`]);
    expect(o.code).toBe(1);
    expect(o.stderr).toBe('vmmapi: guest failed: triple fault (shutdown)\n');
  });

  it('a triple fault with --cpus 2 (the AP parked): still exit 1 with the note', async () => {
    const img = join(tmp, 'ud2-smp.bin');
    writeFileSync(img, Uint8Array.from([0x0f, 0x0b]));
    const o = await vmmapi(['run', '--flat', `${img}@0x100000`, '--cpus', '2']);
    expect(o.code).toBe(1);
    expect(o.stderr).toBe('vmmapi: guest failed: triple fault (shutdown)\n');
  });

  it('--multiboot mb-smp --cpus 2: both CPUs check in', async () => {
    const o = await vmmapi(['run', '--multiboot', fixturePath('mb-smp.elf'), '--cpus', '2', '--memory', '8M']);
    expect(o.code).toBe(5);
    expect(o.stdout).toBe('mb-smp: CPU with APIC id 0 is up\nmb-smp: CPU with APIC id 1 is up\n');
  });

  it('--disk and --rng: the C virtio fixture passes, its write reaches the image; a read-only disk refuses it', async () => {
    const img = join(tmp, 'virtio.img');
    writeFileSync(img, new Uint8Array(1 << 20));
    const o = await vmmapi(['run', '--multiboot', fixturePath('virtio-blk.elf'), '--memory', '32M', '--disk', `path=${img}`, '--rng']);
    expect(o.stdout).toMatch(/virtio-fixture: PASS\n$/);
    expect(o.code).toBe(1); // debug-exit value 0
    expect(readFileSync(img).subarray(512, 540).toString('latin1')).toBe('vmmapi virtio-blk write test');
    writeFileSync(img, new Uint8Array(1 << 20));
    const ro = await vmmapi(['run', '--multiboot', fixturePath('virtio-blk.elf'), '--memory', '32M', '--disk', `${img},readonly=on`]);
    expect(ro.stdout).toContain('virtio-blk: write sector 1: status 1 (IOERR)');
    expect(ro.code).toBe(3); // the fixture fails
    expect(readFileSync(img).subarray(512, 540).every((b) => b === 0)).toBe(true);
  });

  it('--console file=PATH: the virtio-console fixture\'s greeting lands in the file; without input it passes after its bounded wait', async () => {
    const out = join(tmp, 'hvc0.txt');
    const o = await vmmapi(['run', '--multiboot', fixturePath('virtio-console.elf'), '--memory', '32M', '--console', `file=${out}`, '--append', 'wait=1']);
    expect(o.stdout).toContain('virtio-console: no input within 1 s\n');
    expect(o.stdout).toMatch(/virtio-console: PASS\n$/);
    expect(o.code).toBe(1); // debug-exit value 0
    expect(o.stderr).toBe('');
    expect(readFileSync(out, 'latin1')).toBe('hello from hvc0\n');
  });

  it('--console socket=PATH: a client connecting after the greeting still reads it, and gets its line echoed', async () => {
    const sock = join(tmp, 'hvc0.sock');
    const child = spawn(process.execPath, [CLI, 'run', '--multiboot', fixturePath('virtio-console.elf'), '--memory', '32M', '--console', `socket=${sock}`, '--append', 'wait=30 input=required'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    let stdout = '';
    let stderr = '';
    let hvc0 = '';
    let connected = false;
    const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const echoed = new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString('latin1');
        // connect only once the guest has sent its greeting: the output from before the
        // first client is kept for it
        if (connected || !stdout.includes('virtio-console: greeting sent on queue 1')) return;
        connected = true;
        const s = connect(sock);
        s.on('error', reject);
        s.on('data', (b: Buffer) => {
          const before = hvc0;
          hvc0 += b.toString('latin1');
          if (!before.startsWith('hello from hvc0\n') && hvc0.startsWith('hello from hvc0\n')) s.write('ping over the socket\n');
          if (hvc0.includes('echo: ') && hvc0.endsWith('\n')) resolve();
        });
        s.on('close', () => resolve());
      });
    });
    await echoed;
    const code = await done;
    clearTimeout(killer);
    expect(stderr).toBe(`vmmapi: virtio console: listening on ${sock}\n`);
    expect(hvc0).toBe('hello from hvc0\necho: ping over the socket\n');
    expect(stdout).toContain('virtio-console: received 21 bytes: "ping over the socket\\n"\n');
    expect(stdout).toMatch(/virtio-console: PASS\n$/);
    expect(code).toBe(1);
  }, 70_000);

  it('--net tap= with an interface that does not exist, --net socket= with nobody listening: exit 2 naming it', async () => {
    const tap = await vmmapi(['run', '--multiboot', fixturePath('virtio-blk.elf'), '--net', 'tap=vmmapi-none0']);
    expect(tap.code).toBe(2);
    expect(tap.stderr).toMatch(/^vmmapi: cannot open TAP interface 'vmmapi-none0': /);
    const sock = await vmmapi(['run', '--multiboot', fixturePath('virtio-blk.elf'), '--net', `socket=${join(tmp, 'none.sock')}`]);
    expect(sock.code).toBe(2);
    expect(sock.stderr).toBe(`vmmapi: cannot connect --net socket '${join(tmp, 'none.sock')}': no such file\n`);
  });

  it('--vsock: the device is on the bus (the fixture scan lists 1af4:1053) and the host socket is listened on', async () => {
    const sock = join(tmp, 'v.sock');
    const o = await vmmapi(['run', '--multiboot', fixturePath('virtio-blk.elf'), '--memory', '32M', '--vsock', `cid=3,socket=${sock}`, '--rng']);
    expect(o.stdout).toMatch(/^pci 00:01\.0 1af4:1053$/m);
    expect(o.stdout).toMatch(/virtio-fixture: PASS\n$/);
    expect(o.code).toBe(1);
  });

  it('--disk with a missing image: exit 2 naming it', async () => {
    const o = await vmmapi(['run', '--multiboot', fixturePath('virtio-blk.elf'), '--disk', join(tmp, 'none.img')]);
    expect(o.code).toBe(2);
    expect(o.stderr).toBe(`vmmapi: cannot open disk image '${join(tmp, 'none.img')}': no such file\n`);
  });

  it('a guest that halts with interrupts disabled exits 4; --trace-exits prints its exits', async () => {
    const o = await vmmapi(['run', '--flat', `${fixturePath('long-sum.bin')}@0x2000`, '--mode', 'long', '--memory', '2M', '--trace-exits']);
    expect(o.code).toBe(4);
    expect(o.stderr).toContain('vmmapi: exit: vcpu0 outl port 0x10 value 0x13ba\n');
  });

  it('the fallback summary and the --clear-cpuid note come from the platform (Pc) after the run', async () => {
    const img = join(tmp, 'popcnt.bin');
    // mov $0xff,%rbx ; popcnt %rbx,%rax ; stac ; clac ; cli ; hlt
    writeFileSync(img, Uint8Array.from([0x48, 0xc7, 0xc3, 0xff, 0, 0, 0, 0xf3, 0x48, 0x0f, 0xb8, 0xc3, 0x0f, 0x01, 0xcb, 0x0f, 0x01, 0xca, 0xfa, 0xf4]));
    const o = await vmmapi(['run', '--flat', `${img}@0x2000`, '--mode', 'long', '--memory', '2M', '--clear-cpuid', 'cx16']);
    expect(o.code).toBe(4); // cli; hlt
    for (const line of o.stderr.trimEnd().split('\n').filter((l) => l !== '')) {
      expect(line).toMatch(/^vmmapi: (note: --clear-cpuid cx16: KVM does not offer this bit|guest halted: every vCPU halted with interrupts disabled$|instructions finished in userspace: (\w+ ×\d+)(, \w+ ×\d+)*$)/);
    }
    // where KVM gives up on popcnt (PVM hosts) the summary counts the one the fallback finished
    if (o.stderr.includes('finished in userspace')) expect(o.stderr).toMatch(/popcnt ×1\b/);
  });

  describe('errors: exit 2, one line, no stack trace', () => {
    it('an image that is not Multiboot', async () => {
      expectOneLineError(await vmmapi(['run', '--multiboot', fixturePath('spin.bin')]), /no Multiboot header/);
    });
    it('a truncated Multiboot image', async () => {
      const img = join(tmp, 'truncated.elf');
      writeFileSync(img, (await import('node:fs')).readFileSync(fixturePath('mb-fwcfg.elf')).subarray(0, 0x1010));
      expectOneLineError(await vmmapi(['run', '--multiboot', img]), /truncated|beyond the end/);
    });
    it('a missing file', async () => {
      expectOneLineError(await vmmapi(['run', '--kernel', join(tmp, 'nope')]), /cannot read kernel .*no such file/);
    });
    it('a 32-bit Multiboot ELF given as a Linux kernel (bzImage or vmlinux)', async () => {
      expectOneLineError(await vmmapi(['run', '--kernel', fixturePath('mb-fwcfg.elf')]), /not an x86-64 executable ELF/);
      expectOneLineError(await vmmapi(['run', '--kernel', fixturePath('spin.bin'), '--decompress-on-host']), /too short for a bzImage/);
    });
    it('a ROM of the wrong size', async () => {
      expectOneLineError(await vmmapi(['run', '--bios', fixturePath('spin.bin')]), /not a multiple of 4 KiB/);
    });
    it('too little memory', async () => {
      expectOneLineError(await vmmapi(['run', '--multiboot', fixturePath('mb-fwcfg.elf'), '--memory', '512K']), /at least 1 MiB/);
      expectOneLineError(await vmmapi(['run', '--multiboot', fixturePath('mb-fwcfg.elf'), '--memory', '1M']), /does not fit/);
    });
    it('bad numbers and options', async () => {
      expectOneLineError(await vmmapi(['run', '--flat', 'x@0x1000', '--cpus', 'two']), /--cpus/);
      expectOneLineError(await vmmapi(['run', '--flat', 'x@0x1000', '--memory', 'lots']), /--memory/);
      expectOneLineError(await vmmapi(['run', '--flat', 'x@zz']), /--flat address/);
      expectOneLineError(await vmmapi(['run', '--flat', 'x@0x1000', '--timeout', '-1']), /^vmmapi: --timeout must be a positive number of seconds, at most 2147483, got '-1'$/);
      expectOneLineError(await vmmapi(['run', '--flat', 'x@0x1000', '--cpus', '-1']), /^vmmapi: --cpus must be an integer from 1 to 254, got '-1'$/);
      expectOneLineError(await vmmapi(['run', '--flat', 'x@0x1000', '--memory', '-5']), /^vmmapi: --memory must be a size such as 128M or 1G, got '-5'$/);
      expectOneLineError(await vmmapi(['run', '--bogus']), /Unknown option '--bogus'/);
      expectOneLineError(await vmmapi(['run']), /nothing to boot/);
      expectOneLineError(await vmmapi([]), /missing command/);
    });
  });

  it('--help prints the usage and exits 0', async () => {
    const o = await vmmapi(['--help']);
    expect(o.code).toBe(0);
    expect(o.stdout).toMatch(/^Usage: vmmapi run/);
  });
});

/**
 * `vmmapi run` with the fidelity fixtures (issue 11): each reaches its end with the expected
 * exit status — --debug-exit at 0xf4 (size 4), a Multiboot kernel with a segment at 0x8000,
 * PIT channel 2 calibration, a bzImage with a rounded-up syssize, --append values that start
 * with '-' — and the exit statuses with what --trace-exits says about why the run ended.
 * Needs the build (dist/) and the guest fixtures.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixturePath } from '../../src/fixtures.js';
import { packageRoot } from '../../src/kvm/native.js';
import { runProcess, type ProcessOutcome } from '../helpers.js';

const CLI = join(packageRoot(), 'dist', 'src', 'cli', 'main.js');

/** Run `vmmapi run …` to its end (killed after 30 s: a hung guest fails the test). */
function vmmapi(args: string[]): Promise<ProcessOutcome> {
  return runProcess(process.execPath, [CLI, 'run', ...args], { limitMs: 30_000 });
}

describe('vmmapi run: fidelity fixtures', () => {
  for (const [value, code] of [[0, 1], [1, 3]] as const) {
    it(`--debug-exit 0xf4,size=4: a harness writing ${value} exits ${code}`, async () => {
      const o = await vmmapi(['--multiboot', fixturePath('mb-debugexit.elf'), '--debug-exit', '0xf4,size=4', '--append', String(value)]);
      expect(o.code).toBe(code);
      expect(o.stdout).toBe(`mb-debugexit cmdline=${value}\n`);
      expect(o.stderr).toBe('');
    });
  }

  it("--append '-v=1' (a value that starts with -) reaches the guest", async () => {
    const o = await vmmapi(['--multiboot', fixturePath('mb-debugexit.elf'), '--append', '-v=1', '--debug-exit', '244,size=4']);
    expect(o.stdout).toBe('mb-debugexit cmdline=-v=1\n');
    expect(o.code).toBe(3);
  });

  it('--debug-exit over another device: exit 2, one line', async () => {
    const o = await vmmapi(['--multiboot', fixturePath('mb-debugexit.elf'), '--debug-exit', '0x3f8']);
    expect(o.code).toBe(2);
    expect(o.stderr).toBe('vmmapi: debugExit: ports 0x3f8-0x3f9 overlap the com1 at 0x3f8-0x3ff\n');
  });

  it('kernel-mode x87, xgetbv and clwb finish through the fallback under vmmapi run (status 7)', async () => {
    // CPL 0, long mode: CR4.OSXSAVE; xgetbv(0) & 1 -> esi; fld1; fld1; faddp; fistp [0x201000];
    // clwb [0x201000]; ax = [0x201000] + si; out %ax,$0x501 (isa-debug-exit); hlt
    const code = Buffer.from(
      '0f20e0480d000004000f22e031c90f01d083e00189c6' + 'd9e8d9e8dec148c7c300102000df1b660fae33668b036601f066ba010566eff4',
      'hex',
    );
    const dir = mkdtempSync(join(tmpdir(), 'vmmapi-x87-'));
    try {
      writeFileSync(join(dir, 'x87.bin'), code);
      const o = await vmmapi(['--flat', `${join(dir, 'x87.bin')}@0x200000`, '--mode', 'long']);
      expect(o.code).toBe(7); // ((1 + 1) + XCR0.x87) << 1 | 1
      expect(o.stderr).toMatch(/^vmmapi: instructions finished in userspace: .*xgetbv ×1/m);
      for (const m of ['fld1 ×2', 'faddp ×1', 'fistp ×1', 'clwb ×1']) expect(o.stderr).toContain(m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a Multiboot kernel with a segment at 0x8000 loads and runs (status 33)', async () => {
    const o = await vmmapi(['--multiboot', fixturePath('mb-low.elf'), '--append', 'x']);
    expect(o.code).toBe(0x21);
    expect(o.stdout).toBe('mb-low cmdline=x\n');
  });

  it('TSC calibration on PIT channel 2 finishes (status 3)', async () => {
    const o = await vmmapi(['--multiboot', fixturePath('pit-calib.elf')]);
    expect(o.stdout).toMatch(/^pit-calib tsc_khz=0x[0-9a-f]{8}\n$/);
    expect(o.code).toBe(3);
  });

  it('a bzImage whose syssize is rounded up boots (status 85), --append -quiet', async () => {
    const o = await vmmapi(['--kernel', fixturePath('bz-tiny.bin'), '--append', '-quiet']);
    expect(o.stdout).toBe('bz-tiny cmdline=-quiet\n');
    expect(o.code).toBe(0x55);
  });
});

describe('vmmapi run: exit statuses and why the run ended', () => {
  it('every vCPU halted with interrupts disabled: exit 4 with a note; --trace-exits says why', async () => {
    const o = await vmmapi(['--flat', `${fixturePath('long-sum.bin')}@0x2000`, '--mode', 'long', '--memory', '2M', '--trace-exits']);
    expect(o.code).toBe(4);
    expect(o.stderr).toContain('vmmapi: guest halted: every vCPU halted with interrupts disabled\n');
    expect(o.stderr).toMatch(/vmmapi: run ended: every vCPU halted with interrupts disabled .*; exit status 4\n$/);
  });

  it('--trace-exits ends with the debug-exit write and the status', async () => {
    const o = await vmmapi(['--multiboot', fixturePath('mb-debugexit.elf'), '--debug-exit', '0xf4,size=4', '--append', '5', '--trace-exits']);
    expect(o.code).toBe(11);
    expect(o.stderr).toMatch(/vmmapi: run ended: debug-exit: the guest wrote 0x5 to the isa-debug-exit port \(status 11\); exit status 11\n$/);
  });

  it('--trace-exits on a triple fault: exit 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmmapi-fid-'));
    try {
      const img = join(dir, 'ud2.bin');
      writeFileSync(img, Uint8Array.from([0x0f, 0x0b])); // ud2 in protected mode without an IDT
      const o = await vmmapi(['--flat', `${img}@0x100000`, '--trace-exits']);
      expect(o.code).toBe(1);
      expect(o.stderr).toMatch(/vmmapi: guest failed: triple fault \(shutdown\)\nvmmapi: run ended: triple fault: .*; exit status 1\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The PC platform (src/platform) against real KVM guests: the Multiboot fw_cfg guest on 1
 * and 2 vCPUs, flat guests in real, protected (SMP) and long mode, the platform's exit
 * paths (debug-exit, ACPI power-off, resets), COM1 input, and loader errors.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildFirmwareE820, e820ToBytes } from '../../src/boot/e820.js';
import { BootImageError } from '../../src/boot/errors.js';
import { ineffectiveClears } from '../../src/cpuid.js';
import { Vm } from '../../src/vm.js';
import { createPc, type Pc, type PcOptions } from '../../src/platform/index.js';
import { fixture } from '../helpers.js';
import { capturedPc } from './guests.js';

const MiB = 2 ** 20;
const pcs: Pc[] = [];
afterEach(() => {
  for (const pc of pcs.splice(0)) pc.destroy();
});

/** A PC whose COM1 output is collected in `out.text`. */
const pc = (opts: Partial<PcOptions> = {}): Pc & { out: { text: string } } => capturedPc(pcs, opts);
/** Real-mode code bytes. */
const code = (...bytes: number[]): Uint8Array => Uint8Array.from(bytes);

describe('createPc: Multiboot', () => {
  for (const cpus of [1, 2]) {
    it(`mb-fwcfg reads the CPU count and RAM size from fw_cfg (${cpus} vCPU${cpus > 1 ? 's' : ''})`, async () => {
      const m = pc({ memory: 64 * MiB, cpus });
      const state = m.loadMultiboot(fixture('mb-fwcfg.elf'), { cmdline: 'test' });
      expect(state.mode).toBe('protected');
      const result = await m.run({ timeoutMs: 30_000 });
      const value = cpus | (64 << 4);
      expect(result).toEqual({ reason: 'debug-exit', status: value * 2 + 1 });
      expect(m.out.text).toBe(`mb-fwcfg cpus=0x0000000${cpus} ram=0x00000040 MiB\n`);
    });
  }

  it('reports the debug-exit status to onExit too', async () => {
    const seen: number[] = [];
    const m = pc({ memory: 4 * MiB, onExit: (s) => seen.push(s) });
    m.loadMultiboot(fixture('mb-fwcfg.elf'));
    await m.run({ timeoutMs: 30_000 });
    expect(seen).toEqual([((1 | (4 << 4)) << 1) | 1]);
  });
});

describe('createPc: SMP', () => {
  for (const cpus of [2, 3]) {
    it(`mb-smp wakes the other ${cpus - 1} vCPU(s) with INIT-SIPI-SIPI and counts ${cpus}`, async () => {
      const m = pc({ cpus });
      m.loadMultiboot(fixture('mb-smp.elf'));
      expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'debug-exit', status: cpus * 2 + 1 });
      const lines = Array.from({ length: cpus }, (_, i) => `mb-smp: CPU with APIC id ${i} is up\n`);
      expect(m.out.text).toBe(lines.join(''));
    });
  }
});

describe('createPc: flat binaries', () => {
  it('real mode: exits through the debug-exit port (0x501)', async () => {
    const m = pc();
    // mov al, 0x2a; mov dx, 0x501; out dx, al; hlt
    m.loadFlat(code(0xb0, 0x2a, 0xba, 0x01, 0x05, 0xee, 0xf4), 0x1000);
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'debug-exit', status: 0x55 });
  });

  it('real mode: COM1 receives what sendSerial queued', async () => {
    const m = pc();
    // poll LSR.DR at 0x3fd; in al, 0x3f8; out 0x501, al; hlt
    m.loadFlat(code(0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xfb, 0xba, 0xf8, 0x03, 0xec, 0xba, 0x01, 0x05, 0xee, 0xf4), 0x1000);
    expect(m.sendSerial([0x41])).toBe(1);
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'debug-exit', status: 0x83 });
  });

  it('protected mode: 32-bit code exits with a 32-bit OUT', async () => {
    const m = pc();
    // mov eax, 0x12345678; mov dx, 0x501; out dx, eax; hlt
    m.loadFlat(code(0xb8, 0x78, 0x56, 0x34, 0x12, 0x66, 0xba, 0x01, 0x05, 0xef, 0xf4), 0x100000, { mode: 'protected' });
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'debug-exit', status: 0x12345678 * 2 + 1 });
  });

  it('2 vCPUs, a guest that never starts the AP: the run ends when the BSP halts', async () => {
    const m = pc({ cpus: 2 });
    // mov al, 'A'; mov dx, 0x3f8; out dx, al; cli; hlt
    m.loadFlat(code(0xb0, 0x41, 0xba, 0xf8, 0x03, 0xee, 0xfa, 0xf4), 0x1000);
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'halted' });
    expect(m.out.text).toBe('A');
  });

  it('long mode: 64-bit code runs and halts; traceExits sees its exits', async () => {
    const lines: string[] = [];
    const m = pc({ traceExits: (l) => lines.push(l) });
    const values: number[] = [];
    m.runner.pio.register(0x10, 4, { read: () => 0, write: (_o, _s, v) => void values.push(Number(v)) });
    m.loadFlat(fixture('long-sum.bin'), 0x2000, { mode: 'long' });
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'halted' });
    expect(values).toEqual([5050]);
    expect(lines).toContain('vcpu0 outl port 0x10 value 0x13ba');
  });

  it('ACPI: SLP_TYP=5 with SLP_EN in PM1a_CNT (0x604) powers off; SCI_EN reads set', async () => {
    const m = pc();
    // mov dx, 0x604; in ax, dx; mov bx, ax; mov ax, 0x3400; out dx, ax; hlt
    m.loadFlat(code(0xba, 0x04, 0x06, 0xed, 0x89, 0xc3, 0xb8, 0x00, 0x34, 0xef, 0xf4), 0x1000);
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'poweroff' });
    expect(m.devices.acpiPm.control & 1).toBe(1);
  });

  it('a write of 0x06 to 0xcf9 resets (the run stops)', async () => {
    const m = pc();
    // mov al, 6; mov dx, 0xcf9; out dx, al; hlt
    m.loadFlat(code(0xb0, 0x06, 0xba, 0xf9, 0x0c, 0xee, 0xf4), 0x1000);
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'reset', kind: 'hard' });
  });

  it('the i8042 pulse-reset command (0xfe to port 0x64) resets', async () => {
    const m = pc();
    // mov al, 0xfe; out 0x64, al; hlt
    m.loadFlat(code(0xb0, 0xfe, 0xe6, 0x64, 0xf4), 0x1000);
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'reset', kind: 'keyboard' });
  });

  it('a spinning guest stops at the timeout', async () => {
    const m = pc();
    m.loadFlat(fixture('spin.bin'), 0x1000);
    expect(await m.run({ timeoutMs: 300 })).toEqual({ reason: 'timeout' });
  });

  it('an instruction nobody can emulate rejects with a GuestError carrying its bytes', async () => {
    const m = pc();
    m.loadFlat(code(0x37, 0xf4), 0x1000); // aaa: KVM's emulator and the runner's fallback both give up
    await expect(m.run({ timeoutMs: 30_000 })).rejects.toThrow(/guest failed: .*instruction bytes 37 f4/);
  });

  it('emulate: false leaves instructions KVM gives up on (int3 at CPL0) unfinished', async () => {
    const m = pc({ emulate: false });
    m.loadFlat(code(0xcc, 0xf4), 0x200000, { mode: 'long' });
    await expect(m.run({ timeoutMs: 30_000 })).rejects.toThrow(/instruction bytes cc f4/);
  });

  it('a triple fault ends the run with reason triple-fault', async () => {
    const m = pc();
    m.loadFlat(code(0x0f, 0x0b), 0x100000, { mode: 'protected' }); // ud2 without an IDT
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'triple-fault' });
  });

  it('a triple fault with 2 and 4 vCPUs (APs parked) is still a triple fault, not a halt', async () => {
    for (const cpus of [2, 4]) {
      const m = pc({ cpus });
      m.loadFlat(code(0x0f, 0x0b), 0x100000, { mode: 'protected' });
      expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'triple-fault' });
    }
  });
});

describe('createPc: what the CLI reports', () => {
  it('emulatedInstructions() is the per-mnemonic sum of the VM\'s emulated_* stats', async () => {
    const m = pc({ memory: 2 * MiB });
    // mov $0xff,%rbx ; popcnt %rbx,%rax ; stac ; clac ; cli ; hlt
    m.loadFlat(Uint8Array.from([0x48, 0xc7, 0xc3, 0xff, 0, 0, 0, 0xf3, 0x48, 0x0f, 0xb8, 0xc3, 0x0f, 0x01, 0xcb, 0x0f, 0x01, 0xca, 0xfa, 0xf4]), 0x2000, { mode: 'long' });
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'halted' });
    const expected = new Map<string, bigint>();
    for (const [k, n] of Object.entries(m.vm.getStatsByName(0))) if (k.startsWith('emulated_') && n > 0n) expected.set(k.slice(9), n);
    expect(m.emulatedInstructions()).toEqual(expected);
    // on hosts whose KVM gives up on popcnt (PVM) the fallback finished exactly one
    if (expected.has('popcnt')) expect(m.emulatedInstructions().get('popcnt')).toBe(1n);
    m.destroy();
    expect(m.emulatedInstructions()).toEqual(new Map());
  });

  it('ineffectiveCpuidClears() names the cleared bits KVM does not offer on this host', () => {
    const clear = ['cx16', 'la57', 'popcnt'];
    const m = pc({ cpuid: { clear } });
    expect(m.ineffectiveCpuidClears()).toEqual(ineffectiveClears(Vm.supportedCpuid(), clear));
    expect(pc().ineffectiveCpuidClears()).toEqual([]);
  });
});

describe('createPc: firmware layout', () => {
  it('maps the ROM read-only below 4 GiB and copies its last 128 KiB to 0xE0000', () => {
    const m = pc({ memory: 2 * MiB });
    const rom = new Uint8Array(256 * 1024).map((_, i) => (i * 13) & 0xff);
    const plan = m.loadFirmware(rom);
    expect(plan.romGpa).toBe(2 ** 32 - rom.length);
    expect(m.vm.memorySegments().find((s) => s.gpa === plan.romGpa)).toMatchObject({ length: rom.length, readonly: true });
    expect(m.memory.readBytes(0xffff_fff0, 16)).toEqual(rom.subarray(rom.length - 16));
    expect(m.memory.readBytes(0xe0000, 16)).toEqual(rom.subarray(rom.length - 0x20000, rom.length - 0x20000 + 16));
  });

  it("fw_cfg's etc/e820 is boot/e820.ts's firmware map, encoded by boot/e820.ts, and matches the RAM segments", () => {
    const m = pc({ memory: 3 * 2 ** 30 + 2 * MiB });
    const map = buildFirmwareE820(m.memoryBytes);
    const file = m.devices.fwCfg.fileList.find((f) => f.name === 'etc/e820');
    expect(file?.bytes).toEqual(e820ToBytes(map));
    expect(m.vm.memorySegments().map((s) => ({ addr: s.gpa, size: s.length, type: 1 }))).toEqual(map);
  });

  it('puts RAM beyond 3 GiB at 4 GiB', () => {
    const m = pc({ memory: 3 * 2 ** 30 + 2 * MiB });
    const segs = m.vm.memorySegments().map((s) => [s.gpa, s.length]);
    expect(segs).toEqual([[0, 0xc000_0000], [2 ** 32, 2 * MiB]]);
  });
});

describe('createPc: errors', () => {
  const expectOneLine = (fn: () => unknown, cls: new (...a: never[]) => Error, re: RegExp): void => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(cls);
    expect((err as Error).message).toMatch(re);
    expect((err as Error).message).not.toContain('\n');
  };

  it('rejects bad machine options', () => {
    expectOneLine(() => createPc({ memory: 512 * 1024 }), RangeError, /at least 1 MiB/);
    expectOneLine(() => createPc({ memory: MiB + 1 }), RangeError, /multiple of 4 KiB/);
    expectOneLine(() => createPc({ memory: MiB, cpus: 0 }), RangeError, /cpus must be an integer 1-254/);
    expectOneLine(() => createPc({ memory: MiB, cpus: '2' as never }), TypeError, /^cpus must be a number/);
  });

  it('rejects wrongly typed options with a TypeError/RangeError naming them, and builds nothing', () => {
    const bad: [Partial<PcOptions>, new (...a: never[]) => Error, RegExp][] = [
      [{ serial: { onOutput: 'stdout' as never } }, TypeError, /^serial\.onOutput must be a function, got string$/],
      [{ serial: { input: 5 as never } }, TypeError, /^serial\.input must be a readable stream$/],
      [{ serial: 'COM1' as never }, TypeError, /^serial must be an object/],
      [{ cpuid: 5 as never }, TypeError, /^cpuid must be an object \(\{ clear\?: \[\.\.\.\] \}\), got number$/],
      [{ cpuid: { clear: 'cx16' as never } }, TypeError, /^cpuid\.clear must be an array/],
      [{ cpuid: { clear: ['sse9'] } }, RangeError, /^cpuid\.clear\[0\]: unknown bit name 'sse9'/],
      [{ cpuid: { clear: [{ leaf: 1, reg: 'ecx', bit: 40 }] } }, RangeError, /^cpuid\.clear\[0\]\.bit must be an integer in \[0, 31\], got 40$/],
      [{ cpuid: { clear: [{ leaf: 1, reg: 'xmm0' as never, bit: 1 }] } }, RangeError, /^cpuid\.clear\[0\]\.reg must be one of eax, ebx, ecx, edx/],
      [{ cpuid: { clear: [7 as never] } }, TypeError, /^cpuid\.clear\[0\] must be a bit name/],
      [{ emulate: 'yes' as never }, TypeError, /^emulate must be a boolean, got string$/],
      [{ name: 7 as never }, TypeError, /^name must be a non-empty string$/],
      [{ debugcon: true as never }, TypeError, /^debugcon must be a function, got boolean$/],
    ];
    for (const [opts, cls, re] of bad) expectOneLine(() => createPc({ memory: MiB, name: 'pc-bad-options', ...opts }), cls, re);
    const ok = createPc({ memory: MiB, name: 'pc-bad-options' }); // no VM of that name was left behind
    pcs.push(ok);
  });

  it('run() checks its options before the machine starts', async () => {
    const m = pc();
    m.loadFlat(code(0xf4), 0x1000);
    await expect(m.run({ timeoutMs: '5' as never })).rejects.toThrow(TypeError);
    await expect(m.run({ timeoutMs: -1 })).rejects.toThrow(/^opts\.timeoutMs must be a positive number/);
    await expect(m.run(null as never)).rejects.toThrow(/^opts must be an object$/);
    expect(m.runner.started).toBe(false);
  });

  it('Multiboot: wrong magic, bad checksum, truncated image, kernel that does not fit', () => {
    const good = fixture('mb-fwcfg.elf');
    expectOneLine(() => pc().loadMultiboot(new Uint8Array(4096)), BootImageError, /no Multiboot header/);
    const bad = new Uint8Array(good); // a copy (Buffer#slice would share memory)
    const off = Buffer.from(bad).indexOf(Buffer.from([0x02, 0xb0, 0xad, 0x1b]));
    bad[off + 8] ^= 1;
    expectOneLine(() => pc().loadMultiboot(bad), BootImageError, /bad checksum/);
    expectOneLine(() => pc().loadMultiboot(good.subarray(0, 0x1010)), BootImageError, /truncated|beyond the end/);
    expectOneLine(() => pc({ memory: MiB }).loadMultiboot(good), BootImageError, /does not fit in guest memory/);
  });

  it('Linux: wrong magic and truncated bzImage', () => {
    expectOneLine(() => pc().loadLinux(fixture('mb-fwcfg.elf')), BootImageError, /^kernel: /);
    expectOneLine(() => pc().loadLinux(new Uint8Array(100)), BootImageError, /^kernel: /);
    expectOneLine(() => pc().loadLinux(new Uint8Array(100), null as never), TypeError, /^opts must be an object$/);
    expectOneLine(() => pc().loadMultiboot(fixture('mb-fwcfg.elf'), 5 as never), TypeError, /^opts must be an object$/);
    expectOneLine(() => pc().loadLinux(new Uint8Array(100), { cmdline: 5 as never }), TypeError, /^opts\.cmdline must be a string/);
  });

  it('firmware: empty or badly sized ROM', () => {
    expectOneLine(() => pc().loadFirmware(new Uint8Array(0)), BootImageError, /empty/);
    expectOneLine(() => pc().loadFirmware(new Uint8Array(1000)), BootImageError, /multiple of 4 KiB/);
  });

  it('flat: empty image, image beyond RAM', () => {
    expectOneLine(() => pc().loadFlat(new Uint8Array(0), 0x1000), BootImageError, /empty/);
    expectOneLine(() => pc({ memory: MiB }).loadFlat(new Uint8Array(16), 0x200000, { mode: 'protected' }), BootImageError, /do not fit/);
  });

  it('one image per machine, one run per machine', async () => {
    const m = pc();
    m.loadFlat(code(0xb0, 0x00, 0xba, 0x01, 0x05, 0xee), 0x1000);
    expect(() => m.loadFlat(code(0xf4), 0x2000)).toThrow(/already loaded/);
    await m.run({ timeoutMs: 30_000 });
    await expect(m.run()).rejects.toThrow(/already run/);
  });
});

import { describe, expect, it } from 'vitest';
import { BootImageError } from '../../../src/boot/errors.js';
import { planFirmware, resetBootState } from '../../../src/boot/firmware.js';
import { pattern } from './images.js';

const KiB = 1024;

describe('planFirmware', () => {
  it('maps a 256 KiB ROM below 4 GiB and shadows its last 128 KiB below 1 MiB', () => {
    const rom = pattern(256 * KiB, 3);
    const plan = planFirmware(rom);
    expect(plan.romGpa).toBe(0xfffc0000);
    expect(plan.romSize).toBe(256 * KiB);
    expect(plan.lowCopyGpa).toBe(0xe0000);
    expect(plan.lowCopy.length).toBe(128 * KiB);
    expect(Buffer.from(plan.lowCopy).equals(rom.subarray(128 * KiB))).toBe(true);
    // The reset vector (last 16 bytes) is at the same offset in both mappings.
    expect(plan.lowCopy[plan.lowCopy.length - 16]).toBe(rom[rom.length - 16]);
  });

  it('shadows all of a small ROM', () => {
    const rom = pattern(64 * KiB);
    const plan = planFirmware(rom);
    expect(plan.romGpa).toBe(0xffff0000);
    expect(plan.lowCopyGpa).toBe(0xf0000);
    expect(Buffer.from(plan.lowCopy).equals(rom)).toBe(true);
  });

  it('rejects bad ROM sizes with clear messages', () => {
    expect(() => planFirmware(new Uint8Array(0))).toThrow('firmware: ROM image is empty');
    expect(() => planFirmware(new Uint8Array(1000))).toThrow(BootImageError);
    expect(() => planFirmware(new Uint8Array(128 * KiB + 1))).toThrow('firmware: ROM size 0x20001 is not a multiple of 4 KiB');
    expect(() => planFirmware(new Uint8Array(32 * 1024 * KiB))).toThrow(/exceeds 16 MiB/);
    expect(() => planFirmware('bios' as unknown as Uint8Array)).toThrow(TypeError);
  });

  it('describes the x86 reset state', () => {
    const s = planFirmware(new Uint8Array(128 * KiB)).resetState();
    expect(s).toEqual(resetBootState());
    expect(s.mode).toBe('real');
    expect(s.regs.rip).toBe(0xfff0n);
    expect(s.regs.rflags).toBe(2n);
    expect(s.cr0).toBe(0x60000010n);
    expect(s.segments!.cs).toEqual({ selector: 0xf000, base: 0xffff0000n, limit: 0xffff, access: 0x9b });
    for (const r of ['ds', 'es', 'fs', 'gs', 'ss'] as const) expect(s.segments![r]).toEqual({ selector: 0, base: 0n, limit: 0xffff, access: 0x93 });
    // First fetch: CS.base + IP = 0xfffffff0.
    expect(s.segments!.cs!.base + s.regs.rip!).toBe(0xfffffff0n);
  });
});

import { describe, expect, it } from 'vitest';
import { CPUID_BITS, checkCpuidOptions, guestCpuid, ineffectiveClears } from '../../src/cpuid.js';
import type { CpuidEntry } from '../../src/kvm/structs.js';

const entry = (fn: number, index: number, regs: Partial<CpuidEntry> = {}): CpuidEntry => ({
  function: fn, index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...regs,
});
const SUPPORTED: CpuidEntry[] = [
  entry(0, 0, { eax: 0xd }),
  entry(1, 0, { ebx: 0x0000_0800, ecx: (1 << 13) | (1 << 21) | (1 << 31), edx: 1 }),
  entry(7, 0, { ebx: (1 << 20) | (1 << 7) }),
  entry(7, 1, { ebx: 1 << 20 }),
  entry(0xb, 0), entry(0xb, 1), entry(0xb, 2),
];

describe('guestCpuid', () => {
  it('sets the APIC id, logical count and HTT per vCPU, without touching the input', () => {
    const g = guestCpuid(SUPPORTED, 2, 4);
    const l1 = g.find((e) => e.function === 1)!;
    expect(l1.ebx >>> 24).toBe(2);
    expect((l1.ebx >>> 16) & 0xff).toBe(4);
    expect(l1.ebx & 0xffff).toBe(0x0800);
    expect(l1.edx & (1 << 28)).not.toBe(0);
    expect(SUPPORTED[1].ebx).toBe(0x0800);
    expect(guestCpuid(SUPPORTED, 0, 1).find((e) => e.function === 1)!.edx & (1 << 28)).toBe(0);
    const topo = g.filter((e) => e.function === 0xb);
    expect(topo.map((e) => e.edx)).toEqual([2, 2, 2]);
    expect(topo[1].ebx).toBe(4);
  });

  it('clears named and explicit bits, only in the subleaf named', () => {
    const g = guestCpuid(SUPPORTED, 0, 1, { clear: ['cx16', 'smap', { leaf: 1, reg: 'edx', bit: 0 }] });
    const l1 = g.find((e) => e.function === 1)!;
    expect(l1.ecx & (1 << 13)).toBe(0);
    expect(l1.ecx & (1 << 21)).not.toBe(0);
    expect(l1.edx & 1).toBe(0);
    expect(g.find((e) => e.function === 7 && e.index === 0)!.ebx).toBe(1 << 7);
    expect(g.find((e) => e.function === 7 && e.index === 1)!.ebx).toBe(1 << 20);
  });

  it('rejects unknown bit names with a RangeError listing the known ones', () => {
    expect(() => guestCpuid(SUPPORTED, 0, 1, { clear: ['sse9'] })).toThrow(RangeError);
    expect(() => guestCpuid(SUPPORTED, 0, 1, { clear: ['sse9'] })).toThrow(/unknown bit name 'sse9' \(known: cx16/);
  });
});

describe('checkCpuidOptions', () => {
  it('accepts names and explicit bits; undefined is no options', () => {
    expect(checkCpuidOptions(undefined, 'cpuid')).toEqual({});
    const opts = { clear: ['cx16', { leaf: 7, index: 0, reg: 'ebx' as const, bit: 20 }] };
    expect(checkCpuidOptions(opts, 'cpuid')).toBe(opts);
  });

  it('a bad value is a TypeError/RangeError naming the option and field, never silently ignored', () => {
    expect(() => checkCpuidOptions(5, 'cpuid')).toThrow(new TypeError('cpuid must be an object ({ clear?: [...] }), got number'));
    expect(() => checkCpuidOptions(null, 'cpuid')).toThrow(/got null/);
    expect(() => checkCpuidOptions({ clear: 'cx16' }, 'cpuid')).toThrow(TypeError);
    expect(() => checkCpuidOptions({ clear: [{ leaf: -1, reg: 'eax', bit: 0 }] }, 'opts.cpuid')).toThrow(/^opts\.cpuid\.clear\[0\]\.leaf must be/);
    expect(() => checkCpuidOptions({ clear: [{ leaf: 1, index: 1.5, reg: 'eax', bit: 0 }] }, 'cpuid')).toThrow(/\.index must be/);
    expect(() => checkCpuidOptions({ clear: [{ leaf: 1, reg: 'eax', bit: 32 }] }, 'cpuid')).toThrow(RangeError);
    expect(() => checkCpuidOptions({ clear: ['cx16', null] }, 'cpuid')).toThrow(/^cpuid\.clear\[1\] must be a bit name/);
  });

  it('guestCpuid no longer applies an out-of-range bit as another bit (1 << 33 was bit 1)', () => {
    expect(() => guestCpuid(SUPPORTED, 0, 1, { clear: [{ leaf: 1, reg: 'ecx', bit: 33 }] })).toThrow(/bit must be an integer in \[0, 31\], got 33/);
  });
});

describe('ineffectiveClears', () => {
  it('names the bits KVM does not offer (clearing them changes nothing)', () => {
    expect(ineffectiveClears(SUPPORTED, ['cx16', 'smap', 'popcnt', 'avx2', 'la57'])).toEqual(['popcnt', 'avx2', 'la57']);
    expect(ineffectiveClears([], ['cx16'])).toEqual(['cx16']);
    expect(ineffectiveClears(SUPPORTED, [])).toEqual([]);
    expect(Object.keys(CPUID_BITS)).toContain('smap');
  });
});

describe('checkCpuidOptions', () => {
  it('accepts names and explicit bits, refuses everything else with the argument named', () => {
    expect(checkCpuidOptions({ clear: ['cx16', { leaf: 7, index: 0, reg: 'ebx', bit: 20 }] })).toEqual({ clear: ['cx16', { leaf: 7, index: 0, reg: 'ebx', bit: 20 }] });
    expect(checkCpuidOptions({})).toEqual({});
    expect(() => checkCpuidOptions(5)).toThrow(new TypeError('cpuid must be an object ({ clear?: [...] }), got number'));
    expect(() => checkCpuidOptions(null)).toThrow(TypeError);
    expect(() => checkCpuidOptions([])).toThrow(/got an array/);
    expect(() => checkCpuidOptions({ clear: [{ leaf: -1, reg: 'eax', bit: 0 }] })).toThrow(/cpuid.clear\[0\].leaf must be an integer/);
    expect(() => checkCpuidOptions({ clear: [{ leaf: 1, reg: 'rax', bit: 0 }] })).toThrow(/cpuid.clear\[0\].reg must be one of eax, ebx, ecx, edx/);
    expect(() => checkCpuidOptions({ clear: [{ leaf: 1, index: 1.5, reg: 'eax', bit: 0 }] })).toThrow(/index/);
    expect(() => checkCpuidOptions({ clear: [7] })).toThrow(TypeError);
    expect(() => guestCpuid(SUPPORTED, 0, 1, { clear: [{ leaf: 1, reg: 'ecx', bit: 40 }] })).toThrow(RangeError);
  });
});

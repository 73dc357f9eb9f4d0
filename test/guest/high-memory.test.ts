/**
 * A long-mode guest reading and writing guest RAM above 4 GiB, in an 8 GiB segment and a
 * segment of more than 4 GiB, at addresses that straddle the typed-array chunks the host
 * views them through: what the guest writes the host reads, and the other way round.
 */
import { afterEach, expect, it } from 'vitest';
import { Reg, Vm } from '../../src/index.js';
import { buildIdentityPageTables } from '../../src/boot/paging.js';
import { fixture, uniqueName } from '../helpers.js';

const GIB = 2 ** 30;
let vm: Vm | undefined;
afterEach(() => vm?.destroy());

function enterLongMode(v: Vm, cr3: bigint): void {
  v.memory.writeU64(0x500, 0n);
  v.memory.writeU64(0x508, 0x00af9b000000ffffn);
  v.memory.writeU64(0x510, 0x00cf93000000ffffn);
  v.setDesc(0, Reg.GDTR, { base: 0x500n, limit: 23, access: 0 });
  v.setRegisters(0, [[Reg.CR3, cr3], [Reg.CR4, 0x20], [Reg.EFER, 0x500], [Reg.CR0, 0x80000011]]);
  v.setDesc(0, Reg.CS, { base: 0n, limit: 0xffffffff, access: 0xa09b });
  v.setRegister(0, Reg.CS, 0x08);
  for (const r of [Reg.DS, Reg.ES, Reg.SS]) {
    v.setDesc(0, r, { base: 0n, limit: 0xffffffff, access: 0xc093 });
    v.setRegister(0, r, 0x10);
  }
}

it('the guest and vm.memory agree on RAM above 4 GiB and across chunk boundaries', () => {
  vm = Vm.create(uniqueName('high'), { irqchip: false });
  vm.setupMemory(0, 0x200000);
  vm.setupMemory(4 * GIB, 8 * GIB); // [4, 12) GiB
  vm.setupMemory(12 * GIB, 4 * GIB + 0x200000); // [12, 16 GiB + 2 MiB)
  const { cr3 } = buildIdentityPageTables(vm.memory, 0x10000, { gigabytes: 17 });
  vm.memory.writeBytes(0x2000, fixture('long-highmem.bin'));
  enterLongMode(vm, cr3);

  const cases = [
    // [rbx: host-written u64, rsi: guest writes rbx+1, rdi: u32 out + complement]
    [8 * GIB - 4, 10 * GIB - 3, 6 * GIB - 2], // segment a's chunks at offsets 4, 6 and 2 GiB
    [12 * GIB - 4, 16 * GIB + 0x1ffff8, 16 * GIB - 2], // across a|b; the end of b; b's chunk at offset 4 GiB
  ];
  for (const [i, [src, dst, io]] of cases.entries()) {
    const value = 0x0102030405060708n + BigInt(i);
    vm.memory.writeU64(src, value);
    vm.memory.writeU32(io, 0x89abcdef - i);
    vm.setRegisters(0, [[Reg.RBX, src], [Reg.RSI, dst], [Reg.RDI, io], [Reg.RIP, 0x2000], [Reg.RSP, 0x8000], [Reg.RFLAGS, 2]]);
    expect(vm.run(0)).toMatchObject({ kind: 'inout', port: 0x10, in: false, bytes: 4, value: 0x89abcdef - i });
    expect(vm.run(0).kind).toBe('hlt');
    expect(vm.memory.readU64(dst)).toBe(value + 1n);
    expect(vm.memory.readU32(io)).toBe(~(0x89abcdef - i) >>> 0);
  }
});

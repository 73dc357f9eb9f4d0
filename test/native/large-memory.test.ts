/**
 * Segments larger than one typed array (4 GiB or more) on the real /dev/kvm: registration,
 * vm.memory above 4 GiB and across the typed-array chunks, the worker's view of the same
 * memory, and failure paths that must leave nothing registered.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { KvmError, Vm } from '../../src/index.js';
import { sharedMemory } from '../../src/emulate/fallback.js';
import { DEFAULT_CHUNK_SIZE, MAX_VIEW_LENGTH } from '../../src/memory/guest-memory.js';
import { uniqueName } from '../helpers.js';

const GIB = 2 ** 30;

let vm: Vm | undefined;
afterEach(() => {
  vm?.destroy();
  vm = undefined;
});

describe('segments of 4 GiB and more', () => {
  it('an 8 GiB and a >4 GiB segment are registered, backed and readable above 4 GiB', () => {
    vm = Vm.create(uniqueName('big'), { irqchip: false });
    const a = vm.setupMemory(4 * GIB, 8 * GIB); // [4 GiB, 12 GiB)
    const b = vm.setupMemory(12 * GIB, 4 * GIB + 0x200000); // [12 GiB, 16 GiB + 2 MiB)
    expect(a.byteLength).toBe(8 * GIB);
    expect(b.byteLength).toBe(4 * GIB + 0x200000);
    expect(vm.getMemorySeg(4 * GIB)).toBe(8 * GIB);
    expect(vm.getMemorySeg(12 * GIB)).toBe(4 * GIB + 0x200000);
    expect(vm.memorySegments().map((s) => [s.gpa, s.length, s.buffer.byteLength])).toEqual([
      [4 * GIB, 8 * GIB, 8 * GIB],
      [12 * GIB, 4 * GIB + 0x200000, 4 * GIB + 0x200000],
    ]);
    const m = vm.memory;
    // above 4 GiB, deep inside the 8 GiB segment
    m.writeU64(11 * GIB + 8, 0x1122334455667788n);
    expect(m.readU64(11 * GIB + 8)).toBe(0x1122334455667788n);
    // across each chunk boundary of segment a (every DEFAULT_CHUNK_SIZE, including offset 4 GiB)
    for (let off = DEFAULT_CHUNK_SIZE; off < 8 * GIB; off += DEFAULT_CHUNK_SIZE) {
      const at = 4 * GIB + off - 3;
      m.writeU64(at, BigInt(off) | 0xab00000000000000n);
      expect(m.readU64(at)).toBe(BigInt(off) | 0xab00000000000000n);
      m.writeBytes(at - 2, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10));
      expect(Array.from(m.readBytes(at - 2, 10))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      m.fill(at, 6, 0x5a);
      expect(Array.from(m.readBytes(at - 1, 8))).toEqual([2, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 9]);
    }
    // across the two segments, and past 4 GiB into segment b
    m.writeU32(12 * GIB - 2, 0xcafef00d);
    expect(m.readU32(12 * GIB - 2)).toBe(0xcafef00d);
    m.writeU16(16 * GIB + 0x1ffffe, 0xbeef);
    expect(m.readU16(16 * GIB + 0x1ffffe)).toBe(0xbeef);
    expect(() => m.readU32(16 * GIB + 0x1ffffe)).toThrow(RangeError); // past the end
    // the bytes really are the SharedArrayBuffers' (views above 2^32 into them are fine)
    expect(new DataView(a, 7 * GIB + 8, 8).getBigUint64(0, true)).toBe(0x1122334455667788n);
    expect(new Uint8Array(b, 4 * GIB + 0x1ffffe, 2)).toEqual(Uint8Array.of(0xef, 0xbe));
    // mapMemory takes views of up to 2^32 bytes anywhere in a segment
    expect(vm.mapMemory(11 * GIB + 8, 1)[0]).toBe(0x88);
    expect(vm.mapMemory(4 * GIB, MAX_VIEW_LENGTH).length).toBe(MAX_VIEW_LENGTH);
    expect(() => vm!.mapMemory(4 * GIB, MAX_VIEW_LENGTH + 1)).toThrow(/len must be an integer in \[0, 4294967296\]/);
    // what the runner hands to its vCPU workers builds the same view of memory
    const worker = sharedMemory(vm.memorySegments().map(({ gpa, buffer, readonly }) => ({ gpa, buffer, readonly })));
    expect(worker.readU64(11 * GIB + 8)).toBe(0x1122334455667788n);
    expect(worker.readU32(12 * GIB - 2)).toBe(0xcafef00d);
    worker.writeU32(6 * GIB - 1, 0x01020304);
    expect(m.readU32(6 * GIB - 1)).toBe(0x01020304);
  });

  it('a segment KVM refuses leaves nothing behind: no slot, no segment, the range stays free', () => {
    vm = Vm.create(uniqueName('big'), { irqchip: false });
    vm.setupMemory(0, 0x10000);
    // KVM_MEM_MAX_NR_PAGES: a slot of 8 TiB is EINVAL, after the mapping and views exist
    const gpa = 2 ** 40;
    let err: unknown;
    try {
      vm.setupMemory(gpa, 8 * 1024 * GIB);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KvmError);
    expect((err as KvmError).syscall).toBe('KVM_SET_USER_MEMORY_REGION');
    expect(vm.getMemorySeg(gpa)).toBe(0);
    expect(vm.memorySegments().map((s) => s.gpa)).toEqual([0]);
    expect(vm.memory.segments.map((s) => s.gpa)).toEqual([0]);
    expect(vm.memory.isBacked(gpa, 1)).toBe(false);
    // the same range (and a large one) can be set up now: no EEXIST, the slot was not lost
    const buf = vm.setupMemory(gpa, 5 * GIB);
    expect(vm.getMemorySeg(gpa)).toBe(5 * GIB);
    vm.memory.writeU32(gpa + 5 * GIB - 4, 0x12345678);
    expect(new DataView(buf).getUint32(5 * GIB - 4, true)).toBe(0x12345678);
  });

  it('argument errors come before anything changes', () => {
    vm = Vm.create(uniqueName('big'), { irqchip: false });
    expect(() => vm!.setupMemory(0, 0x1000, null as never)).toThrow(new TypeError('opts must be an object (MemoryOptions), got null'));
    expect(() => vm!.setupMemory(0, 0x1000, { readonly: 1 as never })).toThrow(/opts.readonly must be a boolean/);
    expect(vm.memorySegments()).toEqual([]);
    expect(vm.getMemorySeg(0)).toBe(0);
    vm.setupMemory(0, 0x1000);
    expect(vm.getMemorySeg(0)).toBe(0x1000);
    // vm.memory: typed errors naming the argument, nothing written
    expect(() => vm!.memory.writeU32(0, 2 ** 40 + 5)).toThrow(new RangeError('value must be an integer in [0, 0xffffffff], got 1099511627781'));
    expect(() => vm!.memory.fill(0, 16, 256)).toThrow(RangeError);
    expect(() => vm!.memory.writeBytes(0, new Float64Array([1]) as never)).toThrow(TypeError);
    expect(() => vm!.memory.writeBytes(0, null as never)).toThrow(/bytes must be a Uint8Array/);
    expect(vm.memory.readBytes(0, 16)).toEqual(new Uint8Array(16));
  });
});

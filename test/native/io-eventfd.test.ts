/**
 * Vm.addIoEventFd against real KVM: guest writes to a registered port or MMIO address do not
 * exit; the main thread's event loop hears them as counts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { KvmError, Reg, Vm } from '../../src/index.js';
import { uniqueName } from '../helpers.js';

const vms: Vm[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) vm.destroy();
});

/**
 * Real mode at 0x1000: five `out 0x92, al`; then with DS = 0x9000 (MMIO: RAM ends at
 * 0x80000) the 16-bit writes 1, 2, 2 to [0]; then hlt.
 */
const CODE = [
  0xb9, 0x05, 0x00, // mov cx, 5
  0xe6, 0x92, // 1: out 0x92, al
  0xe2, 0xfc, // loop 1b
  0xb8, 0x00, 0x90, // mov ax, 0x9000
  0x8e, 0xd8, // mov ds, ax
  0xc7, 0x06, 0x00, 0x00, 0x01, 0x00, // mov word [0], 1
  0xc7, 0x06, 0x00, 0x00, 0x02, 0x00, // mov word [0], 2
  0xc7, 0x06, 0x00, 0x00, 0x02, 0x00, // mov word [0], 2
  0xf4, // hlt
];

function guest(): Vm {
  const vm = Vm.create(uniqueName('ioev'), { irqchip: false });
  vms.push(vm);
  vm.setupMemory(0, 0x80000);
  vm.memory.writeBytes(0x1000, Uint8Array.from(CODE));
  vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
  vm.setRegisters(0, [[Reg.CS, 0], [Reg.RIP, 0x1000], [Reg.RFLAGS, 2]]);
  return vm;
}

/** Run vCPU 0 to its HLT exit; the exits it saw on the way. */
function runToHalt(vm: Vm): string[] {
  const seen: string[] = [];
  for (let i = 0; i < 100; i++) {
    const e = vm.run(0);
    if (e.kind === 'hlt') return seen;
    if (e.kind === 'inout') seen.push(`inout ${e.port.toString(16)}`);
    else if (e.kind === 'mmio') seen.push(`mmio ${e.gpa.toString(16)} ${e.value}`);
    else seen.push(e.kind);
  }
  throw new Error('the guest did not halt');
}

const turn = () => new Promise<void>((r) => setTimeout(r, 20));

describe('Vm.addIoEventFd', () => {
  it('absorbs port writes and MMIO writes of the matched value; the event loop gets the counts', async () => {
    const vm = guest();
    const pio: number[] = [];
    const mmio: number[] = [];
    const a = vm.addIoEventFd({ space: 'pio', addr: 0x92, length: 1 }, (n) => pio.push(n));
    const b = vm.addIoEventFd({ space: 'mmio', addr: 0x90000, length: 2, datamatch: 2 }, (n) => mmio.push(n));
    expect(runToHalt(vm)).toEqual(['mmio 90000 1']); // only the unmatched write exits
    await turn();
    expect(pio.reduce((x, y) => x + y, 0)).toBe(5);
    expect(mmio.reduce((x, y) => x + y, 0)).toBe(2);
    expect(a.writes).toBe(5);
    expect(b.writes).toBe(2);
    a.close();
    a.close(); // idempotent
    b.close();
  });

  it('after close() the writes exit again', async () => {
    const vm = guest();
    const calls: number[] = [];
    vm.addIoEventFd({ space: 'pio', addr: 0x92, length: 1 }, (n) => calls.push(n)).close();
    expect(runToHalt(vm).filter((x) => x === 'inout 92')).toHaveLength(5);
    await turn();
    expect(calls).toEqual([]);
  });

  it('refuses bad options with typed errors and an overlapping registration with EEXIST', () => {
    const vm = guest();
    const f = () => {};
    expect(() => vm.addIoEventFd({ space: 'x' as 'pio', addr: 0, length: 1 }, f)).toThrow(TypeError);
    expect(() => vm.addIoEventFd({ space: 'pio', addr: 0x10000, length: 1 }, f)).toThrow(/options.addr/);
    expect(() => vm.addIoEventFd({ space: 'pio', addr: 0x92, length: 8 }, f)).toThrow(/options.length/);
    expect(() => vm.addIoEventFd({ space: 'mmio', addr: 0x90000, length: 1, datamatch: 256 }, f)).toThrow(/datamatch must fit 1 bytes/);
    expect(() => vm.addIoEventFd({ space: 'mmio', addr: 0x90000, length: 0, datamatch: 1 }, f)).toThrow(/needs a width/);
    expect(() => vm.addIoEventFd({ space: 'pio', addr: 0x92, length: 1 }, 5 as unknown as () => void)).toThrow(/onWrite must be a function/);
    const r = vm.addIoEventFd({ space: 'pio', addr: 0x92, length: 1 }, f);
    expect(() => vm.addIoEventFd({ space: 'pio', addr: 0x92, length: 1 }, f)).toThrow(KvmError);
    r.close();
  });

  it('destroy() closes every registration', () => {
    const vm = guest();
    const r = vm.addIoEventFd({ space: 'pio', addr: 0x92, length: 1 }, () => {});
    vm.destroy();
    expect(() => r.close()).not.toThrow();
    expect(() => vm.addIoEventFd({ space: 'pio', addr: 0x92, length: 1 }, () => {})).toThrow(KvmError);
  });
});

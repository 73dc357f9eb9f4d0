/**
 * Platform fidelity (issue 11): what third-party guests trip over, with real guests under
 * KVM — a movable debug-exit port (test harnesses: iobase 0xf4, iosize 4), a Multiboot
 * kernel with a segment over 0x9000, PIT channel 2's output at port 0x61 (TSC calibration),
 * a bzImage whose syssize is rounded up, and why a run ended.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BootImageError } from '../../src/boot/errors.js';
import { createPc, describeRunResult, type Pc, type PcOptions } from '../../src/platform/index.js';
import { Reg, Vm } from '../../src/index.js';
import { fixture, uniqueName } from '../helpers.js';
import { capturedPc } from './guests.js';

const MiB = 2 ** 20;
const pcs: Pc[] = [];
const vms: Vm[] = [];
afterEach(() => {
  for (const pc of pcs.splice(0)) pc.destroy();
  for (const vm of vms.splice(0)) vm.destroy();
});

/** A PC whose COM1 output is collected in `out.text`. */
const pc = (opts: Partial<PcOptions> = {}): Pc & { out: { text: string } } => capturedPc(pcs, opts);

describe('debug-exit: a movable port (createPc debugExit)', () => {
  for (const [value, status] of [[0, 1], [1, 3], [7, 15]] as const) {
    it(`mb-debugexit writes ${value} to port 0xf4 (size 4), then halts with interrupts on: status ${status}`, async () => {
      const m = pc({ debugExit: { port: 0xf4, size: 4 } });
      m.loadMultiboot(fixture('mb-debugexit.elf'), { cmdline: `result=${value}` });
      expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'debug-exit', status });
      expect(m.out.text).toBe(`mb-debugexit cmdline=result=${value}\n`);
    });
  }

  it('claims exactly its ports: 0x501-0x502 by default, 0xf4-0xf7 when moved there', () => {
    const find = (m: Pc, port: number): string | undefined => m.runner.pio.bus.find(port)?.name;
    const def = pc();
    expect([0x500, 0x501, 0x502, 0x503].map((p) => find(def, p))).toEqual([undefined, 'debug-exit', 'debug-exit', undefined]);
    const moved = pc({ debugExit: { port: 0xf4, size: 4 } });
    expect([0xf3, 0xf4, 0xf7, 0xf8, 0x501].map((p) => find(moved, p))).toEqual([undefined, 'debug-exit', 'debug-exit', undefined, undefined]);
    expect(find(pc({ debugExit: { port: 0x8900, size: 1 } }), 0x8900)).toBe('debug-exit');
    expect(find(pc({ debugExit: { size: 4 } }), 0x504)).toBe('debug-exit');
  });

  it.each([
    [{ port: '0xf4' }, TypeError, /^debugExit\.port must be a number, got string$/],
    [{ port: 0x10000 }, RangeError, /^debugExit\.port must be an integer 0-0xffff, got 65536$/],
    [{ port: 1.5 }, RangeError, /^debugExit\.port must be an integer 0-0xffff/],
    [{ port: 0xf4, size: 3 }, RangeError, /^debugExit\.size must be 1, 2 or 4, got 3$/],
    [{ port: 0xf4, size: '4' }, TypeError, /^debugExit\.size must be a number/],
    [{ port: 0xfffe, size: 4 }, RangeError, /^debugExit: ports .* run past 0xffff/],
    [{ port: 0x3fc, size: 4 }, RangeError, /^debugExit: ports 0x3fc-0x3ff overlap the com1 at 0x3f8-0x3ff$/],
    [{ port: 0x42, size: 1 }, RangeError, /^debugExit: ports 0x42 overlap the in-kernel pit at 0x40-0x43$/],
    [{ port: 0x61, size: 1 }, RangeError, /overlap the in-kernel speaker at 0x61$/],
    [{ port: 0x510, size: 2 }, RangeError, /overlap the fwCfg at 0x510-0x511$/],
    [{ port: 0xf4, iosize: 4 }, TypeError, /^debugExit: unknown option 'iosize' \(port, size\)$/],
    [0xf4, TypeError, /^debugExit must be an object/],
  ])('debugExit %j is refused before anything is built', (debugExit, type, re) => {
    const name = uniqueName('pc-bad');
    const make = (): Pc => createPc({ memory: 16 * MiB, name, debugExit: debugExit as PcOptions['debugExit'] });
    expect(make).toThrow(type);
    expect(make).toThrow(re);
    pcs.push(createPc({ memory: 16 * MiB, name })); // the name was never taken: nothing was built
  });

  it('the debugcon port is free for debug-exit unless a debugcon is configured', () => {
    expect(pc({ debugExit: { port: 0x402, size: 1 } }).runner.pio.bus.find(0x402)?.name).toBe('debug-exit');
    expect(() => createPc({ memory: 16 * MiB, debugcon: () => {}, debugExit: { port: 0x402, size: 1 } })).toThrow(/overlap the debugcon at 0x402$/);
  });
});

describe('Multiboot info placement', () => {
  it('mb-low (one segment over [0x8000, 0xb86c)) loads; the info, command line, mmap and module list lie outside it', async () => {
    const m = pc();
    const state = m.loadMultiboot(fixture('mb-low.elf'), { cmdline: 'low kernel', modules: [{ data: new Uint8Array(0x100), cmdline: 'mod' }] });
    expect(state.multiboot.kernelStart).toBe(0x8000);
    expect(state.multiboot.kernelEnd).toBe(0xb86c);
    expect(state.multiboot.infoAt).toBeGreaterThanOrEqual(0xb86c);
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'debug-exit', status: 0x21 });
    expect(m.out.text).toBe('mb-low cmdline=low kernel\n');
  });

  it('a kernel linked at 1 MiB still gets its info at 0x9000', () => {
    expect(pc().loadMultiboot(fixture('mb-fwcfg.elf')).multiboot.infoAt).toBe(0x9000);
  });
});

describe('PIT channel 2 at port 0x61 (KVM_PIT_SPEAKER_DUMMY)', () => {
  it('pit-calib sees OUT2 low while counting, then high, and measures a plausible TSC rate', async () => {
    const m = pc();
    m.loadMultiboot(fixture('pit-calib.elf'));
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'debug-exit', status: 3 });
    const match = /^pit-calib tsc_khz=0x([0-9a-f]{8})\n$/.exec(m.out.text);
    expect(match, m.out.text).not.toBeNull();
    const khz = Number.parseInt(match![1], 16);
    const kvmKhz = m.vm.getTscKhz(0);
    // a plausibility check of the rate, not of how long anything took
    expect(khz).toBeGreaterThan(kvmKhz / 2);
    expect(khz).toBeLessThan(kvmKhz * 3);
  });

  /** Real mode: gate on, channel 2 mode 0 count 0xffff, then read port 0x61 into AL and OUT it to port 0x80. */
  const PORT_B = [
    0xe4, 0x61, 0x24, 0xfc, 0x0c, 0x01, 0xe6, 0x61, // in al,0x61; and al,0xfc; or al,1; out 0x61,al
    0xb0, 0xb0, 0xe6, 0x43, 0xb0, 0xff, 0xe6, 0x42, 0xe6, 0x42, // mode 0, count 0xffff
    0xe4, 0x61, 0xe6, 0x80, // in al,0x61; out 0x80,al
  ];

  it('with pitSpeaker, KVM serves port 0x61: the gate reads back, OUT2 is low while counting, no exit reaches userspace', () => {
    const vm = Vm.create(uniqueName('pitspk'), { pitSpeaker: true });
    vms.push(vm);
    vm.setupMemory(0, 0x100000);
    vm.memory.writeBytes(0x1000, Uint8Array.from(PORT_B));
    vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
    vm.setRegisters(0, [[Reg.CS, 0], [Reg.RIP, 0x1000], [Reg.RFLAGS, 2]]);
    const ports: number[] = [];
    for (;;) {
      const e = vm.run(0);
      if (e.kind !== 'inout') throw new Error(`unexpected exit ${e.kind}`);
      ports.push(e.port);
      if (e.port === 0x80) {
        const v = Number(e.value);
        expect(v & 0x03).toBe(0x01); // gate on, speaker off, as written
        expect(v & 0x20).toBe(0); // OUT2 low: the count (55 ms) is running
        break;
      }
    }
    expect(ports).toEqual([0x80]); // 0x61, 0x42, 0x43: all in the kernel
  });

  it('without it (the default for Vm.create), port 0x61 exits to userspace', () => {
    const vm = Vm.create(uniqueName('pitnospk'));
    vms.push(vm);
    vm.setupMemory(0, 0x100000);
    vm.memory.writeBytes(0x1000, Uint8Array.from(PORT_B));
    vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
    vm.setRegisters(0, [[Reg.CS, 0], [Reg.RIP, 0x1000], [Reg.RFLAGS, 2]]);
    const e = vm.run(0);
    expect(e).toMatchObject({ kind: 'inout', port: 0x61, in: true });
  });

  it('pitSpeaker option errors, before a VM exists', () => {
    expect(() => Vm.create(uniqueName('pitbad'), { pitSpeaker: 1 as unknown as boolean })).toThrow(new TypeError('opts.pitSpeaker must be a boolean'));
    expect(() => Vm.create(uniqueName('pitbad'), { pit: false, pitSpeaker: true })).toThrow(new RangeError('opts.pitSpeaker needs opts.pit'));
  });
});

describe('bzImage syssize rounding', () => {
  it('bz-tiny (syssize 8 bytes past the end of the file) boots to its 64-bit entry', async () => {
    const m = pc();
    const image = fixture('bz-tiny.bin');
    const state = m.loadLinux(image, { cmdline: '-quiet' });
    expect(state.linux.header.syssize * 16 - state.linux.header.kernelSize).toBe(8);
    expect(await m.run({ timeoutMs: 30_000 })).toEqual({ reason: 'debug-exit', status: 0x55 });
    expect(m.out.text).toBe('bz-tiny cmdline=-quiet\n');
  });

  it('bz-tiny cut by 16 more bytes is truncated', () => {
    const image = fixture('bz-tiny.bin');
    expect(() => pc().loadLinux(image.subarray(0, image.length - 16))).toThrow(BootImageError);
    expect(() => pc().loadLinux(image.subarray(0, image.length - 16))).toThrow(/truncated: syssize 0x101 says at least 0x1001 bytes/);
  });
});

describe('why a run ended', () => {
  it('describeRunResult names each reason', () => {
    expect(describeRunResult({ reason: 'debug-exit', status: 3 })).toBe('debug-exit: the guest wrote 0x1 to the isa-debug-exit port (status 3)');
    expect(describeRunResult({ reason: 'halted' })).toMatch(/^every vCPU halted with interrupts disabled/);
    expect(describeRunResult({ reason: 'triple-fault' })).toMatch(/^triple fault/);
    expect(describeRunResult({ reason: 'reset', kind: 'keyboard' })).toBe('the guest asked for a reset (i8042 pulse)');
    expect(describeRunResult({ reason: 'reset', kind: 'hard' })).toBe('the guest asked for a reset (0xcf9 hard)');
    for (const reason of ['poweroff', 'stopped', 'timeout'] as const) expect(describeRunResult({ reason })).not.toBe('');
  });
});

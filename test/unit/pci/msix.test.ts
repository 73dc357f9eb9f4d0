import { describe, expect, it } from 'vitest';
import { PciConfigSpace } from '../../../src/pci/config-space.js';
import { PciCommand, PciReg, PciStatus } from '../../../src/pci/registers.js';
import { Msix, MSIX_CAPABILITY_ID, RecordingMsiSink, type MsiSink } from '../../../src/pci/msix.js';

const TABLE = 0x2000;
const PBA = 0x3000;

function make(vectors = 3, sink: MsiSink = new RecordingMsiSink()) {
  const config = new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000 });
  config.setBar(1, { kind: 'mem32', size: 0x4000 });
  const msix = new Msix(config, { vectors, table: { bar: 1, offset: TABLE }, pba: { bar: 1, offset: PBA }, sink });
  const cap = msix.capabilityOffset;
  config.write(PciReg.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER); // what pci_enable_device + pci_set_master do
  const control = () => config.read(cap + 2, 2) as number;
  const setControl = (v: number) => config.write(cap + 2, 2, v);
  /** Program entry `v` as Linux does: address, data, then vector control. */
  const program = (v: number, data: number, masked = false) => {
    msix.write(1, TABLE + 16 * v, 4, 0xfee0_0000 | (v << 12));
    msix.write(1, TABLE + 16 * v + 4, 4, 0);
    msix.write(1, TABLE + 16 * v + 8, 4, data);
    msix.write(1, TABLE + 16 * v + 12, 4, masked ? 1 : 0);
  };
  const pba = () => msix.read(1, PBA, 8) as bigint;
  return { config, msix, cap, control, setControl, program, pba, sink: sink as RecordingMsiSink };
}

describe('MSI-X capability', () => {
  it('is found in the capability list with table size, BIR and offsets', () => {
    const { config, cap, control } = make(5);
    expect(config.status & PciStatus.CAPABILITIES_LIST).toBeTruthy();
    expect(config.read(PciReg.CAPABILITIES_POINTER, 1)).toBe(cap);
    expect(config.read(cap, 1)).toBe(MSIX_CAPABILITY_ID);
    expect(config.read(cap + 1, 1)).toBe(0); // last in the list
    expect(control()).toBe(4);
    expect(config.read(cap + 4, 4)).toBe(TABLE | 1);
    expect(config.read(cap + 8, 4)).toBe(PBA | 1);
  });

  it('only enable and function mask are writable', () => {
    const { config, cap, control, setControl, msix } = make(5);
    setControl(0xffff);
    expect(control()).toBe(0xc004);
    expect(msix.enabled && msix.functionMasked).toBe(true);
    config.write(cap + 4, 4, 0);
    config.write(cap + 8, 4, 0);
    config.write(cap, 4, 0); // a dword write covering id/next/control
    expect(control()).toBe(0x0004);
    expect(config.read(cap + 4, 4)).toBe(TABLE | 1);
    expect(config.read(cap + 8, 4)).toBe(PBA | 1);
  });
});

describe('MSI-X table and PBA', () => {
  it('entries start masked; fields read back with reserved bits 0', () => {
    const { msix } = make();
    expect(msix.read(1, TABLE + 12, 4)).toBe(1);
    msix.write(1, TABLE, 4, 0xfee0_1003);
    msix.write(1, TABLE + 4, 4, 0x1);
    msix.write(1, TABLE + 8, 4, 0xffff_ffff);
    msix.write(1, TABLE + 12, 4, 0xffff_fffe);
    expect(msix.read(1, TABLE, 4)).toBe(0xfee0_1000);
    expect(msix.read(1, TABLE + 4, 4)).toBe(1);
    expect(msix.read(1, TABLE + 8, 4)).toBe(0xffff_ffff);
    expect(msix.read(1, TABLE + 12, 4)).toBe(0);
    expect(msix.entry(0)).toEqual({ addressLo: 0xfee0_1000, addressHi: 1, data: 0xffff_ffff, masked: false });
  });

  it('8-byte accesses cover two dwords, low first', () => {
    const { msix } = make();
    msix.write(1, TABLE + 16, 8, 0x0000_0002_fee0_0000n);
    msix.write(1, TABLE + 24, 8, 0x0000_0001_0000_0041n); // data 0x41, masked
    expect(msix.read(1, TABLE + 16, 8)).toBe(0x0000_0002_fee0_0000n);
    expect(msix.read(1, TABLE + 24, 8)).toBe(0x0000_0001_0000_0041n);
    expect(msix.entry(1)).toEqual({ addressLo: 0xfee0_0000, addressHi: 2, data: 0x41, masked: true });
  });

  it('misaligned and narrow accesses are ignored and counted; other offsets are not claimed', () => {
    const { msix } = make();
    expect(msix.read(1, TABLE + 2, 4)).toBe(0xffff_ffff);
    expect(msix.read(1, TABLE + 4, 8)).toBe(0xffff_ffff_ffff_ffffn);
    expect(msix.read(1, TABLE, 2)).toBe(0xffff);
    expect(msix.write(1, TABLE + 12, 1, 0)).toBe(true);
    expect(msix.entry(0).masked).toBe(true);
    expect(msix.counters.badAccesses).toBe(4);
    expect(msix.read(1, TABLE + 3 * 16, 4)).toBeUndefined(); // past 3 entries
    expect(msix.read(0, TABLE, 4)).toBeUndefined();
    expect(msix.write(1, 0, 4, 0)).toBe(false);
    expect(msix.claims(1, PBA + 4)).toBe(true);
    expect(msix.claims(1, PBA + 8)).toBe(false);
    expect(msix.read(1, Number.NaN, 4)).toBeUndefined();
  });
});

describe('MSI-X delivery', () => {
  it('an unmasked vector delivers its message through the sink', () => {
    const { msix, setControl, program, sink } = make();
    setControl(0x8000);
    program(2, 0x4032);
    expect(msix.signal(2)).toBe('delivered');
    expect(sink.messages).toEqual([{ addressLo: 0xfee0_2000, addressHi: 0, data: 0x4032 }]);
    expect(msix.counters.delivered).toBe(1);
  });

  it('a masked vector sets its pending bit and delivers on unmask', () => {
    const { msix, setControl, program, pba, sink } = make();
    setControl(0x8000);
    program(1, 0x41, true);
    expect(msix.signal(1)).toBe('pending');
    expect(msix.signal(1)).toBe('pending'); // coalesced
    expect(pba()).toBe(0b10n);
    expect(msix.read(1, PBA, 4)).toBe(0b10);
    expect(msix.read(1, PBA + 4, 4)).toBe(0);
    expect(sink.messages).toEqual([]);
    msix.write(1, PBA, 8, 0n); // PBA is read-only
    expect(pba()).toBe(0b10n);
    msix.write(1, TABLE + 16 + 12, 4, 0); // unmask
    expect(sink.messages).toEqual([{ addressLo: 0xfee0_1000, addressHi: 0, data: 0x41 }]);
    expect(pba()).toBe(0n);
    expect(msix.counters).toMatchObject({ delivered: 1, pended: 2 });
  });

  it('the function mask holds every vector pending until it is cleared', () => {
    const { msix, setControl, program, pba, sink } = make();
    program(0, 0x30);
    program(1, 0x31);
    program(2, 0x32, true);
    setControl(0xc000); // enable + function mask (Linux's order)
    expect(msix.isMasked(0)).toBe(true);
    expect([msix.signal(0), msix.signal(2), msix.signal(1)]).toEqual(['pending', 'pending', 'pending']);
    expect(pba()).toBe(0b111n);
    setControl(0x8000);
    expect(sink.messages.map((m) => m.data)).toEqual([0x30, 0x31]);
    expect(pba()).toBe(0b100n); // vector 2 is still masked on its own
    expect(msix.isPending(2)).toBe(true);
    msix.clearPending(2);
    msix.write(1, TABLE + 32 + 12, 4, 0);
    expect(sink.messages.length).toBe(2);
  });

  it('disabled MSI-X drops signals; out-of-range vectors are counted no-ops', () => {
    const { msix, program, sink, pba } = make();
    program(0, 0x30);
    expect(msix.signal(0)).toBe('disabled');
    expect(msix.signal(3)).toBe('out-of-range');
    expect(msix.signal(-1)).toBe('out-of-range');
    expect(msix.signal(0.5)).toBe('out-of-range');
    expect(msix.signal(Number.NaN)).toBe('out-of-range');
    expect(sink.messages).toEqual([]);
    expect(pba()).toBe(0n);
    expect(msix.counters).toMatchObject({ dropped: 1, outOfRange: 4, delivered: 0 });
  });

  it('without bus mastering a message cannot be sent: dropped and counted', () => {
    const { config, msix, setControl, program, sink, pba } = make();
    setControl(0x8000);
    program(0, 0x30);
    program(1, 0x31, true);
    msix.signal(1);
    config.write(PciReg.COMMAND, 2, PciCommand.MEMORY);
    expect(msix.signal(0)).toBe('no-bus-master');
    msix.write(1, TABLE + 16 + 12, 4, 0); // releases vector 1's pending message into the void
    expect(pba()).toBe(0n);
    expect(sink.messages).toEqual([]);
    expect(msix.counters).toMatchObject({ noBusMaster: 2, delivered: 0 });
    config.write(PciReg.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
    expect(msix.signal(0)).toBe('delivered');
  });

  it('pending vectors survive a disable and deliver on re-enable', () => {
    const { msix, setControl, program, sink } = make();
    program(0, 0x30);
    setControl(0xc000);
    msix.signal(0);
    setControl(0x4000); // disable, still function-masked
    setControl(0x0000);
    expect(sink.messages).toEqual([]);
    setControl(0x8000);
    expect(sink.messages.map((m) => m.data)).toEqual([0x30]);
  });

  it('function reset masks every entry and clears the pending bits', () => {
    const { config, msix, setControl, program, pba, control } = make();
    program(0, 0x30);
    setControl(0xc000);
    msix.signal(0);
    config.reset();
    expect(control()).toBe(2);
    expect(pba()).toBe(0n);
    expect(msix.entry(0)).toEqual({ addressLo: 0, addressHi: 0, data: 0, masked: true });
  });

  it('a PBA for 65+ vectors spans several qwords', () => {
    const config = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0 });
    config.setBar(0, { kind: 'mem64', size: 0x10000 });
    config.setBar(2, { kind: 'mem32', size: 0x1000 });
    const msix = new Msix(config, { vectors: 70, table: { bar: 0, offset: 0 }, pba: { bar: 2, offset: 0x800 }, sink: new RecordingMsiSink() });
    expect(msix.pbaSize).toBe(16);
    config.write(msix.capabilityOffset + 2, 2, 0xc000);
    msix.signal(69);
    msix.signal(3);
    expect(msix.read(2, 0x800, 8)).toBe(0b1000n);
    expect(msix.read(2, 0x808, 8)).toBe(1n << 5n);
    expect(msix.read(0, 69 * 16 + 12, 4)).toBe(1);
    expect(config.read(msix.capabilityOffset + 8, 4)).toBe(0x802);
  });

  it('the constructor checks BARs, alignment, fit and overlap', () => {
    const config = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0 });
    config.setBar(0, { kind: 'mem32', size: 0x1000 });
    config.setBar(1, { kind: 'io', size: 0x100 });
    const sink = new RecordingMsiSink();
    const mk = (o: Partial<ConstructorParameters<typeof Msix>[1]>) => () =>
      new Msix(config, { vectors: 4, table: { bar: 0, offset: 0 }, pba: { bar: 0, offset: 0x800 }, sink, ...o });
    expect(mk({ vectors: 0 })).toThrow(/vectors/);
    expect(mk({ vectors: 2049 })).toThrow(RangeError);
    expect(mk({ table: { bar: 1, offset: 0 } })).toThrow(/memory BAR/);
    expect(mk({ table: { bar: 3, offset: 0 } })).toThrow(/memory BAR/);
    expect(mk({ table: { bar: 0, offset: 4 } })).toThrow(/multiple of 8/);
    expect(mk({ table: { bar: 0, offset: 0xfc8 } })).toThrow(/does not fit/);
    expect(mk({ pba: { bar: 0, offset: 0x38 } })).toThrow(/overlaps/);
    expect(mk({ sink: {} as MsiSink })).toThrow(TypeError);
    expect(mk({})).not.toThrow();
  });
});

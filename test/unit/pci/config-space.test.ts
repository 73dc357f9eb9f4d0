import { describe, expect, it } from 'vitest';
import { PciConfigSpace } from '../../../src/pci/config-space.js';
import { PCI_COMMAND_WRITABLE, PciCommand, PciReg, PciStatus } from '../../../src/pci/registers.js';

function make() {
  return new PciConfigSpace({
    vendorId: 0x1af4,
    deviceId: 0x1041,
    classCode: 0x020000,
    revisionId: 1,
    subsystemVendorId: 0x1af4,
    subsystemId: 0x1100,
    interruptPin: 1,
  });
}

describe('PciConfigSpace header', () => {
  it('identity registers read back at every width', () => {
    const c = make();
    expect(c.read(0, 4)).toBe(0x1041_1af4);
    expect(c.read(0, 2)).toBe(0x1af4);
    expect(c.read(2, 2)).toBe(0x1041);
    expect(c.read(1, 1)).toBe(0x1a);
    expect(c.read(PciReg.REVISION_ID, 4)).toBe(0x0200_0001);
    expect(c.read(PciReg.CLASS, 1)).toBe(0x02);
    expect(c.read(PciReg.SUBSYSTEM_VENDOR_ID, 4)).toBe(0x1100_1af4);
    expect(c.read(PciReg.INTERRUPT_PIN, 1)).toBe(1);
    expect(c.read(PciReg.HEADER_TYPE, 1)).toBe(0);
    expect(c.read(0, 8)).toBe((BigInt(c.read(4, 4) as number) << 32n) | 0x1041_1af4n);
    expect([c.vendorId, c.deviceId, c.classCode]).toEqual([0x1af4, 0x1041, 0x020000]);
  });

  it('identity, class, header type, subsystem, pin, ROM BAR, cap pointer are read-only', () => {
    const c = make();
    const before = Array.from({ length: 0x40 }, (_, i) => c.read(i, 1));
    for (const off of [0x00, 0x02, 0x08, 0x0a, 0x0d, 0x0e, 0x0f, 0x28, 0x2c, 0x2e, 0x30, 0x34, 0x38, 0x3d, 0x3e]) c.write(off, 2, 0xffff);
    c.write(0x30, 4, 0xffff_ffff);
    const after = Array.from({ length: 0x40 }, (_, i) => c.read(i, 1));
    for (let i = 0; i < 0x40; i++) if (i !== 0x0c && i !== 0x3c) expect([i, after[i]]).toEqual([i, before[i]]);
    expect(c.read(0x30, 4)).toBe(0);
  });

  it('command register: only the defined writable bits stick; changes are reported', () => {
    const c = make();
    const seen: [number, number][] = [];
    c.onCommandChange((now, prev) => seen.push([now, prev]));
    c.write(PciReg.COMMAND, 2, 0xffff);
    expect(c.command).toBe(PCI_COMMAND_WRITABLE);
    expect(c.memoryEnabled && c.ioEnabled && c.busMasterEnabled && c.intxDisabled).toBe(true);
    c.write(PciReg.COMMAND, 1, 0x02);
    expect(c.command).toBe(0x0502);
    expect(c.read(PciReg.COMMAND, 4)).toBe(0x0502); // status 0
    c.write(PciReg.COMMAND, 2, 0x0502); // no change, no event
    expect(seen).toEqual([
      [PCI_COMMAND_WRITABLE, 0],
      [0x0502, PCI_COMMAND_WRITABLE],
    ]);
  });

  it('a dword write at 0x04 does not disturb read-only status bits, and clears W1C bits written as 1', () => {
    const c = make();
    c.addCapability({ id: 0x09, body: [2] });
    c.setInterruptStatus(true);
    c.raiseStatus(PciStatus.RECEIVED_MASTER_ABORT | PciStatus.DETECTED_PARITY_ERROR);
    expect(c.status).toBe(0xa018);
    c.write(PciReg.COMMAND, 4, PciCommand.MEMORY); // status half 0: nothing cleared
    expect(c.status).toBe(0xa018);
    c.write(PciReg.STATUS, 2, PciStatus.RECEIVED_MASTER_ABORT | PciStatus.CAPABILITIES_LIST | PciStatus.INTERRUPT);
    expect(c.status).toBe(0x8018);
    c.write(PciReg.STATUS + 1, 1, 0xff);
    expect(c.status).toBe(0x0018);
    c.setInterruptStatus(false);
    expect(c.status).toBe(0x0010);
    expect(() => c.raiseStatus(PciStatus.CAPABILITIES_LIST)).toThrow(RangeError);
  });

  it('cache line size and interrupt line are read-write', () => {
    const c = make();
    c.write(PciReg.CACHE_LINE_SIZE, 4, 0xffff_ff10);
    expect(c.read(PciReg.CACHE_LINE_SIZE, 4)).toBe(0x0000_0010);
    c.write(PciReg.INTERRUPT_LINE, 2, 0xff0b);
    expect(c.interruptLine).toBe(0x0b);
    expect(c.read(PciReg.INTERRUPT_LINE, 2)).toBe(0x010b);
  });

  it('multi-function bit', () => {
    const c = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0, multiFunction: true });
    expect(c.read(PciReg.HEADER_TYPE, 1)).toBe(0x80);
    c.multiFunction = false;
    expect(c.read(PciReg.HEADER_TYPE, 1)).toBe(0);
  });

  it('out-of-range and malformed accesses read all-ones and are ignored', () => {
    const c = make();
    expect(c.read(0x1000, 4)).toBe(0xffff_ffff);
    expect(c.read(0xffe, 4)).toBe(0xffff_0000);
    expect(c.read(0x1000, 8)).toBe(0xffff_ffff_ffff_ffffn);
    for (const off of [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60]) {
      expect(c.read(off, 2)).toBe(0xffff);
      expect(() => c.write(off, 4, 0xffff_ffff)).not.toThrow();
    }
    expect(c.read(0, 3 as 4)).toBe(0xff);
    expect(() => c.write(0x3c, 3 as 4, 1)).not.toThrow();
    expect(c.interruptLine).toBe(0);
    c.write(0x3c, 4, Number.NaN);
    c.write(0x3c, 1, -1);
    expect(c.interruptLine).toBe(0xff);
    c.write(0x3c, 8, 0x1_0000_0005n);
    expect(c.interruptLine).toBe(5);
  });

  it('reset restores every register and reports the command change', () => {
    const c = make();
    const seen: number[] = [];
    c.onCommandChange((now) => seen.push(now));
    c.write(PciReg.COMMAND, 2, 0x7);
    c.write(PciReg.INTERRUPT_LINE, 1, 9);
    c.raiseStatus(PciStatus.SIGNALED_SYSTEM_ERROR);
    c.reset();
    expect([c.command, c.interruptLine, c.status]).toEqual([0, 0, 0]);
    expect(seen).toEqual([7, 0]);
    expect(c.vendorId).toBe(0x1af4);
  });

  it('peek/poke are raw host access and validate their arguments', () => {
    const c = make();
    c.poke(0x40, 4, 0xdead_beef);
    expect(c.peek(0x40, 4)).toBe(0xdead_beef);
    c.write(0x40, 4, 0); // not guest-writable
    expect(c.read(0x40, 4)).toBe(0xdead_beef);
    expect(() => c.peek(0xffe, 4)).toThrow(RangeError);
    expect(() => c.poke(0, 2, 0x1_0000)).toThrow(RangeError);
    expect(() => c.poke(0, 3 as 4, 0)).toThrow(RangeError);
    expect(() => c.peek(0.5, 1)).toThrow(TypeError);
  });

  it('constructor validates the identity', () => {
    expect(() => new PciConfigSpace({ vendorId: 0xffff, deviceId: 0, classCode: 0 })).toThrow(/vendorId/);
    expect(() => new PciConfigSpace({ vendorId: 1, deviceId: 0x10000, classCode: 0 })).toThrow(RangeError);
    expect(() => new PciConfigSpace({ vendorId: 1, deviceId: 0, classCode: 0x1000000 })).toThrow(/classCode/);
    expect(() => new PciConfigSpace({ vendorId: 1, deviceId: 0, classCode: 0, interruptPin: 5 })).toThrow(/interruptPin/);
    expect(() => new PciConfigSpace({ vendorId: '1' as unknown as number, deviceId: 0, classCode: 0 })).toThrow(TypeError);
    expect(() => new PciConfigSpace(null as unknown as { vendorId: number; deviceId: number; classCode: number })).toThrow(TypeError);
  });
});

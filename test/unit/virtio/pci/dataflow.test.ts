/** Queues end to end: set up through the BAR, notify, echo, used ring, MSI-X / INTx interrupts, config changes. */
import { describe, expect, it } from 'vitest';
import { RecordingIrqLine } from '../../../../src/devices/device.js';
import { RecordingMsiSink } from '../../../../src/pci/msix.js';
import { PciCommand, PciReg } from '../../../../src/pci/registers.js';
import {
  CommonCfg, VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1, VIRTIO_ISR, VIRTIO_MSI_NO_VECTOR, VirtioPciFunction, type VirtioPciOptions,
} from '../../../../src/virtio/index.js';
import { TestRam } from '../driver.js';
import { ECHO_MAGIC, EchoDevice } from './echo-device.js';
import { PciGuest } from './guest.js';
import { Vring } from './vring.js';

const C = CommonCfg;
const MSI_ADDR = 0xfee0_0000;

function setup(opts: Partial<VirtioPciOptions> = {}, queueSizes = [8, 16]) {
  const ram = new TestRam(0x20000);
  const sink = new RecordingMsiSink();
  const device = new EchoDevice({ queueSizes });
  const fn = new VirtioPciFunction(device, { memory: ram.mem, msi: sink, ...opts });
  const guest = new PciGuest(fn);
  guest.enumerate();
  const rings = queueSizes.map((size, i) => new Vring(ram.mem, ram.base + 0x8000 * i, size));
  return { ram, sink, device, fn, guest, rings };
}

/** The whole driver bring-up with MSI-X: vector 0 config, vector 1 + i for queue i. */
function bringUp(s: ReturnType<typeof setup>, features?: bigint) {
  const { guest, rings } = s;
  expect(guest.negotiate(features)).toBe(true);
  guest.msixEnable();
  for (let v = 0; v <= rings.length; v++) guest.msixEntry(v, MSI_ADDR, 0x40 + v);
  guest.cw(C.CONFIG_MSIX_VECTOR, 2, 0);
  expect(guest.c(C.CONFIG_MSIX_VECTOR, 2)).toBe(0);
  rings.forEach((r, i) => expect(guest.setupQueue(i, r, 1 + i)).toBe(1 + i));
  guest.driverOk();
}

describe('a queue through the transport', () => {
  it('echoes a buffer: notify → device → used ring → MSI-X message with the right address and data', () => {
    const s = setup();
    bringUp(s);
    const { guest, rings, device, sink, ram, fn } = s;
    expect(device.ctx?.queues.map((q) => q?.enabled)).toEqual([true, true]);
    expect(device.ctx?.memory).toBe(ram.mem);
    const msg = new TextEncoder().encode('hello, virtio-pci');
    const { head, inGpa } = rings[1].post(msg, 64);
    guest.notify(1);
    expect(device.log).toContain('notify 1');
    expect(rings[1].used()).toEqual([{ id: head, len: msg.length }]);
    expect(ram.mem.readBytes(inGpa, msg.length)).toEqual(msg);
    expect(sink.messages).toEqual([{ addressLo: MSI_ADDR, addressHi: 0, data: 0x42 }]);
    // Queue 0 uses vector 1.
    rings[0].post(Uint8Array.of(1, 2, 3), 3);
    guest.notify(0);
    expect(sink.messages.at(-1)).toEqual({ addressLo: MSI_ADDR, addressHi: 0, data: 0x41 });
    expect(fn.isr).toBe(0); // ISR is not used with MSI-X
    expect(ram.guardsIntact()).toBe(true);
  });

  it('many requests, several per notification, with the ring wrapping', () => {
    const s = setup({}, [4]);
    bringUp(s);
    const { guest, rings, sink } = s;
    let n = 0;
    for (let round = 0; round < 20; round++) {
      const a = rings[0].post(Uint8Array.of(round), 1);
      const b = rings[0].post(Uint8Array.of(round, round), 2);
      guest.notify(0);
      expect(rings[0].used()).toEqual([{ id: a.head, len: 1 }, { id: b.head, len: 2 }]);
      rings[0].setUsedEvent(rings[0].lastUsed); // EVENT_IDX was negotiated: ask for the next one, as Linux does
      n++;
    }
    expect(sink.messages.length).toBe(n);
  });

  it('a masked vector pends (PBA bit) and is delivered on unmask; the function mask likewise', () => {
    const s = setup();
    bringUp(s);
    const { guest, rings, sink } = s;
    guest.msixMask(2, true);
    rings[1].post(Uint8Array.of(9), 1);
    guest.notify(1);
    expect(rings[1].used().length).toBe(1);
    expect(sink.messages).toEqual([]);
    expect(guest.msixPending(2)).toBe(true);
    guest.msixMask(2, false);
    expect(sink.messages).toEqual([{ addressLo: MSI_ADDR, addressHi: 0, data: 0x42 }]);
    expect(guest.msixPending(2)).toBe(false);
    guest.msixEnable(true); // function mask
    rings[0].post(Uint8Array.of(9), 1);
    guest.notify(0);
    expect(sink.messages.length).toBe(1);
    expect(guest.msixPending(1)).toBe(true);
    guest.msixEnable(false);
    expect(sink.messages.at(-1)?.data).toBe(0x41);
  });

  it('a queue mapped to NO_VECTOR raises nothing while MSI-X is enabled', () => {
    const s = setup();
    const { guest, rings, sink, fn } = s;
    expect(guest.negotiate()).toBe(true);
    guest.msixEnable();
    guest.msixEntry(1, MSI_ADDR, 0x41);
    guest.setupQueue(0, rings[0], VIRTIO_MSI_NO_VECTOR);
    guest.driverOk();
    rings[0].post(Uint8Array.of(1), 1);
    guest.notify(0);
    expect(rings[0].used().length).toBe(1);
    expect(sink.messages).toEqual([]);
    expect(fn.interruptCounters.noVector).toBe(1);
    expect(fn.isr).toBe(0);
  });

  it('with bus mastering off the message is not sent', () => {
    const s = setup();
    bringUp(s);
    const { guest, rings, sink, fn } = s;
    guest.cfgWrite(PciReg.COMMAND, 2, PciCommand.MEMORY);
    rings[0].post(Uint8Array.of(1), 1);
    guest.notify(0);
    expect(sink.messages).toEqual([]);
    expect(fn.msix?.counters.noBusMaster).toBe(1);
  });

  it('EVENT_IDX: interrupts only when used.idx passes used_event', () => {
    const s = setup({}, [8]);
    bringUp(s, (1n << BigInt(VIRTIO_F_VERSION_1)) | (1n << BigInt(VIRTIO_F_EVENT_IDX)));
    const { guest, rings, sink, fn } = s;
    expect(fn.queue(0).features.eventIdx).toBe(true);
    rings[0].setUsedEvent(2); // interrupt once element 2 is used
    for (let i = 0; i < 2; i++) {
      rings[0].post(Uint8Array.of(i), 1);
      guest.notify(0);
    }
    expect(sink.messages.length).toBe(0);
    rings[0].post(Uint8Array.of(3), 1);
    guest.notify(0);
    expect(sink.messages.length).toBe(1);
    expect(rings[0].used().length).toBe(3);
  });

  it('notifyQueue (the ioeventfd path) is the same as a notify write', () => {
    const s = setup();
    bringUp(s);
    const { rings, fn, device } = s;
    expect(fn.notifyRegion()).toEqual({ bar: 0, offset: 0x3000, length: 8, multiplier: 4 });
    rings[0].post(Uint8Array.of(5), 1);
    fn.notifyQueue(0);
    expect(rings[0].used().length).toBe(1);
    expect(device.log.at(-1)).toBe('notify 0');
    expect(() => fn.notifyQueue(2)).toThrow(RangeError);
  });

  it('bogus notifies are ignored and counted: before DRIVER_OK, no such queue, off-address, queue not enabled', () => {
    const s = setup();
    const { guest, rings, fn, device } = s;
    const notify = guest.addr(2);
    guest.write(notify, 2, 0); // before anything
    expect(guest.negotiate()).toBe(true);
    guest.setupQueue(0, rings[0]);
    guest.write(notify, 2, 0); // before DRIVER_OK
    guest.driverOk();
    guest.write(notify + 4, 2, 1); // queue 1 not enabled
    guest.write(notify + 2, 2, 0); // between two queues' addresses
    guest.write(notify + 8, 2, 2); // no queue 2
    guest.write(notify + 0xffc, 4, 0); // end of the notify page
    expect(fn.counters.badNotifies).toBe(6);
    expect(device.log.filter((l) => l.startsWith('notify'))).toEqual([]);
    guest.write(notify, 4, 0xdead); // any width and value at queue 0's address
    expect(device.log.at(-1)).toBe('notify 0');
    expect(guest.read(notify, 2)).toBe(0); // notify reads 0
  });
});

describe('INTx and ISR (MSI-X not enabled)', () => {
  it('a queue interrupt sets ISR bit 0 and asserts INTx; reading ISR returns and clears it and drops the line', () => {
    const intx = new RecordingIrqLine();
    const s = setup({ intx });
    const { guest, rings, fn } = s;
    expect(guest.negotiate()).toBe(true);
    guest.setupQueue(0, rings[0]);
    guest.driverOk();
    rings[0].post(Uint8Array.of(1), 1);
    guest.notify(0);
    expect(intx.level).toBe(true);
    expect(guest.cfg(PciReg.STATUS, 2) & 0x8).toBe(0x8);
    expect(guest.isr()).toBe(VIRTIO_ISR.QUEUE);
    expect(intx.level).toBe(false);
    expect(guest.cfg(PciReg.STATUS, 2) & 0x8).toBe(0);
    expect(guest.isr()).toBe(0);
    expect(intx.history).toEqual([true, false]);
    expect(fn.interruptCounters.isr).toBe(1);
  });

  it('INTx disable in the command register holds the line low; ISR still records', () => {
    const intx = new RecordingIrqLine();
    const s = setup({ intx });
    const { guest, rings } = s;
    expect(guest.negotiate()).toBe(true);
    guest.setupQueue(0, rings[0]);
    guest.driverOk();
    guest.cfgWrite(PciReg.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER | PciCommand.INTX_DISABLE);
    rings[0].post(Uint8Array.of(1), 1);
    guest.notify(0);
    expect(intx.level).toBe(false);
    guest.cfgWrite(PciReg.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
    expect(intx.level).toBe(true);
    expect(guest.isr()).toBe(1);
    expect(intx.level).toBe(false);
  });

  it('the line drops once the driver switches to MSI-X', () => {
    const intx = new RecordingIrqLine();
    const s = setup({ intx });
    const { guest, rings, sink } = s;
    expect(guest.negotiate(1n << BigInt(VIRTIO_F_VERSION_1))).toBe(true); // no EVENT_IDX: every completion interrupts
    guest.setupQueue(0, rings[0], 1);
    guest.driverOk();
    rings[0].post(Uint8Array.of(1), 1);
    guest.notify(0);
    expect(intx.level).toBe(true);
    guest.msixEnable();
    guest.msixEntry(1, MSI_ADDR, 0x41);
    rings[0].post(Uint8Array.of(2), 1);
    guest.notify(0);
    expect(intx.level).toBe(false);
    expect(sink.messages).toEqual([{ addressLo: MSI_ADDR, addressHi: 0, data: 0x41 }]);
  });

  it('without MSI-X at all (msixVectors 0) the vector registers read back NO_VECTOR', () => {
    const intx = new RecordingIrqLine();
    const s = setup({ intx, msixVectors: 0 });
    const { guest, rings } = s;
    expect(guest.negotiate()).toBe(true);
    expect(guest.setupQueue(0, rings[0], 0)).toBe(VIRTIO_MSI_NO_VECTOR);
    guest.driverOk();
    rings[0].post(Uint8Array.of(1), 1);
    guest.notify(0);
    expect(guest.isr()).toBe(1);
  });
});

describe('device configuration', () => {
  it('reads through the DEVICE structure at natural widths; a 64-bit field in halves or at once', () => {
    const s = setup();
    const { guest, device } = s;
    const at = guest.addr(4);
    expect(guest.read(at, 4)).toBe(ECHO_MAGIC);
    expect(guest.read(at, 2)).toBe(ECHO_MAGIC & 0xffff);
    expect(guest.read(at + 3, 1)).toBe(ECHO_MAGIC >>> 24);
    expect(guest.read(at + 4, 4)).toBe(1);
    expect(guest.read(at + 8, 4)).toBe(1);
    expect(guest.read(at + 4, 8)).toBe(0x1_0000_0001n);
    guest.write(at + 12, 1, 0x77);
    expect(device.scratch).toBe(0x77);
    expect(guest.read(at + 12, 1)).toBe(0x77);
  });

  it('unaligned or partly outside accesses never reach the device out of bounds; reads compose bytes, writes are ignored', () => {
    const s = setup();
    const { guest, device, fn } = s;
    const at = guest.addr(4);
    const before = fn.counters.ignoredAccesses;
    expect(guest.read(at + 1, 4)).toBe(((ECHO_MAGIC >>> 8) | (1 << 24)) >>> 0);
    expect(guest.read(at + 14, 4)).toBe(0); // bytes 14, 15 then past the end
    expect(guest.read(at + 16, 4)).toBe(0); // past configSize
    guest.write(at + 11, 2, 0xffff);
    guest.write(at + 15, 4, 0xffff);
    expect(device.log.filter((l) => l.startsWith('writeConfig'))).toEqual([]);
    expect(fn.counters.ignoredAccesses - before).toBe(5);
    expect(fn.counters.needsReset).toBe(0); // the device never threw
  });

  it('configChanged bumps config_generation and raises the config vector (MSI-X) or ISR bit 1 (INTx)', () => {
    const s = setup();
    bringUp(s);
    const { guest, device, sink } = s;
    const gen = guest.c(C.CONFIG_GENERATION, 1);
    device.capacity = 0x2_0000_0002n;
    device.ctx!.configChanged();
    expect(guest.c(C.CONFIG_GENERATION, 1)).toBe((gen + 1) & 0xff);
    expect(sink.messages).toEqual([{ addressLo: MSI_ADDR, addressHi: 0, data: 0x40 }]);
    // A driver reading the 64-bit field in halves sees the generation move if it changed between them.
    const at = guest.addr(4);
    const g0 = guest.c(C.CONFIG_GENERATION, 1);
    const lo = Number(guest.read(at + 4, 4));
    device.capacity = 0x3_0000_0003n;
    device.ctx!.configChanged();
    const hi = Number(guest.read(at + 8, 4));
    expect(guest.c(C.CONFIG_GENERATION, 1)).not.toBe(g0);
    expect([lo, hi]).toEqual([2, 3]); // torn, and the driver knows it must retry

    const intx = new RecordingIrqLine();
    const t = setup({ intx });
    expect(t.guest.negotiate()).toBe(true);
    t.guest.driverOk();
    t.device.ctx!.configChanged();
    expect(intx.level).toBe(true);
    expect(t.guest.isr()).toBe(VIRTIO_ISR.CONFIG);
  });

  it('the generation wraps at 256; host-side configChanged before DRIVER_OK only bumps it', () => {
    const s = setup();
    const { fn, guest, sink } = s;
    for (let i = 0; i < 256; i++) fn.configChanged();
    expect(guest.c(C.CONFIG_GENERATION, 1)).toBe(0);
    fn.configChanged();
    expect(guest.c(C.CONFIG_GENERATION, 1)).toBe(1);
    expect(sink.messages).toEqual([]);
    expect(fn.isr).toBe(0);
  });
});

describe('PCI configuration access capability', () => {
  it('reads and writes BAR registers through configuration space (as firmware does before mapping BARs)', () => {
    const ram = new TestRam(0x10000);
    const device = new EchoDevice();
    const intx = new RecordingIrqLine();
    const fn = new VirtioPciFunction(device, { memory: ram.mem, msi: new RecordingMsiSink(), intx });
    const guest = new PciGuest(fn); // no enumerate(): BAR 0 is not mapped
    const pc = guest.caps().find((c) => c.cfgType === 5)!.at;
    const access = (offset: number, length: number) => {
      guest.cfgWrite(pc + 4, 1, 0);
      guest.cfgWrite(pc + 8, 4, offset);
      guest.cfgWrite(pc + 12, 4, length);
    };
    access(C.NUM_QUEUES, 2);
    expect(guest.cfg(pc + 16, 4)).toBe(2);
    access(0x2000, 4); // device config: magic
    expect(guest.cfg(pc + 16, 4)).toBe(ECHO_MAGIC);
    access(C.DEVICE_STATUS, 1);
    guest.cfgWrite(pc + 16, 1, 1); // ACKNOWLEDGE
    expect(fn.status).toBe(1);
    expect(guest.cfg(pc + 16, 1)).toBe(1);
    // A bad window (length 3, misaligned, another BAR) reads 0 and writes nothing.
    access(C.DEVICE_STATUS, 3);
    expect(guest.cfg(pc + 16, 4)).toBe(0);
    guest.cfgWrite(pc + 16, 4, 0);
    expect(fn.status).toBe(1);
    access(C.NUM_QUEUES + 1, 2);
    expect(guest.cfg(pc + 16, 4)).toBe(0);
    guest.cfgWrite(pc + 4, 1, 2);
    guest.cfgWrite(pc + 8, 4, C.NUM_QUEUES);
    guest.cfgWrite(pc + 12, 4, 2);
    expect(guest.cfg(pc + 16, 2)).toBe(0xffff); // BAR 2 does not exist: all-ones
    // The window is enough to bring the device up; reading ISR through it clears it, as a BAR read does.
    const put = (offset: number, length: number, v: number) => {
      access(offset, length);
      guest.cfgWrite(pc + 16, length as 1 | 2 | 4, v);
    };
    put(C.DRIVER_FEATURE_SELECT, 4, 1);
    put(C.DRIVER_FEATURE, 4, 1); // VERSION_1
    put(C.DEVICE_STATUS, 1, 0x0b);
    put(C.DEVICE_STATUS, 1, 0x0f);
    expect(fn.status).toBe(0x0f);
    device.ctx!.configChanged();
    expect(intx.level).toBe(true);
    access(0x1000, 1);
    expect(guest.cfg(pc + 16, 1)).toBe(VIRTIO_ISR.CONFIG);
    expect(intx.level).toBe(false);
    expect(fn.isr).toBe(0);
  });
});

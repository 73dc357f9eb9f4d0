/** Reset mid-flight, DEVICE_NEEDS_RESET and the ways a driver (or a device) gets there. */
import { describe, expect, it } from 'vitest';
import { RecordingMsiSink } from '../../../../src/pci/msix.js';
import { CommonCfg, VIRTIO_STATUS, VirtioPciFunction, type VirtioPciOptions } from '../../../../src/virtio/index.js';
import { TestRam } from '../driver.js';
import { EchoDevice } from './echo-device.js';
import { PciGuest } from './guest.js';
import { Vring } from './vring.js';

const C = CommonCfg;
const S = VIRTIO_STATUS;
const MSI_ADDR = 0xfee0_0000;

function setup(opts: Partial<VirtioPciOptions> = {}) {
  const ram = new TestRam(0x20000);
  const sink = new RecordingMsiSink();
  const device = new EchoDevice({ queueSizes: [8, 8] });
  const errors: string[] = [];
  const fn = new VirtioPciFunction(device, { memory: ram.mem, msi: sink, onError: (r) => errors.push(r), ...opts });
  const guest = new PciGuest(fn);
  guest.enumerate();
  const rings = [0, 1].map((i) => new Vring(ram.mem, ram.base + 0x8000 * i, 8));
  return { ram, sink, device, fn, guest, rings, errors };
}

function bringUp(s: ReturnType<typeof setup>): void {
  const { guest, rings } = s;
  expect(guest.negotiate()).toBe(true);
  guest.msixEnable();
  for (let v = 0; v < 3; v++) guest.msixEntry(v, MSI_ADDR, 0x40 + v);
  guest.cw(C.CONFIG_MSIX_VECTOR, 2, 0);
  rings.forEach((r, i) => guest.setupQueue(i, r, 1 + i));
  guest.driverOk();
}

describe('reset mid-flight', () => {
  it('requests in flight at reset are dropped; the old context goes dead; the driver can start over', () => {
    const s = setup();
    bringUp(s);
    const { guest, device, rings, sink, ram } = s;
    device.defer = true;
    rings[0].post(Uint8Array.of(1, 2), 2);
    guest.notify(0);
    expect(device.held.length).toBe(1);
    const oldCtx = device.ctx!;
    guest.setStatus(0);
    expect(guest.status()).toBe(0);
    expect(device.log.at(-1)).toBe('reset');
    // The device completes late, through its old context: nothing reaches the guest.
    const usedIdxBefore = ram.mem.readU16(rings[0].usedAddr + 2);
    expect(device.release(oldCtx)).toEqual([false]);
    oldCtx.configChanged();
    oldCtx.needsReset('late');
    expect(ram.mem.readU16(rings[0].usedAddr + 2)).toBe(usedIdxBefore);
    expect(sink.messages).toEqual([]);
    expect(guest.status()).toBe(0);
    // Start over on fresh rings.
    device.defer = false;
    s.rings = [0, 1].map((i) => new Vring(ram.mem, ram.base + 0x8000 * i + 0x4000, 8));
    bringUp(s);
    expect(device.ctx).not.toBe(oldCtx);
    // A queue reference kept from the old session cannot take the new session's chains.
    const oldQueue = oldCtx.queues[1]!;
    expect(device.ctx!.queues[1]).not.toBe(oldQueue);
    s.rings[1].post(Uint8Array.of(6), 1);
    expect(oldQueue.pop()).toBeNull();
    const { head } = s.rings[1].post(Uint8Array.of(7), 1);
    guest.notify(1);
    expect(s.rings[1].used().map((u) => u.len)).toEqual([1, 1]);
    expect(s.rings[1].lastUsed).toBe(2);
    void head;
    expect(sink.messages).toEqual([{ addressLo: MSI_ADDR, addressHi: 0, data: 0x42 }]);
  });

  it('MSI-X state belongs to PCI and survives a device reset; a function reset clears it and the BAR', () => {
    const s = setup();
    bringUp(s);
    const { guest, fn } = s;
    guest.setStatus(0);
    expect(fn.msix?.enabled).toBe(true);
    expect(fn.msix?.entry(1).data).toBe(0x41);
    fn.reset();
    expect(fn.msix?.enabled).toBe(false);
    expect(fn.msix?.entry(1)).toEqual({ addressLo: 0, addressHi: 0, data: 0, masked: true });
    expect(fn.config.bar(0)?.mapped).toBeUndefined();
    expect(fn.status).toBe(0);
  });
});

describe('DEVICE_NEEDS_RESET', () => {
  it('ctx.needsReset sets the bit, raises the config vector once, counts and reports every call', () => {
    const s = setup();
    bringUp(s);
    const { guest, device, fn, sink, errors } = s;
    device.ctx!.needsReset('bad request');
    expect(guest.status() & S.DEVICE_NEEDS_RESET).toBe(S.DEVICE_NEEDS_RESET);
    expect(sink.messages).toEqual([{ addressLo: MSI_ADDR, addressHi: 0, data: 0x40 }]);
    device.ctx!.needsReset('again');
    expect(sink.messages.length).toBe(1);
    expect(fn.counters.needsReset).toBe(2);
    expect(errors).toEqual(['bad request', 'again']);
    expect(fn.lastError).toBe('again');
    // Reset clears it.
    guest.setStatus(0);
    expect(guest.status()).toBe(0);
  });

  it('a queue_enable the queue cannot take: size not a power of two, or too big', () => {
    for (const size of [6, 16, 0]) {
      const s = setup();
      const { guest, fn, rings } = s;
      expect(guest.negotiate()).toBe(true);
      guest.cw(C.QUEUE_SELECT, 2, 0);
      guest.cw(C.QUEUE_SIZE, 2, size);
      guest.cw(C.QUEUE_DESC, 4, rings[0].descAddr);
      guest.cw(C.QUEUE_DRIVER, 4, rings[0].availAddr);
      guest.cw(C.QUEUE_DEVICE, 4, rings[0].usedAddr);
      guest.cw(C.QUEUE_ENABLE, 2, 1);
      expect(guest.c(C.QUEUE_ENABLE, 2)).toBe(0);
      expect(guest.status() & S.DEVICE_NEEDS_RESET).toBe(S.DEVICE_NEEDS_RESET);
      expect(fn.lastError).toMatch(/^queue 0: queue size/);
      // Not yet DRIVER_OK: no config interrupt.
      expect(s.sink.messages).toEqual([]);
    }
  });

  it('a misaligned or unmapped ring', () => {
    const cases: [string, number, RegExp][] = [
      ['desc', 0x10008, /desc ring address .* 16-byte aligned/],
      ['device', 0x7fff_0000, /used ring .* not in guest memory/],
    ];
    for (const [which, addr, why] of cases) {
      const s = setup();
      const { guest, fn, rings } = s;
      expect(guest.negotiate()).toBe(true);
      guest.cw(C.QUEUE_DESC, 4, which === 'desc' ? addr : rings[0].descAddr);
      guest.cw(C.QUEUE_DRIVER, 4, rings[0].availAddr);
      guest.cw(C.QUEUE_DEVICE, 4, which === 'device' ? addr : rings[0].usedAddr);
      guest.cw(C.QUEUE_ENABLE, 2, 1);
      expect(guest.c(C.QUEUE_ENABLE, 2)).toBe(0);
      expect(fn.lastError).toMatch(why);
    }
  });

  it('rewriting a running queue’s size or address stops it (ring-moved); rewriting the same value does not', () => {
    const s = setup();
    bringUp(s);
    const { guest, fn, rings, sink } = s;
    guest.cw(C.QUEUE_SELECT, 2, 1);
    guest.cw(C.QUEUE_SIZE, 2, 8); // unchanged
    guest.cw(C.QUEUE_DESC, 4, rings[1].descAddr);
    expect(guest.status() & S.DEVICE_NEEDS_RESET).toBe(0);
    guest.cw(C.QUEUE_DEVICE + 4, 4, 1); // the used ring "moves" above 4 GiB
    expect(guest.status() & S.DEVICE_NEEDS_RESET).toBe(S.DEVICE_NEEDS_RESET);
    expect(fn.lastError).toMatch(/queue 1: usedAddr changed/);
    expect(fn.queue(1).error?.kind).toBe('ring-moved');
    expect(sink.messages).toEqual([{ addressLo: MSI_ADDR, addressHi: 0, data: 0x40 }]);
    // The stopped queue serves nothing; queue 0 still works.
    rings[1].post(Uint8Array.of(1), 1);
    guest.notify(1);
    expect(rings[1].used()).toEqual([]);
    const { head } = rings[0].post(Uint8Array.of(2), 1);
    guest.notify(0);
    expect(rings[0].used()).toEqual([{ id: head, len: 1 }]);
  });

  it('a queue error the device lets through (avail.idx far ahead) and a device bug both end in needs-reset, not a throw', () => {
    const s = setup();
    bringUp(s);
    const { guest, fn, rings, device, ram, errors } = s;
    ram.mem.writeU16(rings[0].availAddr + 2, 100); // 100 entries ahead of a size-8 queue
    expect(() => guest.notify(0)).not.toThrow();
    expect(fn.lastError).toMatch(/^notify: QueueError: avail.idx 100/);
    device.throwOnNotify = true;
    expect(() => guest.notify(1)).not.toThrow();
    expect(fn.lastError).toBe('notify: Error: echo device bug');
    expect(errors.length).toBe(2);
    expect(fn.counters.needsReset).toBe(2);
  });

  it('a device whose activate or readConfig throws', () => {
    const s = setup();
    const { guest, fn, device } = s;
    device.activate = () => {
      throw new TypeError('no');
    };
    device.readConfig = () => {
      throw new Error('cfg');
    };
    expect(guest.negotiate()).toBe(true);
    guest.driverOk();
    expect(fn.lastError).toBe('activate: TypeError: no');
    expect(guest.read(guest.addr(4), 4)).toBe(0);
    expect(fn.lastError).toBe('readConfig: Error: cfg');
    expect(guest.status() & (S.DRIVER_OK | S.DEVICE_NEEDS_RESET)).toBe(S.DRIVER_OK | S.DEVICE_NEEDS_RESET);
  });
});

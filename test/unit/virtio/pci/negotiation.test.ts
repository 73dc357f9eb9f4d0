/** Feature negotiation and device status through the common configuration. */
import { describe, expect, it } from 'vitest';
import { RecordingMsiSink } from '../../../../src/pci/msix.js';
import {
  CommonCfg, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, VIRTIO_MSI_NO_VECTOR, VIRTIO_STATUS, VirtioPciFunction,
} from '../../../../src/virtio/index.js';
import { TestRam } from '../driver.js';
import { EchoDevice } from './echo-device.js';
import { PciGuest } from './guest.js';

const S = VIRTIO_STATUS;
const C = CommonCfg;
const bit = (n: number) => 1n << BigInt(n);

function setup(features = bit(5) | bit(0)) {
  const ram = new TestRam(0x10000);
  const device = new EchoDevice({ features });
  const fn = new VirtioPciFunction(device, { memory: ram.mem, msi: new RecordingMsiSink() });
  const guest = new PciGuest(fn);
  guest.enumerate();
  return { fn, device, guest };
}

describe('features', () => {
  it('offers the device bits plus VERSION_1, EVENT_IDX and INDIRECT_DESC; words past 1 read 0', () => {
    const { guest, fn } = setup();
    const offered = bit(5) | bit(0) | bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_INDIRECT_DESC);
    expect(guest.deviceFeatures()).toBe(offered);
    expect(fn.offeredFeatures).toBe(offered);
    for (const sel of [2, 3, 0xffff_ffff]) {
      guest.cw(C.DEVICE_FEATURE_SELECT, 4, sel);
      expect(guest.c(C.DEVICE_FEATURE_SELECT, 4)).toBe(sel);
      expect(guest.c(C.DEVICE_FEATURE, 4)).toBe(0);
    }
  });

  it('accepts a subset with VERSION_1: FEATURES_OK reads back set, negotiated features fixed', () => {
    const { guest, fn, device } = setup();
    const want = bit(5) | bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX);
    expect(guest.negotiate(want)).toBe(true);
    expect(guest.status()).toBe(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    expect(fn.negotiatedFeatures).toBe(want);
    // The driver's words read back as written.
    guest.cw(C.DRIVER_FEATURE_SELECT, 4, 1);
    expect(guest.c(C.DRIVER_FEATURE, 4)).toBe(1);
    // After FEATURES_OK, driver_feature writes are ignored.
    guest.cw(C.DRIVER_FEATURE, 4, 0);
    expect(guest.c(C.DRIVER_FEATURE, 4)).toBe(1);
    expect(fn.negotiatedFeatures).toBe(want);
    guest.driverOk();
    expect(device.log.at(-1)).toBe(`activate ${want.toString(16)}`);
    expect(device.ctx?.features).toBe(want);
  });

  it('refuses FEATURES_OK for a bit not offered', () => {
    const { guest, fn } = setup();
    expect(guest.negotiate(bit(VIRTIO_F_VERSION_1) | bit(7))).toBe(false);
    expect(guest.status()).toBe(S.ACKNOWLEDGE | S.DRIVER);
    expect(fn.counters.refusedFeatures).toBe(1);
    expect(fn.lastRefusal).toMatch(/not offered: 0x80/);
    expect(fn.negotiatedFeatures).toBeUndefined();
  });

  it('refuses FEATURES_OK for bits written in a high word nothing is offered in', () => {
    const { guest, fn } = setup();
    guest.setStatus(S.ACKNOWLEDGE | S.DRIVER);
    guest.setDriverFeatures(bit(VIRTIO_F_VERSION_1));
    guest.cw(C.DRIVER_FEATURE_SELECT, 4, 3);
    guest.cw(C.DRIVER_FEATURE, 4, 1);
    expect(guest.c(C.DRIVER_FEATURE, 4)).toBe(0); // not stored
    guest.setStatus(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    expect(guest.status() & S.FEATURES_OK).toBe(0);
    expect(fn.lastRefusal).toMatch(/not offered/);
    // A reset forgets it.
    expect(guest.negotiate(bit(VIRTIO_F_VERSION_1))).toBe(true);
  });

  it('refuses FEATURES_OK without VERSION_1 (a legacy driver)', () => {
    const { guest, fn } = setup();
    expect(guest.negotiate(bit(5))).toBe(false);
    expect(fn.lastRefusal).toMatch(/VERSION_1/);
    // The driver may try again with VERSION_1 in the same session.
    guest.setDriverFeatures(bit(5) | bit(VIRTIO_F_VERSION_1));
    guest.setStatus(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    expect(guest.status() & S.FEATURES_OK).toBe(S.FEATURES_OK);
  });
});

describe('device status', () => {
  it('DRIVER_OK without FEATURES_OK is ignored; the device is not activated', () => {
    const { guest, device, fn } = setup();
    guest.setStatus(S.ACKNOWLEDGE | S.DRIVER | S.DRIVER_OK);
    expect(guest.status()).toBe(S.ACKNOWLEDGE | S.DRIVER);
    expect(device.log).not.toContain(expect.stringMatching(/^activate/));
    expect(fn.counters.activations).toBe(0);
  });

  it('bits stick: a write cannot clear them or set DEVICE_NEEDS_RESET; FAILED is kept', () => {
    const { guest } = setup();
    expect(guest.negotiate()).toBe(true);
    guest.setStatus(S.ACKNOWLEDGE);
    expect(guest.status()).toBe(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    guest.setStatus(S.DEVICE_NEEDS_RESET | S.FAILED);
    expect(guest.status()).toBe(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK | S.FAILED);
  });

  it('writing 0 resets everything and completes at once', () => {
    const { guest, device, fn } = setup();
    expect(guest.negotiate()).toBe(true);
    guest.cw(C.CONFIG_MSIX_VECTOR, 2, 0);
    guest.cw(C.QUEUE_SELECT, 2, 1);
    guest.cw(C.QUEUE_MSIX_VECTOR, 2, 1);
    guest.cw(C.QUEUE_SIZE, 2, 4);
    guest.cw(C.QUEUE_DESC, 4, 0x1234_0000);
    guest.cw(C.DEVICE_FEATURE_SELECT, 4, 1);
    guest.driverOk();
    guest.setStatus(0);
    expect(guest.status()).toBe(0);
    expect(device.log.at(-1)).toBe('reset');
    expect(fn.counters.resets).toBe(2); // negotiate() reset first, too
    expect(fn.negotiatedFeatures).toBeUndefined();
    expect(guest.c(C.CONFIG_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    expect(guest.c(C.QUEUE_SELECT, 2)).toBe(0);
    expect(guest.c(C.DEVICE_FEATURE_SELECT, 4)).toBe(0);
    guest.cw(C.QUEUE_SELECT, 2, 1);
    expect(guest.c(C.QUEUE_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    expect(guest.c(C.QUEUE_SIZE, 2)).toBe(8);
    expect(guest.c(C.QUEUE_DESC, 4)).toBe(0);
    expect(guest.c(C.QUEUE_ENABLE, 2)).toBe(0);
    guest.cw(C.DRIVER_FEATURE_SELECT, 4, 1);
    expect(guest.c(C.DRIVER_FEATURE, 4)).toBe(0);
  });
});

describe('common configuration registers', () => {
  it('num_queues, per-queue registers of the selected queue, and 0 for a queue that does not exist', () => {
    const { guest } = setup();
    expect(guest.c(C.NUM_QUEUES, 2)).toBe(2);
    guest.cw(C.QUEUE_SELECT, 2, 1);
    expect(guest.c(C.QUEUE_SIZE, 2)).toBe(8);
    expect(guest.c(C.QUEUE_NOTIFY_OFF, 2)).toBe(1);
    expect(guest.c(C.QUEUE_NOTIFY_DATA, 2)).toBe(1);
    expect(guest.c(C.QUEUE_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    guest.cw(C.QUEUE_DRIVER, 8, 0x1_2345_6780n);
    expect(guest.c(C.QUEUE_DRIVER, 4)).toBe(0x2345_6780);
    expect(guest.c(C.QUEUE_DRIVER + 4, 4)).toBe(1);
    expect(guest.read(guest.addr(1, C.QUEUE_DRIVER), 8)).toBe(0x1_2345_6780n);
    guest.cw(C.QUEUE_SELECT, 2, 2);
    expect(guest.c(C.QUEUE_SELECT, 2)).toBe(2);
    for (const off of [C.QUEUE_SIZE, C.QUEUE_MSIX_VECTOR, C.QUEUE_ENABLE, C.QUEUE_NOTIFY_OFF]) expect(guest.c(off, 2)).toBe(0);
    guest.cw(C.QUEUE_SIZE, 2, 4);
    guest.cw(C.QUEUE_ENABLE, 2, 1);
    expect(guest.c(C.QUEUE_SIZE, 2)).toBe(0);
  });

  it('vectors: in range kept, out of range reads back NO_VECTOR', () => {
    const { guest } = setup(); // 3 vectors
    guest.cw(C.CONFIG_MSIX_VECTOR, 2, 2);
    expect(guest.c(C.CONFIG_MSIX_VECTOR, 2)).toBe(2);
    guest.cw(C.CONFIG_MSIX_VECTOR, 2, 3);
    expect(guest.c(C.CONFIG_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    guest.cw(C.QUEUE_MSIX_VECTOR, 2, 1);
    expect(guest.c(C.QUEUE_MSIX_VECTOR, 2)).toBe(1);
    guest.cw(C.QUEUE_MSIX_VECTOR, 2, 0x8000);
    expect(guest.c(C.QUEUE_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
  });

  it('wrong widths and offsets inside a field read 0 and are ignored (counted); read-only fields ignore writes', () => {
    const { guest, fn } = setup();
    guest.cw(C.DEVICE_FEATURE_SELECT, 4, 1);
    const before = fn.counters.ignoredAccesses;
    expect(guest.c(C.DEVICE_FEATURE, 2)).toBe(0); // 16-bit read of a 32-bit field
    expect(guest.c(C.DEVICE_FEATURE + 1, 1)).toBe(0);
    expect(guest.c(C.NUM_QUEUES, 4)).toBe(0);
    expect(guest.c(C.DEVICE_STATUS, 2)).toBe(0);
    expect(guest.read(guest.addr(1, C.DEVICE_FEATURE), 8)).toBe(0n);
    guest.cw(C.DEVICE_FEATURE_SELECT, 2, 0); // 16-bit write: ignored
    expect(guest.c(C.DEVICE_FEATURE_SELECT, 4)).toBe(1);
    guest.cw(C.NUM_QUEUES, 2, 9);
    expect(guest.c(C.NUM_QUEUES, 2)).toBe(2);
    guest.cw(C.CONFIG_GENERATION, 1, 9);
    expect(guest.c(C.CONFIG_GENERATION, 1)).toBe(0);
    guest.cw(C.DEVICE_STATUS, 4, S.ACKNOWLEDGE);
    expect(guest.status()).toBe(0);
    expect(guest.c(0x3c, 4)).toBe(0); // past the structure
    expect(guest.c(0xffc, 4)).toBe(0);
    expect(fn.counters.ignoredAccesses - before).toBe(11);
  });

  it('queue_enable before FEATURES_OK is ignored', () => {
    const { guest, fn } = setup();
    guest.cw(C.QUEUE_ENABLE, 2, 1);
    expect(guest.c(C.QUEUE_ENABLE, 2)).toBe(0);
    expect(fn.queue(0).enabled).toBe(false);
  });
});

/** Notification suppression in both directions, with and without EVENT_IDX. */
import { describe, expect, it } from 'vitest';
import { VIRTQ_USED_F_NO_NOTIFY } from '../../../src/virtio/index.js';
import { GuestDriver } from './driver.js';

const one = () => Uint8Array.of(1);

describe('device → driver (interrupts)', () => {
  it('without EVENT_IDX: notifies unless VIRTQ_AVAIL_F_NO_INTERRUPT, and only when something was added', () => {
    const d = new GuestDriver({ size: 8 });
    const q = d.enable();
    expect(q.needsNotification()).toBe(false);
    d.add([one()]);
    q.pushUsed(q.pop()!, 0);
    expect(q.needsNotification()).toBe(true);
    expect(q.needsNotification()).toBe(false); // nothing new
    d.setNoInterrupt(true);
    d.add([one()]);
    q.pushUsed(q.pop()!, 0);
    expect(q.needsNotification()).toBe(false);
    d.setNoInterrupt(false);
    d.add([one()]);
    q.pushUsed(q.pop()!, 0);
    expect(q.needsNotification()).toBe(true);
  });

  it('with EVENT_IDX: notifies exactly when used.idx passes used_event (and ignores NO_INTERRUPT)', () => {
    const d = new GuestDriver({ size: 16, eventIdx: true });
    const q = d.enable();
    d.setNoInterrupt(true);
    d.setUsedEvent(2); // interrupt me once the element at index 2 is used
    for (let i = 0; i < 6; i++) d.add([one()]);
    const c = Array.from({ length: 6 }, () => q.pop()!);
    q.pushUsed(c[0], 0);
    q.pushUsed(c[1], 0); // used.idx 0 -> 2: element 2 not yet used
    expect(q.needsNotification()).toBe(false);
    q.pushUsed(c[2], 0); // 2 -> 3: passes used_event = 2
    expect(q.needsNotification()).toBe(true);
    q.pushUsed(c[3], 0); // used_event still 2: already signalled
    expect(q.needsNotification()).toBe(false);
    d.setUsedEvent(4);
    q.pushUsed(c[4], 0);
    q.pushUsed(c[5], 0); // 4 -> 6 covers event 4 in one batch
    expect(q.needsNotification()).toBe(true);
  });

  it('with EVENT_IDX: a batch that crosses used_event notifies once', () => {
    const d = new GuestDriver({ size: 8, eventIdx: true });
    const q = d.enable();
    d.setUsedEvent(0);
    for (let i = 0; i < 8; i++) d.add([one()]);
    for (let i = 0; i < 8; i++) q.pushUsed(q.pop()!, 0);
    expect(q.needsNotification()).toBe(true);
    expect(q.needsNotification()).toBe(false);
  });
});

describe('driver → device (kicks)', () => {
  it('without EVENT_IDX: disable sets VIRTQ_USED_F_NO_NOTIFY, enable clears it and reports buffers posted meanwhile', () => {
    const d = new GuestDriver({ size: 8 });
    const q = d.enable();
    expect(d.usedFlags()).toBe(0);
    q.disableNotifications();
    expect(d.usedFlags()).toBe(VIRTQ_USED_F_NO_NOTIFY);
    const old = d.availIdx;
    d.add([one()]);
    expect(d.wouldKick(old)).toBe(false);
    // the device's loop: after draining, re-enable and re-check
    expect(q.enableNotifications()).toBe(true); // the buffer posted without a kick
    expect(d.usedFlags()).toBe(0);
    q.pushUsed(q.pop()!, 0);
    expect(q.enableNotifications()).toBe(false);
  });

  it('with EVENT_IDX: pop keeps avail_event current; disabled, it stays put; enable writes it and re-checks', () => {
    const d = new GuestDriver({ size: 8, eventIdx: true });
    const q = d.enable();
    expect(d.availEvent()).toBe(0);
    let old = d.availIdx;
    d.add([one()]);
    expect(d.wouldKick(old)).toBe(true); // avail_event 0: the first buffer kicks
    q.pushUsed(q.pop()!, 0);
    expect(d.availEvent()).toBe(1);
    old = d.availIdx;
    d.add([one()]);
    expect(d.wouldKick(old)).toBe(true);

    q.disableNotifications();
    q.pushUsed(q.pop()!, 0);
    expect(d.availEvent()).toBe(1); // not advanced while disabled
    old = d.availIdx;
    d.add([one()]);
    d.add([one()]);
    expect(d.wouldKick(old)).toBe(false); // 2 -> 4 does not pass avail_event 1
    expect(q.enableNotifications()).toBe(true); // two pending: pop again
    expect(d.availEvent()).toBe(2);
    q.pushUsed(q.pop()!, 0);
    q.pushUsed(q.pop()!, 0);
    expect(d.availEvent()).toBe(4);
    expect(q.enableNotifications()).toBe(false);
    old = d.availIdx;
    d.add([one()]);
    expect(d.wouldKick(old)).toBe(true);
  });

  it('the documented device loop drains everything, including buffers posted during it', () => {
    for (const eventIdx of [false, true]) {
      const d = new GuestDriver({ size: 8, eventIdx });
      const q = d.enable();
      for (let i = 0; i < 3; i++) d.add([one()]);
      let served = 0;
      let injected = false;
      q.disableNotifications();
      do {
        for (let c; (c = q.pop()); served++) {
          q.pushUsed(c, 0);
          if (!injected && served === 2) {
            injected = true;
            d.used();
            d.add([one()]); d.add([one()]); // posted by another vCPU while the device works
          }
        }
      } while (q.enableNotifications());
      expect(served).toBe(5);
      expect(q.needsNotification()).toBe(true);
    }
  });
});

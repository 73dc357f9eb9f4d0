/**
 * A driver in another thread: a worker posts requests into a SharedArrayBuffer while the
 * device pops them on this thread, each side sleeping in Atomics.wait until the other
 * notifies. A notification lost to a race (the re-check in enableNotifications, or the
 * used_event / used.idx order in needsNotification) shows up as a wait that times out
 * with work pending.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { SplitQueue } from '../../../src/virtio/index.js';

const DRIVER = `
const { workerData, parentPort } = require('node:worker_threads');
const { sab, off, len, base, size, desc, avail, used, data, n, eventIdx, cells: cellBuf } = workerData;
const dv = new DataView(sab, off, len);
const u16 = new Uint16Array(sab, off, len / 2);
const cells = new Int32Array(cellBuf);
const at = (gpa) => gpa - base;
const AVAIL_IDX = at(avail + 2) / 2, USED_FLAGS = at(used) / 2, USED_IDX = at(used + 2) / 2;
const USED_EVENT = at(avail + 4 + 2 * size) / 2, AVAIL_EVENT = at(used + 4 + 8 * size) / 2;
let availIdx = 0, lastUsed = 0, posted = 0, done = 0, timeouts = 0, kicks = 0, wrongIds = 0;
const free = Array.from({ length: size }, (_, i) => size - 1 - i);
const order = [];
while (done < n) {
  while (free.length > 0 && posted < n) {
    const head = free.pop();
    dv.setUint32(at(data + 8 * head), posted, true);
    dv.setBigUint64(at(desc + 16 * head), BigInt(data + 8 * head), true);
    dv.setUint32(at(desc + 16 * head + 8), 4, true);
    dv.setUint16(at(desc + 16 * head + 12), 0, true);
    dv.setUint16(at(avail + 4 + 2 * (availIdx % size)), head, true);
    order.push(head);
    const old = availIdx;
    availIdx = (availIdx + 1) & 0xffff;
    posted++;
    Atomics.store(u16, AVAIL_IDX, availIdx); // publishes the entry and the descriptor
    const kick = eventIdx
      ? ((availIdx - Atomics.load(u16, AVAIL_EVENT) - 1) & 0xffff) < ((availIdx - old) & 0xffff)
      : (Atomics.load(u16, USED_FLAGS) & 1) === 0;
    if (kick) { kicks++; Atomics.add(cells, 0, 1); Atomics.notify(cells, 0); }
  }
  const irqSeen = Atomics.load(cells, 1);
  let uidx = Atomics.load(u16, USED_IDX);
  if (uidx === lastUsed && done < n) {
    if (eventIdx) Atomics.store(u16, USED_EVENT, lastUsed); // interrupt me at the next one
    uidx = Atomics.load(u16, USED_IDX); // re-check after publishing used_event
    if (uidx === lastUsed && Atomics.wait(cells, 1, irqSeen, 1000) === 'timed-out') {
      if (Atomics.load(u16, USED_IDX) !== lastUsed) timeouts++;
      if (++timeouts > 20) break;
    }
    uidx = Atomics.load(u16, USED_IDX);
  }
  while (lastUsed !== uidx) {
    const id = dv.getUint32(at(used + 4 + 8 * (lastUsed % size)), true);
    if (id !== order[done]) wrongIds++;
    free.push(id);
    lastUsed = (lastUsed + 1) & 0xffff;
    done++;
  }
}
parentPort.postMessage({ timeouts, kicks, wrongIds, done });
`;

async function run(eventIdx: boolean, n: number) {
  const size = 16;
  const len = 0x4000;
  const base = 0x100000;
  const sab = new SharedArrayBuffer(len + 64);
  const mem = new GuestMemory();
  mem.addSegment(base, new Uint8Array(sab, 32, len));
  const layout = { desc: base, avail: base + 0x1000, used: base + 0x2000, data: base + 0x3000 };
  const cells = new SharedArrayBuffer(8);
  const bell = new Int32Array(cells);
  const q = new SplitQueue(mem, { maxSize: size });
  q.size = size;
  q.descAddr = layout.desc;
  q.availAddr = layout.avail;
  q.usedAddr = layout.used;
  q.enable({ eventIdx, indirectDesc: false });
  const worker = new Worker(DRIVER, { eval: true, workerData: { sab, off: 32, len, base, size, ...layout, n, eventIdx, cells } });
  const result = new Promise<{ timeouts: number; kicks: number; wrongIds: number; done: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  let served = 0;
  let outOfOrder = 0;
  let deviceTimeouts = 0;
  let irqs = 0;
  while (served < n && deviceTimeouts <= 20) {
    const kickSeen = Atomics.load(bell, 0);
    q.disableNotifications();
    do {
      for (let c; (c = q.pop()); served++) {
        if (new DataView(c.readBytes(4).buffer).getUint32(0, true) !== served) outOfOrder++;
        q.pushUsed(c, 0);
      }
    } while (q.enableNotifications());
    if (q.needsNotification()) {
      irqs++;
      Atomics.add(bell, 1, 1);
      Atomics.notify(bell, 1);
    }
    if (served < n && Atomics.wait(bell, 0, kickSeen, 1000) === 'timed-out') deviceTimeouts++;
  }
  const driver = await result;
  await worker.terminate();
  return { served, outOfOrder, deviceTimeouts, irqs, driver, errors: q.errors.dropped };
}

describe('a driver in another thread', () => {
  for (const eventIdx of [false, true]) {
    it(`loses no notification in either direction and sees every request in order (EVENT_IDX ${eventIdx})`, async () => {
      const n = 5000;
      const r = await run(eventIdx, n);
      expect(r).toMatchObject({ served: n, outOfOrder: 0, deviceTimeouts: 0, errors: 0 });
      expect(r.driver).toMatchObject({ timeouts: 0, wrongIds: 0, done: n });
      expect(r.irqs).toBeGreaterThan(0);
      expect(r.driver.kicks).toBeGreaterThan(0);
    });
  }
});

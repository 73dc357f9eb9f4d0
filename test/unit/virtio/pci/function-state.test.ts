/** VirtioPciFunction snapshot/restore: a console through the transport, restored mid-stream into a fresh function over a copy of memory. */
import { describe, expect, it } from 'vitest';
import { RecordingMsiSink } from '../../../../src/pci/msix.js';
import {
  CommonCfg, VIRTIO_STATUS, VirtioConsole, VirtioPciFunction, VirtioRng, type VirtioPciFunctionState,
} from '../../../../src/virtio/index.js';
import { TestRam } from '../driver.js';
import { moveToCopy, viaJson } from '../state-helpers.js';
import { BAR_BASE, PciGuest } from './guest.js';
import { Vring } from './vring.js';

const C = CommonCfg;
const MSI_ADDR = 0xfee0_0000;
const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);

/** A console behind a function, its guest, two vrings and what it output. */
function machine(ram = new TestRam(0x20000)) {
  const out: string[] = [];
  const sink = new RecordingMsiSink();
  const device = new VirtioConsole({ output: (b) => out.push(str(b)), cols: 80, rows: 25 });
  const fn = new VirtioPciFunction(device, { memory: ram.mem, msi: sink });
  const guest = new PciGuest(fn);
  const rings = [new Vring(ram.mem, ram.base, 8), new Vring(ram.mem, ram.base + 0x8000, 8)];
  return { ram, out, sink, device, fn, guest, rings };
}
type Machine = ReturnType<typeof machine>;

function bringUp(m: Machine): void {
  const { guest, rings } = m;
  guest.enumerate();
  expect(guest.negotiate()).toBe(true);
  guest.msixEnable();
  for (let v = 0; v < 3; v++) guest.msixEntry(v, MSI_ADDR, 0x40 + v, v === 2); // queue 1's vector starts masked
  guest.cw(C.CONFIG_MSIX_VECTOR, 2, 0);
  rings.forEach((r, i) => guest.setupQueue(i, r, 1 + i));
  guest.driverOk();
}

/** One step of traffic: a receive buffer, a line of output, a line of input; what the guest saw. */
function step(m: Machine, i: number): string[] {
  const { guest, rings, device } = m;
  if (i % 2 === 0) {
    rings[0].post(new Uint8Array(0), 8); // input waits in the device between these
    guest.notify(0);
  }
  rings[1].post(text(`out ${i}\n`), 0);
  if (i % 3 !== 2) guest.notify(1); // every third line waits in the ring for the next notification
  device.input(text(`in ${i};`));
  if (i === 4) guest.msixMask(2, false); // the pending queue-1 interrupt goes out now
  const seen = rings[0].used().map((u) => `rx ${u.id}:${u.len}`);
  return [...seen, ...rings[1].used().map((u) => `tx ${u.id}`)];
}

/** The guest's view of the transport's registers. */
function registers(guest: PciGuest) {
  guest.cw(C.QUEUE_SELECT, 2, 1);
  return {
    status: guest.status(),
    generation: guest.c(C.CONFIG_GENERATION, 1),
    features: guest.deviceFeatures(),
    configVector: guest.c(C.CONFIG_MSIX_VECTOR, 2),
    queue1: [guest.c(C.QUEUE_SIZE, 2), guest.c(C.QUEUE_MSIX_VECTOR, 2), guest.c(C.QUEUE_ENABLE, 2), guest.c(C.QUEUE_DESC, 4)],
  };
}

async function scenario(snapshotAt: number | undefined) {
  let m = machine();
  bringUp(m);
  const seen: string[] = [];
  const messages = () => m.sink.messages.map((x) => x.data);
  const log: number[] = [];
  for (let i = 0; i < 8; i++) {
    if (i === snapshotAt) {
      await m.fn.quiesce();
      const state = viaJson(m.fn.snapshot());
      log.push(...messages());
      const before = registers(m.guest);
      const copy = moveToCopy(m.ram, ...m.rings);
      const next = machine(copy);
      next.out.push(...m.out);
      next.rings.forEach((r, k) => Object.assign(r, { availIdx: m.rings[k].availIdx, lastUsed: m.rings[k].lastUsed }));
      // the driver's free descriptor lists are guest memory too: keep using the old vrings' objects
      next.rings.splice(0, 2, ...m.rings);
      next.fn.restore(state);
      next.guest.barAddress = BAR_BASE;
      expect(registers(next.guest)).toEqual(before);
      next.fn.resume();
      m = next;
    }
    seen.push(...step(m, i));
  }
  log.push(...messages());
  return { seen, out: m.out.join(''), log, gen: m.fn.configGeneration };
}

describe('VirtioPciFunction state', () => {
  it('a function restored mid-stream into a fresh one over a copy of memory goes on like an uninterrupted one', async () => {
    const straight = await scenario(undefined);
    expect(straight.out).toContain('out 7');
    for (const at of [1, 3, 5, 6]) expect(await scenario(at)).toEqual(straight);
  });

  it('holds status, features, generation, vectors, queue select, MSI-X entries and masks', async () => {
    const m = machine();
    bringUp(m);
    m.guest.cw(C.QUEUE_SELECT, 2, 1);
    m.device.resize(100, 30); // configuration change: generation 1
    const s = m.fn.snapshot();
    expect(s.status & VIRTIO_STATUS.DRIVER_OK).toBeTruthy();
    expect(s.configGeneration).toBe(1);
    expect(s.queueSelect).toBe(1);
    expect(s.configMsixVector).toBe(0);
    expect(s.queues.map((q) => q.vector)).toEqual([1, 2]);
    expect(s.msix?.entries[2].masked).toBe(true);
    expect(BigInt(s.features.negotiated!)).toBe(m.fn.negotiatedFeatures);
    expect(s.device).toMatchObject({ cols: 100, rows: 30 });
    const n = machine();
    n.fn.restore(viaJson(s));
    expect(n.fn.snapshot()).toEqual(s);
    expect(n.device.cols).toBe(100);
  });

  it('a restore before the driver is up, and one of a reset device', () => {
    const m = machine();
    m.guest.enumerate();
    const s = viaJson(m.fn.snapshot());
    const n = machine();
    n.fn.restore(s);
    expect(n.fn.status).toBe(0);
    expect(n.fn.config.bars()[0].mapped).toBe(BAR_BASE);
  });

  it('refuses hostile states, naming the field, and changes nothing', async () => {
    const m = machine();
    bringUp(m);
    const good = m.fn.snapshot();
    const n = machine();
    const before = n.fn.snapshot();
    const S = VIRTIO_STATUS;
    const q0 = good.queues[0];
    const bad: [unknown, RegExp][] = [
      [null, /state must be an object/],
      [{ ...good, status: S.ACKNOWLEDGE | S.DRIVER_OK }, /FEATURES_OK must be set exactly/],
      [{ ...good, status: good.status | 0x20 }, /bits no driver can set/],
      [{ ...good, msix: null }, /state.msix must be an object/],
      [{ ...good, queues: good.queues.slice(0, 1) }, /state.queues must have 2 entries/],
      [{ ...good, configMsixVector: 3 }, /state.configMsixVector/],
      [{ ...good, isr: 4 }, /state.isr/],
      [{ ...good, queues: [{ ...q0, vector: 7 }, good.queues[1]] }, /state.queues\[0\].vector/],
      [{ ...good, queues: [{ ...q0, queue: { ...q0.queue, size: 128 } }, good.queues[1]] }, /state.queues\[0\].queue.size/],
      [{ ...good, queues: [{ ...q0, queue: { ...q0.queue, eventIdx: !q0.queue.eventIdx } }, good.queues[1]] }, /negotiated features/],
      [{ ...good, features: { ...good.features, negotiated: '0x1' } }, /state.features.negotiated/],
      [{ ...good, features: { ...good.features, driverWords: [0] } }, /state.features.driverWords must have 2/],
      [{ ...good, device: { ...(good.device as object), input: 5 } }, /state.device.input must be a base64 string/],
      [{ ...good, device: { ...(good.device as object), cols: 0 } }, /state.device.cols/],
      [{ ...good, config: { bytes: 'AAAA' } }, /state.config.bytes must hold 4096 bytes/],
    ];
    for (const [state, msg] of bad) {
      expect(() => n.fn.restore(state as VirtioPciFunctionState), msg.source).toThrow(msg);
      expect(n.fn.snapshot()).toEqual(before);
    }
    const posted = m.rings[0].post(new Uint8Array(0), 8); // a valid chain, never notified
    const held = { ...good, status: good.status & ~S.DRIVER_OK, queues: [{ ...q0, queue: { ...q0.queue, inFlight: [posted.head] } }, good.queues[1]] };
    expect(() => n.fn.restore(held as VirtioPciFunctionState)).toThrow(/state.queues\[0\].queue.inFlight must be empty before DRIVER_OK/);
    expect(() => n.fn.restore({ ...held, status: good.status } as VirtioPciFunctionState)).toThrow(/queue 0 has chains in flight .* without quiesce/);
    expect(n.fn.snapshot()).toEqual(before);
    const rng = new VirtioPciFunction(new VirtioRng(), { memory: n.ram.mem, msi: n.sink });
    expect(() => rng.restore(good)).toThrow(/state.config.bytes: read-only bits/);
  });

  it('a device without snapshot support is refused', () => {
    const ram = new TestRam(0x1000);
    const device = { deviceType: 4, features: 0n, queueSizes: [4], configSize: 0, readConfig: () => 0, writeConfig: () => {}, activate: () => {}, notify: () => {}, reset: () => {} };
    const fn = new VirtioPciFunction(device, { memory: ram.mem, msi: new RecordingMsiSink() });
    expect(() => fn.snapshot()).toThrow(/no snapshot support/);
    expect(() => fn.restore({} as never)).toThrow(/no snapshot support/);
  });
});

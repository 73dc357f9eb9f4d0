/** The PC's PCI wiring across a snapshot: every function's state, BAR regions and notify ioeventfds following restored BARs. */
import { describe, expect, it } from 'vitest';
import type { AccessSize } from '../../../src/devices/device.js';
import type { PciFunction } from '../../../src/pci/bus.js';
import { PciConfigSpace } from '../../../src/pci/config-space.js';
import { PciCommand, PciReg } from '../../../src/pci/registers.js';
import { RunnerBus } from '../../../src/runner/runner-bus.js';
import { pciLayout, ramRanges } from '../../../src/platform/layout.js';
import { PcPci, type PcPciState } from '../../../src/platform/pci.js';
import { PcVirtio } from '../../../src/platform/virtio.js';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { VirtioConsole, VirtioNet, VirtioPciFunction } from '../../../src/virtio/index.js';
import type { IoEventFdOptions } from '../../../src/io-events.js';
import { FakeBackend } from '../virtio/devices/net-util.js';

const MiB = 2 ** 20;
const MEMORY = 64 * MiB;

/** A function with one 4 KiB memory BAR and nothing else. */
class Plain implements PciFunction {
  readonly config = new PciConfigSpace({ vendorId: 0x1234, deviceId: 0x11, classCode: 0xff0000 });
  constructor() {
    this.config.setBar(0, { kind: 'mem32', size: 0x1000 });
  }
  readBar(_bar: number, offset: number, _size: AccessSize): number {
    return offset;
  }
}

/** A PC's PCI bus over runner buses, with PcVirtio on a stub VM whose ioeventfds are recorded. */
function pc() {
  const owner = { started: false };
  const host = { pio: new RunnerBus(owner, 'pio'), mmio: new RunnerBus(owner, 'mmio'), started: false };
  const ram = ramRanges(MEMORY);
  const pci = new PcPci(host, {
    layout: pciLayout(MEMORY),
    raiseMsi: () => true,
    memoryOverlaps: (gpa, len) => ram.some((r) => gpa < r.gpa + r.length && r.gpa < gpa + len),
  });
  const ioeventfds = new Set<number>();
  const vm = {
    memory: new GuestMemory(),
    checkExtension: () => 1,
    addIoEventFd: (o: IoEventFdOptions) => {
      ioeventfds.add(o.addr);
      return { options: o, writes: 0, close: () => ioeventfds.delete(o.addr) };
    },
  };
  const virtio = new PcVirtio(vm as never, pci, { addHostWorkProbe: () => {} } as never);
  const plain = new Plain();
  pci.add(plain);
  const console = virtio.add(new VirtioConsole({ output: () => {} }));
  const net = virtio.add(new VirtioNet({ backend: new FakeBackend(), mac: '52:54:00:00:00:01' }));
  const ranges = () => host.mmio.bus.ranges.filter((r) => r.name.startsWith('PCI 00:')).map((r) => `${r.name}@${r.base.toString(16)}`).sort();
  return { pci, virtio, plain, console, net, ioeventfds, ranges };
}

/** What a guest does after boot: move the console's BAR, move the plain BAR, set up MSI-X. */
function guestMoves(m: ReturnType<typeof pc>): void {
  const fn = m.console.function;
  fn.config.write(PciReg.BAR0, 4, 0x8000_0000);
  fn.config.write(PciReg.BAR0 + 4, 4, 0x80);
  m.plain.config.write(PciReg.BAR0, 4, 0xd000_0000);
  m.plain.config.write(PciReg.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
  m.pci.configIo.address.write(0, 4, 0x8000_1810);
  const cap = fn.msix!.capabilityOffset;
  fn.config.write(cap + 2, 2, 0x8000);
  fn.writeBar(0, fn.layout.msixTable!.offset, 4, 0xfee0_0000);
}

describe('PcPci state', () => {
  it('a restored PC has every function as saved; BAR regions and notify ioeventfds follow the restored BARs', async () => {
    const a = pc();
    guestMoves(a);
    await a.virtio.quiesce();
    const state = JSON.parse(JSON.stringify(a.pci.snapshot())) as PcPciState;
    a.virtio.resume();
    expect(state.functions.map((f) => f.address)).toEqual(['00:00.0', '00:01.0', '00:02.0', '00:03.0']);
    const b = pc();
    const before = b.ioeventfds.size;
    expect(b.ranges()).not.toEqual(a.ranges());
    b.pci.restore(state);
    b.virtio.resume();
    expect(b.ranges()).toEqual(a.ranges());
    expect(b.ranges()).toContain('PCI 00:01.0 BAR0@d0000000');
    expect([...b.ioeventfds].sort()).toEqual([...a.ioeventfds].sort());
    expect(b.ioeventfds.size).toBe(before);
    const notify = 0x80_8000_0000 + b.console.function.notifyRegion().offset;
    expect(b.ioeventfds.has(notify)).toBe(true);
    expect(b.pci.configIo.configAddress).toBe(0x8000_1810);
    expect(b.console.function.snapshot()).toEqual(a.console.function.snapshot());
    expect(b.console.function.msix!.entry(0).addressLo).toBe(0xfee0_0000);
    expect(b.pci.snapshot()).toEqual(a.pci.snapshot());
  });

  it('passes overrides to the function at their address', async () => {
    const a = pc();
    const state = a.pci.snapshot();
    const b = pc();
    const at = b.virtio.addressOf(b.net.device)!;
    expect(at).toBe('00:03.0');
    b.pci.restore(state, { [at]: { mac: '02:00:00:00:00:09' } });
    expect((b.net.device as VirtioNet).macString).toBe('02:00:00:00:00:09');
  });

  it('refuses a state of another set of functions, hostile fields and stray overrides, changing nothing', () => {
    const a = pc();
    guestMoves(a);
    const good = a.pci.snapshot();
    const b = pc();
    const before = b.pci.snapshot();
    const rangesBefore = b.ranges();
    const fns = good.functions;
    const plainState = fns[1].state as { config: { bytes: string } };
    const netState = fns[3].state as VirtioPciFunction['snapshot'] extends () => infer T ? T : never;
    for (const [state, overrides, msg] of [
      [{ ...good, functions: fns.slice(0, 3) }, undefined, /state.functions must have 4 entries/],
      [{ ...good, functions: [fns[0], { ...fns[1], state: fns[2].state }, fns[2], fns[3]] }, undefined, /state.functions\[1\].state.config.bytes: read-only bits/],
      [{ ...good, functions: [fns[0], fns[1], { ...fns[2], state: fns[3].state }, fns[3]] }, undefined, /state.functions\[2\].state.config.bytes: read-only bits/],
      [{ ...good, functions: [fns[0], { ...fns[1], address: '00:05.0' }, fns[2], fns[3]] }, undefined, /state.functions\[1\].address is 00:05.0/],
      [{ ...good, configIo: { address: 3 } }, undefined, /state.configIo.address has bits/],
      [{ ...good, functions: [fns[0], { ...fns[1], state: { config: { ...plainState.config, bytes: 7 } } }, fns[2], fns[3]] }, undefined, /state.functions\[1\].state.config.bytes must be a base64/],
      [{ ...good, functions: [fns[0], fns[1], fns[2], { ...fns[3], state: { ...netState, device: { ...(netState.device as object), mac: 'x' } } }] }, undefined, /state.functions\[3\].state.device.mac/],
      [good, { '00:09.0': {} }, /overrides.00:09.0: no function/],
      [good, { '00:01.0': { mac: 'x' } }, /overrides.00:01.0: the function there takes no overrides/],
      [good, { '00:03.0': { mac: 'x' } }, /overrides.00:03.0.mac must look like/],
    ] as const) {
      expect(() => b.pci.restore(state as PcPciState, overrides as never), msg.source).toThrow(msg);
      expect(b.pci.snapshot()).toEqual(before);
      expect(b.ranges()).toEqual(rangesBefore);
    }
  });
});

/**
 * PCI passthrough through Linux VFIO (bhyve's pptdev functions): the device must be bound
 * to vfio-pci and sit in an IOMMU group. Where something is missing, a
 * {@link PassthroughUnavailableError} names it before any state changes.
 */
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { native, type NativeFileFd, type NativeGuestMapping, type NativeVmFd } from './kvm/native.js';
import { KVM_DEV } from './kvm/constants.js';
import { PassthroughUnavailableError } from './errors.js';

const VFIO_API_VERSION = 0;
const VFIO_TYPE1_IOMMU = 1;
const VFIO_TYPE1v2_IOMMU = 3;
const VFIO_GROUP_FLAGS_VIABLE = 1;
const VFIO_PCI_MSI_IRQ_INDEX = 1;
const VFIO_PCI_MSIX_IRQ_INDEX = 2;
const KVM_IRQ_ROUTING_IRQCHIP = 1;
const KVM_IRQ_ROUTING_MSI = 2;
const FIRST_MSI_GSI = 24;

/** The hooks into the VM that passthrough needs. */
export interface PassthroughHost {
  vmFd(): NativeVmFd;
  segments(): { gpa: number; length: number; mapping: NativeGuestMapping }[];
  allocSlot(): number;
  signalRoute(vcpu: number): number;
}

interface Assigned {
  name: string;
  group: NativeFileFd;
  device: NativeFileFd;
  msi: { gsi: number; eventfd: NativeFileFd }[];
  msix: Map<number, { gsi: number; eventfd: NativeFileFd }>;
}

function checkBdf(bus: unknown, slot: unknown, func: unknown): string {
  const chk = (v: unknown, name: string, max: number) => {
    if (typeof v !== 'number') throw new TypeError(`${name} must be a number`);
    if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${name} must be an integer in [0, ${max}]`);
  };
  chk(bus, 'bus', 255);
  chk(slot, 'slot', 31);
  chk(func, 'func', 7);
  const h = (v: number, n: number) => v.toString(16).padStart(n, '0');
  return `0000:${h(bus as number, 2)}:${h(slot as number, 2)}.${func as number}`;
}

/** The VFIO devices assigned to one VM. */
export class PassthroughDevices {
  #host: PassthroughHost;
  #container: NativeFileFd | undefined;
  #kvmVfio: NativeFileFd | undefined;
  #devices = new Map<string, Assigned>();
  #routes: { gsi: number; addressLo: number; addressHi: number; data: number }[] = [];

  /** Passthrough state over `host` (the VM's VFIO and irqfd operations). */
  constructor(host: PassthroughHost) {
    this.#host = host;
  }

  /** Check what the host provides for `name`; returns its IOMMU group number. */
  static probe(name: string): number {
    const dev = `/sys/bus/pci/devices/${name}`;
    if (!existsSync(dev)) throw new PassthroughUnavailableError('device', `PCI device ${name} does not exist on this host (${dev})`);
    let group: number;
    try {
      group = Number(basename(readlinkSync(`${dev}/iommu_group`)));
    } catch {
      throw new PassthroughUnavailableError('iommu-group', `PCI device ${name} has no IOMMU group: the host has no IOMMU enabled (intel_iommu=on / amd_iommu=on)`);
    }
    let driver = '';
    try {
      driver = basename(readlinkSync(`${dev}/driver`));
    } catch {
      /* unbound */
    }
    if (driver !== 'vfio-pci') {
      throw new PassthroughUnavailableError('vfio-pci-driver', `PCI device ${name} is bound to ${driver || 'no driver'}, not vfio-pci`);
    }
    if (!existsSync('/dev/vfio/vfio') || !existsSync(`/dev/vfio/${group}`)) {
      throw new PassthroughUnavailableError('vfio', `VFIO is not available (/dev/vfio/vfio or /dev/vfio/${group} missing)`);
    }
    return group;
  }

  #get(bus: number, slot: number, func: number): Assigned {
    const name = checkBdf(bus, slot, func);
    const a = this.#devices.get(name);
    if (!a) throw new PassthroughUnavailableError('assignment', `PCI device ${name} is not assigned to this VM (call assignPptdev first)`);
    return a;
  }

  /** Assign a device: container, IOMMU, KVM VFIO device, DMA map of guest RAM. */
  assign(bus: number, slot: number, func: number): void {
    const name = checkBdf(bus, slot, func);
    const vmFd = this.#host.vmFd();
    if (this.#devices.has(name)) return;
    const groupNo = PassthroughDevices.probe(name);
    const n = native();
    const opened: NativeFileFd[] = [];
    try {
      if (!this.#container) {
        const c = new n.FileFd('/dev/vfio/vfio');
        opened.push(c);
        if (n.vfio.getApiVersion(c.fd) !== VFIO_API_VERSION) throw new PassthroughUnavailableError('vfio', 'unsupported VFIO API version');
        this.#container = c;
      }
      const container = this.#container;
      const group = new n.FileFd(`/dev/vfio/${groupNo}`);
      opened.push(group);
      if (!(n.vfio.groupGetStatus(group.fd) & VFIO_GROUP_FLAGS_VIABLE)) {
        throw new PassthroughUnavailableError('iommu-group', `IOMMU group ${groupNo} is not viable: bind every device in it to vfio-pci`);
      }
      n.vfio.groupSetContainer(group.fd, container.fd);
      if (this.#devices.size === 0) {
        const type = n.vfio.checkExtension(container.fd, VFIO_TYPE1v2_IOMMU) ? VFIO_TYPE1v2_IOMMU : VFIO_TYPE1_IOMMU;
        n.vfio.setIommu(container.fd, type);
        for (const s of this.#host.segments()) n.vfio.iommuMapDma(container.fd, s.mapping, 0, s.gpa, s.length);
      }
      if (!this.#kvmVfio) {
        this.#kvmVfio = new n.FileFd(vmFd.createDevice(KVM_DEV.TYPE_VFIO));
        opened.push(this.#kvmVfio);
      }
      vmFd.setDeviceAttr(this.#kvmVfio.fd, KVM_DEV.VFIO_GROUP, KVM_DEV.VFIO_GROUP_ADD, group.fd);
      const device = new n.FileFd(n.vfio.groupGetDeviceFd(group.fd, name));
      this.#devices.set(name, { name, group, device, msi: [], msix: new Map() });
    } catch (e) {
      for (const f of opened.reverse()) f.close();
      if (opened.includes(this.#container!)) this.#container = undefined;
      if (opened.includes(this.#kvmVfio!)) this.#kvmVfio = undefined;
      throw e;
    }
  }

  /** Release a device. */
  unassign(bus: number, slot: number, func: number): void {
    const a = this.#get(bus, slot, func);
    this.#release(a);
    this.#devices.delete(a.name);
  }

  #release(a: Assigned): void {
    const n = native();
    for (const m of [...a.msi, ...a.msix.values()]) m.eventfd.close();
    a.device.close();
    try {
      if (this.#kvmVfio) this.#host.vmFd().setDeviceAttr(this.#kvmVfio.fd, KVM_DEV.VFIO_GROUP, KVM_DEV.VFIO_GROUP_DEL, a.group.fd);
      n.vfio.groupUnsetContainer(a.group.fd);
    } catch {
      /* the VM or container is going away anyway */
    }
    a.group.close();
  }

  /** New guest RAM is DMA-mapped for every assigned device. */
  onMemoryAdded(gpa: number, length: number, mapping: NativeGuestMapping): void {
    if (this.#container && this.#devices.size > 0) native().vfio.iommuMapDma(this.#container.fd, mapping, 0, gpa, length);
  }

  /** Map the BAR whose host physical address is `hpa` at guest `gpa`. */
  mapMmio(bus: number, slot: number, func: number, gpa: number, len: number, hpa: bigint | number): void {
    const a = this.#get(bus, slot, func);
    const want = BigInt(hpa);
    const lines = readFileSync(`/sys/bus/pci/devices/${a.name}/resource`, 'utf8').trim().split('\n');
    const bar = lines.findIndex((l) => BigInt(l.split(/\s+/)[0]) === want);
    if (bar < 0 || bar > 5) throw new RangeError(`hpa: 0x${want.toString(16)} is not the start of a BAR of ${a.name}`);
    const info = native().vfio.deviceGetRegionInfo(a.device.fd, bar);
    if (BigInt(len) > info.size) throw new RangeError(`len: BAR ${bar} of ${a.name} is only 0x${info.size.toString(16)} bytes`);
    this.#host.vmFd().mapDeviceRegion(this.#host.allocSlot(), gpa, len, a.device.fd, info.offset);
  }

  #applyRoutes(): void {
    const entries = [];
    // With an in-kernel irqchip KVM's default routing (PIC + IOAPIC pins) must be kept.
    for (let pin = 0; pin < 24; pin++) {
      entries.push({ gsi: pin, type: KVM_IRQ_ROUTING_IRQCHIP, a: 2, b: pin }); // IOAPIC
      if (pin < 16 && pin !== 2) entries.push({ gsi: pin, type: KVM_IRQ_ROUTING_IRQCHIP, a: pin < 8 ? 0 : 1, b: pin % 8 });
    }
    for (const r of this.#routes) entries.push({ gsi: r.gsi, type: KVM_IRQ_ROUTING_MSI, a: r.addressLo, b: r.addressHi, c: r.data });
    const buf = new Uint8Array(8 + entries.length * 48);
    const v = new DataView(buf.buffer);
    v.setUint32(0, entries.length, true);
    entries.forEach((e, i) => {
      const o = 8 + i * 48;
      v.setUint32(o, e.gsi, true);
      v.setUint32(o + 4, e.type, true);
      v.setUint32(o + 16, e.a >>> 0, true);
      v.setUint32(o + 20, e.b >>> 0, true);
      if ('c' in e) v.setUint32(o + 24, (e.c as number) >>> 0, true);
    });
    this.#host.vmFd().setGsiRouting(buf);
  }

  #route(addressLo: number, addressHi: number, data: number): { gsi: number; eventfd: NativeFileFd } {
    const n = native();
    const gsi = FIRST_MSI_GSI + this.#routes.length;
    this.#routes.push({ gsi, addressLo, addressHi, data });
    this.#applyRoutes();
    const eventfd = new n.FileFd(n.eventfd(0));
    this.#host.vmFd().irqfd(eventfd.fd, gsi);
    return { gsi, eventfd };
  }

  /** MSI: `numvec` vectors from `vector`, delivered to local APIC `destcpu`. */
  setupMsi(vcpu: number, bus: number, slot: number, func: number, destcpu: number, vector: number, numvec: number): void {
    this.#host.signalRoute(vcpu);
    const a = this.#get(bus, slot, func);
    this.#host.signalRoute(destcpu);
    if (!Number.isInteger(vector) || vector < 16 || vector > 255) throw new RangeError('vector must be an integer in [16, 255]');
    if (![0, 1, 2, 4, 8, 16, 32].includes(numvec) || vector + numvec > 256) throw new RangeError('numvec must be 0 or a power of two up to 32 that fits below vector 256');
    for (const m of a.msi) m.eventfd.close();
    a.msi = [];
    for (let i = 0; i < numvec; i++) a.msi.push(this.#route((0xfee00000 | (destcpu << 12)) >>> 0, 0, vector + i));
    native().vfio.deviceSetIrqsEventfd(a.device.fd, VFIO_PCI_MSI_IRQ_INDEX, 0, a.msi.map((m) => m.eventfd.fd));
  }

  /** MSI-X: program table entry `idx` with message data `msg` and address `addr`. */
  setupMsix(vcpu: number, bus: number, slot: number, func: number, idx: number, msg: number, vectorControl: number, addr: bigint | number): void {
    this.#host.signalRoute(vcpu);
    const a = this.#get(bus, slot, func);
    if (!Number.isInteger(idx) || idx < 0 || idx > 2047) throw new RangeError('idx must be an integer in [0, 2047]');
    if (!Number.isInteger(msg) || msg < 0 || msg > 0xffffffff) throw new RangeError('msg must be a u32');
    const address = BigInt(addr);
    a.msix.get(idx)?.eventfd.close();
    if (vectorControl & 1) {
      a.msix.delete(idx);
      native().vfio.deviceSetIrqsEventfd(a.device.fd, VFIO_PCI_MSIX_IRQ_INDEX, idx, [-1]);
      return;
    }
    const r = this.#route(Number(address & 0xffffffffn), Number(address >> 32n), msg);
    a.msix.set(idx, r);
    native().vfio.deviceSetIrqsEventfd(a.device.fd, VFIO_PCI_MSIX_IRQ_INDEX, idx, [r.eventfd.fd]);
  }

  /** Release everything (VM destroy). */
  closeAll(): void {
    for (const a of this.#devices.values()) this.#release(a);
    this.#devices.clear();
    this.#kvmVfio?.close();
    this.#container?.close();
    this.#kvmVfio = undefined;
    this.#container = undefined;
  }
}

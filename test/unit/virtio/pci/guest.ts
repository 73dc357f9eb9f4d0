/**
 * A guest's view of a virtio-pci function, for tests: a PCI bus behind an ECAM window on
 * an MMIO bus, the function's BAR registered where the guest programs it (as the
 * platform would), and a driver that does what Linux's virtio_pci_modern does — walk the
 * capability list, map the structures, negotiate, set up queues, enable MSI-X — using
 * only configuration-space and MMIO accesses.
 */
import { MmioBus } from '../../../../src/bus/bus.js';
import type { AccessSize } from '../../../../src/devices/device.js';
import { barDevice, PciBus } from '../../../../src/pci/bus.js';
import { PciEcam, PciHostBridge } from '../../../../src/pci/host-bridge.js';
import { PciCommand, PciReg } from '../../../../src/pci/registers.js';
import { CommonCfg, VIRTIO_STATUS, type VirtioPciFunction } from '../../../../src/virtio/index.js';
import type { Vring } from './vring.js';

export const ECAM_BASE = 0xe000_0000;
export const BAR_BASE = 0x10_0000_0000;
export const SLOT = 3;

/** A capability as the guest found it. */
export interface FoundCap {
  at: number;
  id: number;
  /** Vendor capabilities: the virtio_pci_cap fields. */
  capLen?: number;
  cfgType?: number;
  bar?: number;
  offset?: number;
  length?: number;
  multiplier?: number;
}

export class PciGuest {
  readonly pci = new PciBus();
  readonly mmio = new MmioBus();
  barAddress: number | undefined;

  constructor(readonly fn: VirtioPciFunction) {
    this.pci.add(0, 0, new PciHostBridge());
    this.pci.add(SLOT, 0, fn);
    this.mmio.register(ECAM_BASE, 1 << 20, new PciEcam(this.pci), 'ecam');
    fn.config.onBarChange((e) => {
      if (e.previous !== undefined) this.mmio.unregister(e.previous);
      if (e.address !== undefined) this.mmio.register(e.address, e.size, barDevice(fn, e.bar), `virtio-bar${e.bar}`);
    });
  }

  cfg(reg: number, size: AccessSize): number {
    return Number(this.mmio.read(ECAM_BASE + (SLOT << 15) + reg, size));
  }
  cfgWrite(reg: number, size: AccessSize, v: number): void {
    this.mmio.write(ECAM_BASE + (SLOT << 15) + reg, size, v);
  }

  /** Size BAR 0 (a 64-bit memory BAR), place it at BAR_BASE, enable memory decode and bus mastering. Returns the size. */
  enumerate(): number {
    const lo = PciReg.BAR0;
    this.cfgWrite(lo, 4, 0xffff_ffff);
    this.cfgWrite(lo + 4, 4, 0xffff_ffff);
    const mask = (BigInt(this.cfg(lo + 4, 4)) << 32n) | BigInt(this.cfg(lo, 4) & ~0xf);
    const size = Number((~mask & 0xffff_ffff_ffff_ffffn) + 1n);
    this.cfgWrite(lo, 4, BAR_BASE % 2 ** 32);
    this.cfgWrite(lo + 4, 4, Math.floor(BAR_BASE / 2 ** 32));
    this.cfgWrite(PciReg.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
    this.barAddress = BAR_BASE;
    return size;
  }

  /** Walk the capability list from the capabilities pointer. */
  caps(): FoundCap[] {
    const out: FoundCap[] = [];
    if (!(this.cfg(PciReg.STATUS, 2) & 0x10)) return out;
    const seen = new Set<number>();
    for (let at = this.cfg(PciReg.CAPABILITIES_POINTER, 1) & ~3; at !== 0 && !seen.has(at); at = this.cfg(at + 1, 1) & ~3) {
      seen.add(at);
      const id = this.cfg(at, 1);
      const c: FoundCap = { at, id };
      if (id === 0x09) {
        c.capLen = this.cfg(at + 2, 1);
        c.cfgType = this.cfg(at + 3, 1);
        c.bar = this.cfg(at + 4, 1);
        c.offset = this.cfg(at + 8, 4);
        c.length = this.cfg(at + 12, 4);
        if (c.cfgType === 2) c.multiplier = this.cfg(at + 16, 4);
      }
      out.push(c);
    }
    return out;
  }

  /** The first virtio capability of `cfgType`. */
  cap(cfgType: number): FoundCap {
    const c = this.caps().find((x) => x.id === 0x09 && x.cfgType === cfgType);
    if (!c) throw new Error(`no virtio capability of type ${cfgType}`);
    return c;
  }

  /** Guest-physical address of `offset` in the structure of `cfgType`. */
  addr(cfgType: number, offset = 0): number {
    const c = this.cap(cfgType);
    if (this.barAddress === undefined) throw new Error('enumerate() first');
    return this.barAddress + c.offset! + offset;
  }

  read(gpa: number, size: AccessSize): number | bigint {
    const v = this.mmio.read(gpa, size);
    if (v === undefined) throw new Error(`nothing at 0x${gpa.toString(16)}`);
    return v;
  }
  write(gpa: number, size: AccessSize, v: number | bigint): void {
    if (!this.mmio.write(gpa, size, v)) throw new Error(`nothing at 0x${gpa.toString(16)}`);
  }

  /** Common configuration accesses. */
  c(off: number, size: AccessSize): number {
    return Number(this.read(this.addr(1, off), size));
  }
  cw(off: number, size: AccessSize, v: number | bigint): void {
    this.write(this.addr(1, off), size, v);
  }

  /** The 64 offered feature bits (words 0 and 1). */
  deviceFeatures(): bigint {
    let f = 0n;
    for (const w of [1, 0]) {
      this.cw(CommonCfg.DEVICE_FEATURE_SELECT, 4, w);
      f = (f << 32n) | BigInt(this.c(CommonCfg.DEVICE_FEATURE, 4));
    }
    return f;
  }

  /** Write the accepted features, words 0 and 1. */
  setDriverFeatures(f: bigint): void {
    for (const w of [0, 1]) {
      this.cw(CommonCfg.DRIVER_FEATURE_SELECT, 4, w);
      this.cw(CommonCfg.DRIVER_FEATURE, 4, Number((f >> BigInt(32 * w)) & 0xffff_ffffn));
    }
  }

  status(): number {
    return this.c(CommonCfg.DEVICE_STATUS, 1);
  }
  setStatus(v: number): void {
    this.cw(CommonCfg.DEVICE_STATUS, 1, v);
  }

  /** Reset, ACKNOWLEDGE, DRIVER, accept `want` ∩ offered (default: all offered), FEATURES_OK; returns whether it stuck. */
  negotiate(want?: bigint): boolean {
    const S = VIRTIO_STATUS;
    this.setStatus(0);
    if (this.status() !== 0) throw new Error('reset did not complete');
    this.setStatus(S.ACKNOWLEDGE);
    this.setStatus(S.ACKNOWLEDGE | S.DRIVER);
    const offered = this.deviceFeatures();
    this.setDriverFeatures(want === undefined ? offered : want);
    this.setStatus(S.ACKNOWLEDGE | S.DRIVER | S.FEATURES_OK);
    return (this.status() & S.FEATURES_OK) !== 0;
  }

  /** Set up queue `i` on `ring` with MSI-X `vector`; returns the vector read back. */
  setupQueue(i: number, ring: Vring, vector = 0xffff): number {
    const C = CommonCfg;
    this.cw(C.QUEUE_SELECT, 2, i);
    const max = this.c(C.QUEUE_SIZE, 2);
    if (max === 0) throw new Error(`queue ${i} does not exist`);
    if (this.c(C.QUEUE_ENABLE, 2) !== 0) throw new Error(`queue ${i} already enabled`);
    this.cw(C.QUEUE_SIZE, 2, ring.size);
    const set64 = (off: number, v: number) => {
      this.cw(off, 4, v % 2 ** 32);
      this.cw(off + 4, 4, Math.floor(v / 2 ** 32));
    };
    set64(C.QUEUE_DESC, ring.descAddr);
    set64(C.QUEUE_DRIVER, ring.availAddr);
    set64(C.QUEUE_DEVICE, ring.usedAddr);
    this.cw(C.QUEUE_MSIX_VECTOR, 2, vector);
    const back = this.c(C.QUEUE_MSIX_VECTOR, 2);
    this.cw(C.QUEUE_ENABLE, 2, 1);
    return back;
  }

  driverOk(): void {
    const S = VIRTIO_STATUS;
    this.setStatus(this.status() | S.DRIVER_OK);
  }

  /** Notify queue `i` at its notify address (queue_notify_off × multiplier), with a 16-bit write of `i`. */
  notify(i: number): void {
    this.cw(CommonCfg.QUEUE_SELECT, 2, i);
    const off = this.c(CommonCfg.QUEUE_NOTIFY_OFF, 2);
    const n = this.cap(2);
    this.write(this.barAddress! + n.offset! + off * n.multiplier!, 2, i);
  }

  /** Read (and so clear) ISR status. */
  isr(): number {
    return Number(this.read(this.addr(3), 1));
  }

  // MSI-X, found through its capability.
  msixCap(): number {
    const c = this.caps().find((x) => x.id === 0x11);
    if (!c) throw new Error('no MSI-X capability');
    return c.at;
  }
  msixTable(): number {
    const t = this.cfg(this.msixCap() + 4, 4);
    if ((t & 7) !== 0) throw new Error('table not in BAR 0');
    return this.barAddress! + (t & ~7);
  }
  /** Enable MSI-X (function mask as given). */
  msixEnable(functionMask = false): void {
    this.cfgWrite(this.msixCap() + 2, 2, 0x8000 | (functionMask ? 0x4000 : 0));
  }
  /** Program table entry `v` and set its mask bit. */
  msixEntry(v: number, addressLo: number, data: number, masked = false): void {
    const at = this.msixTable() + 16 * v;
    this.write(at, 4, addressLo);
    this.write(at + 4, 4, 0);
    this.write(at + 8, 4, data);
    this.write(at + 12, 4, masked ? 1 : 0);
  }
  msixMask(v: number, masked: boolean): void {
    this.write(this.msixTable() + 16 * v + 12, 4, masked ? 1 : 0);
  }
  msixPending(v: number): boolean {
    const p = this.cfg(this.msixCap() + 8, 4);
    const word = BigInt(this.read(this.barAddress! + (p & ~7) + 8 * Math.floor(v / 64), 8));
    return ((word >> BigInt(v % 64)) & 1n) === 1n;
  }
}

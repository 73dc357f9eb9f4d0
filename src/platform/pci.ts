/**
 * The PC's PCI bus: bus 0 with the host bridge at 00:00.0, configuration mechanism #1 on
 * ports 0xcf8 (CONFIG_ADDRESS) and 0xcfc-0xcff (CONFIG_DATA), ECAM at `PCI_ECAM`,
 * and the wiring of every added function's BARs onto the runner's buses.
 *
 * Adding a function ({@link PcPci.add}) does what firmware does before a directly booted
 * kernel runs: it places every BAR in the windows of `pciLayout` (src/platform/layout.ts) and
 * enables memory and I/O decode. From then on each BAR's region is registered on the
 * runner's MMIO or port bus where the function decodes it, and moves when the guest
 * reprograms it (PciConfigSpace.onBarChange). A mapping the guest programs over something
 * else — another device, RAM or ROM, the ranges KVM serves ({@link KVM_MMIO},
 * {@link KVM_PORTS}) — is left unmapped and counted ({@link PcPciCounters.barConflicts});
 * it is tried again whenever another BAR leaves its place.
 *
 * Posted sub-ranges ({@link PcPciDeviceOptions.posted}): writes there do not wait for the
 * main thread (the runner's `posted` registration). The runner's workers learn the posted
 * addresses once, when the vCPUs start, so a posted sub-range is posted at the address its
 * BAR has when {@link PcPci.preparePosted} runs (Pc.run calls it just before starting the
 * vCPUs). If the guest later moves that BAR, its accesses at the new address still work but
 * wait for the main thread like any others, and writes that land on the old address keep
 * being posted (delivered, in order, to whatever is mapped there by then). Linux keeps the
 * addresses firmware assigned (it only turns decode off and on while it sizes BARs), so
 * posting stays effective there.
 *
 * Snapshots: {@link PcPci.snapshot} holds CONFIG_ADDRESS and every function's state — its own
 * (`PciFunction.snapshot`: a virtio function's holds configuration space, MSI-X, transport
 * and device) or else its configuration space. {@link PcPci.restore} takes it into a PC
 * with the same functions at the same addresses; the restored BAR addresses reach the
 * listeners as a guest's BAR write would, so the BAR regions (and the virtio notify
 * ioeventfds) move with them.
 *
 * MSI: {@link PcPci.msi} is the {@link MsiSink} for the functions' MSI-X models; it delivers
 * through `Vm.raiseMsi` (KVM_SIGNAL_MSI) and never throws: a message outside the interrupt
 * range 0xfee00000-0xfeefffff (a DMA write this platform does not model) or one KVM refuses
 * is dropped and counted.
 */
import type { BusRange } from '../bus/bus.js';
import type { Device } from '../devices/device.js';
import { BarAllocator, type BarPlacement } from '../pci/bar-allocator.js';
import { barDevice, formatPciAddress, PCI_DEVICES_PER_BUS, PciBus, type PciAddress, type PciFunction } from '../pci/bus.js';
import { PciConfigSpace, type PciBarChange, type PciBarInfo, type PciConfigSpaceState } from '../pci/config-space.js';
import { PciConfigIo, PciEcam, PciHostBridge, type PciConfigIoState } from '../pci/host-bridge.js';
import { nested, stateArray, stateObject, stateString } from '../pci/state-check.js';
import type { MsiSink } from '../pci/msix.js';
import { PciCommand, PciReg } from '../pci/registers.js';
import type { RunnerBus } from '../runner/runner-bus.js';
import { KVM_MMIO, KVM_PORTS, PORTS, type PcPciLayout } from './layout.js';

/** What the PCI wiring needs of a runner: its two buses and whether its vCPUs started. */
export interface PciBusHost {
  /** The port bus. */
  readonly pio: RunnerBus;
  /** The MMIO bus. */
  readonly mmio: RunnerBus;
  /** True once the vCPUs were started (posted ranges are fixed from then on). */
  readonly started: boolean;
}

/** Options for {@link PcPci}. */
export interface PcPciOptions {
  /** The windows (src/platform/layout.ts `pciLayout`). */
  layout: PcPciLayout;
  /** Deliver an MSI (`Vm.raiseMsi`); true when a local APIC accepted it. May throw: the sink catches. */
  raiseMsi: (addressLo: number, addressHi: number, data: number) => boolean;
  /** True when `[gpa, gpa + length)` overlaps guest memory (RAM or ROM), where no BAR may be mapped. */
  memoryOverlaps: (gpa: number, length: number) => boolean;
}

/** A sub-range of a BAR whose writes are posted. */
export interface PciPostedRange {
  /** BAR index (the lower slot of a 64-bit BAR). */
  bar: number;
  /** Offset in the BAR. */
  offset: number;
  /** Bytes, at least 1; the range must lie inside the BAR. */
  length: number;
}

/** Options for {@link PcPci.add} (and `Pc.addPciDevice`). */
export interface PcPciDeviceOptions {
  /** Device number 1-31 (0 is the host bridge's). Default: the lowest free one. */
  slot?: number;
  /** Sub-ranges of BARs whose writes are posted (see the module comment), e.g. a virtio notify region. */
  posted?: readonly PciPostedRange[];
}

/** What {@link PcPci.add} did. */
export interface PcPciDevice {
  /** The device number the function got (function 0 of it). */
  readonly slot: number;
  /** Its bus/device/function. */
  readonly address: PciAddress;
  /** Where each BAR was placed. */
  readonly bars: readonly BarPlacement[];
}

/** What the PCI wiring counted. */
export interface PcPciCounters {
  /** BAR mappings the guest programmed over something else, left unmapped. */
  barConflicts: number;
  /** MSI messages dropped: outside the interrupt range, or refused by KVM. */
  msiDropped: number;
  /** MSI messages KVM took but no local APIC accepted (e.g. no vCPU matched the destination). */
  msiBlocked: number;
}

/** The state of the PC's PCI bus, for a snapshot (see the module comment). */
export interface PcPciState {
  /** Configuration mechanism #1's CONFIG_ADDRESS. */
  configIo: PciConfigIoState;
  /** Every function on the bus, host bridge included, in device/function order. */
  functions: PcPciFunctionState[];
}

/** One function's part of a {@link PcPciState}. */
export interface PcPciFunctionState {
  /** Where it sits, "bb:dd.f" (formatPciAddress). */
  address: string;
  /** PciFunction.snapshot() if the function has it, else `{ config }`: its configuration space. */
  state: unknown;
}

/** Per function, by "bb:dd.f" address: what its restore may change (e.g. `{ mac }` for a VirtioNet, `{ guestCid }` for a VirtioVsock). */
export type PcPciOverrides = Readonly<Record<string, unknown>>;

/** One piece of a BAR on a bus: `[offset, offset + length)` of the BAR, posted or not. */
interface Piece {
  readonly offset: number;
  readonly length: number;
  readonly posted: boolean;
}

/** A BAR of an added function and where it is registered. */
interface BarRegion {
  readonly fn: PciFunction;
  readonly label: string;
  readonly bar: number;
  readonly io: boolean;
  readonly size: number;
  readonly pieces: readonly Piece[];
  /** Where the function decodes it now, if anywhere. */
  wanted: number | undefined;
  /** The base it is registered at, if it is. */
  mapped: number | undefined;
  /** Where its posted pieces were made posted (before the vCPUs started), if they were. */
  postedAt: number | undefined;
}

type Span = { readonly base: number; readonly length: number };

const overlaps = (a: number, alen: number, b: number, blen: number): boolean => a < b + blen && b < a + alen;
const hex = (v: number): string => `0x${v.toString(16)}`;

/** Split `[0, size)` into pieces around the posted sub-ranges (sorted, non-overlapping). */
function piecesOf(size: number, posted: readonly PciPostedRange[]): Piece[] {
  const out: Piece[] = [];
  let at = 0;
  for (const p of [...posted].sort((a, b) => a.offset - b.offset)) {
    if (p.offset > at) out.push({ offset: at, length: p.offset - at, posted: false });
    out.push({ offset: p.offset, length: p.length, posted: true });
    at = p.offset + p.length;
  }
  if (at < size) out.push({ offset: at, length: size - at, posted: false });
  return out;
}

/** `dev` seen from `offset` on (a piece of a BAR registered at the piece's own base). */
function shifted(dev: Device, offset: number): Device {
  if (offset === 0) return dev;
  return { read: (o, size) => dev.read(o + offset, size), write: (o, size, value) => dev.write(o + offset, size, value) };
}

function checkIndex(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${name} must be an integer, got ${String(v)}`);
  if (v < min || v > max) throw new RangeError(`${name} must be in [${min}, ${max}], got ${v}`);
  return v;
}

/** Check `opts.posted` against the function's BARs. */
function checkPosted(posted: unknown, bars: readonly PciBarInfo[]): PciPostedRange[] {
  if (posted === undefined) return [];
  if (!Array.isArray(posted)) throw new TypeError('opts.posted must be an array of { bar, offset, length }');
  const out = posted.map((p: unknown, i): PciPostedRange => {
    const name = `opts.posted[${i}]`;
    if (typeof p !== 'object' || p === null) throw new TypeError(`${name} must be an object { bar, offset, length }`);
    const r = p as PciPostedRange;
    const bar = checkIndex(r.bar, `${name}.bar`, 0, 5);
    const info = bars.find((b) => b.index === bar);
    if (!info) throw new RangeError(`${name}.bar: the function declares no BAR ${bar}`);
    const offset = checkIndex(r.offset, `${name}.offset`, 0, info.size - 1);
    const length = checkIndex(r.length, `${name}.length`, 1, info.size - offset);
    return { bar, offset, length };
  });
  out.forEach((a, i) => {
    const b = out.slice(0, i).find((o) => o.bar === a.bar && overlaps(o.offset, o.length, a.offset, a.length));
    if (b) throw new RangeError(`opts.posted[${i}] overlaps an earlier posted range of BAR ${a.bar}`);
  });
  return out;
}

/** A function's state: its own snapshot, or its configuration space. */
function snapshotFunction(fn: PciFunction): unknown {
  return fn.snapshot ? fn.snapshot() : { config: fn.config.snapshot() };
}

/** Check a function's state (as {@link snapshotFunction} took it), with `overrides` for a function of its own state. */
function prepareFunction(fn: PciFunction, state: unknown, overrides: unknown): () => void {
  if (fn.prepareRestore) return fn.prepareRestore(state, overrides);
  const s = stateObject(state, 'state');
  return nested('state.config', () => fn.config.prepareRestore(s.config as PciConfigSpaceState));
}

/** The PC's PCI bus and its wiring (see the module comment). */
export class PcPci {
  /** Bus 0. */
  readonly bus = new PciBus();
  /** The host bridge at 00:00.0. */
  readonly hostBridge = new PciHostBridge();
  /** Configuration mechanism #1 (registered at 0xcf8 and 0xcfc-0xcff). */
  readonly configIo: PciConfigIo;
  /** ECAM (registered at {@link PcPciLayout.ecam}). */
  readonly ecam: PciEcam;
  /** Places BARs in the windows. */
  readonly allocator: BarAllocator;
  /** The windows. */
  readonly layout: PcPciLayout;
  /** The MSI sink for the functions' MSI-X models (see the module comment). */
  readonly msi: MsiSink;
  /** What was counted. */
  readonly counters: PcPciCounters = { barConflicts: 0, msiDropped: 0, msiBlocked: 0 };
  readonly #host: PciBusHost;
  readonly #memoryOverlaps: (gpa: number, length: number) => boolean;
  readonly #regions: BarRegion[] = [];

  /** Put the host bridge on the bus and register the config mechanisms on `host`'s buses. */
  constructor(host: PciBusHost, opts: PcPciOptions) {
    if (typeof host !== 'object' || host === null || typeof host.pio?.register !== 'function' || typeof host.mmio?.register !== 'function') {
      throw new TypeError('host must have pio and mmio RunnerBuses (a VcpuRunner)');
    }
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    if (typeof opts.raiseMsi !== 'function') throw new TypeError('opts.raiseMsi must be a function');
    if (typeof opts.memoryOverlaps !== 'function') throw new TypeError('opts.memoryOverlaps must be a function');
    this.#host = host;
    this.#memoryOverlaps = opts.memoryOverlaps;
    this.layout = opts.layout;
    const l = opts.layout;
    this.allocator = new BarAllocator({ mmio32: l.mmio32, mmio64: l.mmio64, io: l.io });
    this.bus.add(0, 0, this.hostBridge);
    this.configIo = new PciConfigIo(this.bus);
    this.ecam = new PciEcam(this.bus, { buses: l.ecam.size / (1 << 20) });
    // Not posted: a guest reads CONFIG_DATA right after writing CONFIG_ADDRESS.
    host.pio.register(PORTS.pciConfigAddress.base, PORTS.pciConfigAddress.length, this.configIo.address, { name: 'PCI CONFIG_ADDRESS' });
    host.pio.register(PORTS.pciConfigData.base, PORTS.pciConfigData.length, this.configIo.data, { name: 'PCI CONFIG_DATA' });
    host.mmio.register(l.ecam.base, this.ecam.length, this.ecam, { name: 'PCI ECAM' });
    const raise = opts.raiseMsi;
    this.msi = {
      signal: (addressLo, addressHi, data) => {
        if ((addressLo & 0xfff0_0000) >>> 0 !== 0xfee0_0000) {
          this.counters.msiDropped++;
          return;
        }
        try {
          if (!raise(addressLo >>> 0, addressHi >>> 0, data >>> 0)) this.counters.msiBlocked++;
        } catch {
          this.counters.msiDropped++; // e.g. the VM is gone
        }
      },
    };
  }

  /**
   * Put `fn` on the bus (at `opts.slot`, else the lowest free device number from 1), place
   * its BARs, enable decode and map them (see the module comment). Throws RangeError for a
   * taken slot, BARs that do not fit the windows, or a BAR that cannot be mapped where it was
   * placed (a device registered there by hand), leaving nothing changed; TypeError/RangeError
   * naming a bad option; an Error once the vCPUs started (no hot-plug).
   */
  add(fn: PciFunction, opts: PcPciDeviceOptions = {}): PcPciDevice {
    if (this.#host.started) throw new Error('PCI functions must be added before the vCPUs start (no hot-plug)');
    if (typeof fn !== 'object' || fn === null || !(fn.config instanceof PciConfigSpace)) throw new TypeError('fn must be a PciFunction (an object with a PciConfigSpace config)');
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    const slot = opts.slot === undefined ? undefined : checkIndex(opts.slot, 'opts.slot', 1, PCI_DEVICES_PER_BUS - 1);
    const declared = fn.config.bars();
    const posted = checkPosted(opts.posted, declared);
    const address = slot === undefined ? this.bus.addDevice(fn) : this.bus.add(slot, 0, fn);
    let placements: BarPlacement[];
    try {
      placements = this.allocator.assign(fn.config);
    } catch (e) {
      this.bus.remove(address.device, address.function);
      throw e;
    }
    const label = `PCI ${formatPciAddress(address)}`;
    const regions = declared.map(
      (b): BarRegion => ({
        fn,
        label,
        bar: b.index,
        io: b.kind === 'io',
        size: b.size,
        pieces: piecesOf(b.size, posted.filter((p) => p.bar === b.index)),
        wanted: undefined,
        mapped: undefined,
        postedAt: undefined,
      }),
    );
    this.#regions.push(...regions);
    const byBar = new Map(regions.map((r) => [r.bar, r]));
    const off = fn.config.onBarChange((c: PciBarChange) => {
      const r = byBar.get(c.bar);
      if (r) this.#moved(r, c.address);
    });
    const conflicts = this.counters.barConflicts;
    let decode = 0;
    if (declared.some((b) => b.kind === 'io')) decode |= PciCommand.IO;
    if (declared.some((b) => b.kind !== 'io')) decode |= PciCommand.MEMORY;
    fn.config.write(PciReg.COMMAND, 2, fn.config.command | decode);
    const stuck = regions.find((r) => r.wanted !== undefined && r.mapped === undefined);
    if (stuck || regions.some((r) => r.wanted === undefined)) {
      // undo: a BAR could not be mapped where the allocator put it
      const what = stuck ? `BAR${stuck.bar} at ${hex(stuck.wanted!)}+${hex(stuck.size)} overlaps ${this.#conflict(stuck, stuck.wanted!) ?? 'another range'}` : 'a BAR did not decode';
      fn.config.write(PciReg.COMMAND, 2, fn.config.command & ~decode);
      off();
      this.#regions.splice(this.#regions.length - regions.length, regions.length);
      this.counters.barConflicts = conflicts;
      for (const p of placements) {
        fn.config.programBar(p.bar, 0);
        this.allocator.release(p.window, p.address);
      }
      this.bus.remove(address.device, address.function);
      throw new RangeError(`${label}: ${what}`);
    }
    return Object.freeze({ slot: address.device, address, bars: Object.freeze(placements) });
  }

  /** The state of the bus and every function on it (see the module comment). Quiesce the virtio devices first. */
  snapshot(): PcPciState {
    return {
      configIo: this.configIo.snapshot(),
      functions: this.bus.entries().map(({ address, fn }) => ({ address: formatPciAddress(address), state: snapshotFunction(fn) })),
    };
  }

  /**
   * Check `state` (from {@link snapshot} of a PC with the same functions at the same
   * addresses) and return the function that applies it to every function at once, each
   * with `overrides[address]`. TypeError/RangeError naming the field, changing nothing.
   */
  prepareRestore(state: PcPciState, overrides: PcPciOverrides = {}): () => void {
    const s = stateObject(state, 'state');
    const o = stateObject(overrides, 'overrides');
    const configIo = nested('state.configIo', () => this.configIo.prepareRestore(s.configIo as PciConfigIoState));
    const entries = this.bus.entries();
    const list = stateArray(s.functions, 'state.functions', entries.length, entries.length);
    const known = new Set(entries.map((e) => formatPciAddress(e.address)));
    for (const k of Object.keys(o)) if (!known.has(k)) throw new RangeError(`overrides.${k}: no function at that address`);
    const commits = entries.map(({ address, fn }, i) => {
      const name = `state.functions[${i}]`;
      const f = stateObject(list[i], name);
      const at = formatPciAddress(address);
      if (stateString(f.address, `${name}.address`, 16) !== at) throw new RangeError(`${name}.address is ${String(f.address)}, the function there is ${at}`);
      if (o[at] !== undefined && !fn.prepareRestore) throw new RangeError(`overrides.${at}: the function there takes no overrides`);
      return nested(`overrides.${at}`, () => nested(`${name}.state`, () => prepareFunction(fn, f.state, o[at])), 'overrides');
    });
    return () => {
      configIo();
      for (const c of commits) c();
    };
  }

  /** Restore a state from {@link snapshot} (checked as {@link prepareRestore} does); PcVirtio.resume() once KVM state is back. */
  restore(state: PcPciState, overrides?: PcPciOverrides): void {
    this.prepareRestore(state, overrides)();
  }

  /**
   * Make every posted sub-range posted at its BAR's current address (see the module
   * comment). Call once, right before the vCPUs start (Pc.run does); later calls, and calls
   * after the start, change nothing.
   */
  preparePosted(): void {
    if (this.#host.started) return;
    for (const r of this.#regions) {
      if (r.mapped === undefined || r.postedAt !== undefined || !r.pieces.some((p) => p.posted)) continue;
      const at = r.mapped;
      this.#unmap(r);
      r.postedAt = at;
      this.#map(r, at);
    }
  }

  /** The BAR's new decode address (undefined: not decoded). */
  #moved(r: BarRegion, address: number | undefined): void {
    const was = r.mapped !== undefined;
    this.#unmap(r);
    r.wanted = address;
    if (address !== undefined) this.#tryMap(r, address);
    if (was) this.#retryRefused(r);
  }

  /** Mappings refused earlier may fit now that `freed` left its place. */
  #retryRefused(freed: BarRegion): void {
    for (const o of this.#regions) {
      if (o !== freed && o.wanted !== undefined && o.mapped === undefined && this.#conflict(o, o.wanted) === undefined) this.#map(o, o.wanted);
    }
  }

  #tryMap(r: BarRegion, at: number): void {
    if (this.#conflict(r, at) !== undefined) {
      this.counters.barConflicts++;
      return;
    }
    this.#map(r, at);
  }

  /** What `[at, at + size)` would overlap, in words, or undefined when it is free. */
  #conflict(r: BarRegion, at: number): string | undefined {
    const bus = r.io ? this.#host.pio : this.#host.mmio;
    const hit = bus.bus.ranges.find((x: BusRange) => overlaps(at, r.size, x.base, x.length));
    if (hit) return hit.name;
    const kvm: Record<string, Span> = r.io ? KVM_PORTS : KVM_MMIO;
    for (const [k, s] of Object.entries(kvm)) if (overlaps(at, r.size, s.base, s.length)) return `KVM's ${k}`;
    if (!r.io && this.#memoryOverlaps(at, r.size)) return 'guest memory';
    return undefined;
  }

  #map(r: BarRegion, at: number): void {
    const bus = r.io ? this.#host.pio : this.#host.mmio;
    const dev = barDevice(r.fn, r.bar);
    // posted only at the address the workers learn (before start, from preparePosted)
    const postNow = !this.#host.started && r.postedAt === at;
    for (const p of r.pieces) {
      const posted = p.posted && postNow;
      const name = r.pieces.length === 1 ? `${r.label} BAR${r.bar}` : `${r.label} BAR${r.bar}+${hex(p.offset)}${posted ? ' (posted)' : ''}`;
      bus.register(at + p.offset, p.length, shifted(dev, p.offset), { name, posted });
    }
    r.mapped = at;
  }

  #unmap(r: BarRegion): void {
    if (r.mapped === undefined) return;
    const bus = r.io ? this.#host.pio : this.#host.mmio;
    for (const p of r.pieces) bus.bus.unregister(r.mapped + p.offset);
    r.mapped = undefined;
  }
}

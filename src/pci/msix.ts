/**
 * MSI-X (PCI Local Bus 3.0 §6.8.2): the capability in configuration space plus the vector
 * table and pending bit array (PBA) a function exposes in its memory BARs. Pure models:
 * the function's BAR handler hands table/PBA accesses to {@link Msix.read} / {@link Msix.write},
 * and the function calls {@link Msix.signal} to raise a vector; messages go to an
 * {@link MsiSink} (the platform backs it with KVM_SIGNAL_MSI).
 *
 * Capability (id 0x11, 12 bytes):
 *
 * | off | field                     | guest access                                     |
 * |-----|---------------------------|--------------------------------------------------|
 * | 2   | message control (u16)     | bits 10:0 table size − 1 (read-only), 14 function mask, 15 enable |
 * | 4   | table offset / BIR (u32)  | read-only: offset (8-byte aligned) \| BAR index   |
 * | 8   | PBA offset / BIR (u32)    | read-only                                        |
 *
 * Table entry (16 bytes): 0 message address (bits 1:0 read 0), 4 upper address, 8 data,
 * 12 vector control (bit 0 mask, the rest read 0). Entries start masked. The PBA holds one
 * read-only pending bit per vector, in 64-bit words; bits past the last vector read 0.
 * Table and PBA take aligned 4- and 8-byte accesses (an 8-byte one is its two dwords, low
 * first); any other access reads all-ones or is ignored, and is counted. PBA writes are
 * ignored.
 *
 * Delivery: with MSI-X enabled, a vector that is masked (its own mask or the function mask)
 * sets its pending bit instead of sending; unmasking it sends the message and clears the
 * bit. With MSI-X disabled a signal is dropped (the function would use INTx), counted.
 * A message is a memory write, so with the command register's bus master enable clear it
 * cannot be sent: it is dropped and counted (also when an unmask releases a pending one).
 */

import type { AccessSize } from '../devices/device.js';
import { allOnes } from '../devices/io-util.js';
import type { PciConfigSpace } from './config-space.js';
import { stateArray, stateBool, stateIndexSet, stateObject } from './state-check.js';
import { checkInt, hex, toUintN } from './util.js';

/** The MSI-X capability id. */
export const MSIX_CAPABILITY_ID = 0x11;
/** Most vectors a function can have. */
export const MSIX_MAX_VECTORS = 2048;
/** Bytes per table entry. */
export const MSIX_ENTRY_SIZE = 16;
/** Message control: MSI-X enable. */
export const MSIX_CONTROL_ENABLE = 0x8000;
/** Message control: function mask. */
export const MSIX_CONTROL_FUNCTION_MASK = 0x4000;
/** Vector control: mask bit. */
export const MSIX_VECTOR_MASKED = 0x1;

/** Where MSI messages go. The platform backs it with KVM_SIGNAL_MSI (or an irqfd route). */
export interface MsiSink {
  /** Send one message: write `data` to the 64-bit address `addressHi:addressLo`. */
  signal(addressLo: number, addressHi: number, data: number): void;
}

/** One message an {@link MsiSink} received. */
export interface MsiMessage {
  /** Low 32 bits of the address. */
  addressLo: number;
  /** High 32 bits of the address. */
  addressHi: number;
  /** Message data. */
  data: number;
}

/** An {@link MsiSink} that records every message; handy for tests. */
export class RecordingMsiSink implements MsiSink {
  /** Every message, in order. */
  readonly messages: MsiMessage[] = [];
  /** Record a message. */
  signal(addressLo: number, addressHi: number, data: number): void {
    this.messages.push({ addressLo, addressHi, data });
  }
}

/** Where a structure lives: a BAR index and an 8-byte-aligned offset in it. */
export interface MsixLocation {
  /** BAR index (BIR) 0-5: a memory BAR, the lower slot of a 64-bit one. */
  bar: number;
  /** Offset in the BAR, a multiple of 8. */
  offset: number;
}

/** Options for {@link Msix}. */
export interface MsixOptions {
  /** Number of vectors, 1-2048. */
  vectors: number;
  /** Where the vector table goes. */
  table: MsixLocation;
  /** Where the PBA goes. */
  pba: MsixLocation;
  /** Where messages go. */
  sink: MsiSink;
}

/** Outcome of {@link Msix.signal}. */
export type MsixSignalResult = 'delivered' | 'pending' | 'disabled' | 'no-bus-master' | 'out-of-range';

/** What an {@link Msix} did so far. */
export interface MsixCounters {
  /** Messages sent to the sink (directly or on unmask). */
  delivered: number;
  /** Signals that set a pending bit instead. */
  pended: number;
  /** Signals dropped because MSI-X was disabled. */
  dropped: number;
  /** Messages dropped because bus mastering was disabled. */
  noBusMaster: number;
  /** Signals of a vector index out of range (no-ops). */
  outOfRange: number;
  /** Table/PBA accesses of a width or alignment the spec does not allow (ignored). */
  badAccesses: number;
}

/** A table entry as the guest programmed it. */
export interface MsixEntry {
  /** Message address, low 32 bits. */
  addressLo: number;
  /** Message address, high 32 bits. */
  addressHi: number;
  /** Message data. */
  data: number;
  /** Vector control mask bit. */
  masked: boolean;
}

/**
 * The state of an {@link Msix} for a snapshot: the vector table and the pending bits. The
 * enable and function-mask bits live in configuration space ({@link PciConfigSpaceState});
 * the counters are diagnostics and are not part of it.
 */
export interface MsixState {
  /** Every table entry, by vector, as the guest programmed it (per-vector masks included). */
  entries: MsixEntry[];
  /** The vectors whose pending bit is set, ascending. */
  pending: number[];
}

/** An MSI-X capability, table and PBA (see the module comment). */
export class Msix {
  /** Offset of the capability in configuration space. */
  readonly capabilityOffset: number;
  /** Number of vectors. */
  readonly vectors: number;
  /** Where the table is. */
  readonly table: Readonly<MsixLocation>;
  /** Where the PBA is. */
  readonly pba: Readonly<MsixLocation>;
  /** Table bytes (vectors × 16). */
  readonly tableSize: number;
  /** PBA bytes (a multiple of 8). */
  readonly pbaSize: number;
  /** What was done so far. */
  readonly counters: MsixCounters = { delivered: 0, pended: 0, dropped: 0, noBusMaster: 0, outOfRange: 0, badAccesses: 0 };
  readonly #config: PciConfigSpace;
  readonly #sink: MsiSink;
  readonly #entries: Uint32Array;
  readonly #pending: Uint32Array;

  /**
   * Add the MSI-X capability to `config` for the table and PBA at the given BAR offsets.
   * The BARs must already be declared memory BARs large enough to hold them, and the two
   * must not overlap. Throws TypeError/RangeError naming the bad option.
   */
  constructor(config: PciConfigSpace, opts: MsixOptions) {
    if (typeof config !== 'object' || config === null || typeof config.addCapability !== 'function') throw new TypeError('config must be a PciConfigSpace');
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    this.vectors = checkInt(opts.vectors, 'opts.vectors', 1, MSIX_MAX_VECTORS);
    if (typeof opts.sink !== 'object' || opts.sink === null || typeof opts.sink.signal !== 'function') throw new TypeError('opts.sink must have signal(addressLo, addressHi, data)');
    this.tableSize = this.vectors * MSIX_ENTRY_SIZE;
    this.pbaSize = Math.ceil(this.vectors / 64) * 8;
    this.table = checkLocation(config, opts.table, 'opts.table', this.tableSize);
    this.pba = checkLocation(config, opts.pba, 'opts.pba', this.pbaSize);
    if (this.table.bar === this.pba.bar && this.table.offset < this.pba.offset + this.pbaSize && this.pba.offset < this.table.offset + this.tableSize) {
      throw new RangeError(`opts.pba (${hex(this.pba.offset)}+${hex(this.pbaSize)}) overlaps opts.table (${hex(this.table.offset)}+${hex(this.tableSize)}) in BAR ${this.table.bar}`);
    }
    this.#config = config;
    this.#sink = opts.sink;
    this.#entries = new Uint32Array(this.vectors * 4);
    this.#pending = new Uint32Array(Math.ceil(this.vectors / 32));
    const control = this.vectors - 1;
    const t = (this.table.offset | this.table.bar) >>> 0;
    const p = (this.pba.offset | this.pba.bar) >>> 0;
    this.capabilityOffset = config.addCapability({
      id: MSIX_CAPABILITY_ID,
      body: [control & 0xff, control >> 8, ...le32(t), ...le32(p)],
      writable: [0x00, (MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK) >> 8],
      onWrite: (offset, size) => {
        if (offset < 4 && offset + size > 2) this.#flushPending();
      },
      onReset: () => this.#resetTable(),
    });
    this.#resetTable();
  }

  /** The message control register. */
  get control(): number {
    return this.#config.peek(this.capabilityOffset + 2, 2);
  }

  /** True when the guest enabled MSI-X. */
  get enabled(): boolean {
    return (this.control & MSIX_CONTROL_ENABLE) !== 0;
  }

  /** True when the guest set the function mask. */
  get functionMasked(): boolean {
    return (this.control & MSIX_CONTROL_FUNCTION_MASK) !== 0;
  }

  /** Table entry `vector` (RangeError when out of range). */
  entry(vector: number): MsixEntry {
    checkInt(vector, 'vector', 0, this.vectors - 1);
    const e = this.#entries;
    const i = vector * 4;
    return { addressLo: e[i], addressHi: e[i + 1], data: e[i + 2], masked: (e[i + 3] & MSIX_VECTOR_MASKED) !== 0 };
  }

  /** True when `vector` cannot be sent now: its own mask or the function mask is set. */
  isMasked(vector: number): boolean {
    return this.entry(vector).masked || this.functionMasked;
  }

  /** The pending bit of `vector`. */
  isPending(vector: number): boolean {
    checkInt(vector, 'vector', 0, this.vectors - 1);
    return (this.#pending[vector >>> 5] & (1 << (vector & 31))) !== 0;
  }

  /** Clear a pending bit without sending (the function found the event handled). */
  clearPending(vector: number): void {
    checkInt(vector, 'vector', 0, this.vectors - 1);
    this.#pending[vector >>> 5] &= ~(1 << (vector & 31));
  }

  /**
   * Raise `vector`: send its message, or set its pending bit when masked. A vector index
   * out of range is a counted no-op; with MSI-X disabled, or bus mastering disabled, the
   * signal is dropped (counted).
   */
  signal(vector: number): MsixSignalResult {
    if (!Number.isInteger(vector) || vector < 0 || vector >= this.vectors) {
      this.counters.outOfRange++;
      return 'out-of-range';
    }
    if (!this.enabled) {
      this.counters.dropped++;
      return 'disabled';
    }
    const e = this.#entries;
    if (this.functionMasked || (e[vector * 4 + 3] & MSIX_VECTOR_MASKED) !== 0) {
      this.#pending[vector >>> 5] |= 1 << (vector & 31);
      this.counters.pended++;
      return 'pending';
    }
    return this.#send(vector) ? 'delivered' : 'no-bus-master';
  }

  /** True when `offset` in BAR `bar` falls in the table or the PBA. */
  claims(bar: number, offset: number): boolean {
    return this.#region(bar, offset) !== undefined;
  }

  /**
   * A guest read at `offset` in BAR `bar`: the table or PBA value, or undefined when the
   * offset is neither's (the function serves it). Never throws.
   */
  read(bar: number, offset: number, size: AccessSize): number | bigint | undefined {
    const r = this.#region(bar, offset);
    if (r === undefined) return undefined;
    const rel = offset - (r === 'table' ? this.table.offset : this.pba.offset);
    if (!validAccess(rel, size)) {
      this.counters.badAccesses++;
      return allOnes(size);
    }
    const dword = (i: number): number => (r === 'table' ? this.#entries[i] : (this.#pending[i] ?? 0));
    const i = rel >>> 2;
    return size === 4 ? dword(i) : (BigInt(dword(i + 1)) << 32n) | BigInt(dword(i));
  }

  /**
   * A guest write at `offset` in BAR `bar`. Returns false when the offset is neither the
   * table's nor the PBA's (the function serves it). Never throws (unless the sink does).
   */
  write(bar: number, offset: number, size: AccessSize, value: number | bigint): boolean {
    const r = this.#region(bar, offset);
    if (r === undefined) return false;
    const rel = offset - (r === 'table' ? this.table.offset : this.pba.offset);
    if (!validAccess(rel, size)) {
      this.counters.badAccesses++;
      return true;
    }
    if (r === 'pba') return true;
    const v = toUintN(value, size);
    this.#writeDword(rel >>> 2, Number(v & 0xffff_ffffn));
    if (size === 8) this.#writeDword((rel >>> 2) + 1, Number(v >> 32n));
    return true;
  }

  /** Reset the table (every entry masked, address and data 0) and clear every pending bit. */
  reset(): void {
    this.#resetTable();
  }

  /** A JSON-safe copy of the table and pending bits (see {@link MsixState}). */
  snapshot(): MsixState {
    const entries: MsixEntry[] = [];
    const pending: number[] = [];
    for (let v = 0; v < this.vectors; v++) {
      entries.push(this.entry(v));
      if (this.isPending(v)) pending.push(v);
    }
    return { entries, pending };
  }

  /**
   * Check `state` (one entry per vector, addresses with bits 1:0 clear, u32 fields) and
   * return the function that applies it. Applying sends nothing: a message pending in the
   * state stays pending until the guest unmasks it. TypeError/RangeError naming the field.
   */
  prepareRestore(state: MsixState): () => void {
    const s = stateObject(state, 'state');
    const list = stateArray(s.entries, 'state.entries', this.vectors, this.vectors);
    const entries = new Uint32Array(this.vectors * 4);
    list.forEach((e, v) => entries.set(checkEntry(e, `state.entries[${v}]`), v * 4));
    const pending = new Uint32Array(this.#pending.length);
    for (const v of stateIndexSet(s.pending, 'state.pending', this.vectors - 1)) pending[v >>> 5] |= 1 << (v & 31);
    return () => {
      this.#entries.set(entries);
      this.#pending.set(pending);
    };
  }

  /** Restore a state from {@link snapshot} (checked as {@link prepareRestore} does). */
  restore(state: MsixState): void {
    this.prepareRestore(state)();
  }

  #region(bar: number, offset: number): 'table' | 'pba' | undefined {
    if (!Number.isSafeInteger(offset)) return undefined;
    if (bar === this.table.bar && offset >= this.table.offset && offset < this.table.offset + this.tableSize) return 'table';
    if (bar === this.pba.bar && offset >= this.pba.offset && offset < this.pba.offset + this.pbaSize) return 'pba';
    return undefined;
  }

  #writeDword(i: number, v: number): void {
    const field = i & 3;
    const e = this.#entries;
    if (field === 0) e[i] = v & ~0x3;
    else if (field !== 3) e[i] = v;
    else {
      e[i] = v & MSIX_VECTOR_MASKED;
      const vector = i >>> 2;
      if (!(v & MSIX_VECTOR_MASKED) && this.enabled && !this.functionMasked && this.isPending(vector)) {
        this.clearPending(vector);
        this.#send(vector);
      }
    }
  }

  #flushPending(): void {
    for (let vector = 0; vector < this.vectors; vector++) {
      if (!this.enabled || this.functionMasked) return; // checked per vector: the sink may react
      if (this.isPending(vector) && !(this.#entries[vector * 4 + 3] & MSIX_VECTOR_MASKED)) {
        this.clearPending(vector);
        this.#send(vector);
      }
    }
  }

  #send(vector: number): boolean {
    if (!this.#config.busMasterEnabled) {
      this.counters.noBusMaster++;
      return false;
    }
    const e = this.#entries;
    const i = vector * 4;
    this.counters.delivered++;
    this.#sink.signal(e[i], e[i + 1], e[i + 2]);
    return true;
  }

  #resetTable(): void {
    this.#entries.fill(0);
    for (let v = 0; v < this.vectors; v++) this.#entries[v * 4 + 3] = MSIX_VECTOR_MASKED;
    this.#pending.fill(0);
  }
}

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
}

/** A state's table entry as its four dwords. */
function checkEntry(e: unknown, name: string): number[] {
  const o = stateObject(e, name);
  const addressLo = checkInt(o.addressLo, `${name}.addressLo`, 0, 0xffff_ffff);
  if (addressLo & 0x3) throw new RangeError(`${name}.addressLo must have bits 1:0 clear, got ${hex(addressLo)}`);
  const addressHi = checkInt(o.addressHi, `${name}.addressHi`, 0, 0xffff_ffff);
  const data = checkInt(o.data, `${name}.data`, 0, 0xffff_ffff);
  const masked = stateBool(o.masked, `${name}.masked`);
  return [addressLo, addressHi, data, masked ? MSIX_VECTOR_MASKED : 0];
}

function validAccess(rel: number, size: number): boolean {
  return (size === 4 && rel % 4 === 0) || (size === 8 && rel % 8 === 0);
}

function checkLocation(config: PciConfigSpace, loc: MsixLocation, name: string, bytes: number): MsixLocation {
  if (typeof loc !== 'object' || loc === null) throw new TypeError(`${name} must be an object`);
  const bar = checkInt(loc.bar, `${name}.bar`, 0, 5);
  const offset = checkInt(loc.offset, `${name}.offset`, 0, 0xffff_fff8);
  if (offset % 8 !== 0) throw new RangeError(`${name}.offset must be a multiple of 8, got ${hex(offset)}`);
  const b = config.bar(bar);
  if (!b || b.kind === 'io') throw new RangeError(`${name}.bar ${bar} must be a declared memory BAR (the lower slot of a 64-bit one)`);
  if (offset + bytes > b.size) throw new RangeError(`${name} (${hex(offset)}+${hex(bytes)}) does not fit in BAR ${bar} (${hex(b.size)} bytes)`);
  return Object.freeze({ bar, offset });
}

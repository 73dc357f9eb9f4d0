/**
 * The PC CMOS RAM and real-time clock (a Motorola MC146818A-compatible part), as a
 * 2-byte device registered at ports 0x70-0x71.
 *
 * | off | port | read                      | write                                  |
 * |-----|------|---------------------------|----------------------------------------|
 * | 0   | 0x70 | 0xff (index is write-only) | bits 0-6: register index; bit 7: NMI mask |
 * | 1   | 0x71 | selected register         | selected register                      |
 *
 * 128 bytes of CMOS are modelled. The clock registers — 0x00 seconds, 0x02 minutes,
 * 0x04 hours, 0x06 day of week (1 = Sunday), 0x07 day of month, 0x08 month, 0x09 year
 * (two digits) and 0x32 century — are computed on every read from a host clock (`now`,
 * in UTC) plus an offset, honouring register B's data mode (bit 2: 1 = binary, 0 = BCD)
 * and hour format (bit 1: 1 = 24-hour, 0 = 12-hour with bit 7 of the hour = PM). Guest
 * writes to them shift the offset; the day of week is derived from the date, so writes
 * to 0x06 are ignored. While register B's SET bit (bit 7) is 1 the clock is frozen, as
 * on the real part. The alarm registers (0x01, 0x03, 0x05) are plain RAM; there are no
 * timers, so no periodic/alarm/update interrupts are generated.
 *
 * Register A (0x0a): bit 7 (UIP) always reads 0; bits 0-6 are read/write (default 0x26).
 * Register B (0x0b): read/write (default 0x02: 24-hour, BCD). Register C (0x0c):
 * read-only interrupt flags, cleared by a read. Register D (0x0d): read-only, 0x80
 * (VRT: the battery is good).
 *
 * Memory-size bytes are filled from `memoryBytes`: 0x15/0x16 base memory in KiB (640),
 * 0x17/0x18 and 0x30/0x31 memory above 1 MiB in KiB (capped at 0xffff), 0x34/0x35
 * memory between 16 MiB and `lowMemoryEnd` in 64 KiB units (capped at 0xffff), and
 * 0x5b-0x5d memory above 4 GiB (RAM beyond `lowMemoryEnd` is relocated there) in 64 KiB
 * units; with `cpus`, 0x5f holds the CPU count minus one. (SeaBIOS reads all of these.)
 *
 * Access widths: a wider access at offset `n` acts as a byte access of port `n` (reads
 * zero-extended, writes use the low byte). Other offsets read all-ones and ignore writes.
 */

import type { AccessSize, Device } from './device.js';
import { allOnes, isOffset, toU8 } from './io-util.js';

/** Well-known CMOS register indices. */
export const CmosReg = {
  /** Seconds. */
  SECONDS: 0x00,
  /** Seconds alarm. */
  SECONDS_ALARM: 0x01,
  /** Minutes. */
  MINUTES: 0x02,
  /** Minutes alarm. */
  MINUTES_ALARM: 0x03,
  /** Hours. */
  HOURS: 0x04,
  /** Hours alarm. */
  HOURS_ALARM: 0x05,
  /** Day of week (1 = Sunday). */
  DAY_OF_WEEK: 0x06,
  /** Day of month. */
  DAY_OF_MONTH: 0x07,
  /** Month. */
  MONTH: 0x08,
  /** Year within the century. */
  YEAR: 0x09,
  /** Status register A. */
  REG_A: 0x0a,
  /** Status register B. */
  REG_B: 0x0b,
  /** Status register C. */
  REG_C: 0x0c,
  /** Status register D. */
  REG_D: 0x0d,
  /** Shutdown status. */
  SHUTDOWN_STATUS: 0x0f,
  /** Base memory in KiB, low byte. */
  BASE_MEM_LOW: 0x15,
  /** Base memory in KiB, high byte. */
  BASE_MEM_HIGH: 0x16,
  /** Extended memory (above 1 MiB) in KiB, low byte. */
  EXT_MEM_LOW: 0x17,
  /** Extended memory (above 1 MiB) in KiB, high byte. */
  EXT_MEM_HIGH: 0x18,
  /** Extended memory (above 1 MiB) in KiB, low byte (copy). */
  EXT_MEM2_LOW: 0x30,
  /** Extended memory (above 1 MiB) in KiB, high byte (copy). */
  EXT_MEM2_HIGH: 0x31,
  /** Century. */
  CENTURY: 0x32,
  /** Memory above 16 MiB in 64 KiB units, low byte. */
  MEM_ABOVE_16M_LOW: 0x34,
  /** Memory above 16 MiB in 64 KiB units, high byte. */
  MEM_ABOVE_16M_HIGH: 0x35,
  /** Memory above 4 GiB in 64 KiB units, bits 0-7. */
  MEM_ABOVE_4G_LOW: 0x5b,
  /** Memory above 4 GiB in 64 KiB units, bits 8-15. */
  MEM_ABOVE_4G_MID: 0x5c,
  /** Memory above 4 GiB in 64 KiB units, bits 16-23. */
  MEM_ABOVE_4G_HIGH: 0x5d,
  /** Number of CPUs minus one. */
  CPU_COUNT_MINUS_ONE: 0x5f,
} as const;

/** Register B bits. */
export const CmosRegB = {
  /** Halt updates so the clock can be set. */
  SET: 0x80,
  /** Periodic interrupt enable. */
  PIE: 0x40,
  /** Alarm interrupt enable. */
  AIE: 0x20,
  /** Update-ended interrupt enable. */
  UIE: 0x10,
  /** Square-wave enable. */
  SQWE: 0x08,
  /** Data mode: 1 = binary, 0 = BCD. */
  DM_BINARY: 0x04,
  /** Hour format: 1 = 24-hour, 0 = 12-hour. */
  HOURS_24: 0x02,
  /** Daylight saving enable. */
  DSE: 0x01,
} as const;

/** Default end of RAM below 4 GiB (the rest is placed above 4 GiB). */
export const CMOS_DEFAULT_LOW_MEMORY_END = 0xe000_0000;

/** Options for {@link Cmos}. */
export interface CmosOptions {
  /** Host clock (default: the real time). Its UTC fields are reported. */
  now?: () => Date;
  /** Total guest RAM in bytes; fills the memory-size bytes when given. */
  memoryBytes?: number | bigint;
  /** Where RAM below 4 GiB ends (1 MiB-4 GiB, multiple of 64 KiB; default 0xe0000000). */
  lowMemoryEnd?: number | bigint;
  /** Number of CPUs (1-256); fills 0x5f when given. */
  cpus?: number;
}

/** The complete, plain-data state of a {@link Cmos}. */
export interface CmosState {
  /** Selected register index (0-127). */
  index: number;
  /** NMI mask bit from the last index write. */
  nmiMasked: boolean;
  /** The 128 CMOS bytes (clock registers hold stale values; they are computed). */
  ram: number[];
  /** Guest clock minus host clock, in milliseconds. */
  clockOffsetMs: number;
  /** The frozen guest time (ms since the epoch) while register B's SET bit is 1, else null. */
  frozenMs: number | null;
}

const KiB = 1024n;
const MiB = 1024n * KiB;
const GiB = 1024n * MiB;
const MAX_DATE_MS = 8.64e15;

/** Register indices computed from the clock. */
const CLOCK_REGS = new Set<number>([0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32]);

/** CMOS RAM + RTC. See the module comment. */
export class Cmos implements Device {
  private readonly now: () => Date;
  private ram = new Array<number>(128).fill(0);
  private index = 0;
  private nmi = false;
  private offsetMs = 0;
  private frozenMs: number | null = null;

  /** Create the device. Throws `TypeError`/`RangeError` naming a bad option. */
  constructor(options: CmosOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const { now = () => new Date(), memoryBytes, lowMemoryEnd = CMOS_DEFAULT_LOW_MEMORY_END, cpus } = options;
    if (typeof now !== 'function') throw new TypeError('options.now must be a function returning a Date');
    this.now = now;
    this.ram[CmosReg.REG_A] = 0x26;
    this.ram[CmosReg.REG_B] = CmosRegB.HOURS_24;
    this.ram[CmosReg.REG_D] = 0x80;
    const lowEnd = toBig(lowMemoryEnd, 'options.lowMemoryEnd');
    if (lowEnd < MiB || lowEnd > 4n * GiB || lowEnd % (64n * KiB) !== 0n) {
      throw new RangeError('options.lowMemoryEnd must be a multiple of 64 KiB between 1 MiB and 4 GiB');
    }
    if (memoryBytes !== undefined) this.setMemory(toBig(memoryBytes, 'options.memoryBytes'), lowEnd);
    if (cpus !== undefined) {
      if (!Number.isInteger(cpus) || cpus < 1 || cpus > 256) throw new RangeError('options.cpus must be an integer 1-256');
      this.ram[CmosReg.CPU_COUNT_MINUS_ONE] = cpus - 1;
    }
  }

  // ---------------------------------------------------------------- guest side

  /** Guest read: 0xff from the index port, the selected register from the data port. */
  read(offset: number, size: AccessSize): number | bigint {
    if (offset === 0) return 0xff;
    if (offset !== 1) return allOnes(size);
    const v = this.peek(this.index);
    if (this.index === CmosReg.REG_C) this.ram[CmosReg.REG_C] = 0;
    return v;
  }

  /** Guest write: select a register (and set the NMI mask) or write the selected register. */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    void size;
    if (!isOffset(offset)) return;
    const v = toU8(value);
    if (offset === 0) {
      this.index = v & 0x7f;
      this.nmi = (v & 0x80) !== 0;
    } else if (offset === 1) {
      this.store(this.index, v, false);
    }
  }

  // ----------------------------------------------------------------- host side

  /** True if the guest masked NMIs (bit 7 of the last index-port write). */
  get nmiMasked(): boolean {
    return this.nmi;
  }

  /** The currently selected register index. */
  get selectedIndex(): number {
    return this.index;
  }

  /**
   * Store a byte. Plain RAM bytes and registers A-C are stored as given (register C's
   * flags can be raised this way); clock registers (0x00, 0x02, 0x04, 0x07-0x09, 0x32)
   * are interpreted in the current data mode and adjust the clock, as a guest write
   * would; 0x06 and 0x0d are ignored. Throws `RangeError` on a bad index or value.
   */
  set(index: number, value: number): void {
    checkIndex(index);
    if (!Number.isInteger(value) || value < 0 || value > 0xff) throw new RangeError('value must be an integer 0-255');
    this.store(index, value, true);
  }

  /** The byte the guest would read at `index`, without side effects. Throws `RangeError` on a bad index. */
  get(index: number): number {
    checkIndex(index);
    return this.peek(index);
  }

  /** Set the guest's clock to `date` (it then runs on from there with the host clock). */
  setClock(date: Date): void {
    if (!(date instanceof Date) || !Number.isFinite(date.getTime())) throw new TypeError('date must be a valid Date');
    if (this.frozenMs !== null) this.frozenMs = date.getTime();
    else this.offsetMs = date.getTime() - this.hostMs();
  }

  /** The guest's current clock. */
  clock(): Date {
    return new Date(this.clockMs());
  }

  /** A plain-object copy of the complete device state. */
  snapshot(): CmosState {
    return {
      index: this.index,
      nmiMasked: this.nmi,
      ram: [...this.ram],
      clockOffsetMs: this.offsetMs,
      frozenMs: this.frozenMs,
    };
  }

  /** Restore a state produced by {@link snapshot}. Throws `TypeError`/`RangeError` if malformed. */
  restore(state: CmosState): void {
    if (typeof state !== 'object' || state === null) throw new TypeError('state must be an object');
    checkIndex(state.index);
    if (typeof state.nmiMasked !== 'boolean') throw new TypeError('state.nmiMasked must be a boolean');
    if (!Array.isArray(state.ram) || state.ram.length !== 128 ||
        !state.ram.every((b) => Number.isInteger(b) && b >= 0 && b <= 0xff)) {
      throw new RangeError('state.ram must be 128 bytes');
    }
    if (!Number.isFinite(state.clockOffsetMs)) throw new RangeError('state.clockOffsetMs must be finite');
    if (state.frozenMs !== null && !Number.isFinite(state.frozenMs)) throw new RangeError('state.frozenMs must be finite or null');
    this.index = state.index;
    this.nmi = state.nmiMasked;
    this.ram = [...state.ram];
    this.offsetMs = state.clockOffsetMs;
    this.frozenMs = state.frozenMs;
  }

  // ------------------------------------------------------------------ internals

  private setMemory(mem: bigint, lowEnd: bigint): void {
    const low = mem < lowEnd ? mem : lowEnd;
    const high = mem - low;
    const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);
    const base = min(mem / KiB, 640n);
    const ext = low > MiB ? min((low - MiB) / KiB, 0xffffn) : 0n;
    const above16 = low > 16n * MiB ? min((low - 16n * MiB) / (64n * KiB), 0xffffn) : 0n;
    const above4g = min(high / (64n * KiB), 0xff_ffffn);
    this.put16(CmosReg.BASE_MEM_LOW, Number(base));
    this.put16(CmosReg.EXT_MEM_LOW, Number(ext));
    this.put16(CmosReg.EXT_MEM2_LOW, Number(ext));
    this.put16(CmosReg.MEM_ABOVE_16M_LOW, Number(above16));
    const h = Number(above4g);
    this.ram[CmosReg.MEM_ABOVE_4G_LOW] = h & 0xff;
    this.ram[CmosReg.MEM_ABOVE_4G_MID] = (h >>> 8) & 0xff;
    this.ram[CmosReg.MEM_ABOVE_4G_HIGH] = (h >>> 16) & 0xff;
  }

  private put16(index: number, v: number): void {
    this.ram[index] = v & 0xff;
    this.ram[index + 1] = (v >>> 8) & 0xff;
  }

  private get binary(): boolean {
    return (this.ram[CmosReg.REG_B] & CmosRegB.DM_BINARY) !== 0;
  }

  private get hours24(): boolean {
    return (this.ram[CmosReg.REG_B] & CmosRegB.HOURS_24) !== 0;
  }

  private hostMs(): number {
    const t = this.now().getTime();
    return Number.isFinite(t) ? t : 0;
  }

  private clockMs(): number {
    if (this.frozenMs !== null) return this.frozenMs;
    const t = this.hostMs() + this.offsetMs;
    return Math.abs(t) <= MAX_DATE_MS ? t : 0;
  }

  private encode(v: number): number {
    return this.binary ? v : ((Math.floor(v / 10) % 10) << 4) | (v % 10);
  }

  private decode(v: number): number {
    return this.binary ? v : (v >> 4) * 10 + (v & 0x0f);
  }

  private peek(index: number): number {
    if (CLOCK_REGS.has(index)) return this.readClock(index);
    if (index === CmosReg.REG_A) return this.ram[index] & 0x7f;
    if (index === CmosReg.REG_D) return 0x80;
    return this.ram[index];
  }

  private readClock(index: number): number {
    const d = new Date(this.clockMs());
    switch (index) {
      case 0x00:
        return this.encode(d.getUTCSeconds());
      case 0x02:
        return this.encode(d.getUTCMinutes());
      case 0x04: {
        const h = d.getUTCHours();
        if (this.hours24) return this.encode(h);
        return this.encode(h % 12 === 0 ? 12 : h % 12) | (h >= 12 ? 0x80 : 0);
      }
      case 0x06:
        return this.encode(d.getUTCDay() + 1);
      case 0x07:
        return this.encode(d.getUTCDate());
      case 0x08:
        return this.encode(d.getUTCMonth() + 1);
      case 0x09:
        return this.encode(((d.getUTCFullYear() % 100) + 100) % 100);
      default: // 0x32
        return this.encode(Math.floor(d.getUTCFullYear() / 100) & 0x7f);
    }
  }

  private store(index: number, v: number, host: boolean): void {
    if (CLOCK_REGS.has(index)) {
      this.writeClock(index, v);
      return;
    }
    switch (index) {
      case CmosReg.REG_A:
        this.ram[index] = v & 0x7f;
        return;
      case CmosReg.REG_B:
        this.writeRegB(v);
        return;
      case CmosReg.REG_C:
        if (host) this.ram[index] = v; // read-only for the guest
        return;
      case CmosReg.REG_D:
        return;
      default:
        this.ram[index] = v;
    }
  }

  private writeRegB(v: number): void {
    const wasSet = this.frozenMs !== null;
    const set = (v & CmosRegB.SET) !== 0;
    if (set && !wasSet) this.frozenMs = this.clockMs();
    if (!set && wasSet) {
      this.offsetMs = (this.frozenMs as number) - this.hostMs();
      this.frozenMs = null;
    }
    this.ram[CmosReg.REG_B] = set ? v & ~CmosRegB.UIE : v; // SET clears UIE
  }

  private writeClock(index: number, v: number): void {
    if (index === 0x06) return; // derived from the date
    const cur = this.clockMs();
    const d = new Date(cur);
    let year = d.getUTCFullYear();
    let month = d.getUTCMonth();
    let day = d.getUTCDate();
    let hours = d.getUTCHours();
    let minutes = d.getUTCMinutes();
    let seconds = d.getUTCSeconds();
    switch (index) {
      case 0x00:
        seconds = this.decode(v);
        break;
      case 0x02:
        minutes = this.decode(v);
        break;
      case 0x04:
        if (this.hours24) hours = this.decode(v);
        else hours = (this.decode(v & 0x7f) % 12) + ((v & 0x80) !== 0 ? 12 : 0);
        break;
      case 0x07:
        day = this.decode(v);
        break;
      case 0x08:
        month = this.decode(v) - 1;
        break;
      case 0x09:
        year = Math.floor(year / 100) * 100 + this.decode(v);
        break;
      default: // 0x32
        year = this.decode(v) * 100 + (((year % 100) + 100) % 100);
    }
    const next = new Date(0);
    next.setUTCFullYear(year, month, day);
    next.setUTCHours(hours, minutes, seconds, d.getUTCMilliseconds());
    const ms = next.getTime();
    if (!Number.isFinite(ms) || Math.abs(ms) > MAX_DATE_MS) return; // nonsense date: ignore
    if (this.frozenMs !== null) this.frozenMs = ms;
    else this.offsetMs += ms - cur;
  }
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index > 127) throw new RangeError('index must be an integer 0-127');
}

function toBig(v: number | bigint, name: string): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 1n << 64n) throw new RangeError(`${name} must be between 0 and 2^64-1`);
    return v;
  }
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number or bigint`);
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative safe integer`);
  return BigInt(v);
}

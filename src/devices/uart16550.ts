/**
 * A National Semiconductor PC16550D-compatible UART (the "16550A" of PC serial ports),
 * modelled as a pure state machine.
 *
 * Register map (offsets relative to the registered base, e.g. 0x3f8 for COM1):
 *
 * | off | DLAB=0 read | DLAB=0 write | DLAB=1 |
 * |-----|-------------|--------------|--------|
 * | 0   | RBR         | THR          | DLL    |
 * | 1   | IER         | IER          | DLM    |
 * | 2   | IIR         | FCR          | (same) |
 * | 3   | LCR         | LCR          |        |
 * | 4   | MCR         | MCR          |        |
 * | 5   | LSR         | (ignored)    |        |
 * | 6   | MSR         | (ignored)    |        |
 * | 7   | SCR         | SCR          |        |
 *
 * Transmission is instantaneous: THR and the transmitter shift register are always
 * empty, so LSR.THRE and LSR.TEMT always read 1. There are no timers: the FIFO
 * "character timeout" interrupt is folded into the received-data interrupt — whenever the
 * RX FIFO holds fewer bytes than the trigger level but is not empty, IIR reports the
 * timeout code (0x0c), exactly what the guest would see once the 4-character timeout
 * elapsed on real hardware.
 *
 * Access widths: the 16550 is a byte-wide device. A 2-, 4- or 8-byte access at offset
 * `n` is treated as a 1-byte access of register `n`: reads return that register's byte
 * zero-extended, writes use the low byte of the value. Offsets outside 0-7 read as
 * all-ones of the access width and ignore writes.
 */

import type { AccessSize, Device, IrqLine } from './device.js';
import { allOnes, ByteQueue, isOffset, toByteArray, toU8 } from './io-util.js';

/** Register offsets of the 16550 (relative to the device base). */
export const UartReg = {
  /** Receiver buffer (read) / transmitter holding (write) / divisor latch LSB (DLAB=1). */
  RBR_THR_DLL: 0,
  /** Interrupt enable / divisor latch MSB (DLAB=1). */
  IER_DLM: 1,
  /** Interrupt identification (read) / FIFO control (write). */
  IIR_FCR: 2,
  /** Line control. */
  LCR: 3,
  /** Modem control. */
  MCR: 4,
  /** Line status. */
  LSR: 5,
  /** Modem status. */
  MSR: 6,
  /** Scratch. */
  SCR: 7,
} as const;

/** IER bits. */
export const UartIer = {
  /** Enable received-data-available (and character timeout) interrupt. */
  ERBFI: 0x01,
  /** Enable transmitter-holding-register-empty interrupt. */
  ETBEI: 0x02,
  /** Enable receiver-line-status interrupt. */
  ELSI: 0x04,
  /** Enable modem-status interrupt. */
  EDSSI: 0x08,
} as const;

/** IIR interrupt identification values (bits 0-3). */
export const UartIir = {
  /** No interrupt pending (bit 0 set). */
  NONE: 0x01,
  /** Receiver line status (highest priority). */
  RLS: 0x06,
  /** Received data available (FIFO at or above its trigger level). */
  RDA: 0x04,
  /** Character timeout (FIFO non-empty but below its trigger level). */
  TIMEOUT: 0x0c,
  /** Transmitter holding register empty. */
  THRE: 0x02,
  /** Modem status (lowest priority). */
  MODEM_STATUS: 0x00,
  /** Bits 6-7: FIFOs enabled. */
  FIFO_ENABLED: 0xc0,
} as const;

/** LCR bits. */
export const UartLcr = {
  /** Divisor latch access bit. */
  DLAB: 0x80,
} as const;

/** MCR bits. */
export const UartMcr = {
  /** Data terminal ready. */
  DTR: 0x01,
  /** Request to send. */
  RTS: 0x02,
  /** Auxiliary output 1. */
  OUT1: 0x04,
  /** Auxiliary output 2: gates the interrupt onto the bus on PCs. */
  OUT2: 0x08,
  /** Local loopback. */
  LOOP: 0x10,
} as const;

/** LSR bits. */
export const UartLsr = {
  /** Data ready. */
  DR: 0x01,
  /** Overrun error. */
  OE: 0x02,
  /** Parity error (never produced). */
  PE: 0x04,
  /** Framing error (never produced). */
  FE: 0x08,
  /** Break interrupt (never produced). */
  BI: 0x10,
  /** Transmitter holding register empty (always 1). */
  THRE: 0x20,
  /** Transmitter empty (always 1). */
  TEMT: 0x40,
} as const;

/** MSR bits. */
export const UartMsr = {
  /** Delta clear to send. */
  DCTS: 0x01,
  /** Delta data set ready. */
  DDSR: 0x02,
  /** Trailing edge ring indicator. */
  TERI: 0x04,
  /** Delta data carrier detect. */
  DDCD: 0x08,
  /** Clear to send. */
  CTS: 0x10,
  /** Data set ready. */
  DSR: 0x20,
  /** Ring indicator. */
  RI: 0x40,
  /** Data carrier detect. */
  DCD: 0x80,
} as const;

/** Depth of the 16550 receive FIFO. */
export const UART_FIFO_SIZE = 16;

/** Default capacity of the host-side input buffer (bytes waiting to enter the RX FIFO). */
export const UART_DEFAULT_INPUT_BUFFER = 64 * 1024;

/** Largest accepted `inputBufferBytes` option. */
const MAX_INPUT_BUFFER = 16 * 1024 * 1024;

/** RX FIFO trigger levels selected by FCR bits 6-7. */
const TRIGGER_LEVELS = [1, 4, 8, 14] as const;

/** Options for {@link Uart16550}. */
export interface Uart16550Options {
  /** The interrupt line (e.g. IRQ 4 for COM1). Asserted while an interrupt is pending and MCR.OUT2 is set. */
  irq: IrqLine;
  /** Called with every byte the guest transmits (not called in loopback mode). */
  onTransmit?: (byte: number) => void;
  /**
   * Capacity of the host input buffer that feeds the RX FIFO as the guest drains it, so
   * that more than 16 bytes can be pasted at once. Default 64 KiB; 0 disables it, in
   * which case bytes that do not fit in the RX FIFO are lost with an overrun error.
   */
  inputBufferBytes?: number;
}

/** Host-side modem input lines (used when not in loopback mode). */
export interface UartModemLines {
  /** Clear to send. */
  cts?: boolean;
  /** Data set ready. */
  dsr?: boolean;
  /** Ring indicator. */
  ri?: boolean;
  /** Data carrier detect. */
  dcd?: boolean;
}

/** The complete, plain-data state of a {@link Uart16550}. */
export interface Uart16550State {
  /** Interrupt enable register (bits 0-3). */
  ier: number;
  /** Line control register. */
  lcr: number;
  /** Modem control register (bits 0-4). */
  mcr: number;
  /** Scratch register. */
  scr: number;
  /** Divisor latch, low byte. */
  dll: number;
  /** Divisor latch, high byte. */
  dlm: number;
  /** Effective FIFO control bits: bit 0 enable, bit 3 DMA mode, bits 6-7 trigger level. */
  fcr: number;
  /** Sticky LSR error bits (OE), cleared on LSR read. */
  lsrErrors: number;
  /** MSR delta bits 0-3, cleared on MSR read. */
  msrDeltas: number;
  /** Host-driven modem input lines as MSR bits 4-7. */
  modemInputs: number;
  /** A THR-empty interrupt is pending (cleared by an IIR read that reports it or a THR write). */
  threPending: boolean;
  /** Bytes in the receive FIFO (or RBR, in non-FIFO mode), oldest first. */
  rxFifo: number[];
  /** Bytes waiting in the host input buffer, oldest first. */
  hostInput: number[];
}

/**
 * A 16550A UART. The guest drives it through {@link Uart16550.read}/{@link Uart16550.write};
 * the host injects input with {@link Uart16550.receive} and gets output via `onTransmit`.
 */
export class Uart16550 implements Device {
  private readonly irq: IrqLine;
  private readonly onTransmit: ((byte: number) => void) | undefined;
  private readonly rx = new ByteQueue(UART_FIFO_SIZE);
  private readonly hostInput: ByteQueue;
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private dll = 0x0c; // 9600 baud; the divisor is not affected by reset on real parts
  private dlm = 0;
  private fcr = 0;
  private lsrErrors = 0;
  private msrDeltas = 0;
  private modemInputs = UartMsr.CTS | UartMsr.DSR | UartMsr.DCD;
  private threPending = false;

  /** Create a UART in its reset state. Throws `TypeError`/`RangeError` on bad options. */
  constructor(options: Uart16550Options) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const { irq, onTransmit, inputBufferBytes = UART_DEFAULT_INPUT_BUFFER } = options;
    if (typeof irq !== 'object' || irq === null || typeof irq.set !== 'function') {
      throw new TypeError('options.irq must be an IrqLine');
    }
    if (onTransmit !== undefined && typeof onTransmit !== 'function') {
      throw new TypeError('options.onTransmit must be a function');
    }
    if (!Number.isSafeInteger(inputBufferBytes) || inputBufferBytes < 0 || inputBufferBytes > MAX_INPUT_BUFFER) {
      throw new RangeError(`options.inputBufferBytes must be an integer 0-${MAX_INPUT_BUFFER}`);
    }
    this.irq = irq;
    this.onTransmit = onTransmit;
    this.hostInput = new ByteQueue(inputBufferBytes);
    this.irq.set(false);
  }

  // ---------------------------------------------------------------- guest side

  /** Guest register read; see the module comment for width and offset handling. */
  read(offset: number, size: AccessSize): number | bigint {
    if (!isOffset(offset) || offset > 7) return allOnes(size);
    const dlab = (this.lcr & UartLcr.DLAB) !== 0;
    switch (offset) {
      case 0:
        return dlab ? this.dll : this.readRbr();
      case 1:
        return dlab ? this.dlm : this.ier;
      case 2:
        return this.readIir();
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5:
        return this.readLsr();
      case 6:
        return this.readMsr();
      default:
        return this.scr;
    }
  }

  /** Guest register write; see the module comment for width and offset handling. */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    void size;
    if (!isOffset(offset) || offset > 7) return;
    const v = toU8(value);
    const dlab = (this.lcr & UartLcr.DLAB) !== 0;
    switch (offset) {
      case 0:
        if (dlab) this.dll = v;
        else this.writeThr(v);
        break;
      case 1:
        if (dlab) this.dlm = v;
        else this.writeIer(v);
        break;
      case 2:
        this.writeFcr(v);
        break;
      case 3:
        this.lcr = v;
        break;
      case 4:
        this.writeMcr(v);
        break;
      case 5:
      case 6:
        break; // LSR/MSR writes are factory-test only: ignored
      default:
        this.scr = v;
    }
  }

  // ----------------------------------------------------------------- host side

  /**
   * Inject bytes arriving on the serial line. Bytes go into the RX FIFO, then into the
   * host input buffer; bytes that fit in neither are dropped and set LSR.OE. In loopback
   * mode the serial input is disconnected: bytes wait in the host input buffer (or are
   * dropped, without an overrun, when it is disabled or full). Returns the number of
   * bytes accepted. Throws `TypeError` if `bytes` is not a byte array.
   */
  receive(bytes: Uint8Array | readonly number[]): number {
    const data = toByteArray(bytes, 'bytes', false);
    let accepted = 0;
    for (const b of data) {
      this.pump();
      if (!this.loopback && this.hostInput.length === 0 && this.rx.length < this.rxCapacity) {
        this.rx.push(b);
        accepted++;
      } else if (this.hostInput.push(b)) {
        accepted++;
      } else if (!this.loopback) {
        this.lsrErrors |= UartLsr.OE;
      }
    }
    this.pump();
    this.updateIrq();
    return accepted;
  }

  /** True if at least one more byte can be {@link receive}d without being lost. */
  canReceive(): boolean {
    if (!this.hostInput.full) return true;
    return !this.loopback && this.hostInput.length === 0 && this.rx.length < this.rxCapacity;
  }

  /** Number of bytes buffered for the guest (RX FIFO plus host input buffer). */
  get pendingInput(): number {
    return this.rx.length + this.hostInput.length;
  }

  /** Set the modem input lines seen in MSR outside loopback mode (default: CTS, DSR, DCD asserted). */
  setModemLines(lines: UartModemLines): void {
    if (typeof lines !== 'object' || lines === null) throw new TypeError('lines must be an object');
    const before = this.modemLines();
    const bit = (on: boolean | undefined, mask: number): void => {
      if (on === undefined) return;
      this.modemInputs = on ? this.modemInputs | mask : this.modemInputs & ~mask;
    };
    bit(lines.cts, UartMsr.CTS);
    bit(lines.dsr, UartMsr.DSR);
    bit(lines.ri, UartMsr.RI);
    bit(lines.dcd, UartMsr.DCD);
    this.noteModemChange(before);
    this.updateIrq();
  }

  /** The 16-bit baud-rate divisor (DLM:DLL). */
  get divisor(): number {
    return (this.dlm << 8) | this.dll;
  }

  /** True while the interrupt line is asserted. */
  get irqAsserted(): boolean {
    return this.interruptId() !== UartIir.NONE && (this.mcr & UartMcr.OUT2) !== 0;
  }

  /**
   * Master reset (the MR pin): clears IER, FCR, LCR, MCR, the FIFOs and the status
   * bits; keeps the divisor, scratch register and host input buffer.
   */
  reset(): void {
    const before = this.modemLines();
    this.ier = 0;
    this.lcr = 0;
    this.mcr = 0;
    this.fcr = 0;
    this.lsrErrors = 0;
    this.threPending = false;
    this.rx.clear();
    this.noteModemChange(before);
    this.msrDeltas = 0;
    this.pump();
    this.updateIrq();
  }

  /** A plain-object copy of the complete device state. */
  snapshot(): Uart16550State {
    return {
      ier: this.ier,
      lcr: this.lcr,
      mcr: this.mcr,
      scr: this.scr,
      dll: this.dll,
      dlm: this.dlm,
      fcr: this.fcr,
      lsrErrors: this.lsrErrors,
      msrDeltas: this.msrDeltas,
      modemInputs: this.modemInputs,
      threPending: this.threPending,
      rxFifo: this.rx.toArray(),
      hostInput: this.hostInput.toArray(),
    };
  }

  /** Restore a state produced by {@link snapshot}. Throws `TypeError`/`RangeError` if it is malformed. */
  restore(state: Uart16550State): void {
    if (typeof state !== 'object' || state === null) throw new TypeError('state must be an object');
    const byte = (name: keyof Uart16550State, mask = 0xff): number => {
      const v = state[name];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff || (v & ~mask) !== 0) {
        throw new RangeError(`state.${name} is out of range`);
      }
      return v;
    };
    const ier = byte('ier', 0x0f);
    const lcr = byte('lcr');
    const mcr = byte('mcr', 0x1f);
    const scr = byte('scr');
    const dll = byte('dll');
    const dlm = byte('dlm');
    const fcr = byte('fcr', 0xc9);
    const lsrErrors = byte('lsrErrors', 0x1e);
    const msrDeltas = byte('msrDeltas', 0x0f);
    const modemInputs = byte('modemInputs', 0xf0);
    if (typeof state.threPending !== 'boolean') throw new TypeError('state.threPending must be a boolean');
    const rxFifo = toByteArray(state.rxFifo, 'state.rxFifo', false);
    const hostInput = toByteArray(state.hostInput, 'state.hostInput', false);
    if (rxFifo.length > ((fcr & 1) !== 0 ? UART_FIFO_SIZE : 1)) throw new RangeError('state.rxFifo is too long');
    if (hostInput.length > this.hostInput.capacity) throw new RangeError('state.hostInput exceeds the input buffer');
    this.ier = ier;
    this.lcr = lcr;
    this.mcr = mcr;
    this.scr = scr;
    this.dll = dll;
    this.dlm = dlm;
    this.fcr = fcr;
    this.lsrErrors = lsrErrors;
    this.msrDeltas = msrDeltas;
    this.modemInputs = modemInputs;
    this.threPending = state.threPending;
    this.rx.clear();
    for (const b of rxFifo) this.rx.push(b);
    this.hostInput.clear();
    for (const b of hostInput) this.hostInput.push(b);
    this.updateIrq();
  }

  // ------------------------------------------------------------------ internals

  private get loopback(): boolean {
    return (this.mcr & UartMcr.LOOP) !== 0;
  }

  private get fifoEnabled(): boolean {
    return (this.fcr & 0x01) !== 0;
  }

  /** RX holding capacity: the 16-byte FIFO, or the single RBR in non-FIFO (16450) mode. */
  private get rxCapacity(): number {
    return this.fifoEnabled ? UART_FIFO_SIZE : 1;
  }

  private readRbr(): number {
    const b = this.rx.shift() ?? 0;
    this.pump();
    this.updateIrq();
    return b;
  }

  private writeThr(v: number): void {
    if (this.loopback) {
      if (this.rx.length < this.rxCapacity) this.rx.push(v);
      else this.lsrErrors |= UartLsr.OE;
    } else {
      this.onTransmit?.(v);
    }
    // Transmission is instant: THR is empty again right away.
    this.threPending = true;
    this.updateIrq();
  }

  private writeIer(v: number): void {
    const old = this.ier;
    this.ier = v & 0x0f;
    if ((this.ier & UartIer.ETBEI) === 0) this.threPending = false;
    else if ((old & UartIer.ETBEI) === 0) this.threPending = true; // newly enabled, THR is empty
    this.updateIrq();
  }

  private writeFcr(v: number): void {
    const enable = (v & 0x01) !== 0;
    if (enable !== this.fifoEnabled) this.rx.clear(); // toggling FIFO mode empties the FIFOs
    if (!enable) {
      this.fcr = 0; // other FCR bits cannot be written while the FIFOs are disabled
    } else {
      if ((v & 0x02) !== 0) this.rx.clear(); // RX FIFO reset; TX FIFO reset (bit 2) is a no-op
      this.fcr = v & 0xc9;
    }
    this.pump();
    this.updateIrq();
  }

  private writeMcr(v: number): void {
    const before = this.modemLines();
    this.mcr = v & 0x1f;
    this.noteModemChange(before);
    this.pump();
    this.updateIrq();
  }

  private readIir(): number {
    const id = this.interruptId();
    if (id === UartIir.THRE) {
      this.threPending = false;
      this.updateIrq();
    }
    return id | (this.fifoEnabled ? UartIir.FIFO_ENABLED : 0);
  }

  private readLsr(): number {
    let v = UartLsr.THRE | UartLsr.TEMT | this.lsrErrors;
    if (this.rx.length > 0) v |= UartLsr.DR;
    this.lsrErrors = 0;
    this.updateIrq();
    return v;
  }

  private readMsr(): number {
    const v = this.modemLines() | this.msrDeltas;
    this.msrDeltas = 0;
    this.updateIrq();
    return v;
  }

  /** MSR bits 4-7: the loopback wiring of MCR outputs, or the host-driven inputs. */
  private modemLines(): number {
    if (!this.loopback) return this.modemInputs;
    let v = 0;
    if (this.mcr & UartMcr.DTR) v |= UartMsr.DSR;
    if (this.mcr & UartMcr.RTS) v |= UartMsr.CTS;
    if (this.mcr & UartMcr.OUT1) v |= UartMsr.RI;
    if (this.mcr & UartMcr.OUT2) v |= UartMsr.DCD;
    return v;
  }

  /** Accumulate MSR delta bits for a change of the modem lines from `before`. */
  private noteModemChange(before: number): void {
    const after = this.modemLines();
    const changed = before ^ after;
    if (changed & UartMsr.CTS) this.msrDeltas |= UartMsr.DCTS;
    if (changed & UartMsr.DSR) this.msrDeltas |= UartMsr.DDSR;
    if (changed & UartMsr.DCD) this.msrDeltas |= UartMsr.DDCD;
    if (before & UartMsr.RI && !(after & UartMsr.RI)) this.msrDeltas |= UartMsr.TERI;
  }

  /** Move host input into the RX FIFO while there is room (not in loopback). */
  private pump(): void {
    if (this.loopback) return;
    while (this.hostInput.length > 0 && this.rx.length < this.rxCapacity) {
      this.rx.push(this.hostInput.shift() as number);
    }
  }

  /** The highest-priority pending, enabled interrupt as an IIR code (bits 0-3). */
  private interruptId(): number {
    if (this.ier & UartIer.ELSI && this.lsrErrors !== 0) return UartIir.RLS;
    if (this.ier & UartIer.ERBFI && this.rx.length > 0) {
      if (this.fifoEnabled && this.rx.length < TRIGGER_LEVELS[this.fcr >> 6]) return UartIir.TIMEOUT;
      return UartIir.RDA;
    }
    if (this.ier & UartIer.ETBEI && this.threPending) return UartIir.THRE;
    if (this.ier & UartIer.EDSSI && this.msrDeltas !== 0) return UartIir.MODEM_STATUS;
    return UartIir.NONE;
  }

  private updateIrq(): void {
    this.irq.set(this.irqAsserted);
  }
}

/**
 * An Intel 8042-style PS/2 keyboard controller, with just enough of an attached MF2
 * keyboard to satisfy firmware and OS probing, and the controller's CPU-reset line.
 *
 * Register it over the 5-byte port range 0x60-0x64:
 *
 * | off | port | read                 | write                               |
 * |-----|------|----------------------|-------------------------------------|
 * | 0   | 0x60 | output buffer (data) | data for a pending command, or to the keyboard |
 * | 1   | 0x61 | system control port B (minimal, see below) | port B bits 0-3 |
 * | 2-3 | —    | all-ones             | ignored                             |
 * | 4   | 0x64 | status register      | controller command                  |
 *
 * Port 0x61 (system control port B) is not part of the 8042, but it sits inside the
 * range: it reads back the last written bits 0-3 and toggles bit 4 (the DRAM refresh
 * indicator) on every read so that delay loops which wait for that toggle terminate.
 * Bit 5 (PIT channel 2 output) reads as 0: this model has no PIT. Where the in-kernel PIT
 * serves port 0x61 (Vm.create `pitSpeaker`, as the PC does) guest accesses to it never reach
 * this device, and bit 5 is channel 2's real output.
 *
 * Controller commands implemented: 0x20-0x3f (read internal RAM; 0x20 is the command
 * byte), 0x60-0x7f (write internal RAM; 0x60 is the command byte), 0xa7/0xa8
 * (disable/enable aux), 0xa9 (aux interface test → 0x00), 0xaa (self-test → 0x55, sets
 * the system flag), 0xab (keyboard interface test → 0x00), 0xad/0xae (disable/enable
 * keyboard), 0xd0 (read output port), 0xd1 (write output port; bit 0 clear resets the
 * CPU, bit 1 is the A20 gate), 0xd2/0xd3 (write keyboard/aux output buffer), 0xd4
 * (write to aux device: there is no mouse, so it answers 0xfe), 0xdd/0xdf (A20
 * off/on), 0xe0 (read test inputs → 0x00), 0xf0-0xff (pulse output port bits low for
 * each clear bit in bits 0-3; 0xfe pulses the reset line). Unknown commands are ignored.
 *
 * Bytes written to port 0x60 without a pending command go to the keyboard, which ACKs
 * (0xfa) every command and answers 0xff (reset: 0xfa 0xaa), 0xf2 (identify: 0xfa 0xab
 * 0x83, or 0xab 0x41 with translation on), 0xee (echo), 0xf0 (scan code set), and
 * answers 0xfe to bytes it does not know.
 *
 * Access widths: a wider access at offset `n` acts as a byte access of register `n`
 * (reads zero-extended, writes use the low byte).
 */

import type { AccessSize, Device, IrqLine } from './device.js';
import { allOnes, isOffset, toByteArray, toU8 } from './io-util.js';

/** Status register bits (port 0x64 read). */
export const I8042Status = {
  /** Output buffer full: a byte is waiting at port 0x60. */
  OBF: 0x01,
  /** Input buffer full (always 0: commands are processed instantly). */
  IBF: 0x02,
  /** System flag: set by a successful self-test or via command byte bit 2. */
  SYS: 0x04,
  /** Last write was to the command port (1) or the data port (0). */
  A2: 0x08,
  /** Keyboard not inhibited (keylock): always 1. */
  INH: 0x10,
  /** The byte in the output buffer came from the aux (mouse) port. */
  AUXB: 0x20,
} as const;

/** Command byte (controller RAM byte 0) bits. */
export const I8042Ctr = {
  /** Keyboard interrupt (IRQ 1) enable. */
  KBDINT: 0x01,
  /** Aux interrupt (IRQ 12) enable. */
  AUXINT: 0x02,
  /** System flag. */
  SYS: 0x04,
  /** Keyboard interface disabled. */
  KBDDIS: 0x10,
  /** Aux interface disabled. */
  AUXDIS: 0x20,
  /** Scan code translation (set 2 → set 1). */
  XLATE: 0x40,
} as const;

/** Controller commands (port 0x64 writes). */
export const I8042Command = {
  /** Read the command byte. */
  READ_CTR: 0x20,
  /** Write the command byte (next data byte). */
  WRITE_CTR: 0x60,
  /** Disable the aux interface. */
  AUX_DISABLE: 0xa7,
  /** Enable the aux interface. */
  AUX_ENABLE: 0xa8,
  /** Aux interface test. */
  AUX_TEST: 0xa9,
  /** Controller self-test. */
  SELF_TEST: 0xaa,
  /** Keyboard interface test. */
  KBD_TEST: 0xab,
  /** Disable the keyboard interface. */
  KBD_DISABLE: 0xad,
  /** Enable the keyboard interface. */
  KBD_ENABLE: 0xae,
  /** Read the output port. */
  READ_OUTPUT_PORT: 0xd0,
  /** Write the output port (next data byte). */
  WRITE_OUTPUT_PORT: 0xd1,
  /** Write the keyboard output buffer (next data byte). */
  WRITE_KBD_OUTPUT: 0xd2,
  /** Write the aux output buffer (next data byte). */
  WRITE_AUX_OUTPUT: 0xd3,
  /** Write to the aux device (next data byte). */
  WRITE_AUX: 0xd4,
  /** Disable the A20 gate. */
  A20_DISABLE: 0xdd,
  /** Enable the A20 gate. */
  A20_ENABLE: 0xdf,
  /** Read test inputs. */
  READ_TEST_INPUTS: 0xe0,
  /** Pulse the CPU reset line. */
  PULSE_RESET: 0xfe,
} as const;

/** Maximum number of bytes the output queue holds; further bytes are dropped. */
export const I8042_QUEUE_LIMIT = 256;

/** Options for {@link I8042}. */
export interface I8042Options {
  /** Called when the guest pulses the CPU reset line (command 0xfe, or output port bit 0 cleared). */
  onReset?: () => void;
  /** Keyboard interrupt line (IRQ 1). */
  irq?: IrqLine;
  /** Aux (mouse) interrupt line (IRQ 12). */
  auxIrq?: IrqLine;
}

/** One queued output-buffer byte. */
export interface I8042OutputByte {
  /** The byte. */
  byte: number;
  /** True if it comes from the aux port. */
  aux: boolean;
}

/** The complete, plain-data state of an {@link I8042}. */
export interface I8042State {
  /** The 32 bytes of controller RAM; byte 0 is the command byte. */
  ram: number[];
  /** The output port (bit 0 reset line, bit 1 A20). */
  outputPort: number;
  /** System flag (status bit 2). */
  sys: boolean;
  /** Last write went to the command port (status bit 3). */
  lastWasCommand: boolean;
  /** Controller command waiting for its data byte, or -1. */
  pendingCommand: number;
  /** Keyboard command waiting for its argument byte, or -1. */
  pendingKeyboardCommand: number;
  /** Current keyboard scan code set (1-3). */
  scanSet: number;
  /** Keyboard scanning enabled. */
  scanning: boolean;
  /** Bytes in the output queue, oldest first. */
  output: I8042OutputByte[];
  /** Last byte read from port 0x60 (returned again when the queue is empty). */
  lastData: number;
  /** System control port B bits 0-4. */
  portB: number;
}

/** The 8042 keyboard controller. See the module comment for the register map and commands. */
export class I8042 implements Device {
  private readonly onReset: (() => void) | undefined;
  private readonly irq: IrqLine | undefined;
  private readonly auxIrq: IrqLine | undefined;
  private ram = new Array<number>(32).fill(0);
  private outputPort = 0x03;
  private sys = false;
  private lastWasCommand = false;
  private pendingCommand = -1;
  private pendingKeyboardCommand = -1;
  private scanSet = 2;
  private scanning = true;
  private output: I8042OutputByte[] = [];
  private lastData = 0;
  private portB = 0;
  private kbdLevel = false;
  private auxLevel = false;

  /** Create a controller in its power-on state. Throws `TypeError` on bad options. */
  constructor(options: I8042Options = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const { onReset, irq, auxIrq } = options;
    if (onReset !== undefined && typeof onReset !== 'function') throw new TypeError('options.onReset must be a function');
    for (const [name, line] of [['irq', irq], ['auxIrq', auxIrq]] as const) {
      if (line !== undefined && (typeof line !== 'object' || line === null || typeof line.set !== 'function')) {
        throw new TypeError(`options.${name} must be an IrqLine`);
      }
    }
    this.onReset = onReset;
    this.irq = irq;
    this.auxIrq = auxIrq;
    this.irq?.set(false);
    this.auxIrq?.set(false);
  }

  // ---------------------------------------------------------------- guest side

  /** Guest register read. */
  read(offset: number, size: AccessSize): number | bigint {
    if (!isOffset(offset)) return allOnes(size);
    switch (offset) {
      case 0:
        return this.readData();
      case 1:
        this.portB ^= 0x10;
        return this.portB;
      case 4:
        return this.status;
      default:
        return allOnes(size);
    }
  }

  /** Guest register write. */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    void size;
    if (!isOffset(offset)) return;
    const v = toU8(value);
    switch (offset) {
      case 0:
        this.lastWasCommand = false;
        this.writeData(v);
        break;
      case 1:
        this.portB = (this.portB & 0x10) | (v & 0x0f);
        break;
      case 4:
        this.lastWasCommand = true;
        this.command(v);
        break;
      default:
        break;
    }
    this.updateIrq(false);
  }

  // ----------------------------------------------------------------- host side

  /**
   * Queue bytes from the keyboard (scan codes, already in the set the guest expects).
   * Dropped while the keyboard interface is disabled or scanning is off, or when the
   * queue is full. Returns the number of bytes queued. Throws `TypeError` on a bad array.
   */
  pushKeyboardBytes(bytes: Uint8Array | readonly number[]): number {
    const data = toByteArray(bytes, 'bytes', false);
    if ((this.ram[0] & I8042Ctr.KBDDIS) !== 0 || !this.scanning) return 0;
    let n = 0;
    for (const b of data) if (this.enqueue(b, false)) n++;
    this.updateIrq(false);
    return n;
  }

  /** The command byte (controller RAM byte 0). */
  get commandByte(): number {
    return this.ram[0];
  }

  /** The A20 gate state (output port bit 1). */
  get a20Enabled(): boolean {
    return (this.outputPort & 0x02) !== 0;
  }

  /** Return to the power-on state (typically after the machine reset it requested). */
  reset(): void {
    this.ram.fill(0);
    this.outputPort = 0x03;
    this.sys = false;
    this.lastWasCommand = false;
    this.pendingCommand = -1;
    this.pendingKeyboardCommand = -1;
    this.scanSet = 2;
    this.scanning = true;
    this.output = [];
    this.lastData = 0;
    this.portB = 0;
    this.updateIrq(false);
  }

  /** A plain-object copy of the complete device state. */
  snapshot(): I8042State {
    return {
      ram: [...this.ram],
      outputPort: this.outputPort,
      sys: this.sys,
      lastWasCommand: this.lastWasCommand,
      pendingCommand: this.pendingCommand,
      pendingKeyboardCommand: this.pendingKeyboardCommand,
      scanSet: this.scanSet,
      scanning: this.scanning,
      output: this.output.map((o) => ({ ...o })),
      lastData: this.lastData,
      portB: this.portB,
    };
  }

  /** Restore a state produced by {@link snapshot}. Throws `TypeError`/`RangeError` if it is malformed. */
  restore(state: I8042State): void {
    if (typeof state !== 'object' || state === null) throw new TypeError('state must be an object');
    const ram = toByteArray(state.ram, 'state.ram', false);
    if (ram.length !== 32) throw new RangeError('state.ram must hold 32 bytes');
    const int = (name: keyof I8042State, min: number, max: number): number => {
      const v = state[name];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
        throw new RangeError(`state.${name} must be an integer ${min}-${max}`);
      }
      return v;
    };
    const bool = (name: keyof I8042State): boolean => {
      const v = state[name];
      if (typeof v !== 'boolean') throw new TypeError(`state.${name} must be a boolean`);
      return v;
    };
    if (!Array.isArray(state.output) || state.output.length > I8042_QUEUE_LIMIT) {
      throw new RangeError('state.output must be an array of at most 256 entries');
    }
    const output = state.output.map((o, i) => {
      if (typeof o !== 'object' || o === null || typeof o.aux !== 'boolean' ||
          !Number.isInteger(o.byte) || o.byte < 0 || o.byte > 0xff) {
        throw new TypeError(`state.output[${i}] is malformed`);
      }
      return { byte: o.byte, aux: o.aux };
    });
    const outputPort = int('outputPort', 0, 0xff);
    const pendingCommand = int('pendingCommand', -1, 0xff);
    const pendingKeyboardCommand = int('pendingKeyboardCommand', -1, 0xff);
    const scanSet = int('scanSet', 1, 3);
    const lastData = int('lastData', 0, 0xff);
    const portB = int('portB', 0, 0x1f);
    const sys = bool('sys');
    const lastWasCommand = bool('lastWasCommand');
    const scanning = bool('scanning');
    this.ram = Array.from(ram);
    this.outputPort = outputPort;
    this.pendingCommand = pendingCommand;
    this.pendingKeyboardCommand = pendingKeyboardCommand;
    this.scanSet = scanSet;
    this.lastData = lastData;
    this.portB = portB;
    this.sys = sys;
    this.lastWasCommand = lastWasCommand;
    this.scanning = scanning;
    this.output = output;
    this.updateIrq(false);
  }

  // ------------------------------------------------------------------ internals

  private get status(): number {
    let s = I8042Status.INH;
    const head = this.output[0];
    if (head !== undefined) {
      s |= I8042Status.OBF;
      if (head.aux) s |= I8042Status.AUXB;
    }
    if (this.sys) s |= I8042Status.SYS;
    if (this.lastWasCommand) s |= I8042Status.A2;
    return s;
  }

  private readData(): number {
    const head = this.output.shift();
    if (head !== undefined) this.lastData = head.byte;
    this.updateIrq(true);
    return this.lastData;
  }

  private enqueue(byte: number, aux: boolean): boolean {
    if (this.output.length >= I8042_QUEUE_LIMIT) return false;
    this.output.push({ byte, aux });
    return true;
  }

  private command(cmd: number): void {
    this.pendingCommand = -1;
    if (cmd >= 0x20 && cmd <= 0x3f) {
      this.enqueue(this.ram[cmd & 0x1f], false);
      return;
    }
    if ((cmd >= 0x60 && cmd <= 0x7f) || (cmd >= 0xd1 && cmd <= 0xd4)) {
      this.pendingCommand = cmd;
      return;
    }
    if (cmd >= 0xf0) {
      // Pulse every output port line whose bit is clear in bits 0-3; bit 0 is CPU reset.
      if ((cmd & 0x01) === 0) this.onReset?.();
      return;
    }
    switch (cmd) {
      case I8042Command.AUX_DISABLE:
        this.ram[0] |= I8042Ctr.AUXDIS;
        break;
      case I8042Command.AUX_ENABLE:
        this.ram[0] &= ~I8042Ctr.AUXDIS;
        break;
      case I8042Command.AUX_TEST:
      case I8042Command.KBD_TEST:
      case I8042Command.READ_TEST_INPUTS:
        this.enqueue(0x00, false);
        break;
      case I8042Command.SELF_TEST:
        this.sys = true;
        this.enqueue(0x55, false);
        break;
      case I8042Command.KBD_DISABLE:
        this.ram[0] |= I8042Ctr.KBDDIS;
        break;
      case I8042Command.KBD_ENABLE:
        this.ram[0] &= ~I8042Ctr.KBDDIS;
        break;
      case I8042Command.READ_OUTPUT_PORT: {
        let v = this.outputPort & 0xcf;
        const head = this.output[0];
        if (head !== undefined) v |= head.aux ? 0x20 : 0x10;
        this.enqueue(v, false);
        break;
      }
      case I8042Command.A20_DISABLE:
        this.outputPort &= ~0x02;
        break;
      case I8042Command.A20_ENABLE:
        this.outputPort |= 0x02;
        break;
      default:
        break; // unknown command: ignored
    }
  }

  private writeData(v: number): void {
    const cmd = this.pendingCommand;
    this.pendingCommand = -1;
    if (cmd >= 0x60 && cmd <= 0x7f) {
      this.ram[cmd & 0x1f] = v;
      if (cmd === I8042Command.WRITE_CTR) this.sys = (v & I8042Ctr.SYS) !== 0;
      return;
    }
    switch (cmd) {
      case I8042Command.WRITE_OUTPUT_PORT:
        this.outputPort = v;
        if ((v & 0x01) === 0) this.onReset?.();
        return;
      case I8042Command.WRITE_KBD_OUTPUT:
        this.enqueue(v, false);
        return;
      case I8042Command.WRITE_AUX_OUTPUT:
        this.enqueue(v, true);
        return;
      case I8042Command.WRITE_AUX:
        this.enqueue(0xfe, true); // no mouse attached
        return;
      default:
        this.keyboard(v);
    }
  }

  /** The attached keyboard receiving a byte. */
  private keyboard(v: number): void {
    const pending = this.pendingKeyboardCommand;
    if (pending !== -1) {
      this.pendingKeyboardCommand = -1;
      this.enqueue(0xfa, false);
      if (pending === 0xf0) {
        if (v === 0) this.enqueue(this.scanSet, false);
        else if (v >= 1 && v <= 3) this.scanSet = v;
      }
      return;
    }
    switch (v) {
      case 0xed: // set LEDs
      case 0xf3: // set typematic rate
      case 0xf0: // get/set scan code set
        this.pendingKeyboardCommand = v;
        this.enqueue(0xfa, false);
        break;
      case 0xee: // echo
        this.enqueue(0xee, false);
        break;
      case 0xf2: // identify
        this.enqueue(0xfa, false);
        this.enqueue(0xab, false);
        this.enqueue((this.ram[0] & I8042Ctr.XLATE) !== 0 ? 0x41 : 0x83, false);
        break;
      case 0xf4: // enable scanning
        this.scanning = true;
        this.enqueue(0xfa, false);
        break;
      case 0xf5: // disable scanning (and set defaults)
        this.scanning = false;
        this.enqueue(0xfa, false);
        break;
      case 0xf6: // set defaults
      case 0xfe: // resend
        this.enqueue(0xfa, false);
        break;
      case 0xff: // reset and self-test
        this.scanSet = 2;
        this.scanning = true;
        this.enqueue(0xfa, false);
        this.enqueue(0xaa, false);
        break;
      default:
        this.enqueue(0xfe, false);
    }
  }

  /**
   * Drive IRQ 1 / IRQ 12 from the output buffer. With `pulse`, a line that stays
   * asserted is dropped and raised again so an edge-triggered PIC sees the next byte.
   */
  private updateIrq(pulse: boolean): void {
    const head = this.output[0];
    const kbd = head !== undefined && !head.aux && (this.ram[0] & I8042Ctr.KBDINT) !== 0;
    const aux = head !== undefined && head.aux && (this.ram[0] & I8042Ctr.AUXINT) !== 0;
    if (pulse) {
      if (this.kbdLevel) this.setKbd(false);
      if (this.auxLevel) this.setAux(false);
    }
    this.setKbd(kbd);
    this.setAux(aux);
  }

  private setKbd(level: boolean): void {
    if (level === this.kbdLevel) return;
    this.kbdLevel = level;
    this.irq?.set(level);
  }

  private setAux(level: boolean): void {
    if (level === this.auxLevel) return;
    this.auxLevel = level;
    this.auxIrq?.set(level);
  }
}

import { describe, expect, it } from 'vitest';
import { RecordingIrqLine } from '../../../src/devices/device.js';
import {
  Uart16550,
  UartIer,
  UartIir,
  UartLsr,
  UartMcr,
  UartMsr,
} from '../../../src/devices/uart16550.js';

const RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

function make(opts: { inputBufferBytes?: number } = {}) {
  const irq = new RecordingIrqLine();
  const out: number[] = [];
  const uart = new Uart16550({ irq, onTransmit: (b) => out.push(b), ...opts });
  const r = (off: number) => uart.read(off, 1) as number;
  const w = (off: number, v: number) => uart.write(off, 1, v);
  return { uart, irq, out, r, w };
}

describe('Uart16550', () => {
  it('has the documented reset state', () => {
    const { r } = make();
    expect(r(IER)).toBe(0);
    expect(r(IIR)).toBe(0x01);
    expect(r(LCR)).toBe(0);
    expect(r(MCR)).toBe(0);
    expect(r(LSR)).toBe(UartLsr.THRE | UartLsr.TEMT);
    expect(r(MSR) & 0xf0).toBe(UartMsr.CTS | UartMsr.DSR | UartMsr.DCD);
    expect(r(SCR)).toBe(0);
    expect(r(RBR)).toBe(0);
  });

  it('transmits THR writes to the host instantly', () => {
    const { r, w, out } = make();
    w(RBR, 0x41);
    w(RBR, 0x1ff as number); // only the low byte
    expect(out).toEqual([0x41, 0xff]);
    expect(r(LSR) & (UartLsr.THRE | UartLsr.TEMT)).toBe(UartLsr.THRE | UartLsr.TEMT);
  });

  it('gives access to the divisor latch through DLAB', () => {
    const { uart, r, w, out } = make();
    w(LCR, 0x83);
    w(0, 0x01);
    w(1, 0x02);
    expect(r(0)).toBe(0x01);
    expect(r(1)).toBe(0x02);
    expect(uart.divisor).toBe(0x0201);
    expect(out).toEqual([]); // no transmission with DLAB set
    w(LCR, 0x03);
    expect(r(IER)).toBe(0); // IER untouched by DLM writes
    expect(r(LCR)).toBe(0x03);
  });

  it('keeps the scratch register and masks IER/MCR to defined bits', () => {
    const { r, w } = make();
    w(SCR, 0xa5);
    expect(r(SCR)).toBe(0xa5);
    w(IER, 0xff);
    expect(r(IER)).toBe(0x0f);
    w(MCR, 0xff & ~UartMcr.LOOP);
    expect(r(MCR)).toBe(0x0f);
  });

  it('ignores writes to LSR and MSR', () => {
    const { r, w } = make();
    w(LSR, 0x00);
    w(MSR, 0x00);
    expect(r(LSR)).toBe(0x60);
    expect(r(MSR) & 0xf0).toBe(0xb0);
  });

  it('receives host bytes, sets DR, and raises RDA only with OUT2', () => {
    const { uart, irq, r, w } = make();
    w(IER, UartIer.ERBFI);
    uart.receive([0x61]);
    expect(r(LSR) & UartLsr.DR).toBe(UartLsr.DR);
    expect(r(IIR)).toBe(UartIir.RDA);
    expect(irq.level).toBe(false); // OUT2 clear: not wired to the PIC
    w(MCR, UartMcr.OUT2);
    expect(irq.level).toBe(true);
    expect(r(RBR)).toBe(0x61);
    expect(irq.level).toBe(false);
    expect(r(LSR) & UartLsr.DR).toBe(0);
    expect(r(IIR)).toBe(UartIir.NONE);
    expect(irq.history).toEqual([true, false]);
  });

  it('THRE interrupt: raised on ETBEI enable, cleared by IIR read, re-raised by THR write', () => {
    const { irq, r, w } = make();
    w(MCR, UartMcr.OUT2);
    w(IER, UartIer.ETBEI);
    expect(irq.level).toBe(true);
    expect(r(IIR)).toBe(UartIir.THRE);
    expect(irq.level).toBe(false);
    expect(r(IIR)).toBe(UartIir.NONE);
    w(IER, UartIer.ETBEI); // not newly enabled: no new interrupt
    expect(irq.level).toBe(false);
    w(RBR, 0x42);
    expect(irq.level).toBe(true);
    w(IER, 0); // disabling drops it
    expect(irq.level).toBe(false);
    w(IER, UartIer.ETBEI);
    expect(irq.level).toBe(true);
    expect(irq.history).toEqual([true, false, true, false, true]);
  });

  it('prioritises RLS > RDA > THRE > modem status', () => {
    const { uart, r, w } = make({ inputBufferBytes: 0 });
    w(MCR, UartMcr.OUT2);
    w(IER, 0x0f);
    uart.setModemLines({ cts: false }); // modem status change
    uart.receive([1, 2]); // second byte overruns the 1-byte RBR (FIFO disabled)
    expect(r(IIR)).toBe(UartIir.RLS);
    expect(r(LSR) & UartLsr.OE).toBe(UartLsr.OE); // reading LSR clears OE
    expect(r(LSR) & UartLsr.OE).toBe(0);
    expect(r(IIR)).toBe(UartIir.RDA);
    expect(r(RBR)).toBe(1);
    // THRE was pending since ETBEI was enabled
    expect(r(IIR)).toBe(UartIir.THRE);
    expect(r(IIR)).toBe(UartIir.MODEM_STATUS);
    expect(r(MSR) & 0x0f).toBe(UartMsr.DCTS);
    expect(r(IIR)).toBe(UartIir.NONE);
  });

  it('reading IIR does not clear a THRE interrupt it did not report', () => {
    const { uart, r, w } = make();
    w(IER, UartIer.ERBFI | UartIer.ETBEI);
    uart.receive([7]);
    expect(r(IIR)).toBe(UartIir.RDA);
    r(RBR);
    expect(r(IIR)).toBe(UartIir.THRE);
  });

  it('FIFO: enable bits in IIR, 16 bytes, trigger levels and timeout code', () => {
    const { uart, r, w } = make({ inputBufferBytes: 0 });
    w(IER, UartIer.ERBFI);
    w(FCR, 0x01 | 0x80); // enable, trigger 8
    expect(r(IIR) & 0xc0).toBe(0xc0);
    uart.receive([1, 2, 3]);
    expect(r(IIR)).toBe(0xc0 | UartIir.TIMEOUT);
    uart.receive([4, 5, 6, 7, 8]);
    expect(r(IIR)).toBe(0xc0 | UartIir.RDA);
    uart.receive(Array.from({ length: 10 }, (_, i) => 9 + i));
    expect(uart.pendingInput).toBe(16);
    expect(r(LSR) & UartLsr.OE).toBe(UartLsr.OE);
    const got: number[] = [];
    while (r(LSR) & UartLsr.DR) got.push(r(RBR));
    expect(got).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    // trigger 1: any data is RDA; trigger 4 and 14
    for (const [bits, level] of [[0x00, 1], [0x40, 4], [0xc0, 14]] as const) {
      w(FCR, 0x01 | bits);
      uart.receive(Array.from({ length: level - 1 }, () => 0x55));
      if (level > 1) expect(r(IIR) & 0x0f).toBe(UartIir.TIMEOUT);
      uart.receive([0x55]);
      expect(r(IIR) & 0x0f).toBe(UartIir.RDA);
      w(FCR, 0x01 | 0x02 | bits); // RX FIFO reset
      expect(r(LSR) & UartLsr.DR).toBe(0);
    }
  });

  it('FIFO: disabling clears the FIFO and IIR bits 6-7; FCR bits ignored while disabled', () => {
    const { uart, r, w } = make({ inputBufferBytes: 0 });
    w(FCR, 0xc1);
    uart.receive([1, 2, 3]);
    w(FCR, 0x00);
    expect(r(LSR) & UartLsr.DR).toBe(0);
    expect(r(IIR) & 0xc0).toBe(0);
    w(FCR, 0xc0); // trigger bits without enable: ignored
    expect(uart.snapshot().fcr).toBe(0);
  });

  it('non-FIFO mode holds a single byte; extra bytes overrun and are dropped', () => {
    const { uart, r } = make({ inputBufferBytes: 0 });
    expect(uart.receive([0x10, 0x11, 0x12])).toBe(1);
    expect(uart.canReceive()).toBe(false);
    expect(r(LSR)).toBe(UartLsr.DR | UartLsr.OE | 0x60);
    expect(r(RBR)).toBe(0x10);
    expect(r(LSR)).toBe(0x60);
    expect(uart.canReceive()).toBe(true);
  });

  it('host input buffer feeds the RX FIFO as the guest drains it', () => {
    const { uart, r, w } = make();
    w(FCR, 0x07);
    const text = Array.from({ length: 1000 }, (_, i) => i & 0xff);
    expect(uart.receive(new Uint8Array(text))).toBe(1000);
    expect(uart.pendingInput).toBe(1000);
    const got: number[] = [];
    while (r(LSR) & UartLsr.DR) got.push(r(RBR));
    expect(got).toEqual(text);
    expect(r(LSR) & UartLsr.OE).toBe(0);
  });

  it('host input buffer is capped; overflow sets OE', () => {
    const { uart, r } = make({ inputBufferBytes: 4 });
    // FIFO disabled: 1 byte in RBR + 4 buffered
    expect(uart.receive([1, 2, 3, 4, 5, 6, 7])).toBe(5);
    expect(uart.canReceive()).toBe(false);
    expect(r(LSR) & UartLsr.OE).toBe(UartLsr.OE);
    const got: number[] = [];
    while (r(LSR) & UartLsr.DR) got.push(r(RBR));
    expect(got).toEqual([1, 2, 3, 4, 5]);
  });

  it('rejects bad host input and bad options', () => {
    const { uart } = make();
    expect(() => uart.receive([256])).toThrow(TypeError);
    expect(() => uart.receive('abc' as unknown as number[])).toThrow(TypeError);
    expect(() => new Uart16550({} as never)).toThrow(/options.irq/);
    expect(() => new Uart16550({ irq: new RecordingIrqLine(), onTransmit: 5 as never })).toThrow(/onTransmit/);
    expect(() => new Uart16550({ irq: new RecordingIrqLine(), inputBufferBytes: -1 })).toThrow(RangeError);
  });

  it('loopback: THR loops to RBR, not to the host; MSR mirrors MCR', () => {
    const { uart, r, w, out } = make();
    w(MCR, UartMcr.LOOP);
    expect(r(MSR)).toBe(UartMsr.DCTS | UartMsr.DDSR | UartMsr.DDCD); // host lines replaced by MCR (all 0)
    w(RBR, 0x5a);
    expect(out).toEqual([]);
    expect(r(LSR) & UartLsr.DR).toBe(UartLsr.DR);
    expect(r(RBR)).toBe(0x5a);
    // Linux's autoconfig check: LOOP | RTS | OUT2 → CTS | DCD
    w(MCR, UartMcr.LOOP | 0x0a);
    expect(r(MSR) & 0xf0).toBe(0x90);
    w(MCR, UartMcr.LOOP | UartMcr.DTR);
    expect(r(MSR)).toBe(UartMsr.DSR | UartMsr.DCTS | UartMsr.DDSR | UartMsr.DDCD);
    w(MCR, UartMcr.LOOP | UartMcr.OUT1);
    expect(r(MSR)).toBe(UartMsr.RI | UartMsr.DDSR);
    w(MCR, UartMcr.LOOP);
    expect(r(MSR)).toBe(UartMsr.TERI); // RI trailing edge
    expect(r(MSR)).toBe(0); // deltas cleared on read
  });

  it('loopback: host input waits until loopback ends; FIFO overflow in loopback sets OE', () => {
    const { uart, r, w, out } = make();
    w(MCR, UartMcr.LOOP);
    uart.receive([0x31, 0x32]);
    expect(r(LSR) & UartLsr.DR).toBe(0);
    w(RBR, 0x01);
    w(RBR, 0x02); // RBR full (no FIFO): overrun
    expect(r(LSR)).toBe(0x60 | UartLsr.DR | UartLsr.OE);
    expect(r(RBR)).toBe(0x01);
    w(MCR, 0);
    expect([r(RBR), r(RBR)]).toEqual([0x31, 0x32]);
    expect(out).toEqual([]);
  });

  it('modem status interrupt from host line changes', () => {
    const { uart, irq, r, w } = make();
    w(MCR, UartMcr.OUT2);
    w(IER, UartIer.EDSSI);
    uart.setModemLines({ ri: true });
    expect(irq.level).toBe(false); // rising RI is not TERI
    uart.setModemLines({ ri: false, dcd: false, dsr: false });
    expect(irq.level).toBe(true);
    expect(r(IIR)).toBe(UartIir.MODEM_STATUS);
    expect(r(MSR)).toBe(UartMsr.CTS | UartMsr.TERI | UartMsr.DDCD | UartMsr.DDSR);
    expect(irq.level).toBe(false);
  });

  it('OUT2 gates the line both ways', () => {
    const { irq, w } = make();
    w(IER, UartIer.ETBEI);
    expect(irq.level).toBe(false);
    w(MCR, UartMcr.OUT2);
    expect(irq.level).toBe(true);
    w(MCR, 0);
    expect(irq.level).toBe(false);
    w(MCR, UartMcr.OUT2);
    expect(irq.level).toBe(true);
  });

  it('never throws on hostile accesses', () => {
    const { uart, r, out } = make();
    for (const size of [1, 2, 4, 8] as const) {
      for (const off of [8, 9, 100, 0xffff, -1, 1.5, Number.NaN]) {
        expect(() => uart.write(off, size, 0xff)).not.toThrow();
      }
      expect(uart.read(8, size)).toBe(size === 8 ? 0xffff_ffff_ffff_ffffn : 2 ** (8 * size) - 1);
      expect(uart.read(-1, size)).toBe(size === 8 ? 0xffff_ffff_ffff_ffffn : 2 ** (8 * size) - 1);
    }
    // wide accesses act on the low byte at that offset
    uart.write(7, 4, 0x12345678);
    expect(uart.read(7, 4)).toBe(0x78);
    uart.write(7, 8, 0xffff_ffff_ffff_ff42n);
    expect(uart.read(7, 8)).toBe(0x42);
    uart.write(0, 2, 0x4142);
    uart.write(0, 1, Number.NaN);
    uart.write(0, 1, -1);
    uart.write(0, 1, 1e300);
    expect(out).toEqual([0x42, 0x00, 0xff, 0x00]);
    expect(r(LSR)).toBe(0x60);
  });

  it('snapshot/restore round-trips and validates', () => {
    const a = make();
    a.w(LCR, 0x80);
    a.w(0, 3);
    a.w(LCR, 0x03);
    a.w(FCR, 0x41);
    a.w(IER, 0x05);
    a.w(MCR, UartMcr.OUT2 | UartMcr.DTR);
    a.w(SCR, 0x99);
    a.uart.receive(Array.from({ length: 40 }, (_, i) => i));
    const snap = a.uart.snapshot();
    expect(snap.rxFifo.length).toBe(16);
    expect(snap.hostInput.length).toBe(24);
    const b = make();
    b.uart.restore(JSON.parse(JSON.stringify(snap)));
    expect(b.uart.snapshot()).toEqual(snap);
    expect(b.irq.level).toBe(true);
    const got: number[] = [];
    while (b.r(LSR) & UartLsr.DR) got.push(b.r(RBR));
    expect(got.length).toBe(40);
    expect(() => b.uart.restore({ ...snap, ier: 0x100 })).toThrow(RangeError);
    expect(() => b.uart.restore({ ...snap, rxFifo: new Array(17).fill(0) })).toThrow(RangeError);
    expect(() => b.uart.restore(null as never)).toThrow(TypeError);
  });

  it('reset() clears registers but keeps the divisor and scratch', () => {
    const { uart, irq, r, w } = make();
    w(LCR, 0x80);
    w(0, 1);
    w(LCR, 0x03);
    w(SCR, 7);
    w(MCR, UartMcr.OUT2);
    w(IER, UartIer.ETBEI);
    expect(irq.level).toBe(true);
    uart.reset();
    expect(irq.level).toBe(false);
    expect(r(IER)).toBe(0);
    expect(r(LCR)).toBe(0);
    expect(r(SCR)).toBe(7);
    expect(uart.divisor).toBe(1);
  });
});

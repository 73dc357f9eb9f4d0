/** VirtioConsole over real SplitQueues. */
import { describe, expect, it } from 'vitest';
import { VIRTIO_DEVICE_TYPE } from '../../../../src/virtio/index.js';
import { VIRTIO_CONSOLE_F, VirtioConsole, featureBits } from '../../../../src/virtio/devices/index.js';
import { activate, driversFor, str, text } from './harness.js';

function sink(): { out: string[]; output: (b: Uint8Array) => void } {
  const out: string[] = [];
  return { out, output: (b) => out.push(str(b)) };
}

describe('VirtioConsole: configuration', () => {
  it('offers EMERG_WRITE, SIZE only with a size, and a 12-byte config with max_nr_ports 1', () => {
    const plain = new VirtioConsole({ output: () => {} });
    expect(plain.deviceType).toBe(VIRTIO_DEVICE_TYPE.CONSOLE);
    expect(plain.features).toBe(featureBits(VIRTIO_CONSOLE_F.EMERG_WRITE));
    expect(plain.queueSizes).toEqual([64, 64]);
    expect(plain.configSize).toBe(12);
    expect(plain.readConfig(0, 4)).toBe(0);
    expect(plain.readConfig(4, 4)).toBe(1);
    const sized = new VirtioConsole({ output: () => {}, cols: 132, rows: 43 });
    expect(sized.features).toBe(featureBits(VIRTIO_CONSOLE_F.EMERG_WRITE, VIRTIO_CONSOLE_F.SIZE));
    expect(sized.readConfig(0, 2)).toBe(132); // cols first (virtio 1.2)
    expect(sized.readConfig(2, 2)).toBe(43);
    expect(sized.readConfig(0, 4)).toBe(132 | (43 << 16));
    expect(sized.readConfig(8, 4)).toBe(0);
    expect(() => sized.readConfig(10, 4)).toThrow(/offset must be/);
    expect(() => sized.readConfig(0, 3 as never)).toThrow(/size must be 1, 2 or 4/);
    expect(() => sized.writeConfig(8, 1, 256)).toThrow(/value must be an integer in \[0, 255\]/);
    sized.writeConfig(0, 2, 5); // read-only: ignored
    expect(sized.cols).toBe(132);
  });

  it('checks its options', () => {
    expect(() => new VirtioConsole({} as never)).toThrow(/options.output must be a function/);
    expect(() => new VirtioConsole({ output: () => {}, cols: 80 })).toThrow(/together/);
    expect(() => new VirtioConsole({ output: () => {}, cols: 0, rows: 25 })).toThrow(/options.cols/);
    expect(() => new VirtioConsole({ output: () => {}, inputLimit: 0 })).toThrow(/options.inputLimit/);
    expect(() => new VirtioConsole({ output: () => {}, queueSize: 6 })).toThrow(/options.queueSize/);
    expect(() => new VirtioConsole({ output: () => {} }).input('x' as never)).toThrow(TypeError);
  });

  it('outputs the low byte of an emerg_wr write, before and after activation', () => {
    const s = sink();
    const con = new VirtioConsole({ output: s.output });
    con.writeConfig(8, 4, 0x4148); // 'H', the upper bytes ignored
    con.writeConfig(8, 1, 0x69);
    con.writeConfig(9, 1, 0x21); // not emerg_wr's low byte
    con.writeConfig(6, 4, 0x0a_0000); // covers byte 8: '\n'
    activate(con, driversFor(con, { size: 4 }));
    con.writeConfig(8, 2, 0x21);
    expect(s.out.join('')).toBe('Hi\n!');
    expect(con.stats.emergWrites).toBe(4);
  });

  it('raises a configuration change on resize when SIZE was negotiated', () => {
    const con = new VirtioConsole({ output: () => {}, cols: 80, rows: 25 });
    const ctx = activate(con, driversFor(con, { size: 4 }));
    con.resize(100, 30);
    expect([con.cols, con.rows, ctx.configChanges]).toEqual([100, 30, 1]);
    const ctx2 = activate(con, driversFor(con, { size: 4 }), featureBits(VIRTIO_CONSOLE_F.EMERG_WRITE));
    con.resize(90, 20);
    expect([con.readConfig(0, 2), ctx2.configChanges]).toEqual([90, 0]);
    expect(() => new VirtioConsole({ output: () => {} }).resize(80, 25)).toThrow(/F_SIZE/);
    expect(() => con.resize(80, 70000)).toThrow(/rows/);
  });
});

describe('VirtioConsole: queues', () => {
  it('sends transmit chains to output and returns them with length 0', () => {
    const s = sink();
    const con = new VirtioConsole({ output: s.output });
    const [rx, tx] = driversFor(con, { size: 8 });
    const ctx = activate(con, [rx, tx]);
    const a = tx.add([text('hello, ')]);
    const b = tx.add([text('wor'), text('ld\n')]);
    con.notify(1);
    expect(s.out).toEqual(['hello, ', 'world\n']);
    expect(tx.used()).toEqual([{ id: a.head, len: 0 }, { id: b.head, len: 0 }]);
    expect(ctx.interrupts).toEqual([1]);
    expect(con.stats.outputBytes).toBe(13);
  });

  it('truncates a transmit chain at maxTxBytes and survives a throwing output', () => {
    let calls = 0;
    const con = new VirtioConsole({ output: () => { calls++; throw new Error('sink down'); }, maxTxBytes: 4 });
    const [rx, tx] = driversFor(con, { size: 8 });
    activate(con, [rx, tx]);
    tx.add([text('abcdefgh')]);
    tx.add([text('ij')]);
    con.notify(1);
    expect(tx.used().length).toBe(2);
    expect(calls).toBe(2);
    expect(con.stats.txTruncated).toBe(4);
    expect(con.stats.outputErrors).toBe(2);
    expect((con.lastOutputError as Error).message).toBe('sink down');
  });

  it('buffers input until the guest posts receive buffers, then spreads it over them', () => {
    const con = new VirtioConsole({ output: () => {} });
    expect(con.input(text('typed early '))).toBe(12); // before activation
    const [rx, tx] = driversFor(con, { size: 8 });
    const ctx = activate(con, [rx, tx]);
    expect(con.buffered).toBe(12);
    const r1 = rx.add([], [8]);
    const r2 = rx.add([], [4, 4]);
    const r3 = rx.add([], [16]);
    con.notify(0);
    expect(rx.used()).toEqual([{ id: r1.head, len: 8 }, { id: r2.head, len: 4 }]);
    expect(str(rx.mem.readBytes(r1.inBufs[0].gpa, 8)) + str(rx.mem.readBytes(r2.inBufs[0].gpa, 4))).toBe('typed early ');
    expect(ctx.interrupts).toEqual([0]);
    expect(con.buffered).toBe(0);
    // r3 waits in the ring until there is input
    con.input(text('ls\n'));
    expect(rx.used()).toEqual([{ id: r3.head, len: 3 }]);
    expect(str(rx.mem.readBytes(r3.inBufs[0].gpa, 3))).toBe('ls\n');
    expect(ctx.interrupts).toEqual([0, 0]);
    // no buffer posted: input waits
    con.input(text('more'));
    expect(rx.used()).toEqual([]);
    const r4 = rx.add([], [2]);
    const r5 = rx.add([], [2]);
    con.notify(0);
    expect(rx.used()).toEqual([{ id: r4.head, len: 2 }, { id: r5.head, len: 2 }]);
    expect(con.stats).toMatchObject({ inputBytes: 19, delivered: 19, inputDropped: 0, rxChains: 5 });
  });

  it('bounds buffered input: the excess is dropped and counted; wrap-around keeps the order', () => {
    const con = new VirtioConsole({ output: () => {}, inputLimit: 16 });
    expect(con.input(new Uint8Array(40).fill(0x61))).toBe(16);
    expect(con.stats.inputDropped).toBe(24);
    expect(con.input(text('b'))).toBe(0);
    const [rx, tx] = driversFor(con, { size: 8 });
    activate(con, [rx, tx]);
    const a = rx.add([], [10]);
    con.notify(0);
    expect(rx.used()).toEqual([{ id: a.head, len: 10 }]);
    expect(con.input(text('0123456789'))).toBe(10); // wraps inside the ring
    const b = rx.add([], [32]);
    con.notify(0);
    expect(rx.used()).toEqual([{ id: b.head, len: 16 }]);
    expect(str(rx.mem.readBytes(b.inBufs[0].gpa, 16))).toBe('aaaaaa0123456789');
    expect(con.stats).toMatchObject({ inputBytes: 26, inputDropped: 25, delivered: 26 });
  });

  it('keeps buffered input across a reset, and returns receive chains without writable buffers empty', () => {
    const con = new VirtioConsole({ output: () => {} });
    let [rx, tx] = driversFor(con, { size: 4 });
    activate(con, [rx, tx]);
    con.input(text('kept'));
    con.reset();
    [rx, tx] = driversFor(con, { size: 4 });
    activate(con, [rx, tx]);
    const bad = rx.add([text('readable')]);
    const good = rx.add([], [8]);
    con.notify(0);
    expect(rx.used()).toEqual([{ id: bad.head, len: 0 }, { id: good.head, len: 4 }]);
    expect(con.stats.empty).toBe(1);
  });

  it('serves an enabled queue when the other one is disabled, and checks the index', () => {
    const s = sink();
    const con = new VirtioConsole({ output: s.output });
    const [, tx] = driversFor(con, { size: 4 });
    activate(con, [undefined, tx]);
    tx.add([text('x')]);
    con.input(text('y'));
    con.notify(0);
    con.notify(1);
    expect(s.out).toEqual(['x']);
    expect(() => con.notify(2)).toThrow(RangeError);
  });
});

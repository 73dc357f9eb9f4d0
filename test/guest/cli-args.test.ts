/** `vmmapi run` argument parsing (no KVM needed). */
import { describe, expect, it } from 'vitest';
import { parseCommand } from '../../src/cli/args.js';
import { UsageError } from '../../src/cli/errors.js';
import { parseAddress, parseSize } from '../../src/cli/units.js';

const run = (...argv: string[]) => {
  const c = parseCommand(['run', ...argv]);
  if (c.kind !== 'run') throw new Error('expected run');
  return c.config;
};

describe('parseCommand', () => {
  it('defaults: 1 vCPU, 128 MiB, no timeout', () => {
    expect(run('--bios', 'b.bin')).toEqual({ boot: { kind: 'bios', file: 'b.bin' }, cpus: 1, memory: 128 * 2 ** 20, clearCpuid: [], traceExits: false, emulate: true, engine: 'kvm', disks: [], rng: false, console: { kind: 'off' }, nets: [], vsock: undefined });
  });

  it('kernel, initrd, append, cpus, memory, timeout, debugcon, trace, engine', () => {
    const c = run('--kernel', 'vmlinuz', '--initrd', 'i.gz', '--append', 'console=ttyS0 quiet', '--cpus', '2', '--memory', '1G', '--timeout', '2.5', '--debugcon', '-', '--trace-exits', '--clear-cpuid', 'cx16,xsave', '--no-emulate', '--engine', 'cpl0');
    expect(c).toEqual({
      boot: { kind: 'kernel', file: 'vmlinuz', initrd: 'i.gz', append: 'console=ttyS0 quiet', decompressOnHost: false },
      cpus: 2, memory: 2 ** 30, timeout: 2.5, debugcon: '-', traceExits: true, clearCpuid: ['cx16', 'xsave'], emulate: false, engine: 'cpl0',
      disks: [], rng: false, console: { kind: 'off' }, nets: [], vsock: undefined,
    });
  });

  it('virtio devices: --disk (repeatable, key=value or bare), --rng, --console', () => {
    const c = run('--kernel', 'k', '--disk', 'path=a.img', '--disk', 'b.img,readonly=on', '--rng', '--console', 'file=hvc.log');
    expect(c.disks).toEqual([{ path: 'a.img', readonly: false }, { path: 'b.img', readonly: true }]);
    expect(c.rng).toBe(true);
    expect(c.console).toEqual({ kind: 'file', path: 'hvc.log' });
    expect(run('--kernel', 'k', '--console', 'socket=/tmp/s').console).toEqual({ kind: 'socket', path: '/tmp/s' });
    expect(run('--kernel', 'k', '--console', 'tty').console).toEqual({ kind: 'tty' });
    expect(run('--kernel', 'k', '--console', 'off').console).toEqual({ kind: 'off' });
    expect(run('--kernel', 'k', '--disk', 'path=a,readonly=off').disks).toEqual([{ path: 'a', readonly: false }]);
    for (const [argv, re] of [
      [['--disk', 'readonly=on'], /--disk needs a file/],
      [['--disk', 'a.img,path=b.img'], /not both/],
      [['--disk', 'path=a,ro=1'], /unknown key 'ro'/],
      [['--disk', 'path=a,readonly=maybe'], /must be on or off/],
      [['--disk', 'path=a,path=b'], /path given twice/],
      [['--disk', 'path='], /path needs a value/],
      [['--console', 'pipe'], /--console must be file=PATH/],
      [['--console', 'file=a,socket=b'], /--console must be/],
    ] as const) {
      expect(() => run('--kernel', 'k', ...argv)).toThrow(re);
    }
  });

  it('virtio-net and vsock: --net tap=|socket=[,mac=] (repeatable), --vsock cid=,socket=', () => {
    const c = run('--kernel', 'k', '--net', 'tap=vmtap0', '--net', 'socket=/run/passt.sock,mac=52:54:00:12:34:56', '--vsock', 'cid=3,socket=/tmp/v.sock');
    expect(c.nets).toEqual([{ kind: 'tap', name: 'vmtap0' }, { kind: 'socket', path: '/run/passt.sock', mac: '52:54:00:12:34:56' }]);
    expect(c.vsock).toEqual({ cid: 3, socket: '/tmp/v.sock' });
    for (const [argv, re] of [
      [['--net', 'vmtap0'], /--net must be tap=NAME or socket=PATH/],
      [['--net', 'tap=a,socket=b'], /exactly one of tap=NAME and socket=PATH/],
      [['--net', 'mac=52:54:00:12:34:56'], /exactly one of/],
      [['--net', 'tap=a,mac=52:54:00:12:34'], /six hex bytes/],
      [['--net', 'tap=a,mac=01:00:00:00:00:01'], /unicast/],
      [['--net', 'tap=an-interface-name-too-long'], /at most 15 characters/],
      [['--vsock', 'cid=2,socket=/tmp/v'], /cid must be an integer from 3/],
      [['--vsock', 'cid=x,socket=/tmp/v'], /cid must be an integer/],
      [['--vsock', 'cid=3'], /--vsock must be cid=N,socket=PATH/],
      [['--vsock', 'socket=/tmp/v'], /--vsock must be/],
    ] as const) {
      expect(() => run('--kernel', 'k', ...argv)).toThrow(re);
    }
  });

  it('--decompress-on-host goes with --kernel only', () => {
    expect(run('--kernel', 'vmlinuz', '--decompress-on-host').boot).toMatchObject({ kind: 'kernel', decompressOnHost: true });
    expect(() => run('--bios', 'b.bin', '--decompress-on-host')).toThrow(/--decompress-on-host needs --kernel/);
  });

  it('multiboot modules keep their whole string as the command line', () => {
    expect(run('--multiboot', 'k.elf', '--module', 'a.bin arg=1', '--module', 'b.bin').boot).toEqual({
      kind: 'multiboot', file: 'k.elf', append: undefined,
      modules: [{ file: 'a.bin', cmdline: 'a.bin arg=1' }, { file: 'b.bin', cmdline: 'b.bin' }],
    });
  });

  it('flat: FILE@ADDR, the mode defaults by address', () => {
    expect(run('--flat', 'g.bin@0x1000').boot).toEqual({ kind: 'flat', file: 'g.bin', at: 0x1000, mode: 'real' });
    expect(run('--flat', 'a@b.bin@0x200000').boot).toEqual({ kind: 'flat', file: 'a@b.bin', at: 0x200000, mode: 'protected' });
    expect(run('--flat', 'g.bin@4096', '--mode', 'long').boot).toMatchObject({ at: 4096, mode: 'long' });
  });

  it('the word after an option that takes a value is its value, even when it starts with -', () => {
    expect(run('--kernel', 'k', '--append', '-v quiet').boot).toMatchObject({ append: '-v quiet' });
    expect(run('--multiboot', 'k', '--module', '-m', '--append', '--x').boot).toMatchObject({ append: '--x', modules: [{ file: '-m', cmdline: '-m' }] });
    expect(run('--flat', 'g.bin@0x1000', '--debugcon', '-').debugcon).toBe('-');
    expect(() => run('--bios', '--kernel')).not.toThrow(); // a BIOS file named '--kernel'
    expect(run('--bios', '--kernel').boot).toEqual({ kind: 'bios', file: '--kernel' });
  });

  it('help', () => {
    expect(parseCommand(['--help'])).toEqual({ kind: 'help' });
    expect(parseCommand(['run', '-h'])).toEqual({ kind: 'help' });
  });

  it.each([
    [[], /missing command/],
    [['start'], /unknown command 'start'/],
    [['run'], /nothing to boot/],
    [['run', '--bios', 'a', '--kernel', 'b'], /cannot be combined/],
    [['run', '--bios', 'a', '--initrd', 'i'], /--initrd needs --kernel/],
    [['run', '--flat', 'a@0', '--append', 'x'], /--append needs --kernel or --multiboot/],
    [['run', '--flat', 'a'], /not FILE@ADDR/],
    [['run', '--flat', 'a@0', '--mode', 'virtual'], /--mode/],
    [['run', '--bios', 'a', '--cpus', '255'], /^--cpus must be an integer from 1 to 254, got '255'$/],
    [['run', '--bios', 'a', '--cpus', '-1'], /^--cpus must be an integer from 1 to 254, got '-1'$/],
    [['run', '--bios', 'a', '--cpus=-1'], /^--cpus must be an integer from 1 to 254, got '-1'$/],
    [['run', '--bios', 'a', '--cpus', '1.5'], /^--cpus must be an integer from 1 to 254/],
    [['run', '--bios', 'a', '--memory', '-5'], /^--memory must be a size such as 128M or 1G, got '-5'$/],
    [['run', '--bios', 'a', '--memory', '0'], /^--memory must be at least 1 MiB, at most 1 TiB and a multiple of 4 KiB .*got '0'$/],
    [['run', '--bios', 'a', '--memory', '2T'], /^--memory must be at least 1 MiB, at most 1 TiB/],
    [['run', '--bios', 'a', '--memory', '1025K'], /multiple of 4 KiB .*got '1025K'$/],
    [['run', '--bios', 'a', '--timeout', '-1'], /^--timeout must be a positive number of seconds, at most 2147483, got '-1'$/],
    [['run', '--bios', 'a', '--timeout', '2147484'], /^--timeout must be a positive number of seconds/],
    [['run', '--bios', 'a', '--cpus'], /Option '--cpus <value>' argument missing/],
    [['run', '--flat', 'a@-1'], /^--flat address must be an address/],
    [['run', '--bios', 'a', '--memory', '12Q'], /--memory/],
    [['run', '--bios', 'a', '--timeout', '0'], /--timeout/],
    [['run', '--bios', 'a', 'extra'], /unexpected argument/],
    [['run', '--nope'], /Unknown option/],
    [['run', '--bios', 'a', '--clear-cpuid', 'cx16,sse9'], /unknown feature 'sse9'/],
  ])('%j is a usage error', (argv, re) => {
    expect(() => parseCommand(argv as string[])).toThrow(UsageError);
    expect(() => parseCommand(argv as string[])).toThrow(re as RegExp);
  });
});

describe('--debug-exit and --append values that start with -', () => {
  it('--debug-exit PORT[,size=N]: decimal or 0x port, size 1, 2 or 4; default: none given', () => {
    expect(run('--bios', 'b').debugExit).toBeUndefined();
    expect(run('--bios', 'b', '--debug-exit', '0xf4,size=4').debugExit).toEqual({ port: 0xf4, size: 4 });
    expect(run('--bios', 'b', '--debug-exit', '244').debugExit).toEqual({ port: 0xf4 });
    expect(run('--bios', 'b', '--debug-exit=0x501, size=1').debugExit).toEqual({ port: 0x501, size: 1 });
  });

  it.each([
    ['0xf4,size=3', /^--debug-exit size must be 1, 2 or 4, got '3'$/],
    ['0xf4,iosize=4', /^--debug-exit: 'iosize=4' is not size=N/],
    ['0xf4,size=4,size=2', /size given twice/],
    ['0x10000', /^--debug-exit port must be at most 0xffff, got '0x10000'$/],
    ['-1', /^--debug-exit port must be an address/],
    ['', /^--debug-exit port must be an address/],
  ])('--debug-exit %j is a usage error', (value, re) => {
    expect(() => run('--bios', 'b', '--debug-exit', value)).toThrow(UsageError);
    expect(() => run('--bios', 'b', '--debug-exit', value)).toThrow(re);
  });

  it('--append takes the next word whatever it starts with (-, --, =)', () => {
    expect(run('--multiboot', 'k', '--append', '-').boot).toMatchObject({ append: '-' });
    expect(run('--multiboot', 'k', '--append', '-v=1 --x').boot).toMatchObject({ append: '-v=1 --x' });
    expect(run('--multiboot', 'k', '--append=-q').boot).toMatchObject({ append: '-q' });
    expect(run('--kernel', 'k', '--append', '--help').boot).toMatchObject({ append: '--help' });
    expect(() => run('--kernel', 'k', '--append')).toThrow(/Option '--append <value>' argument missing/);
  });
});

describe('units', () => {
  it('sizes: binary suffixes, bare numbers are MiB', () => {
    expect(parseSize('64', 'm')).toBe(64 * 2 ** 20);
    expect(parseSize('512K', 'm')).toBe(512 * 1024);
    expect(parseSize('1.5G', 'm')).toBe(1.5 * 2 ** 30);
    expect(parseSize('2MiB', 'm')).toBe(2 * 2 ** 20);
    expect(parseSize('4096b', 'm')).toBe(4096);
    expect(() => parseSize('0.1b', 'm')).toThrow(/whole number/);
  });

  it('addresses: hex or decimal', () => {
    expect(parseAddress('0x1000', 'a')).toBe(0x1000);
    expect(parseAddress('4096', 'a')).toBe(4096);
    expect(() => parseAddress('-1', 'a')).toThrow(UsageError);
  });
});

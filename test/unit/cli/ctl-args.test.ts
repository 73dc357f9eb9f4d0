/** `vmmapi ctl` argument parsing (src/cli/ctl-args.ts) and how its replies are printed (src/cli/ctl.ts). */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCommand } from '../../../src/cli/args.js';
import { formatBytes, formatInfo, formatReply } from '../../../src/cli/ctl.js';
import { UsageError } from '../../../src/cli/errors.js';

const ctl = (...argv: string[]) => {
  const c = parseCommand(['ctl', ...argv]);
  if (c.kind !== 'ctl') throw new Error(`expected ctl, got ${c.kind}`);
  return c.config;
};

describe('vmmapi ctl arguments', () => {
  it('each command; snapshot DIR made absolute; --timeout (default 30), --json, --leave-paused', () => {
    for (const cmd of ['pause', 'resume', 'stop', 'info']) expect(ctl('/run/vm.sock', cmd)).toEqual({ socket: '/run/vm.sock', request: { cmd }, timeout: 30, json: false });
    expect(ctl('s', 'snapshot', 'snap')).toEqual({ socket: 's', request: { cmd: 'snapshot', dir: resolve('snap') }, timeout: 30, json: false });
    expect(ctl('s', 'snapshot', '/abs/d', '--leave-paused').request).toEqual({ cmd: 'snapshot', dir: '/abs/d', leavePaused: true });
    expect(ctl('--timeout', '2.5', 's', 'info', '--json')).toEqual({ socket: 's', request: { cmd: 'info' }, timeout: 2.5, json: true });
    expect(ctl('s', 'info', '--timeout=1').timeout).toBe(1);
    expect(ctl('s', 'snapshot', '--', '-odd-dir').request).toEqual({ cmd: 'snapshot', dir: resolve('-odd-dir') });
  });

  it('--help after ctl is help', () => {
    expect(parseCommand(['ctl', '--help'])).toEqual({ kind: 'help' });
    expect(parseCommand(['ctl', 's', 'info', '-h'])).toEqual({ kind: 'help' });
  });

  it.each([
    [[], /^ctl needs a socket and a command: vmmapi ctl SOCKET pause\|resume\|snapshot DIR\|stop\|info$/],
    [['s'], /^ctl needs a command after the socket/],
    [['', 'info'], /^ctl: the socket path is empty$/],
    [['s', 'reboot'], /^ctl: unknown command 'reboot' \(commands: pause, resume, snapshot, stop, info\)$/],
    [['s', 'snapshot'], /^ctl snapshot needs a directory/],
    [['s', 'snapshot', ''], /^ctl snapshot needs a directory/],
    [['s', 'snapshot', 'a', 'b'], /^ctl: unexpected argument 'b'$/],
    [['s', 'pause', 'now'], /^ctl: unexpected argument 'now' \(pause takes none\)$/],
    [['s', 'pause', '--leave-paused'], /^ctl: --leave-paused goes with snapshot$/],
    [['s', 'info', '--timeout', '-1'], /^--timeout must be a positive number of seconds/],
    [['s', 'info', '--timeout', '0'], /^--timeout must be a positive number of seconds/],
    [['s', 'info', '--timeout'], /^ctl: Option '--timeout <value>' argument missing/],
    [['s', 'info', '--bogus'], /^ctl: Unknown option '--bogus'/],
  ])('ctl %j is a usage error', (argv, re) => {
    expect(() => parseCommand(['ctl', ...(argv as string[])])).toThrow(UsageError);
    expect(() => parseCommand(['ctl', ...(argv as string[])])).toThrow(re as RegExp);
  });
});

describe('vmmapi ctl output', () => {
  it('info as key: value lines, one per device', () => {
    const text = formatInfo({
      ok: true,
      state: 'paused',
      vcpus: 2,
      memory: 512 * 2 ** 20,
      uptimeMs: 12_345,
      version: '0.1.0',
      pid: 42,
      restoredFrom: '/snaps/a',
      apiSocket: '/run/vm.sock',
      devices: [
        { type: 'disk', path: '/img/root.img', readonly: false },
        { type: 'net', socket: '/run/passt.sock', mac: '52:54:00:12:34:56' },
        { type: 'vsock', cid: 3, socket: '/run/v.sock' },
        { type: 'rng' },
        { type: 'console', tty: true },
      ],
    });
    expect(text).toBe(
      [
        'state: paused',
        'vcpus: 2',
        'memory: 512 MiB',
        'uptime: 12.3 s',
        'version: 0.1.0',
        'pid: 42',
        'restored from: /snaps/a',
        'api socket: /run/vm.sock',
        'disk: path=/img/root.img,readonly=off',
        'net: socket=/run/passt.sock,mac=52:54:00:12:34:56',
        'vsock: cid=3,socket=/run/v.sock',
        'rng: on',
        'console: tty',
        '',
      ].join('\n'),
    );
    expect(formatInfo({ ok: true, state: 'running', vcpus: 1, memory: 2 ** 30, uptimeMs: 0, version: 'x', devices: [] })).toMatch(/memory: 1 GiB\n.*devices: none\n$/s);
  });

  it('snapshot as "snapshot written to DIR: X MiB on disk, Y ms"; the others as the state', () => {
    expect(formatReply('snapshot', { ok: true, dir: '/s', diskBytes: 3.5 * 2 ** 20, ms: 41.6, state: 'running' })).toBe('snapshot written to /s: 3.5 MiB on disk, 42 ms\n');
    expect(formatReply('pause', { ok: true, state: 'paused' })).toBe('paused\n');
    expect(formatReply('stop', { ok: true, state: 'stopping' })).toBe('stopping\n');
    expect(formatBytes(110_592)).toBe('108 KiB');
  });
});

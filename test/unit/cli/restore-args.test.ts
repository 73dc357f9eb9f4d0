/**
 * `vmmapi run --api-socket` and `vmmapi run --restore DIR` argument parsing and refusals
 * (src/cli/args.ts, restore-args.ts), the CLI's snapshot meta (src/cli/meta.ts) and how a
 * restore's device options replace the stored ones (src/cli/restore-devices.ts).
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCommand } from '../../../src/cli/args.js';
import { UsageError } from '../../../src/cli/errors.js';
import { readRunMeta, runMeta, RUN_META_KEY } from '../../../src/cli/meta.js';
import { restoreDevices, restoreOverrides } from '../../../src/cli/restore-devices.js';
import type { DeviceSpecs } from '../../../src/cli/device-args.js';
import { SnapshotError } from '../../../src/snapshot/format.js';

const restore = (...argv: string[]) => {
  const c = parseCommand(['run', '--restore', ...argv]);
  if (c.kind !== 'restore') throw new Error(`expected restore, got ${c.kind}`);
  return c.config;
};

describe('run --api-socket', () => {
  it('a fresh run takes --api-socket PATH; an empty one is refused', () => {
    const c = parseCommand(['run', '--multiboot', 'k.elf', '--api-socket', '/run/vm.sock']);
    expect(c.kind === 'run' && c.config.apiSocket).toBe('/run/vm.sock');
    const none = parseCommand(['run', '--multiboot', 'k.elf']);
    expect(none.kind === 'run' && none.config.apiSocket).toBeUndefined();
    expect(() => parseCommand(['run', '--multiboot', 'k.elf', '--api-socket', ' '])).toThrow(/^--api-socket needs a socket path$/);
    expect(() => parseCommand(['run', '--multiboot', 'k.elf', '--api-socket'])).toThrow(/argument missing/);
  });
});

describe('run --restore', () => {
  it('DIR alone: no device options, defaults otherwise', () => {
    expect(restore('snap')).toEqual({ dir: 'snap', traceExits: false, devices: {} });
  });

  it('with the run-control options and the device options (each kind given replaces the stored ones)', () => {
    const c = restore('/s', '--api-socket', '/tmp/a.sock', '--timeout', '5', '--trace-exits', '--no-status', '--debugcon', 'dbg.log',
      '--disk', 'path=clone.img', '--net', 'socket=/tmp/p.sock,mac=52:54:00:00:00:02', '--vsock', 'cid=7,socket=/tmp/v7.sock', '--console', 'file=hvc.log', '--rng');
    expect(c).toEqual({
      dir: '/s',
      apiSocket: '/tmp/a.sock',
      timeout: 5,
      traceExits: true,
      status: false,
      debugcon: 'dbg.log',
      devices: {
        disks: [{ path: 'clone.img', readonly: false }],
        nets: [{ kind: 'socket', path: '/tmp/p.sock', mac: '52:54:00:00:00:02' }],
        vsock: { cid: 7, socket: '/tmp/v7.sock' },
        console: { kind: 'file', path: 'hvc.log' },
        rng: true,
      },
    });
    expect(parseCommand(['run', '--restore=snap', '--status']).kind).toBe('restore');
  });

  it.each([
    ['--kernel', 'vmlinuz'],
    ['--bios', 'bios.bin'],
    ['--multiboot', 'k.elf'],
    ['--flat', 'x.bin@0x1000'],
    ['--initrd', 'i.gz'],
    ['--append', 'console=ttyS0'],
    ['--module', 'm'],
    ['--mode', 'long'],
    ['--decompress-on-host'],
    ['--cpus', '2'],
    ['--memory', '1G'],
    ['--clear-cpuid', 'cx16'],
    ['--debug-exit', '0xf4'],
    ['--no-emulate'],
  ])('%s is refused with --restore (the snapshot fixes it)', (...opt) => {
    const argv = ['run', '--restore', 'snap', ...opt];
    expect(() => parseCommand(argv)).toThrow(UsageError);
    expect(() => parseCommand(argv)).toThrow(new RegExp(`^${opt[0]} cannot be combined with --restore: the snapshot fixes what was booted and the machine`));
  });

  it('several refused options are named together; bad values of allowed options are usage errors', () => {
    expect(() => parseCommand(['run', '--restore', 's', '--cpus', '2', '--memory', '1G'])).toThrow(/^--cpus, --memory cannot be combined with --restore/);
    expect(() => parseCommand(['run', '--restore', ''])).toThrow(/^--restore needs a snapshot directory$/);
    expect(() => parseCommand(['run', '--restore'])).toThrow(/argument missing/);
    expect(() => parseCommand(['run', '--restore', 's', '--timeout', '0'])).toThrow(/^--timeout must be a positive number/);
    expect(() => parseCommand(['run', '--restore', 's', '--net', 'socket=/p,mac=01:00:00:00:00:00'])).toThrow(/unicast/);
    expect(() => parseCommand(['run', '--restore', 's', '--vsock', 'cid=2,socket=/v'])).toThrow(/--vsock cid must be/);
    expect(() => parseCommand(['run', '--restore', 's', 'extra'])).toThrow(/unexpected argument 'extra'/);
  });
});

const SPECS: DeviceSpecs = {
  disks: [{ path: '/img/a.img', readonly: false }, { path: '/img/b.img', readonly: true }],
  rng: true,
  console: { kind: 'socket', path: '/run/hvc.sock' },
  nets: [{ kind: 'socket', path: '/run/passt.sock' }, { kind: 'tap', name: 'tap0', mac: '52:54:00:12:34:56' }],
  vsock: { cid: 3, socket: '/run/v.sock' },
};

describe('the CLI\'s snapshot meta', () => {
  it('round trip: devices, COM1 on stdio, debugcon, what was booted', () => {
    const meta = runMeta(SPECS, '-', { kind: 'multiboot', file: '/k.elf' });
    expect(Object.keys(meta)).toEqual([RUN_META_KEY]);
    const back = readRunMeta(JSON.parse(JSON.stringify(meta)), 'snap/snapshot.json');
    expect(back).toEqual({ version: 1, devices: SPECS, serial: 'stdio', debugcon: '-', boot: { kind: 'multiboot', file: '/k.elf' } });
    const plain = readRunMeta(JSON.parse(JSON.stringify(runMeta({ disks: [], rng: false, console: { kind: 'off' }, nets: [] }, undefined, undefined))), 'f');
    expect(plain).toEqual({ version: 1, devices: { disks: [], rng: false, console: { kind: 'off' }, nets: [] }, serial: 'stdio', debugcon: null });
  });

  it('paths are stored absolute (a restore may run elsewhere); TAP names are not paths', () => {
    const rel: DeviceSpecs = {
      disks: [{ path: 'a.img', readonly: true }],
      rng: false,
      console: { kind: 'file', path: 'logs/hvc.log' },
      nets: [{ kind: 'socket', path: 'p.sock', mac: '52:54:00:00:00:01' }, { kind: 'tap', name: 'tap0' }],
      vsock: { cid: 3, socket: 'v.sock' },
    };
    const m = readRunMeta(JSON.parse(JSON.stringify(runMeta(rel, 'dbg.log', { kind: 'kernel', file: 'vmlinuz' }))), 'f')!;
    expect(m.devices).toEqual({
      disks: [{ path: resolve('a.img'), readonly: true }],
      rng: false,
      console: { kind: 'file', path: resolve('logs/hvc.log') },
      nets: [{ kind: 'socket', path: resolve('p.sock'), mac: '52:54:00:00:00:01' }, { kind: 'tap', name: 'tap0' }],
      vsock: { cid: 3, socket: resolve('v.sock') },
    });
    expect(m.debugcon).toBe(resolve('dbg.log'));
    expect(m.boot).toEqual({ kind: 'kernel', file: resolve('vmlinuz') });
  });

  it('no CLI entry (a snapshot the library took): undefined', () => {
    expect(readRunMeta({}, 'f')).toBeUndefined();
    expect(readRunMeta({ test: 1 }, 'f')).toBeUndefined();
  });

  it('a stored entry that does not check: SnapshotError naming the file and the part', () => {
    const good = runMeta(SPECS, undefined, undefined)[RUN_META_KEY] as Record<string, unknown>;
    const edit = (f: (m: Record<string, any>) => void) => {
      const m = structuredClone(good) as Record<string, any>;
      f(m);
      return () => readRunMeta({ [RUN_META_KEY]: m }, 's/snapshot.json');
    };
    expect(() => readRunMeta({ [RUN_META_KEY]: 'x' }, 's/snapshot.json')).toThrow(new SnapshotError('s/snapshot.json: meta.vmmapiRun is not an object'));
    expect(edit((m) => (m.version = 9))).toThrow(/meta.vmmapiRun.version is 9; this vmmapi reads version 1$/);
    expect(edit((m) => (m.devices.disks[1].path = ''))).toThrow(new SnapshotError('s/snapshot.json: meta.vmmapiRun.devices.disks[1] is not { path, readonly }'));
    expect(edit((m) => (m.devices.disks = {}))).toThrow(/meta.vmmapiRun.devices.disks is not a list$/);
    expect(edit((m) => (m.devices.nets[0].mac = 'zz'))).toThrow(/devices.nets\[0\] has a mac that is not/);
    expect(edit((m) => (m.devices.nets[1] = { kind: 'tap', name: 'x'.repeat(16) }))).toThrow(/devices.nets\[1\] is not/);
    expect(edit((m) => (m.devices.console = { kind: 'file' }))).toThrow(/devices.console is not off, tty, or file\/socket with a path$/);
    expect(edit((m) => (m.devices.vsock.cid = 2))).toThrow(/devices.vsock is not \{ cid, socket \}$/);
    expect(edit((m) => (m.devices.rng = 'yes'))).toThrow(/devices.rng is not a boolean$/);
    expect(edit((m) => (m.debugcon = 5))).toThrow(/debugcon is not a path/);
  });
});

describe('a restore\'s devices', () => {
  it('no options: the stored devices; each kind given replaces the stored ones of its kind', () => {
    expect(restoreDevices(SPECS, {})).toEqual(SPECS);
    const clone = restoreDevices(SPECS, {
      disks: [{ path: '/clone/a.img', readonly: false }, { path: '/img/b.img', readonly: true }],
      nets: [{ kind: 'socket', path: '/run/p2.sock', mac: '52:54:00:00:00:02' }, { kind: 'tap', name: 'tap1' }],
      vsock: { cid: 9, socket: '/run/v9.sock' },
      console: { kind: 'file', path: 'hvc.log' },
    });
    expect(clone).toEqual({
      disks: [{ path: '/clone/a.img', readonly: false }, { path: '/img/b.img', readonly: true }],
      rng: true,
      console: { kind: 'file', path: 'hvc.log' },
      nets: [{ kind: 'socket', path: '/run/p2.sock', mac: '52:54:00:00:00:02' }, { kind: 'tap', name: 'tap1' }],
      vsock: { cid: 9, socket: '/run/v9.sock' },
    });
  });

  it('the device set cannot change: counts, vsock, rng and the console must match', () => {
    const none: DeviceSpecs = { disks: [], rng: false, console: { kind: 'off' }, nets: [] };
    expect(() => restoreDevices(SPECS, { disks: [{ path: 'x', readonly: false }] })).toThrow(/^--restore: the snapshot's machine has 2 disks, 1 --disk given \(a restore keeps/);
    expect(() => restoreDevices(none, { disks: [{ path: 'x', readonly: false }] })).toThrow(/has no disks, 1 --disk given/);
    expect(() => restoreDevices(SPECS, { nets: [] })).toThrow(/has 2 network devices, no --nets given/);
    expect(() => restoreDevices(none, { vsock: { cid: 3, socket: 's' } })).toThrow(/^--vsock: the snapshot's machine has no vsock device$/);
    expect(() => restoreDevices(none, { rng: true })).toThrow(/^--rng: the snapshot's machine has no virtio-rng device$/);
    expect(() => restoreDevices(none, { console: { kind: 'tty' } })).toThrow(/^--console: the snapshot's machine has no virtio console$/);
    expect(() => restoreDevices(SPECS, { console: { kind: 'off' } })).toThrow(/^--console off: the snapshot's machine has a virtio console/);
    expect(restoreDevices(SPECS, { rng: true, console: { kind: 'tty' } }).console).toEqual({ kind: 'tty' });
  });

  it('without the CLI\'s meta: the options given are the devices (restorePc checks them against the snapshot)', () => {
    expect(restoreDevices(undefined, {})).toEqual({ disks: [], rng: false, console: { kind: 'off' }, nets: [] });
    expect(restoreDevices(undefined, { rng: true })).toEqual({ disks: [], rng: true, console: { kind: 'off' }, nets: [] });
  });

  it('overrides: a --net with mac= gives { mac }, a --vsock gives { guestCid }, by device index', () => {
    const given = { nets: [{ kind: 'socket' as const, path: 'p', mac: '52:54:00:00:00:02' }, { kind: 'tap' as const, name: 't' }], vsock: { cid: 9, socket: 'v' } };
    expect(restoreOverrides(given, [2, 3], 4)).toEqual({ 2: { mac: '52:54:00:00:00:02' }, 4: { guestCid: 9 } });
    expect(restoreOverrides({}, [2, 3], 4)).toEqual({});
  });
});

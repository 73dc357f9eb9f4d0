/**
 * The CLI's first minutes: --version, --help listing every command, the message when
 * /dev/kvm cannot be opened (run as `nobody` through setpriv, the same code path a user
 * without the kvm group takes), and the status line (on a terminal by default, with
 * --status elsewhere; never on stdout). Needs the build (dist/) and the guest fixtures.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS, parseCommand, USAGE } from '../../src/cli/args.js';
import { compactCount, formatElapsed, StatusLine, summarizeStates } from '../../src/cli/status.js';
import { KvmError } from '../../src/errors.js';
import { fixturePath } from '../../src/fixtures.js';
import { packageRoot } from '../../src/kvm/native.js';
import { runProcess, type ProcessOutcome } from '../helpers.js';
import { openFailureMessage, openKvmSystem } from '../../src/kvm/open.js';
import { createPc } from '../../src/platform/pc.js';

const ROOT = packageRoot();
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-onboard-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Run = ProcessOutcome;

function run(cmd: string, args: string[], limitMs = 60_000): Promise<Run> {
  return runProcess(cmd, args, { cwd: ROOT, limitMs });
}

const has = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const isRoot = process.getuid?.() === 0;

describe('vmmapi --version and --help', () => {
  it('--version, -V and version print the package version', async () => {
    for (const args of [['--version'], ['-V'], ['version']]) {
      const r = await run(process.execPath, [CLI, ...args]);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`vmmapi ${VERSION}\n`);
    }
    expect(parseCommand(['--version'])).toEqual({ kind: 'version' });
  });

  it('--help lists every command the parser dispatches', async () => {
    const r = await run(process.execPath, [CLI, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(USAGE);
    expect(COMMANDS.map((c) => c.name)).toEqual(['run', 'ctl', 'help', 'version']);
    for (const c of COMMANDS) {
      expect(r.stdout).toMatch(new RegExp(`^  ${c.name} +\\S`, 'm'));
      if (c.name !== 'run' && c.name !== 'ctl') expect(parseCommand([c.name]).kind).toBe(c.name);
    }
    expect(parseCommand(['run', '--flat', 'x.bin@0x1000']).kind).toBe('run');
    expect(parseCommand(['ctl', '/tmp/vm.sock', 'info']).kind).toBe('ctl');
    expect(() => parseCommand(['start'])).toThrow(/unknown command 'start' \(commands: run, ctl, help, version\)/);
  });
});

describe('opening /dev/kvm without permission', () => {
  it.skipIf(!isRoot || !has('setpriv'))('as nobody, vmmapi run says which device, who may open it and the fix', async () => {
    const r = await run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, 'run', '--multiboot', fixturePath('mb-fwcfg.elf')]);
    expect(r.code, `signal ${r.signal}; stderr: ${r.stderr}`).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^vmmapi: cannot open \/dev\/kvm: permission denied \(EACCES\); \/dev\/kvm is owned by \S+ with mode 0\d+: /);
    expect(lines[0]).toMatch(/ group|run as root/);
    expect(lines[0]).not.toMatch(/^vmmapi: open failed/);
  });

  it.skipIf(!isRoot || !has('setpriv'))('failing right after prestarting 4 vCPU workers never aborts Node (10 runs side by side)', async () => {
    // exiting while a prestarted worker thread still loads its modules used to abort Node
    // (SIGABRT, a V8 fatal error) now and then; the CLI now waits for its threads to load
    const argv = ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, 'run', '--cpus', '4', '--multiboot', fixturePath('mb-fwcfg.elf')];
    const runs = await Promise.all(Array.from({ length: 10 }, () => run('setpriv', argv)));
    for (const r of runs) expect({ code: r.code, signal: r.signal, fatal: /FATAL ERROR/.test(r.stderr) }).toEqual({ code: 1, signal: null, fatal: false });
  });

  it.skipIf(!isRoot || !has('setpriv'))('as nobody, Vm.create throws a KvmError EACCES with that message', async () => {
    const script = `import('${join(ROOT, 'dist', 'src', 'index.js')}').then(({ Vm, KvmError }) => {
      try { Vm.create('x'); } catch (e) { console.log(JSON.stringify({ kvm: e instanceof KvmError, code: e.code, syscall: e.syscall, message: e.message })); }
    })`;
    const r = await run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, '-e', script]);
    const o = JSON.parse(r.stdout) as { kvm: boolean; code: string; syscall: string; message: string };
    expect(o).toMatchObject({ kvm: true, code: 'EACCES', syscall: 'open' });
    expect(o.message).toMatch(/^cannot open \/dev\/kvm: permission denied/);
  });

  it('the message names a group-owned device\'s group; a missing device says KVM is unavailable', () => {
    const node = join(tmp, 'kvm-like');
    closeSync(openSync(node, 'w'));
    chmodSync(node, 0o660);
    if (isRoot) {
      chownSync(node, 0, 65534);
      expect(openFailureMessage(node, 'EACCES')).toMatch(new RegExp(`is owned by root:\\S+ with mode 0660: add your user to the \\S+ group \\(sudo usermod -aG \\S+ "\\$USER", then log in again\\), or run as root$`));
    }
    expect(openFailureMessage(join(tmp, 'none'), 'ENOENT')).toMatch(/no such device \(ENOENT\): KVM is not available/);
    expect(openFailureMessage(node, 'EINVAL')).toBeUndefined();
    // the same code path on a path that does not exist: a KvmError with the new message
    let err: unknown;
    try {
      openKvmSystem(join(tmp, 'none'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KvmError);
    expect(err).toMatchObject({ code: 'ENOENT', syscall: 'open' });
    expect((err as Error).message).toMatch(/^cannot open \S+none: no such device/);
  });
});

describe('the status line', () => {
  it('formats counts, times and vCPU states', () => {
    expect(compactCount(999)).toBe('999');
    expect(compactCount(48_213)).toBe('48k');
    expect(compactCount(1234)).toBe('1.2k');
    expect(compactCount(3_400_000)).toBe('3.4M');
    expect(formatElapsed(7500)).toBe('7.5 s');
    expect(formatElapsed(125_000)).toBe('2 min 05 s');
    expect(summarizeStates(['running', 'running', 'finished'])).toBe('2 running, 1 finished');
    expect(() => new StatusLine({} as never, { write: 1 } as never)).toThrow(TypeError);
  });

  it('on a real runner: appears after the quiet period, counts exits and the fallback, erases itself on a terminal before guest output', async () => {
    const pc = createPc({ memory: 16 << 20, cpus: 1, serial: { onOutput: () => {} } });
    try {
      pc.loadFlat(readFileSync(fixturePath('spin.bin')), 0x1000);
      let clock = 0;
      const written: string[] = [];
      const status = new StatusLine(pc.runner, { write: (t: string) => written.push(t), isTTY: true }, { quietMs: 1000, intervalMs: 1000, now: () => clock });
      status.start();
      const running = pc.run({ timeoutMs: 60_000 });
      while (pc.runner.states[0] !== 'running') await new Promise((r) => setTimeout(r, 10));
      clock = 500;
      status.tick();
      expect(written).toEqual([]); // not quiet long enough
      clock = 1500;
      status.tick();
      expect(written).toHaveLength(1);
      expect(written[0]).toMatch(/^\r\x1b\[Kvmmapi: 1\.5 s \| no guest output for 1\.5 s \| \S+ exits\/s \| fallback finished 0 instructions \| vCPUs: 1 running$/);
      status.noteOutput(0x41); // the guest prints 'A' (no newline): the line is erased
      expect(written[1]).toBe('\r\x1b[K');
      clock = 3000;
      status.tick(); // drawn one line below the guest's unfinished line
      expect(written[2]).toMatch(/^\n\r\x1b\[Kvmmapi: 3\.0 s \| no guest output for 1\.5 s/);
      pc.stop();
      await running;
      status.stop();
      expect(written.at(-1)).toBe('\r\x1b[K');
      expect(status.lines).toBe(2);
    } finally {
      pc.destroy();
    }
  });

  it('off a terminal only with --status, always on stderr; on a terminal by default', async () => {
    const args = [CLI, 'run', '--flat', `${fixturePath('spin.bin')}@0x1000`, '--timeout', '3'];
    const quiet = await run(process.execPath, args);
    expect(quiet.code).toBe(124);
    expect(quiet.stderr).not.toMatch(/exits\/s/);
    const on = await run(process.execPath, [...args, '--status']);
    expect(on.code).toBe(124);
    expect(on.stdout).toBe('');
    expect(on.stderr).toMatch(/^vmmapi: [\d.]+ s \| no guest output for [\d.]+ s \| \S+ exits\/s \| fallback finished \d+ instructions \| vCPUs: 1 running$/m);
    if (has('script')) {
      // stderr on a pseudo-terminal (script(1)); stdout too, so the guest's output and the line share it
      const tty = await run('script', ['-qec', `'${process.execPath}' ${args.map((a) => `'${a}'`).join(' ')}`, '/dev/null']);
      expect(tty.stdout).toMatch(/\r\x1b\[Kvmmapi: [\d.]+ s \| no guest output/);
      const off = await run('script', ['-qec', `'${process.execPath}' ${args.map((a) => `'${a}'`).join(' ')} --no-status`, '/dev/null']);
      expect(off.stdout).not.toMatch(/exits\/s/);
    }
  });
});

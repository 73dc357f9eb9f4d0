/**
 * The package as a user gets it: `npm pack` this checkout (its built dist/ and guest
 * fixtures; `npm pack` proper builds them in prepack, .ci/run does that), check what the
 * tarball carries, `npm init -y && npm install <tarball>` into an empty directory (offline:
 * the dependencies come from npm's cache), then import it, run a guest and `npx vmmapi`.
 * The install compiles the native addon, so this takes a while.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/kvm/native.js';

const ROOT = packageRoot();
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-pkg-'));
const project = join(tmp, 'project');
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** npm's lifecycle variables of the `npm test` that started us would leak into the child npm. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== 'INIT_CWD') env[k] = v;
  return env;
}

function run(cmd: string, args: string[], cwd: string, limitMs = 300_000): Promise<Run> {
  const child = spawn(cmd, args, { cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}

let tarball = '';
let files: string[] = [];
let install: Run;

beforeAll(async () => {
  const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], ROOT);
  expect(pack.code, pack.stderr).toBe(0);
  const info = (JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[])[0];
  tarball = join(tmp, info.filename);
  files = info.files.map((f) => f.path);
  await run('mkdir', ['-p', project], tmp);
  const init = await run('npm', ['init', '-y'], project);
  expect(init.code, init.stderr).toBe(0);
  // offline: every dependency from npm's cache (warmed by the checkout's own npm install)
  install = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], project);
  if (install.code !== 0 && /ENOTCACHED/.test(install.stderr)) {
    // the cache has the tarballs but not yet the registry's metadata: fetch that once
    install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], project);
  }
}, 600_000);

describe('the packed package', () => {
  it('carries the runtime and no tests, CI, benchmarks or TypeScript sources', () => {
    expect(tarball).toMatch(new RegExp(`vmmapi-${VERSION.replace(/\./g, '\\.')}\\.tgz$`));
    for (const f of ['package.json', 'README.md', 'LICENSE', 'CMakeLists.txt', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/main.js',
      'dist/workers/vcpu-worker.js', 'native/addon.cc', 'scripts/install.mjs', 'scripts/build-native.mjs', 'guests/out/hello.bin', 'guests/out/mb-fwcfg.elf'])
      expect(files).toContain(f);
    const forbidden = files.filter((f) => /^(test|\.ci|bench|src|examples|build|node_modules)\//.test(f) || /^dist\/(test|bench|examples)\//.test(f) || /(^|\/)[^/]+\.test\.|\.ts$(?<!\.d\.ts)|\.map$/.test(f));
    expect(forbidden).toEqual([]);
  });

  it('installs into an empty project without TypeScript (only the native addon is compiled)', () => {
    expect(install.code, `${install.stdout}\n${install.stderr}`).toBe(0);
    const pj = JSON.parse(readFileSync(join(project, 'node_modules', 'vmmapi', 'package.json'), 'utf8')) as { version: string };
    expect(pj.version).toBe(VERSION);
    expect(() => readFileSync(join(project, 'node_modules', 'typescript', 'package.json'))).toThrow();
    expect(readFileSync(join(project, 'node_modules', 'vmmapi', 'build', 'Release', 'vmmapi_native.node')).length).toBeGreaterThan(0);
  });

  it("a script can import { Vm } from 'vmmapi' and run a guest", async () => {
    writeFileSync(
      join(project, 'hello.mjs'),
      `import { readFileSync } from 'node:fs';
import { Vm, Reg, fixturePath } from 'vmmapi';
const vm = Vm.create('pkg-test', { irqchip: false });
vm.setupMemory(0, 0x10000);
vm.memory.writeBytes(0x1000, readFileSync(fixturePath('hello.bin')));
vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
vm.setRegister(0, Reg.CS, 0);
vm.setRegister(0, Reg.RIP, 0x1000n);
let text = '';
for (;;) {
  const exit = vm.run(0);
  if (exit.kind === 'inout' && !exit.in) text += String.fromCharCode(exit.value & 0xff);
  else break;
}
vm.destroy();
process.stdout.write(text);
`,
    );
    const r = await run(process.execPath, ['hello.mjs'], project);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('Hello from the guest\n');
  });

  it('npx vmmapi --version prints the version; the CLI runs a guest on the worker runner', async () => {
    const v = await run('npx', ['--offline', 'vmmapi', '--version'], project);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toBe(`vmmapi ${VERSION}\n`);
    const r = await run('npx', ['--offline', 'vmmapi', 'run', '--multiboot', 'node_modules/vmmapi/guests/out/mb-fwcfg.elf'], project);
    expect(r.stdout).toContain('mb-fwcfg cpus=0x00000001');
    expect(r.code).toBe(3);
  });
});

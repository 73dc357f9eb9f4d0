/**
 * The README cannot drift: every TypeScript block is an examples/ file (byte for byte), and
 * each is run (the built dist/examples/*.js) and must print what its marker says; every line
 * of the `vmmapi` command block is run through a shell as written (with `vmmapi` on PATH) and
 * checked against what its comment promises; every inline `vmmapi run …` parses; the
 * `npm install && npm start` / `npm test` block is what .ci/run runs.
 * Needs the build (dist/) and the guest fixtures.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCommand } from '../../src/cli/args.js';
import { packageRoot } from '../../src/kvm/native.js';
import { runProcess, type ProcessOutcome } from '../helpers.js';

const ROOT = packageRoot();
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; scripts: Record<string, string> };
const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-readme-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Block {
  /** The HTML comment right above the fence, if any. */
  marker: string | undefined;
  lang: string;
  body: string;
  line: number;
}

/** Every fenced block of the README, with the `<!-- ... -->` line above it. */
function blocks(text: string): Block[] {
  const lines = text.split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const start = i;
    let j = i + 1;
    while (j < lines.length && !/^```\s*$/.test(lines[j])) j++;
    const prev = lines[start - 1] ?? '';
    out.push({ marker: /^<!--.*-->$/.test(prev) ? prev : undefined, lang: open[1], body: lines.slice(start + 1, j).join('\n'), line: start + 1 });
    i = j;
  }
  return out;
}

type Run = ProcessOutcome;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, limitMs = 90_000): Promise<Run> {
  return runProcess(cmd, args, { cwd: ROOT, env, limitMs });
}

const all = blocks(README);
const examples = all.filter((b) => b.marker?.startsWith('<!-- example: '));

describe('README code blocks', () => {
  it('every TypeScript/JavaScript block is an example file the test runs', () => {
    const code = all.filter((b) => ['ts', 'js', 'typescript', 'javascript'].includes(b.lang));
    expect(code.length).toBeGreaterThanOrEqual(3);
    for (const b of code) expect(b.marker, `README line ${b.line}: a code block without <!-- example: ... --> above it`).toMatch(/^<!-- example: examples\/[\w-]+\.ts /);
  });

  for (const b of examples) {
    const m = /^<!-- example: (examples\/[\w-]+)\.ts prints (.*) -->$/.exec(b.marker!);
    const name = m?.[1] ?? b.marker!;
    it(`${name}.ts is the README's block (line ${b.line}) and prints what the README says`, async () => {
      expect(m, `marker syntax: ${b.marker}`).not.toBeNull();
      const source = readFileSync(join(ROOT, `${name}.ts`), 'utf8');
      expect(b.body).toBe(source.replace(/\n$/, ''));
      const prints = [...m![2].matchAll(/"([^"]*)"/g)].map((x) => x[1]);
      expect(prints.length).toBeGreaterThan(0);
      const r = await run(process.execPath, [join(ROOT, 'dist', `${name}.js`)]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      for (const p of prints) expect(r.stdout).toContain(p);
    });
  }

  it('npm start (the first command) prints the greeting; .ci/run runs the first block', async () => {
    const first = all.find((b) => b.marker === '<!-- commands: run by .ci/run -->');
    expect(first).toBeDefined();
    const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');
    for (const line of first!.body.split('\n')) {
      const cmd = line.replace(/#.*/, '').trim();
      if (cmd) expect(ci.split('\n').map((l) => l.trim())).toContain(cmd);
    }
    const start = /^node (\S+)$/.exec(PACKAGE.scripts.start);
    expect(start).not.toBeNull();
    const r = await run(process.execPath, [join(ROOT, start![1])]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('Hello from the guest\n');
  });

  it('every example under examples/ is in the README or run here', async () => {
    const inReadme = new Set(examples.map((b) => /examples\/([\w-]+)\.ts/.exec(b.marker!)![1]));
    const rest = readdirSync(join(ROOT, 'examples')).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).filter((n) => !inReadme.has(n));
    // hello is npm start (above); smp is named in the layout section
    expect(rest.sort()).toEqual(['hello', 'smp']);
    const r = await run(process.execPath, [join(ROOT, 'dist', 'examples', 'smp.js'), '2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('the guest counted 2 of 2 CPUs');
  });
});

/** What each line of the README's command block must do (the key is the command as written). */
const EXPECT: Record<string, (r: Run) => void> = {
  'vmmapi --version': (r) => {
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`vmmapi ${PACKAGE.version}\n`);
  },
  'vmmapi run --flat guests/out/hello.bin@0x1000 --timeout 5': (r) => {
    expect(r.code).toBe(4); // hello.bin then halts with interrupts off: exit status 4, with a note
    expect(r.stderr).toMatch(/halted with interrupts disabled/);
    expect(r.stdout).toBe('Hello from the guest\n');
  },
  'vmmapi run --multiboot guests/out/mb-fwcfg.elf --cpus 2; echo $?': (r) => {
    expect(r.code).toBe(0); // echo's
    expect(r.stdout).toContain('cpus=0x00000002');
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('5'); // (2 << 1) | 1: the CPU count, through port 0x501
  },
  'vmmapi run --bios /usr/share/seabios/bios.bin --debugcon - --timeout 20': (r) => {
    expect(r.stdout).toContain('No bootable device');
    expect(r.code).toBe(124);
    expect(r.stderr).toContain('timed out after 20 s');
  },
  'vmmapi run --flat guests/out/spin.bin@0x1000 --timeout 4 --status': (r) => {
    expect(r.code).toBe(124);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^vmmapi: [\d.]+ s \| no guest output for [\d.]+ s \| \S+ exits\/s \| fallback finished \S+ instructions \| vCPUs: 1 running$/m);
  },
};

describe('README vmmapi commands', () => {
  const block = all.find((b) => b.marker === '<!-- commands: each line is run by test/guest/readme.test.ts -->');
  const lines = (block?.body ?? '').split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l !== '');

  it('the block lists exactly the commands this test checks', () => {
    expect(block).toBeDefined();
    expect(lines.sort()).toEqual(Object.keys(EXPECT).sort());
  });

  // `vmmapi` on PATH runs this checkout's CLI, as `npx vmmapi` or an installed bin would
  const bin = join(tmp, 'bin');
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` };
  for (const cmd of lines) {
    it(cmd, async () => {
      if (cmd.includes('/usr/share/seabios/') && !existsSync('/usr/share/seabios/bios.bin')) throw new Error('install seabios (apt-get install seabios)');
      if (!existsSync(join(bin, 'vmmapi'))) {
        mkdirSync(bin, { recursive: true });
        writeFileSync(join(bin, 'vmmapi'), `#!/bin/sh\nexec '${process.execPath}' '${join(ROOT, 'dist', 'src', 'cli', 'main.js')}' "$@"\n`);
        chmodSync(join(bin, 'vmmapi'), 0o755);
      }
      const r = await run('bash', ['-c', cmd], env);
      EXPECT[cmd]!(r);
    });
  }

  it('every inline `vmmapi run …` in the README parses', () => {
    const inline = [...README.matchAll(/`(vmmapi run [^`]+)`/g)].map((m) => m[1]);
    expect(inline.length).toBeGreaterThan(0);
    for (const cmd of inline) {
      const words = [...cmd.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]).slice(1);
      if (words.some((w) => w === '…' || w === '...' || w.includes('…'))) continue; // a pattern, not a command
      expect(() => parseCommand(words), cmd).not.toThrow();
    }
  });
});

// Assemble the guest fixtures in guests/src with the system toolchain (GNU as + ld) into
// flat binaries in guests/out. Run by `npm run build` (and so by `npm install`).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'guests', 'src');
const out = join(root, 'guests', 'out');
mkdirSync(out, { recursive: true });

// Each source may say where it is linked and how it is packaged in a header comment:
//   # @link 0x1000          (default 0x1000)
//   # @format elf32         (default: flat binary; elf32 keeps an ELF for multiboot)
//   # @arch 32|64           (default: from .code16/.code32 → 32, .code64 → 64)
//   # @ldflags -n ...       (extra ld arguments, e.g. -n: no page alignment, no headers loaded)
for (const f of readdirSync(src).filter((x) => x.endsWith('.S')).sort()) {
  const text = readFileSync(join(src, f), 'utf8');
  const name = f.slice(0, -2);
  const link = /@link\s+(0x[0-9a-f]+|\d+)/i.exec(text)?.[1] ?? (name.startsWith('long') ? '0x2000' : '0x1000');
  const format = /@format\s+(\w+)/.exec(text)?.[1] ?? 'binary';
  const arch = /@arch\s+(32|64)/.exec(text)?.[1] ?? (/\.code64/.test(text) && !/\.code32/.test(text) ? '64' : '32');
  const ldExtra = /@ldflags\s+(.+)/.exec(text)?.[1].trim().split(/\s+/) ?? [];
  const obj = join(out, `${name}.o`);
  const elf = join(out, `${name}.elf`);
  const asArgs = arch === '64' ? ['--64'] : ['--32'];
  const ldArgs = arch === '64' ? ['-m', 'elf_x86_64'] : ['-m', 'elf_i386'];
  // shared pieces (console output on COM1 …) live in guests/src/include: `.include "com1.inc"`
  execFileSync('as', [...asArgs, '-I', join(src, 'include'), '-o', obj, join(src, f)], { stdio: 'inherit' });
  if (format === 'elf32') {
    execFileSync('ld', [...ldArgs, ...ldExtra, '-nostdlib', '-z', 'noseparate-code', '-Ttext', link, '-e', '_start', '-o', elf, obj], { stdio: 'inherit' });
  } else {
    execFileSync('ld', [...ldArgs, ...ldExtra, '-nostdlib', '-Ttext', link, '-e', '_start', '--oformat', 'binary', '-o', join(out, `${name}.bin`), obj], { stdio: 'inherit' });
  }
  rmSync(obj);
}
if (!existsSync(join(out, 'hello.bin'))) throw new Error('guest build failed: hello.bin missing');
console.log(`guests: built ${readdirSync(out).length} fixtures in guests/out`);

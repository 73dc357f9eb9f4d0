// Assemble the guest fixtures in guests/src with the system toolchain (GNU as + ld) into
// flat binaries in guests/out. Run by `npm run build` (and so by `npm install`).
// C fixtures (guests/src/NAME.c) are compiled with gcc into Multiboot ELFs: see the end.
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

// Freestanding C fixtures: guests/src/NAME.c → guests/out/NAME.elf, a Multiboot (v1) ELF
// linked at 1 MiB like the `@format elf32` assembly fixtures. Each is linked with the
// shared runtime in guests/src/include: an entry stub (mb-entry.S: the Multiboot header, a
// stack, main(magic, info), main's return value to the debug-exit port 0x501), runtime.c
// (COM1 output, memcpy/memset, PCI configuration space; declared in guest.h) and the
// layout guest.ld. A source may say in a header comment:
//   // @entry FILE.S          (another entry stub from guests/src/include; default mb-entry.S)
//   // @cflags ...            (extra gcc arguments)
//   // @uses FILE.c ...       (more of guests/src/include to compile and link, e.g. virtio.c:
//                             the virtio-pci driver the virtio fixtures share)
// gcc compiles only (-c): no 32-bit libc or multilib is needed, and nothing links against
// libgcc, so a fixture must not use 64-bit division. -mgeneral-regs-only keeps SSE and x87
// out (on PVM hosts KVM's emulator runs kernel-mode code and gives up on most of them),
// -fcf-protection=none keeps endbr32 out, -fno-tree-loop-distribute-patterns keeps gcc from
// turning memset's own loop into a call to memset.
const CFLAGS = [
  '-m32', '-ffreestanding', '-fno-pic', '-fno-pie', '-fno-stack-protector', '-fno-builtin', '-nostdlib', '-O2',
  '-std=gnu11', '-march=i686', '-mgeneral-regs-only', '-fcf-protection=none', '-fno-asynchronous-unwind-tables',
  '-fno-tree-loop-distribute-patterns', '-Wall', '-Wextra',
];
const cSources = readdirSync(src).filter((x) => x.endsWith('.c')).sort();
if (cSources.length > 0) {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
  } catch (e) {
    const why = e.code === 'ENOENT' ? 'gcc was not found on PATH' : `\`gcc --version\` failed (${e.message})`;
    console.error(`guest build: ${why}; the C fixtures (${cSources.join(', ')}) need it: install the gcc package (Debian/Ubuntu: apt-get install gcc)`);
    process.exit(1);
  }
  const inc = join(src, 'include');
  for (const f of cSources) {
    const text = readFileSync(join(src, f), 'utf8');
    const name = f.slice(0, -2);
    const entry = /@entry\s+(\S+)/.exec(text)?.[1] ?? 'mb-entry.S';
    const cExtra = /@cflags\s+(.+)/.exec(text)?.[1].trim().split(/\s+/) ?? [];
    const uses = /@uses\s+(.+)/.exec(text)?.[1].trim().split(/\s+/) ?? [];
    if (!existsSync(join(inc, entry))) throw new Error(`guest build: ${f} names entry stub ${entry}, which is not in guests/src/include`);
    for (const u of uses) {
      if (!/^[\w-]+\.c$/.test(u) || u === 'runtime.c' || !existsSync(join(inc, u))) throw new Error(`guest build: ${f} uses ${u}, which is not a .c file of guests/src/include (other than runtime.c)`);
    }
    const tmp = join(out, `.${name}.objs`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    const shared = ['runtime.c', ...uses];
    const objs = [join(tmp, 'entry.o'), ...shared.map((u) => join(tmp, `${u.slice(0, -2)}.o`)), join(tmp, `${name}.o`)];
    execFileSync('as', ['--32', '-I', inc, '-o', objs[0], join(inc, entry)], { stdio: 'inherit' });
    shared.forEach((u, i) => execFileSync('gcc', [...CFLAGS, '-I', inc, '-c', '-o', objs[1 + i], join(inc, u)], { stdio: 'inherit' }));
    execFileSync('gcc', [...CFLAGS, ...cExtra, '-I', inc, '-c', '-o', objs[objs.length - 1], join(src, f)], { stdio: 'inherit' });
    const elf = join(out, `${name}.elf`);
    execFileSync('ld', ['-m', 'elf_i386', '-nostdlib', '-z', 'noexecstack', '-T', join(inc, 'guest.ld'), '-o', elf, ...objs], { stdio: 'inherit' });
    rmSync(tmp, { recursive: true });
    if (!hasMultibootHeader(readFileSync(elf))) throw new Error(`guest build: ${name}.elf has no Multiboot header in its first 8 KiB`);
  }
}

/** A Multiboot (v1) header — magic, flags, checksum summing to 0 — 4-byte aligned in the first 8 KiB. */
function hasMultibootHeader(bytes) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at + 12 <= Math.min(bytes.length, 8192); at += 4) {
    if (v.getUint32(at, true) === 0x1badb002 && ((v.getUint32(at, true) + v.getUint32(at + 4, true) + v.getUint32(at + 8, true)) >>> 0) === 0) return true;
  }
  return false;
}

if (!existsSync(join(out, 'hello.bin'))) throw new Error('guest build failed: hello.bin missing');
console.log(`guests: built ${readdirSync(out).length} fixtures in guests/out`);

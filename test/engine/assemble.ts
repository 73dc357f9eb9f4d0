/**
 * Assemble hand-written x86-64 test sequences with GNU `as --64` and `objcopy -O binary`
 * (binutils), in a temporary directory. For the hand-written cases only: the random
 * generator (random-insns.ts) emits bytes itself.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The bytes of `source` (AT&T syntax, 64-bit; one instruction per line or `;`-separated),
 * assembled as position-dependent code at address 0 (RIP-relative operands and branches are
 * relative, so the bytes run anywhere).
 *
 * @throws Error with the assembler's message if `as` rejects the source.
 */
export function assemble(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'vmmapi-as-'));
  try {
    const [src, obj, bin] = ['t.s', 't.o', 't.bin'].map((f) => join(dir, f));
    writeFileSync(src, `.text\n.code64\n${source.replaceAll(';', '\n')}\n`);
    execFileSync('as', ['--64', '-o', obj, src], { stdio: ['ignore', 'ignore', 'pipe'] });
    execFileSync('objcopy', ['-O', 'binary', '-j', '.text', obj, bin]);
    return new Uint8Array(readFileSync(bin));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

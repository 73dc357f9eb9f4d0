/** Paths of the bundled guest fixtures (assembled into guests/out by `npm run build`). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './kvm/native.js';

/** The path of bundled guest `name` (e.g. `'hello.bin'`); throws if it was not built. */
export function fixturePath(name: string): string {
  const p = join(packageRoot(), 'guests', 'out', name);
  if (!existsSync(p)) throw new Error(`guest fixture ${name} is missing (${p}): run \`npm run build\``);
  return p;
}

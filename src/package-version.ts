/** The package's version, from its package.json (one reader for the CLI and snapshots). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './kvm/native.js';

let cached: string | undefined;

/** The version field of vmmapi's package.json ('unknown' if it has none). */
export function packageVersion(): string {
  if (cached === undefined) {
    const pj = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: unknown };
    cached = typeof pj.version === 'string' ? pj.version : 'unknown';
  }
  return cached;
}

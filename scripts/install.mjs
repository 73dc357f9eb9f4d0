// npm's install step (package.json "install").
//
// In a project that installs the packed package, dist/ (the compiled TypeScript) and
// guests/out/ (the guest fixtures) come in the tarball (`npm pack` builds them in "prepack"),
// so only the native addon is built here: it is tied to the V8 of the Node.js that runs it.
// In a clone of the repository (src/ and tsconfig.json present, devDependencies installed),
// `npm install` does all of the set-up: the addon, the TypeScript and the guest fixtures.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function step(script) {
  const r = spawnSync(process.execPath, [join(root, 'scripts', script)], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

step('build-native.mjs');
const checkout = existsSync(join(root, 'tsconfig.json')) && existsSync(join(root, 'src'));
if (checkout) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(tsc)) {
    process.stderr.write('vmmapi: a source checkout needs its devDependencies (TypeScript) to build dist/: run npm install without --omit=dev\n');
    process.exit(1);
  }
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
  step('build-guests.mjs');
} else if (!existsSync(join(root, 'dist', 'src', 'index.js'))) {
  process.stderr.write('vmmapi: this package has no dist/ (it was packed without its prepack step): pack it with npm pack\n');
  process.exit(1);
}

// The `vmmapi` command's single-file build: dist/bundle/vmmapi.js (the CLI, the platform and
// the runner's main side) and dist/bundle/vcpu-worker.js (the vCPU worker entry and its loop).
// Loading one file instead of ~90 ES modules (and ~45 in every vCPU worker) is most of the
// start-up time of a short `vmmapi run`. Built from the compiled dist/ by `npm run build:ts`
// (and so by `npm install` in a clone and by `npm pack`). The library (`import ... from
// 'vmmapi'`) stays the unbundled dist/src; piscina and eventemitter3 stay dependencies.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['piscina', 'eventemitter3'],
  logLevel: 'warning',
  legalComments: 'none',
};
await build({ ...common, entryPoints: [join(root, 'dist', 'src', 'cli', 'main.js')], outfile: join(root, 'dist', 'bundle', 'vmmapi.js') });
await build({ ...common, entryPoints: [join(root, 'dist', 'workers', 'vcpu-worker.js')], outfile: join(root, 'dist', 'bundle', 'vcpu-worker.js') });
chmodSync(join(root, 'dist', 'bundle', 'vmmapi.js'), 0o755);

// Build the native addon (build/Release/vmmapi_native.node) from native/ with cmake-js,
// against the headers of the Node.js that runs this script. Run by `npm install` (in a clone
// and in a project that installs the packed package) and by `npm run build:native`.
//
// The addon uses V8's SharedArrayBuffer backing-store API (v8.h), so it needs the full Node
// headers, not only node-api's. They are looked for where cmake-js and node-gyp users expect
// them, and never downloaded:
//   1. $npm_config_nodedir/include/node (npm's --nodedir, or the environment variable)
//   2. the running Node install's own include/node (<prefix>/include/node, next to bin/node)
//   3. the system's: /usr/include/node, /usr/local/include/node
// Missing tools (cmake, a C++ compiler, make or ninja) or headers end the build with one
// message naming what to install.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));

/** Print one clear failure and exit(1). */
function fail(lines) {
  process.stderr.write(`\nvmmapi: cannot build the native addon.\n${lines.map((l) => `  ${l}`).join('\n')}\n\n`);
  process.exit(1);
}

/** The first of `names` found on PATH (or an absolute path that exists), else undefined. */
function which(names) {
  for (const name of names) {
    if (name.includes('/')) {
      if (existsSync(name)) return name;
      continue;
    }
    for (const dir of (process.env.PATH ?? '').split(delimiter)) {
      if (dir && existsSync(join(dir, name))) return join(dir, name);
    }
  }
  return undefined;
}

/**
 * Node header directories to try, best first: each is `{ nodedir, include }` where
 * `include` holds node.h and v8.h and `nodedir` is what cmake-js calls the runtime directory
 * (it reads `<nodedir>/include/node`).
 */
export function headerCandidates(env = process.env, execPath = process.execPath) {
  const dirs = [];
  if (env.npm_config_nodedir) dirs.push(env.npm_config_nodedir);
  dirs.push(resolve(dirname(execPath), '..')); // <prefix>/bin/node -> <prefix>
  const prefix = process.config?.variables?.node_prefix;
  if (typeof prefix === 'string' && prefix !== '') dirs.push(prefix);
  dirs.push('/usr', '/usr/local');
  const seen = new Set();
  return dirs
    .map((d) => resolve(d))
    .filter((d) => (seen.has(d) ? false : (seen.add(d), true)))
    .map((nodedir) => ({ nodedir, include: join(nodedir, 'include', 'node') }));
}

/** The first candidate with both node.h and v8.h, or undefined. */
export function findNodeHeaders(env = process.env, execPath = process.execPath) {
  return headerCandidates(env, execPath).find((c) => existsSync(join(c.include, 'node.h')) && existsSync(join(c.include, 'v8.h')));
}

function main() {
  const cmake = which([process.env.CMAKE ?? 'cmake']);
  if (!cmake) fail(['cmake was not found on PATH (CMake 3.15 or later is needed).', 'Debian/Ubuntu: apt-get install cmake']);
  const version = /cmake version (\d+)\.(\d+)/.exec(execFileSync(cmake, ['--version'], { encoding: 'utf8' }));
  if (version && (Number(version[1]) < 3 || (Number(version[1]) === 3 && Number(version[2]) < 15)))
    fail([`${cmake} is CMake ${version[1]}.${version[2]}; 3.15 or later is needed.`, 'Debian/Ubuntu: apt-get install cmake']);
  const cxx = which([process.env.CXX ?? 'c++', 'g++', 'clang++']);
  if (!cxx) fail(['no C++17 compiler was found (c++, g++ or clang++ on PATH, or $CXX).', 'Debian/Ubuntu: apt-get install g++']);
  const cc = which([process.env.CC ?? 'cc', 'gcc', 'clang']);
  if (!cc) fail(['no C compiler was found (cc, gcc or clang on PATH, or $CC); it also assembles native/*.S.', 'Debian/Ubuntu: apt-get install gcc']);
  if (!which(['ninja', 'make'])) fail(['neither make nor ninja was found on PATH (CMake needs one to build).', 'Debian/Ubuntu: apt-get install make']);

  const headers = findNodeHeaders();
  if (!headers) {
    fail([
      `the headers of Node.js ${process.version} (node.h and v8.h) were not found. Looked in:`,
      ...headerCandidates().map((c) => `  ${c.include}`),
      'Install the headers of the Node.js you run:',
      "  Debian/Ubuntu: Debian's own nodejs needs apt-get install libnode-dev; NodeSource's nodejs ships /usr/include/node",
      '  a Node.js tarball or nvm install ships them in <prefix>/include/node;',
      '  elsewhere, point npm at them: npm install --nodedir=/path/to/node-headers',
    ]);
  }

  let addonApi;
  try {
    addonApi = require('node-addon-api').include_dir;
  } catch {
    fail(["the node-addon-api package is missing (a dependency of vmmapi): run 'npm install' again"]);
  }
  let cmakeJs;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  } catch {
    fail(["the cmake-js package is missing (a dependency of vmmapi): run 'npm install' again"]);
  }

  const args = [
    cmakeJs, 'compile', '--directory', root, '--out', join(root, 'build'),
    `--CDNODE_HEADERS_DIR=${headers.include}`,
    `--CDNODE_ADDON_API_DIR=${resolve(root, addonApi)}`,
  ];
  if (!process.env.CC) args.push(`--CDCMAKE_C_COMPILER=${cc}`);
  if (!process.env.CXX) args.push(`--CDCMAKE_CXX_COMPILER=${cxx}`);
  const r = spawnSync(process.execPath, args, {
    cwd: root,
    stdio: 'inherit',
    // cmake-js reads the runtime directory from npm's nodedir; it must never download headers
    env: { ...process.env, npm_config_nodedir: headers.nodedir },
  });
  if (r.status !== 0) fail([`cmake-js failed (exit ${r.status ?? r.signal}); the compiler's messages are above.`]);
  if (!existsSync(join(root, 'build', 'Release', 'vmmapi_native.node'))) fail(['the build finished but build/Release/vmmapi_native.node is missing.']);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();

// Fetch a Linux kernel and build a busybox initramfs for the slow boot test
// (test/slow/linux.test.ts). Nothing is installed on the host:
//   - the kernel: Debian's versioned linux-image-6.1.*-cloud-amd64 package (the dependency of
//     linux-image-cloud-amd64), fetched with `apt-get download` and unpacked with dpkg-deb;
//   - busybox: Debian's busybox-static package, fetched and unpacked the same way;
//   - the initramfs: /init prints VMMAPI-INIT-OK, runs nproc and powers off; packed as a
//     newc cpio archive (cpio if installed, else busybox's own cpio applet), left
//     uncompressed: where guest kernel code is emulated, gunzip in the guest costs a minute,
//     while the 2 MiB extra of an uncompressed archive costs nothing.
// Output: .cache/linux/vmlinuz and .cache/linux/initramfs.cpio. Re-running reuses them.
import { execFileSync, execSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cache = join(root, '.cache', 'linux');
const debs = join(cache, 'debs');
const vmlinuz = join(cache, 'vmlinuz');
const initramfs = join(cache, 'initramfs.cpio');

function fail(message) {
  console.error(`fetch-linux: ${message}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  } catch (e) {
    const err = String(e.stderr ?? '').trim().split('\n').pop() || e.message;
    fail(`${cmd} ${args.join(' ')} failed: ${err}`);
  }
}

/** The versioned kernel package linux-image-cloud-amd64 depends on. */
function kernelPackage() {
  const out = run('apt-cache', ['depends', 'linux-image-cloud-amd64']);
  const m = /Depends:\s+(linux-image-6\.1\.[\w.+-]*-cloud-amd64)/.exec(out);
  if (!m) fail('apt-cache depends linux-image-cloud-amd64 names no linux-image-6.1.*-cloud-amd64 (run apt-get update?)');
  return m[1];
}

/** apt-get download `pkg` into debs/ (once) and unpack it into `dest`; returns `dest`. */
function fetchPackage(pkg, dest) {
  mkdirSync(debs, { recursive: true });
  let deb = readdirSync(debs).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) {
    console.log(`fetch-linux: apt-get download ${pkg}`);
    run('apt-get', ['download', pkg], { cwd: debs });
    deb = readdirSync(debs).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    if (!deb) fail(`apt-get download ${pkg} produced no .deb`);
  }
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  run('dpkg-deb', ['-x', join(debs, deb), dest]);
  return dest;
}

const INIT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo VMMAPI-INIT-OK
echo "VMMAPI-NPROC=$(/bin/busybox nproc)"
echo "VMMAPI-UPTIME=$(/bin/busybox cat /proc/uptime)"
/bin/busybox poweroff -f
`;

mkdirSync(cache, { recursive: true });

if (!existsSync(vmlinuz)) {
  const pkg = kernelPackage();
  const tree = fetchPackage(pkg, join(cache, 'kernel-root'));
  const boot = join(tree, 'boot');
  const image = existsSync(boot) ? readdirSync(boot).find((f) => f.startsWith('vmlinuz-')) : undefined;
  if (!image) fail(`${pkg} has no boot/vmlinuz-*`);
  copyFileSync(join(boot, image), vmlinuz);
  rmSync(tree, { recursive: true, force: true }); // the modules are not needed
  console.log(`fetch-linux: kernel ${image} -> ${vmlinuz}`);
}

if (!existsSync(initramfs)) {
  const bb = join(fetchPackage('busybox-static', join(cache, 'busybox-root')), 'bin', 'busybox');
  if (!existsSync(bb)) fail('busybox-static has no bin/busybox');
  const dir = join(cache, 'initramfs');
  rmSync(dir, { recursive: true, force: true });
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(bb, join(dir, 'bin', 'busybox'));
  chmodSync(join(dir, 'bin', 'busybox'), 0o755);
  writeFileSync(join(dir, 'init'), INIT, { mode: 0o755 });
  let cpio = `'${bb}' cpio`;
  try {
    execSync('command -v cpio', { stdio: 'ignore' });
    cpio = 'cpio';
  } catch {
    /* no cpio on the host: busybox has the applet */
  }
  execSync(`find . | sort | ${cpio} -o -H newc -R 0:0 > '${initramfs}'`, { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'], shell: '/bin/sh' });
  console.log(`fetch-linux: initramfs -> ${initramfs}`);
}

console.log(`fetch-linux: ready: ${vmlinuz} ${initramfs}`);

// Fetch a Linux kernel and build busybox initramfs images for the slow boot tests
// (test/slow/linux-init.test.ts, test/slow/linux-virtio.test.ts). Nothing is installed on the host:
//   - the kernel: Debian's versioned linux-image-6.1.*-cloud-amd64 package (the dependency of
//     linux-image-cloud-amd64), fetched with `apt-get download` and unpacked with dpkg-deb;
//   - busybox: Debian's busybox-static package, fetched and unpacked the same way;
//   - initramfs.cpio: /init prints VMMAPI-INIT-OK, runs nproc and powers off;
//   - initramfs-virtio.cpio: the same busybox plus the kernel package's own modules for
//     virtio-pci, virtio-blk, virtio-rng and virtio-console (see VIRTIO_NEEDS: what the cloud
//     kernel builds in is only checked, what it builds as a module is copied with its
//     dependencies), and a /init that exercises the disks, /dev/hwrng and hvc0 (VIRTIO_INIT).
//   Both are newc cpio archives (cpio if installed, else busybox's own cpio applet), left
//   uncompressed: where guest kernel code is emulated, gunzip in the guest costs a minute,
//   while the 2 MiB extra of an uncompressed archive costs nothing.
// Output: .cache/linux/vmlinuz, .cache/linux/initramfs.cpio, .cache/linux/initramfs-virtio.cpio.
// Re-running reuses them (and the .debs in .cache/linux/debs).
import { execFileSync, execSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cache = join(root, '.cache', 'linux');
const debs = join(cache, 'debs');
const vmlinuz = join(cache, 'vmlinuz');
const initramfs = join(cache, 'initramfs.cpio');
const initramfsVirtio = join(cache, 'initramfs-virtio.cpio');

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

/** The .deb of `pkg` in debs/, apt-get downloaded there once. */
function fetchDeb(pkg) {
  mkdirSync(debs, { recursive: true });
  let deb = readdirSync(debs).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) {
    console.log(`fetch-linux: apt-get download ${pkg}`);
    run('apt-get', ['download', pkg], { cwd: debs });
    deb = readdirSync(debs).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    if (!deb) fail(`apt-get download ${pkg} produced no .deb`);
  }
  return join(debs, deb);
}

/** Unpack `deb` into `dest` (emptied first); returns `dest`. */
function unpack(deb, dest) {
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  run('dpkg-deb', ['-x', deb, dest]);
  return dest;
}

/** apt-get download `pkg` into debs/ (once) and unpack it into `dest`; returns `dest`. */
function fetchPackage(pkg, dest) {
  return unpack(fetchDeb(pkg), dest);
}

/** The vmlinuz-* of an unpacked kernel package. */
function kernelImage(tree, deb) {
  const boot = join(tree, 'boot');
  const image = existsSync(boot) ? readdirSync(boot).find((f) => f.startsWith('vmlinuz-')) : undefined;
  if (!image) fail(`${basename(deb)} has no boot/vmlinuz-*`);
  return join(boot, image);
}

/** Pack `dir` as a newc cpio archive `out`, every file owned by root. */
function packCpio(dir, out, bb) {
  let cpio = `'${bb}' cpio`;
  try {
    execSync('command -v cpio', { stdio: 'ignore' });
    cpio = 'cpio';
  } catch {
    /* no cpio on the host: busybox has the applet */
  }
  execSync(`find . | sort | ${cpio} -o -H newc -R 0:0 > '${out}'`, { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'], shell: '/bin/sh' });
}

/** A fresh initramfs tree in cache/`name` with bin/busybox and the usual mount points. */
function initramfsTree(name, bb) {
  const dir = join(cache, name);
  rmSync(dir, { recursive: true, force: true });
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(bb, join(dir, 'bin', 'busybox'));
  chmodSync(join(dir, 'bin', 'busybox'), 0o755);
  return dir;
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

/**
 * What the virtio initramfs needs from the kernel, by module name (`-` and `_` alike). Each
 * one the kernel builds in is only reported; each one built as a module goes into the
 * initramfs with its dependencies (modules.dep), loaded by /init in dependency order. The
 * Debian 6.1 cloud kernel (config-6.1.0-*-cloud-amd64) builds in ext4 (with jbd2, mbcache,
 * crc16), crc32c_generic and rng-core (hw_random), and builds virtio, virtio_ring,
 * virtio_pci(_modern_dev, _legacy_dev), virtio_blk, virtio-rng and virtio_console as modules.
 */
const VIRTIO_NEEDS = [
  ['virtio_pci', 'the virtio-pci transport'],
  ['virtio_blk', 'the disks (/dev/vda, /dev/vdb)'],
  ['ext4', "the disks' file system"],
  ['crc32c_generic', "ext4's metadata_csum: crc32c by name through the crypto API, not a link dependency"],
  ['rng_core', 'hw_random, /dev/hwrng'],
  ['virtio_rng', 'the entropy device behind /dev/hwrng'],
  ['virtio_console', 'hvc0'],
];

const moduleName = (path) => basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');

/**
 * Decompress the package's modules in place (.ko.xz/.ko.zst/.ko.gz → .ko) with the host's
 * xz/zstd/gzip: busybox's insmod and depmod read no zstd, and plain .ko files keep /init
 * simple. Debian's 6.1 kernels ship them uncompressed (CONFIG_MODULE_COMPRESS_NONE); later
 * ones compress them.
 */
function decompressModules(dir) {
  const tools = { xz: ['xz', '-d', '-f'], zst: ['zstd', '-d', '-q', '-f', '--rm'], gz: ['gzip', '-d', '-f'] };
  for (const [ext, [cmd, ...args]] of Object.entries(tools)) {
    const files = run('find', [dir, '-name', `*.ko.${ext}`]).split('\n').filter(Boolean);
    if (!files.length) continue;
    console.log(`fetch-linux: ${cmd} -d ${files.length} *.ko.${ext} modules`);
    for (let i = 0; i < files.length; i += 200) run(cmd, [...args, ...files.slice(i, i + 200)]);
  }
}

/**
 * The modules to load for VIRTIO_NEEDS, dependencies first: [{ name, path (relative to the
 * modules directory), size }], and the needs the kernel builds in.
 */
function virtioModules(tree, release, bb) {
  const dir = join(tree, 'lib', 'modules', release);
  decompressModules(dir);
  // Debian's package ships no modules.dep (its postinst runs depmod): busybox's depmod writes
  // one from each module's depends= (modinfo), the link dependencies modpost found.
  run(bb, ['depmod', '-b', tree, release]);
  const deps = new Map();
  for (const line of readFileSync(join(dir, 'modules.dep'), 'utf8').split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (m) deps.set(moduleName(m[1]), { path: m[1], deps: m[2].split(/\s+/).filter(Boolean).map(moduleName) });
  }
  const builtin = new Set(readFileSync(join(dir, 'modules.builtin'), 'utf8').split('\n').filter(Boolean).map(moduleName));
  const order = [];
  const builtins = [];
  const visit = (name, chain) => {
    if (order.some((m) => m.name === name)) return;
    if (chain.includes(name)) fail(`modules.dep has a cycle: ${[...chain, name].join(' -> ')}`);
    const entry = deps.get(name);
    if (!entry) fail(`module ${name} (needed by ${chain.join(' -> ') || 'the virtio initramfs'}) is neither built in nor in modules.dep`);
    for (const d of entry.deps) if (!builtin.has(d)) visit(d, [...chain, name]);
    order.push({ name, path: entry.path, size: statSync(join(dir, entry.path)).size });
  };
  for (const [name, why] of VIRTIO_NEEDS) {
    if (builtin.has(name)) builtins.push({ name, why });
    else if (deps.has(name)) visit(name, []);
    else fail(`${release} has no ${name} (${why}): neither built in (modules.builtin) nor a module (modules.dep)`);
  }
  return { order, builtins };
}

/**
 * The virtio initramfs's /init. Every step prints a marker, VMMAPI-...-FAILED (or a value
 * saying what went wrong) when it fails, and goes on: the end is always poweroff -f, and every
 * wait is bounded (in guest time: on PVM hosts the test's tsc_early_khz makes the guest's
 * clock run 10× fast, hence the generous bounds).
 * - vda: the first --disk, ext4 holding host.txt; /init prints it, writes guest.txt, unmounts;
 * - vdb: the second --disk, read-only; a write to the device must fail, its ro.txt is read;
 * - /dev/hwrng: 16 bytes in hex; /dev/hvc0: "hello hvc0" (written in the background: a
 *   console write the VMM never consumes can block).
 */
function virtioInit(release, modules) {
  const insmods = modules.map((m) => `${m.name}:/lib/modules/${release}/${m.path}`).join(' \\\n  ');
  return `#!/bin/busybox sh
# vmmapi's virtio initramfs (scripts/fetch-linux.mjs): see virtioInit there.
BB=/bin/busybox
$BB mount -t proc proc /proc
$BB mount -t sysfs sysfs /sys
$BB mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo VMMAPI-INIT-OK
echo "VMMAPI-NPROC=$($BB nproc)"
echo "VMMAPI-KERNEL=$($BB uname -r)"

# tick: a tenth of a second, without a fork where it can (a read timing out on a FIFO that
# nobody writes): forks cost much where guest kernel code is emulated
if $BB mkfifo /tmp/tick && exec 3<>/tmp/tick; then
  tick() { read -t 0.1 -u 3 t; }
else
  tick() { $BB usleep 100000; }
fi
# wait_for TEST PATH TENTHS: until [ TEST PATH ] holds, at most TENTHS tenths of a second
wait_for() {
  n=0
  while ! [ $1 "$2" ] && [ $n -lt $3 ]; do tick; n=$((n + 1)); done
  [ $1 "$2" ]
}

failed=0
for m in \\
  ${insmods}; do
  name=\${m%%:*}
  if out=$($BB insmod "\${m#*:}" 2>&1); then echo "VMMAPI-INSMOD=$name"; else echo "VMMAPI-INSMOD-FAILED=$name: $out"; failed=$((failed + 1)); fi
done
if [ $failed = 0 ]; then echo VMMAPI-VIRTIO-MODULES-OK; else echo "VMMAPI-VIRTIO-MODULES-FAILED=$failed"; fi

$BB mkdir -p /mnt /ro
if wait_for -b /dev/vda 600; then
  echo "VMMAPI-VDA-RO=$($BB cat /sys/block/vda/ro)"
  if out=$($BB mount -t ext4 /dev/vda /mnt 2>&1); then
    if [ -f /mnt/host.txt ]; then echo "VMMAPI-HOST-FILE=$($BB cat /mnt/host.txt)"; else echo VMMAPI-HOST-FILE-FAILED=missing; fi
    if out=$( (echo "written by the guest" > /mnt/guest.txt) 2>&1); then echo VMMAPI-GUEST-WRITE=ok; else echo "VMMAPI-GUEST-WRITE-FAILED=$out"; fi
    $BB sync
    if out=$($BB umount /mnt 2>&1); then echo VMMAPI-UMOUNT=ok; else echo "VMMAPI-UMOUNT-FAILED=$out"; fi
  else
    echo "VMMAPI-MOUNT-FAILED=vda: $out"
  fi
else
  echo VMMAPI-VDA-FAILED=no /dev/vda
fi

if wait_for -b /dev/vdb 600; then
  echo "VMMAPI-VDB-RO=$($BB cat /sys/block/vdb/ro)"
  if out=$($BB dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=fsync 2>&1); then
    echo VMMAPI-RO-REFUSED=no
  else
    echo VMMAPI-RO-REFUSED=yes
    echo "VMMAPI-RO-ERROR=$(echo "$out" | $BB head -n 1)"
  fi
  if out=$($BB mount -t ext4 -o ro /dev/vdb /ro 2>&1); then
    if [ -f /ro/ro.txt ]; then echo "VMMAPI-RO-FILE=$($BB cat /ro/ro.txt)"; else echo VMMAPI-RO-FILE-FAILED=missing; fi
    $BB umount /ro
  else
    echo "VMMAPI-MOUNT-FAILED=vdb: $out"
  fi
else
  echo VMMAPI-VDB-FAILED=no /dev/vdb
fi

echo "VMMAPI-HWRNG-CURRENT=$($BB cat /sys/class/misc/hw_random/rng_current 2>&1)"
hex=$($BB timeout 60 $BB head -c 16 /dev/hwrng 2>/tmp/hwrng.err | $BB hexdump -v -e '1/1 "%02x"')
if [ \${#hex} = 32 ]; then echo "VMMAPI-HWRNG=$hex"; else echo "VMMAPI-HWRNG-FAILED=got '$hex' $($BB cat /tmp/hwrng.err)"; fi

if wait_for -c /dev/hvc0 600; then
  ( if echo "hello hvc0" > /dev/hvc0; then : > /tmp/hvc0.ok; else : > /tmp/hvc0.failed; fi ) 2>/tmp/hvc0.err &
  n=0
  while ! [ -e /tmp/hvc0.ok ] && ! [ -e /tmp/hvc0.failed ] && [ $n -lt 600 ]; do tick; n=$((n + 1)); done
  if [ -e /tmp/hvc0.ok ]; then echo VMMAPI-HVC0=written
  elif [ -e /tmp/hvc0.failed ]; then echo "VMMAPI-HVC0-FAILED=$($BB cat /tmp/hvc0.err)"
  else echo VMMAPI-HVC0-FAILED=write still blocked after 60 s; fi
else
  echo VMMAPI-HVC0-FAILED=no /dev/hvc0
fi

echo VMMAPI-VIRTIO-DONE
$BB sync
$BB poweroff -f
`;
}

mkdirSync(cache, { recursive: true });

let kernelTree; // the unpacked kernel package, while vmlinuz or the virtio initramfs needs it
if (!existsSync(vmlinuz)) {
  const deb = fetchDeb(kernelPackage());
  kernelTree = unpack(deb, join(cache, 'kernel-root'));
  const image = kernelImage(kernelTree, deb);
  copyFileSync(image, vmlinuz);
  console.log(`fetch-linux: kernel ${basename(image)} -> ${vmlinuz}`);
} else if (!existsSync(initramfsVirtio)) {
  // The modules must come from vmlinuz's own package: the cached .deb holding it (an
  // `apt-get update` since may name a newer kernel, whose modules vmlinuz would refuse).
  const debsHere = existsSync(debs) ? readdirSync(debs) : [];
  const candidates = debsHere
    .filter((f) => /^linux-image-6\.1\.[\w.+-]*-cloud-amd64_.*\.deb$/.test(f))
    .sort((x, y) => y.localeCompare(x, 'en', { numeric: true })); // newest first
  const want = readFileSync(vmlinuz);
  for (const f of candidates) {
    kernelTree = unpack(join(debs, f), join(cache, 'kernel-root'));
    if (readFileSync(kernelImage(kernelTree, f)).equals(want)) break;
    kernelTree = undefined;
  }
  if (!kernelTree) fail(`no kernel .deb in ${debs} holds ${vmlinuz}, so its modules are not at hand: remove ${vmlinuz} and re-run`);
}

let bb;
if (!existsSync(initramfs) || !existsSync(initramfsVirtio)) {
  bb = join(fetchPackage('busybox-static', join(cache, 'busybox-root')), 'bin', 'busybox');
  if (!existsSync(bb)) fail('busybox-static has no bin/busybox');
}

if (!existsSync(initramfs)) {
  const dir = initramfsTree('initramfs', bb);
  writeFileSync(join(dir, 'init'), INIT, { mode: 0o755 });
  packCpio(dir, initramfs, bb);
  console.log(`fetch-linux: initramfs -> ${initramfs}`);
}

if (!existsSync(initramfsVirtio)) {
  const releases = readdirSync(join(kernelTree, 'lib', 'modules'));
  if (releases.length !== 1) fail(`the kernel package has ${releases.length} lib/modules/* directories, expected 1`);
  const [release] = releases;
  const { order, builtins } = virtioModules(kernelTree, release, bb);
  for (const b of builtins) console.log(`fetch-linux: ${release}: ${b.name} built in (${b.why})`);
  const dir = initramfsTree('initramfs-virtio', bb);
  for (const m of order) {
    const to = join(dir, 'lib', 'modules', release, m.path);
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(join(kernelTree, 'lib', 'modules', release, m.path), to);
    console.log(`fetch-linux: ${release}: module ${m.name} (${m.path}, ${m.size} bytes)`);
  }
  writeFileSync(join(dir, 'init'), virtioInit(release, order), { mode: 0o755 });
  packCpio(dir, initramfsVirtio, bb);
  console.log(`fetch-linux: virtio initramfs (load order ${order.map((m) => m.name).join(' ')}) -> ${initramfsVirtio}`);
}

if (kernelTree) rmSync(kernelTree, { recursive: true, force: true }); // the rest of the modules is not needed

console.log(`fetch-linux: ready: ${vmlinuz} ${initramfs} ${initramfsVirtio}`);

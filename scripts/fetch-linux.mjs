// Fetch a Linux kernel and build busybox initramfs images for the slow boot tests
// (test/slow/linux-init.test.ts, test/slow/linux-virtio.test.ts, test/slow/linux-net.test.ts).
// Nothing is installed on the host:
//   - the kernel: Debian's versioned linux-image-6.1.*-cloud-amd64 package (the dependency of
//     linux-image-cloud-amd64), fetched with `apt-get download` and unpacked with dpkg-deb;
//   - busybox: Debian's busybox-static package, fetched and unpacked the same way;
//   - initramfs.cpio: /init prints VMMAPI-INIT-OK, runs nproc and powers off;
//   - initramfs-shell.cpio: /init prints VMMAPI-SHELL-READY and execs busybox's shell on the
//     console (the snapshot slow test types commands into it);
//   - initramfs-virtio.cpio: the same busybox plus the kernel package's own modules for
//     virtio-pci, virtio-blk, virtio-rng and virtio-console (see VIRTIO_NEEDS: what the cloud
//     kernel builds in is only checked, what it builds as a module is copied with its
//     dependencies), and a /init that exercises the disks, /dev/hwrng and hvc0 (VIRTIO_INIT).
//   - initramfs-net.cpio: the same busybox plus the modules for virtio-pci, virtio-net and
//     virtio-vsock (NET_NEEDS), bin/vsock-line (VSOCK_LINE_C: busybox's nc speaks no AF_VSOCK,
//     so a small C client/listener, built here with the host's `gcc -static` against glibc's
//     libc.a from libc6-dev), bin/net-peer (bench/net-peer.c, the same way; also left on the
//     host as .cache/linux/net-peer), and a /init that talks TCP over eth0 and lines over vsock,
//     or with vmmapi.bench= on the command line serves `npm run bench:net` (netInit).
//   Both are newc cpio archives (cpio if installed, else busybox's own cpio applet), left
//   uncompressed: where guest kernel code is emulated, gunzip in the guest costs a minute,
//   while the 2 MiB extra of an uncompressed archive costs nothing.
// Output: .cache/linux/vmlinuz, .cache/linux/initramfs.cpio, .cache/linux/initramfs-shell.cpio,
// .cache/linux/initramfs-virtio.cpio,
// .cache/linux/initramfs-net.cpio (rebuilt when its /init or programs change), .cache/linux/net-peer.
// Re-running reuses them (and the .debs in .cache/linux/debs).
import { execFileSync, execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cache = join(root, '.cache', 'linux');
const debs = join(cache, 'debs');
const vmlinuz = join(cache, 'vmlinuz');
const initramfs = join(cache, 'initramfs.cpio');
const initramfsVirtio = join(cache, 'initramfs-virtio.cpio');
const initramfsNet = join(cache, 'initramfs-net.cpio');
/** busybox and a /init that hands ttyS0 to an interactive shell (test/slow/linux-snapshot.test.ts). */
const initramfsShell = join(cache, 'initramfs-shell.cpio');
/** What the net initramfs was built from (its /init and C programs), to rebuild it when they change. */
const initramfsNetStamp = `${initramfsNet}.stamp`;
/** bench/net-peer.c built for the host: the loopback rows of `npm run bench:net`. */
const netPeerHost = join(cache, 'net-peer');

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

/**
 * The shell initramfs's /init: mount the usual file systems, print VMMAPI-SHELL-READY and
 * become busybox's shell on the console (ttyS0), which the snapshot slow test types into.
 */
const SHELL_INIT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo VMMAPI-SHELL-READY
exec /bin/busybox sh
`;

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
 * The modules to load for `needs` (VIRTIO_NEEDS, NET_NEEDS), dependencies first: [{ name, path
 * (relative to the modules directory), size }], and the needs the kernel builds in. `what`
 * names the initramfs in messages.
 */
function neededModules(tree, release, bb, needs, what) {
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
    if (!entry) fail(`module ${name} (needed by ${chain.join(' -> ') || what}) is neither built in nor in modules.dep`);
    for (const d of entry.deps) if (!builtin.has(d)) visit(d, [...chain, name]);
    order.push({ name, path: entry.path, size: statSync(join(dir, entry.path)).size });
  };
  for (const [name, why] of needs) {
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

/**
 * What the net initramfs needs from the kernel (as VIRTIO_NEEDS: built in is only reported,
 * a module is copied with its dependencies). The Debian 6.1 cloud kernel builds all of these
 * as modules (CONFIG_VIRTIO_NET, CONFIG_NET_FAILOVER, CONFIG_FAILOVER, CONFIG_VSOCKETS,
 * CONFIG_VIRTIO_VSOCKETS(_COMMON)=m); virtio_net's modules.dep adds net_failover and failover,
 * virtio_pci's adds virtio, virtio_ring and virtio_pci_{modern,legacy}_dev. IPv4, AF_UNIX and
 * AF_PACKET are built in.
 */
const NET_NEEDS = [
  ['virtio_pci', 'the virtio-pci transport'],
  ['virtio_net', 'eth0'],
  ['vsock', 'AF_VSOCK, /dev/vsock'],
  ['vmw_vsock_virtio_transport_common', "virtio-vsock's packet layer"],
  ['vmw_vsock_virtio_transport', 'the virtio-vsock device driver'],
];

/**
 * bin/vsock-line of the net initramfs: busybox's nc knows AF_INET(6) only, and the guest has no
 * compiler, so this is built on the host with `gcc -static` (glibc's libc.a). Every wait is
 * bounded by SECS (poll on non-blocking sockets, CLOCK_MONOTONIC deadlines); errors go to
 * stderr as "step: strerror", with exit status 1.
 *   vsock-line cid                          print the local CID (IOCTL_VM_SOCKETS_GET_LOCAL_CID)
 *   vsock-line connect CID PORT LINE SECS   connect, send LINE and a newline, print the reply line
 *   vsock-line listen PORT SECS READY       bind VMADDR_CID_ANY:PORT, listen, create the file READY,
 *                                           accept one connection, read a line, send it back,
 *                                           print it
 */
const VSOCK_LINE_C = String.raw`/* vsock-line: one line over AF_VSOCK (vmmapi, scripts/fetch-linux.mjs: VSOCK_LINE_C). */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static int fail(const char *step) {
  fprintf(stderr, "%s: %s\n", step, strerror(errno));
  return 1;
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

/* Until fd has one of events, or the deadline (then ETIMEDOUT). */
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    struct pollfd p = { .fd = fd, .events = events };
    int r = poll(&p, 1, left > 3600000 ? 3600000 : (int)left);
    if (r > 0) return 0;
    if (r < 0 && errno != EINTR) return -1;
  }
}

/* A line (without its newline) into buf; the connection's end before any byte is ECONNRESET. */
static int read_line(int fd, char *buf, size_t cap, long long deadline) {
  size_t n = 0;
  while (n < cap - 1) {
    if (wait_fd(fd, POLLIN, deadline) < 0) return -1;
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    if (r == 0) {
      if (n == 0) {
        errno = ECONNRESET;
        return -1;
      }
      break;
    }
    char *nl = memchr(buf + n, '\n', (size_t)r);
    n += (size_t)r;
    if (nl) {
      n = (size_t)(nl - buf);
      break;
    }
  }
  buf[n] = 0;
  return 0;
}

static int write_all(int fd, const char *p, size_t n, long long deadline) {
  while (n) {
    if (wait_fd(fd, POLLOUT, deadline) < 0) return -1;
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int vsock_socket(void) {
  return socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

static int cmd_cid(void) {
  int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("open /dev/vsock");
  unsigned int cid;
  if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0) return fail("IOCTL_VM_SOCKETS_GET_LOCAL_CID");
  printf("%u\n", cid);
  return 0;
}

static int cmd_connect(unsigned int cid, unsigned int port, const char *line, int secs) {
  long long deadline = now_ms() + secs * 1000LL;
  int fd = vsock_socket();
  if (fd < 0) return fail("socket AF_VSOCK");
  struct timeval tv = { .tv_sec = secs };
  setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv, sizeof tv); /* the kernel's own bound: 2 s by default */
  struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    if (errno != EINPROGRESS) return fail("connect");
    if (wait_fd(fd, POLLOUT, deadline) < 0) return fail("connect");
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return fail("getsockopt SO_ERROR");
    if (err) {
      errno = err;
      return fail("connect");
    }
  }
  size_t n = strlen(line);
  char *out = malloc(n + 1);
  if (!out) return fail("malloc");
  memcpy(out, line, n);
  out[n] = '\n';
  if (write_all(fd, out, n + 1, deadline) < 0) return fail("write");
  char reply[1024];
  if (read_line(fd, reply, sizeof reply, deadline) < 0) return fail("read");
  printf("%s\n", reply);
  close(fd);
  return 0;
}

static int cmd_listen(unsigned int port, int secs, const char *ready) {
  long long deadline = now_ms() + secs * 1000LL;
  int fd = vsock_socket();
  if (fd < 0) return fail("socket AF_VSOCK");
  struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) return fail("bind");
  if (listen(fd, 1) < 0) return fail("listen");
  int r = open(ready, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (r < 0) return fail("create the ready file");
  close(r);
  int c;
  for (;;) {
    if (wait_fd(fd, POLLIN, deadline) < 0) return fail("accept");
    c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) break;
    if (errno != EAGAIN && errno != EINTR) return fail("accept");
  }
  char line[1024];
  if (read_line(c, line, sizeof line, deadline) < 0) return fail("read");
  size_t n = strlen(line);
  line[n] = '\n';
  if (write_all(c, line, n + 1, deadline) < 0) return fail("write");
  line[n] = 0;
  printf("%s\n", line);
  close(c);
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc == 2 && !strcmp(argv[1], "cid")) return cmd_cid();
  if (argc == 6 && !strcmp(argv[1], "connect"))
    return cmd_connect((unsigned int)strtoul(argv[2], NULL, 0), (unsigned int)strtoul(argv[3], NULL, 0), argv[4], atoi(argv[5]));
  if (argc == 5 && !strcmp(argv[1], "listen")) return cmd_listen((unsigned int)strtoul(argv[2], NULL, 0), atoi(argv[3]), argv[4]);
  fprintf(stderr, "usage: vsock-line cid | connect CID PORT LINE SECS | listen PORT SECS READY\n");
  return 2;
}
`;

/** C source `text` (named `name`) built with the host's gcc into `out`: static (glibc's libc.a), stripped. */
function buildStatic(name, text, out) {
  try {
    execSync('command -v gcc', { stdio: 'ignore' });
  } catch {
    fail(`initramfs-net.cpio needs gcc and glibc's static libc.a (Debian: gcc, libc6-dev) to build its ${name} (busybox nc has no AF_VSOCK)`);
  }
  const dir = join(cache, `${name}-build`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const src = join(dir, `${name}.c`);
  writeFileSync(src, text);
  run('gcc', ['-static', '-O2', '-s', '-o', out, src]);
  rmSync(dir, { recursive: true, force: true });
  chmodSync(out, 0o755);
}

/** bench/net-peer.c: the far end of `npm run bench:net`, in the guest (bin/net-peer) and on the host (netPeerHost). */
const NET_PEER_C = readFileSync(join(root, 'bench', 'net-peer.c'), 'utf8');

/**
 * The net initramfs's /init, for test/slow/linux-net.test.ts (one virtio-net, on a TAP whose
 * host end is 10.213.1.1/24 with a line server on TCP port 7000; one virtio-vsock, the host's
 * end answering a line on port 5000 and connecting to the guest's port 6000). As virtioInit:
 * every step prints a marker, VMMAPI-...-FAILED=why when it fails, and goes on to poweroff -f;
 * every wait is bounded, in guest seconds (on PVM hosts the test's tsc_early_khz makes a guest
 * second last ten real ones: all the waits below failing in turn add up to 110 guest seconds,
 * about 18 real minutes, which with the boot stays within the test's 30).
 * - modules in dependency order; lo up; eth0 (awaited up to 10 s; virtio_net's probe makes it
 *   at insmod): 10.213.1.2/24, up, its MAC printed (VMMAPI-ETH0-MAC=) and its address;
 * - TCP: "hello tcp from the guest" to 10.213.1.1:7000 with busybox nc (-w 20 bounds the
 *   connect, timeout 30 the whole exchange: the server answers one line and closes), the
 *   reply line printed as VMMAPI-TCP-REPLY=;
 * - vsock: VMMAPI-VSOCK-DEVICE=found or none (a virtio device of ID 0x13); with one, the local
 *   CID (VMMAPI-VSOCK-CID=) and a listener on port 6000 (60 s to accept and echo one line)
 *   started first (awaited up to 10 s: ready when /tmp/vsock6000.ready exists), so the host can
 *   connect as soon as it has the guest's line on port 5000; then "hello vsock from the guest" to CID 2 (the host) port 5000, the reply as
 *   VMMAPI-VSOCK-REPLY= (30 s; attempted without a device too: it fails at once, ENODEV); then the
 *   listener's outcome, VMMAPI-VSOCK-LISTEN-OK=<the line the host sent, echoed back>;
 * - VMMAPI-NET-DONE, poweroff -f.
 * With vmmapi.bench=ADDR on the kernel command line, for `npm run bench:net` (bench/net.ts), the
 * TCP line and the vsock steps give way to bin/net-peer: over TCP to ADDR port 7100, then over
 * vsock to CID 2 port 7200, each obeying the host's commands (VMMAPI-BENCH-TCP-OK and
 * VMMAPI-BENCH-VSOCK-OK, or -FAILED=why), then VMMAPI-NET-DONE and poweroff -f.
 */
function netInit(release, modules) {
  const insmods = modules.map((m) => `${m.name}:/lib/modules/${release}/${m.path}`).join(' \\\n  ');
  return `#!/bin/busybox sh
# vmmapi's net initramfs (scripts/fetch-linux.mjs): see netInit there.
BB=/bin/busybox
VL=/bin/vsock-line
$BB mount -t proc proc /proc
$BB mount -t sysfs sysfs /sys
$BB mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo VMMAPI-INIT-OK
echo "VMMAPI-NPROC=$($BB nproc)"
echo "VMMAPI-KERNEL=$($BB uname -r)"

# tick: a tenth of a second (see the virtio initramfs's /init)
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
# first line of a file, for failure markers
first() { $BB head -n 1 "$1" 2>/dev/null; }

failed=0
for m in \\
  ${insmods}; do
  name=\${m%%:*}
  if out=$($BB insmod "\${m#*:}" 2>&1); then echo "VMMAPI-INSMOD=$name"; else echo "VMMAPI-INSMOD-FAILED=$name: $out"; failed=$((failed + 1)); fi
done
if [ $failed = 0 ]; then echo VMMAPI-NET-MODULES-OK; else echo "VMMAPI-NET-MODULES-FAILED=$failed"; fi

$BB ip link set lo up || echo VMMAPI-LO-FAILED=ip link set lo up

# vmmapi.ip=ADDR/LEN (default 10.213.1.2/24), vmmapi.peer=ADDR (ping it) and vmmapi.bench=ADDR
# (serve npm run bench:net: its TCP end at ADDR) on the kernel command line
ip=10.213.1.2/24
peer=
bench=
for w in $($BB cat /proc/cmdline); do
  case "$w" in vmmapi.ip=*) ip=\${w#vmmapi.ip=} ;; vmmapi.peer=*) peer=\${w#vmmapi.peer=} ;; vmmapi.bench=*) bench=\${w#vmmapi.bench=} ;; esac
done
if wait_for -e /sys/class/net/eth0 100; then
  if out=$( ($BB ip addr add $ip dev eth0 && $BB ip link set eth0 up) 2>&1); then
    echo "VMMAPI-ETH0-MAC=$($BB cat /sys/class/net/eth0/address)"
    echo "VMMAPI-ETH0=$($BB ip -o -4 addr show dev eth0 | $BB awk '{print $4}')"
    if [ -n "$peer" ]; then
      # the peer may still be booting: one ping a try, at most 60 (a guest second each; on a
      # PVM host the slow tests' command line makes a guest second ten real ones)
      n=0
      until $BB ping -c 1 -W 1 $peer >/tmp/ping.out 2>&1 || [ $n -ge 60 ]; do n=$((n + 1)); done
      if [ $n -lt 60 ]; then echo "VMMAPI-PING-OK=$peer after $n retries"; else echo "VMMAPI-PING-FAILED=$peer: $(first /tmp/ping.out)"; fi
      # stay up a while (3 guest seconds): the peer may have answered before it began to ping
      $BB sleep 3
    fi
    if [ -z "$bench" ]; then
      reply=$(echo "hello tcp from the guest" | $BB timeout 30 $BB nc -w 20 10.213.1.1 7000 2>/tmp/nc.err)
      if [ -n "$reply" ]; then echo "VMMAPI-TCP-REPLY=$reply"; else echo "VMMAPI-TCP-REPLY-FAILED=no reply (nc: $(first /tmp/nc.err))"; fi
    fi
  else
    echo "VMMAPI-ETH0-FAILED=$out"
    echo VMMAPI-TCP-REPLY-FAILED=eth0 not configured
  fi
else
  echo VMMAPI-ETH0-FAILED=no eth0
  echo VMMAPI-TCP-REPLY-FAILED=no eth0
fi

if [ -n "$bench" ]; then
  # npm run bench:net (bench/net.ts) drives bin/net-peer over TCP (to $bench port 7100) and
  # vsock (CID 2 port 7200) and measures on the host; each waits at most 600 guest seconds
  if /bin/net-peer tcp $bench 7100 600 2>/tmp/np.err; then echo VMMAPI-BENCH-TCP-OK; else echo "VMMAPI-BENCH-TCP-FAILED=$(first /tmp/np.err)"; fi
  if /bin/net-peer vsock 2 7200 600 2>/tmp/np.err; then echo VMMAPI-BENCH-VSOCK-OK; else echo "VMMAPI-BENCH-VSOCK-FAILED=$(first /tmp/np.err)"; fi
  echo VMMAPI-NET-DONE
  $BB poweroff -f
fi

device=none
for d in /sys/bus/virtio/devices/*; do
  [ "$($BB cat "$d/device" 2>/dev/null)" = 0x0013 ] && device=found
done
echo "VMMAPI-VSOCK-DEVICE=$device"
if [ $device = found ]; then
  echo "VMMAPI-VSOCK-CID=$($VL cid 2>&1)"
  $VL listen 6000 60 /tmp/vsock6000.ready >/tmp/listen.out 2>/tmp/listen.err &
  listener=$!
  wait_for -e /tmp/vsock6000.ready 100 || echo "VMMAPI-VSOCK-LISTEN-FAILED=not listening after 10 s: $(first /tmp/listen.err)"
fi
if reply=$($VL connect 2 5000 "hello vsock from the guest" 30 2>/tmp/connect.err); then
  echo "VMMAPI-VSOCK-REPLY=$reply"
else
  echo "VMMAPI-VSOCK-REPLY-FAILED=$(first /tmp/connect.err)"
fi
if [ $device = found ]; then
  if wait $listener; then echo "VMMAPI-VSOCK-LISTEN-OK=$(first /tmp/listen.out)"; else echo "VMMAPI-VSOCK-LISTEN-FAILED=$(first /tmp/listen.err)"; fi
else
  echo VMMAPI-VSOCK-LISTEN-FAILED=no virtio-vsock device
fi

echo VMMAPI-NET-DONE
$BB poweroff -f
`;
}

mkdirSync(cache, { recursive: true });

let kernelTree; // the unpacked kernel package, while vmlinuz or the virtio or net initramfs needs it
const netStamp = createHash('sha256').update(netInit('RELEASE', [])).update(VSOCK_LINE_C).update(NET_PEER_C).digest('hex');
if (existsSync(initramfsNet) && (!existsSync(netPeerHost) || !existsSync(initramfsNetStamp) || readFileSync(initramfsNetStamp, 'utf8') !== netStamp)) {
  console.log('fetch-linux: the net initramfs is out of date (its /init or programs changed): rebuilding it');
  rmSync(initramfsNet);
}
const needModules = !existsSync(initramfsVirtio) || !existsSync(initramfsNet);
if (!existsSync(vmlinuz)) {
  const deb = fetchDeb(kernelPackage());
  kernelTree = unpack(deb, join(cache, 'kernel-root'));
  const image = kernelImage(kernelTree, deb);
  copyFileSync(image, vmlinuz);
  console.log(`fetch-linux: kernel ${basename(image)} -> ${vmlinuz}`);
} else if (needModules) {
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
if (!existsSync(initramfs) || !existsSync(initramfsShell) || needModules) {
  bb = join(fetchPackage('busybox-static', join(cache, 'busybox-root')), 'bin', 'busybox');
  if (!existsSync(bb)) fail('busybox-static has no bin/busybox');
}

if (!existsSync(initramfs)) {
  const dir = initramfsTree('initramfs', bb);
  writeFileSync(join(dir, 'init'), INIT, { mode: 0o755 });
  packCpio(dir, initramfs, bb);
  console.log(`fetch-linux: initramfs -> ${initramfs}`);
}

if (!existsSync(initramfsShell)) {
  const dir = initramfsTree('initramfs-shell', bb);
  writeFileSync(join(dir, 'init'), SHELL_INIT, { mode: 0o755 });
  packCpio(dir, initramfsShell, bb);
  console.log(`fetch-linux: shell initramfs -> ${initramfsShell}`);
}

/** The one lib/modules/* release of the unpacked kernel package. */
function kernelRelease() {
  const releases = readdirSync(join(kernelTree, 'lib', 'modules'));
  if (releases.length !== 1) fail(`the kernel package has ${releases.length} lib/modules/* directories, expected 1`);
  return releases[0];
}

/** A fresh initramfs tree cache/`name` holding busybox and `order`'s modules from the kernel package. */
function modulesTree(name, release, order, builtins) {
  for (const b of builtins) console.log(`fetch-linux: ${release}: ${b.name} built in (${b.why})`);
  const dir = initramfsTree(name, bb);
  for (const m of order) {
    const to = join(dir, 'lib', 'modules', release, m.path);
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(join(kernelTree, 'lib', 'modules', release, m.path), to);
    console.log(`fetch-linux: ${release}: module ${m.name} (${m.path}, ${m.size} bytes)`);
  }
  return dir;
}

if (!existsSync(initramfsVirtio)) {
  const release = kernelRelease();
  const { order, builtins } = neededModules(kernelTree, release, bb, VIRTIO_NEEDS, 'the virtio initramfs');
  const dir = modulesTree('initramfs-virtio', release, order, builtins);
  writeFileSync(join(dir, 'init'), virtioInit(release, order), { mode: 0o755 });
  packCpio(dir, initramfsVirtio, bb);
  console.log(`fetch-linux: virtio initramfs (load order ${order.map((m) => m.name).join(' ')}) -> ${initramfsVirtio}`);
}

if (!existsSync(initramfsNet)) {
  const release = kernelRelease();
  const { order, builtins } = neededModules(kernelTree, release, bb, NET_NEEDS, 'the net initramfs');
  const dir = modulesTree('initramfs-net', release, order, builtins);
  buildStatic('vsock-line', VSOCK_LINE_C, join(dir, 'bin', 'vsock-line'));
  buildStatic('net-peer', NET_PEER_C, join(dir, 'bin', 'net-peer'));
  copyFileSync(join(dir, 'bin', 'net-peer'), netPeerHost);
  writeFileSync(join(dir, 'init'), netInit(release, order), { mode: 0o755 });
  packCpio(dir, initramfsNet, bb);
  writeFileSync(initramfsNetStamp, netStamp);
  console.log(`fetch-linux: net initramfs (load order ${order.map((m) => m.name).join(' ')}; bin/vsock-line, bin/net-peer) -> ${initramfsNet}`);
}

if (kernelTree) rmSync(kernelTree, { recursive: true, force: true }); // the rest of the modules is not needed

console.log(`fetch-linux: ready: ${vmlinuz} ${initramfs} ${initramfsShell} ${initramfsVirtio} ${initramfsNet}`);

/**
 * `npm run bench:net`: TCP over virtio-net on a TAP and streams over virtio-vsock, guest↔host,
 * next to the same transfers host-local (TCP over loopback, a Unix stream socket) in the same
 * run, as throughput both ways and request/response round trips.
 *
 * The guest is Debian's 6.1 kernel with the net initramfs (scripts/fetch-linux.mjs) booted by
 * `vmmapi run --net tap=vmtap1 --vsock cid=3,socket=…` with `vmmapi.bench=10.213.1.1` on its
 * command line: its /init runs bin/net-peer (bench/net-peer.c) over TCP to 10.213.1.1:7100,
 * then over vsock to the host's port 7200, and net-peer does what this program tells it. The
 * loopback rows run the same net-peer, built for the host, against the same driver. Every time
 * is taken here, on the host's clock: the guest's clock is not trusted (on PVM hosts the slow
 * tests' command line makes a guest second ten real ones).
 *
 * Everything runs inside a network namespace this program makes (`unshare -n`, then itself
 * again with --in-netns): the TAP and the listeners exist nowhere else, and nothing is sent to
 * any other address. Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN) and /dev/net/tun.
 *
 * Each row runs for BENCH_NET_SECONDS (default 5) of host time: throughput in 256 KiB commands,
 * round trips of 64 bytes each way. The boot before the guest rows takes minutes on PVM hosts.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../src/kvm/native.js';
import { CLI, KERNEL, LIMIT_MS, hostTscKhz, linuxCommandLine, requireFetched } from '../test/slow/linux-guest.js';
import { netnsProblem } from '../test/slow/linux-net-host.js';

const CACHE = join(packageRoot(), '.cache', 'linux');
const INITRD_NET = join(CACHE, 'initramfs-net.cpio');
/** bench/net-peer.c built for the host by scripts/fetch-linux.mjs. */
const NET_PEER = join(CACHE, 'net-peer');
const SECONDS = Number(process.env.BENCH_NET_SECONDS ?? 5);
const CHUNK = 256 * 1024;
const ROUND_BYTES = 64;
/** How long a peer may take to connect: the guest boots first (minutes on PVM hosts). */
const CONNECT_MS = LIMIT_MS;

const OP = { SEND: 1, RECV: 2, ECHO: 3, QUIT: 4 } as const;

/** The bytes arriving on a socket, taken in exact amounts. */
class ByteReader {
  #chunks: Buffer[] = [];
  #have = 0;
  #want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  #ended: Error | undefined;

  constructor(socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.#chunks.push(d);
      this.#have += d.length;
      this.#settle();
    });
    const end = (e?: Error): void => {
      this.#ended ??= e ?? new Error('the peer closed the connection');
      this.#settle();
    };
    socket.on('end', () => end());
    socket.on('close', () => end());
    socket.on('error', end);
  }

  #settle(): void {
    const w = this.#want;
    if (!w) return;
    if (this.#have >= w.n) {
      this.#want = undefined;
      const all = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks);
      this.#chunks = all.length > w.n ? [all.subarray(w.n)] : [];
      this.#have -= w.n;
      w.resolve(all.subarray(0, w.n));
    } else if (this.#ended) {
      this.#want = undefined;
      w.reject(this.#ended);
    }
  }

  /** Exactly `n` bytes. */
  take(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.#want = { n, resolve, reject };
      this.#settle();
    });
  }
}

function command(op: number, a: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(op, 0);
  b.writeUInt32LE(a, 4);
  return b;
}

/** One row's measurement. */
interface Rates {
  peerToHostMBps: number;
  hostToPeerMBps: number;
  rttMedianUs: number;
  rttP99Us: number;
  rounds: number;
}

/** Drives one connected net-peer through the three measurements, then QUIT. */
async function measure(socket: Socket): Promise<Rates> {
  socket.setNoDelay(true);
  const reader = new ByteReader(socket);
  const zeros = Buffer.alloc(CHUNK);
  const forSeconds = async (step: () => Promise<number>): Promise<{ total: number; seconds: number }> => {
    const t0 = process.hrtime.bigint();
    let total = 0;
    let seconds = 0;
    do {
      total += await step();
      seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (seconds < SECONDS);
    return { total, seconds };
  };
  const up = await forSeconds(async () => {
    socket.write(command(OP.SEND, CHUNK));
    await reader.take(CHUNK);
    return CHUNK;
  });
  const down = await forSeconds(async () => {
    socket.write(Buffer.concat([command(OP.RECV, CHUNK), zeros]));
    await reader.take(1);
    return CHUNK;
  });
  const rtts: number[] = [];
  const payload = Buffer.alloc(ROUND_BYTES, 0x5a);
  const round = Buffer.concat([command(OP.ECHO, ROUND_BYTES), payload]);
  await forSeconds(async () => {
    const t0 = process.hrtime.bigint();
    socket.write(round);
    const back = await reader.take(ROUND_BYTES);
    rtts.push(Number(process.hrtime.bigint() - t0) / 1000);
    if (!back.equals(payload)) throw new Error('the peer echoed other bytes than it was sent');
    return 1;
  });
  socket.end(command(OP.QUIT, 0));
  rtts.sort((x, y) => x - y);
  return {
    peerToHostMBps: up.total / up.seconds / 1e6,
    hostToPeerMBps: down.total / down.seconds / 1e6,
    rttMedianUs: rtts[rtts.length >> 1],
    rttP99Us: rtts[Math.min(rtts.length - 1, Math.floor(rtts.length * 0.99))],
    rounds: rtts.length,
  };
}

async function listen(server: Server, ...where: [string] | [number, string]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(...(where as [number, string]), () => resolve());
  });
}

/** The first connection to `server` within `ms`, or why there was none. */
function firstConnection(server: Server, ms: number, what: string, died?: Promise<string>): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no connection within ${ms / 1000} s`)), ms);
    server.once('connection', (s: Socket) => {
      clearTimeout(timer);
      resolve(s);
    });
    died?.then((why) => {
      clearTimeout(timer);
      reject(new Error(`${what}: ${why}`));
    });
  });
}

/** A host-local net-peer (`args` after the binary), measured through `server`. */
async function loopbackRow(server: Server, args: string[]): Promise<Rates> {
  const child = spawn(NET_PEER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<string>((resolve) => child.on('close', (code) => resolve(`net-peer exited ${code}: ${err.trim()}`)));
  try {
    return await measure(await firstConnection(server, 30_000, `host-local net-peer ${args[0]}`, exited));
  } finally {
    await exited;
  }
}

interface Row {
  name: string;
  rates: Rates;
  peer?: Rates;
}

function printRows(rows: Row[]): void {
  const w = Math.max(...rows.map((r) => r.name.length));
  const ratio = (x: number, y: number | undefined): string => (y ? `${(x / y).toFixed(3)}×` : '');
  console.log(`\n${'path'.padEnd(w)}  ${'guest→host MB/s'.padStart(15)}  ${'host→guest MB/s'.padStart(15)}  ${'RTT median µs'.padStart(13)}  ${'RTT p99 µs'.padStart(10)}  rounds`);
  for (const { name, rates: r, peer } of rows) {
    console.log(
      `${name.padEnd(w)}  ${r.peerToHostMBps.toFixed(2).padStart(15)}  ${r.hostToPeerMBps.toFixed(2).padStart(15)}  ${r.rttMedianUs.toFixed(0).padStart(13)}  ${r.rttP99Us.toFixed(0).padStart(10)}  ${r.rounds}`,
    );
    if (peer) {
      console.log(
        `${'  vs host-local'.padEnd(w)}  ${ratio(r.peerToHostMBps, peer.peerToHostMBps).padStart(15)}  ${ratio(r.hostToPeerMBps, peer.hostToPeerMBps).padStart(15)}  ${ratio(r.rttMedianUs, peer.rttMedianUs).padStart(13)}  ${ratio(r.rttP99Us, peer.rttP99Us).padStart(10)}`,
      );
    }
  }
}

/** The VMM, attached to vmtap1 and vsock at `dir`/v.sock; resolves with why it ended. */
function startGuest(dir: string): { child: ChildProcess; out: () => string; ended: Promise<string> } {
  const args = [
    CLI, 'run', '--kernel', KERNEL, '--decompress-on-host', '--initrd', INITRD_NET, '--cpus', '1', '--memory', '512M',
    '--append', `${linuxCommandLine(hostTscKhz())} vmmapi.bench=10.213.1.1`,
    '--net', 'tap=vmtap1,mac=02:00:00:13:01:02',
    '--vsock', `cid=3,socket=${join(dir, 'v.sock')}`,
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const started = Date.now();
  let shown = 0;
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString('latin1');
    // progress: the guest's /init markers as they come
    for (let nl = out.indexOf('\n', shown); nl >= 0; nl = out.indexOf('\n', shown)) {
      const line = out.slice(shown, nl).trimEnd();
      shown = nl + 1;
      if (/^VMMAPI-(INIT-OK|NET-MODULES|ETH0=|BENCH)/.test(line)) console.log(`  ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s  guest: ${line}`);
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), LIMIT_MS);
  const ended = new Promise<string>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve(`vmmapi run exited ${code}; stderr: ${err.trim().slice(-500)}; guest's last output: ${out.slice(-1500)}`);
    }),
  );
  return { child, out: () => out, ended };
}

/** The benchmark proper, inside the namespace. */
async function inNetns(dir: string): Promise<void> {
  for (const cmd of ['ip link set lo up', 'ip tuntap add dev vmtap1 mode tap', 'ip link set vmtap1 up', 'ip addr add 10.213.1.1/24 dev vmtap1']) {
    execFileSync(cmd.split(' ')[0], cmd.split(' ').slice(1), { stdio: 'pipe' });
  }
  const tcp = createServer();
  const vsock = createServer();
  const loopTcp = createServer();
  const loopUnix = createServer();
  await listen(tcp, 7100, '10.213.1.1');
  await listen(vsock, join(dir, 'v.sock_7200'));
  await listen(loopTcp, 7101, '127.0.0.1');
  await listen(loopUnix, join(dir, 'local.sock'));

  const t0 = Date.now();
  const guest = startGuest(dir);
  const guestTcp = await firstConnection(tcp, CONNECT_MS, 'the guest over TCP', guest.ended);
  console.log(`the guest connected over TCP ${((Date.now() - t0) / 1000).toFixed(0)} s after vmmapi run started`);
  const tapRates = await measure(guestTcp);
  const guestVsock = await firstConnection(vsock, 10 * 60_000, 'the guest over vsock', guest.ended);
  const vsockRates = await measure(guestVsock);
  const end = await guest.ended;
  const out = guest.out();
  for (const marker of ['VMMAPI-BENCH-TCP-OK', 'VMMAPI-BENCH-VSOCK-OK']) {
    if (!out.includes(marker)) throw new Error(`the guest did not print ${marker}: ${end}`);
  }

  // host-local, after the guest is gone: the same peer program and driver, nothing in between
  const loopTcpRates = await loopbackRow(loopTcp, ['tcp', '127.0.0.1', '7101', '60']);
  const loopUnixRates = await loopbackRow(loopUnix, ['unix', join(dir, 'local.sock'), '60']);
  for (const s of [tcp, vsock, loopTcp, loopUnix]) s.close();

  printRows([
    { name: 'guest TCP over virtio-net + TAP', rates: tapRates, peer: loopTcpRates },
    { name: 'host-local TCP over loopback', rates: loopTcpRates },
    { name: 'guest stream over virtio-vsock', rates: vsockRates, peer: loopUnixRates },
    { name: 'host-local Unix stream socket', rates: loopUnixRates },
  ]);
  console.log(
    '\n"vs host-local": the guest row over the host-local row of the same kind (throughput: higher is better;' +
      ' RTT: lower is better). On PVM hosts the guest kernel\'s network stack runs in KVM\'s instruction emulator.',
  );
}

async function main(): Promise<void> {
  if (process.argv[2] === '--in-netns') return inNetns(process.argv[3]);
  requireFetched(KERNEL, INITRD_NET, NET_PEER);
  const problem = netnsProblem();
  if (problem) throw new Error(problem);
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build:ts first`);
  console.log(`vmmapi bench:net: ${SECONDS} s a measurement; boots Linux first (minutes on PVM hosts)`);
  const dir = mkdtempSync(join(tmpdir(), 'vmmapi-bench-net-'));
  try {
    const child = spawn('unshare', ['-n', process.execPath, fileURLToPath(import.meta.url), '--in-netns', dir], { stdio: 'inherit' });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    if (code !== 0) throw new Error(`the benchmark inside its network namespace failed (exit ${code})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(`bench:net: ${e.message}`);
  process.exit(1);
});

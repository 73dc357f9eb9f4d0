/**
 * The virtio devices of `vmmapi run` (`--disk`, `--net`, `--vsock`, `--rng`, `--console`):
 * opened, put on the PC's PCI bus (or handed to restorePc, for `--restore`), and closed again
 * when the run ends. Socket paths vmmapi listens on (the console's, vsock's) are taken as the
 * control socket's are: a live socket there is refused, a stale one replaced.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Pc } from '../platform/pc.js';
import type { VirtioDevice } from '../virtio/device.js';
import { claimSocketPath, SocketPathError } from '../control/socket-path.js';
import { VirtioBlock } from '../virtio/devices/block.js';
import { VirtioConsole } from '../virtio/devices/console.js';
import { VirtioRng } from '../virtio/devices/rng.js';
import { VirtioNet } from '../virtio/devices/net.js';
import type { NetBackend } from '../net/backend.js';
import { TapBackend } from '../net/tap.js';
import { StreamSocketBackend } from '../net/stream.js';
import { UnixMuxer } from '../vsock/unix-muxer.js';
import type { ConsoleSpec, DeviceSpecs, NetSpec } from './device-args.js';
import { ByteSink } from './console.js';
import { UsageError } from './errors.js';

/** Undoes {@link attachDevices}: closes the disks, the console's file or socket. */
export type DetachDevices = () => Promise<void>;

const OPEN_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  EROFS: 'read-only file system (add readonly=on)',
};

function why(e: unknown): string {
  return OPEN_ERRORS[(e as NodeJS.ErrnoException).code ?? ''] ?? (e as Error).message;
}

/** The console's host side: where hvc0's output goes and where its input comes from. */
interface ConsoleEnd {
  output: (bytes: Uint8Array) => void;
  /** Start feeding input to the device (for a socket). */
  connect?: (console: VirtioConsole) => void;
  close: () => Promise<void>;
}

/** Take socket `path` for listening; UsageError if it is in use or not a socket. */
async function claim(path: string, what: string): Promise<void> {
  try {
    await claimSocketPath(path, what);
  } catch (e) {
    throw e instanceof SocketPathError ? new UsageError(e.message) : e;
  }
}

async function consoleEnd(spec: ConsoleSpec, stdout: ByteSink, log: (line: string) => void, append: boolean): Promise<ConsoleEnd | undefined> {
  const pushAll = (sink: ByteSink) => (bytes: Uint8Array) => {
    for (const b of bytes) sink.push(b);
  };
  switch (spec.kind) {
    case 'off':
      return undefined;
    case 'tty':
      return { output: pushAll(stdout), close: async () => {} };
    case 'file': {
      let sink: ByteSink;
      try {
        sink = ByteSink.file(spec.path, { append });
      } catch (e) {
        throw new UsageError(`cannot write console file '${spec.path}': ${why(e)}`);
      }
      return { output: pushAll(sink), close: async () => sink.close() };
    }
    case 'socket':
      return socketEnd(spec.path, log);
  }
}

/** Output held for the console socket's first client, at most (the rest is dropped). */
export const SOCKET_EARLY_OUTPUT_BYTES = 64 * 1024;

/**
 * A Unix socket vmmapi listens on; the newest client is hvc0. Output from before the first
 * client connects is held for it (at most {@link SOCKET_EARLY_OUTPUT_BYTES}, so a guest's
 * first lines are not lost to a client that connects a moment after the guest starts);
 * once a client has come and gone, output while nobody is connected is dropped.
 */
async function socketEnd(path: string, log: (line: string) => void): Promise<ConsoleEnd> {
  let client: { socket: Socket; sink: ByteSink } | undefined;
  let device: VirtioConsole | undefined;
  let early: Uint8Array[] | undefined = [];
  let earlyBytes = 0;
  const server: Server = createServer((socket) => {
    client?.socket.destroy();
    const sink = ByteSink.stream(socket);
    const me = { socket, sink };
    client = me;
    for (const chunk of early ?? []) for (const b of chunk) sink.push(b);
    early = undefined;
    socket.on('data', (d: Buffer) => device?.input(d));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (client === me) client = undefined;
    });
  });
  await claim(path, 'console socket');
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new UsageError(`cannot listen on console socket '${path}': ${why(e)}`)));
    server.listen(path, () => resolve());
  });
  server.unref();
  log(`virtio console: listening on ${path}`);
  return {
    output: (bytes) => {
      if (client) for (const b of bytes) client.sink.push(b);
      else if (early && earlyBytes < SOCKET_EARLY_OUTPUT_BYTES) {
        const kept = bytes.subarray(0, SOCKET_EARLY_OUTPUT_BYTES - earlyBytes);
        early.push(kept);
        earlyBytes += kept.length;
      }
    },
    connect: (c) => (device = c),
    close: async () => {
      client?.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The backend of one `--net`; UsageError naming the interface or socket when it cannot be opened. */
async function netBackend(n: NetSpec): Promise<NetBackend> {
  if (n.kind === 'tap') {
    try {
      return new TapBackend(n.name);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const hint = code === 'ENODEV' ? 'no such interface (create it first, e.g. ip tuntap add NAME mode tap)' : code === 'EBUSY' ? 'the interface is in use' : code === 'EPERM' || code === 'EACCES' ? 'permission denied (/dev/net/tun, or the interface\'s owner)' : (e as Error).message;
      throw new UsageError(`cannot open TAP interface '${n.name}': ${hint}`);
    }
  }
  try {
    return await StreamSocketBackend.connect(n.path);
  } catch (e) {
    throw new UsageError(`cannot connect --net socket '${n.path}': ${why(e)}`);
  }
}

/** Options of {@link openDevices}. */
export interface OpenDevicesOptions {
  /** Append to the console's file instead of truncating it (a restore). */
  append?: boolean;
}

/** The opened devices, in PCI slot order, and where the nets and vsock are among them. */
export interface OpenedDevices {
  devices: VirtioDevice[];
  /** Index in `devices` of each `specs.nets` entry. */
  netIndex: number[];
  /** Index in `devices` of the vsock device, if any. */
  vsockIndex?: number;
  /** Close every backend (files, sockets) again. */
  close: DetachDevices;
}

/** Open one disk; UsageError naming the image. */
async function openDisk(path: string, readonly: boolean): Promise<VirtioBlock> {
  try {
    return await VirtioBlock.open({ path, readonly });
  } catch (e) {
    throw new UsageError(`cannot open disk image '${path}': ${why(e)}`);
  }
}

/** A vsock device on a muxer listening on `socket`; UsageError naming the socket. */
async function openVsock(cid: number, socket: string): Promise<UnixMuxer> {
  await claim(socket, 'vsock socket');
  const mux = new UnixMuxer({ socket, cid });
  try {
    await mux.listen();
  } catch (e) {
    throw new UsageError(`cannot listen on vsock socket '${socket}': ${why(e)}`);
  }
  return mux;
}

/**
 * Open the devices `specs` asks for, in PCI slot order: the disks, the network devices,
 * vsock, the rng, the console. UsageError naming the file or socket that cannot be opened; on
 * any failure whatever was opened is closed again.
 */
export async function openDevices(specs: DeviceSpecs, stdout: ByteSink, log: (line: string) => void, opts: OpenDevicesOptions = {}): Promise<OpenedDevices> {
  const closers: (() => Promise<void>)[] = [];
  const close: DetachDevices = async () => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => {});
  };
  const devices: VirtioDevice[] = [];
  const netIndex: number[] = [];
  let vsockIndex: number | undefined;
  try {
    for (const d of specs.disks) {
      const blk = await openDisk(d.path, d.readonly);
      closers.push(() => blk.close());
      devices.push(blk);
    }
    for (const n of specs.nets) {
      const backend = await netBackend(n);
      closers.push(async () => backend.close());
      netIndex.push(devices.push(new VirtioNet(n.mac === undefined ? { backend } : { backend, mac: n.mac })) - 1);
    }
    if (specs.vsock) {
      const mux = await openVsock(specs.vsock.cid, specs.vsock.socket);
      closers.push(() => mux.close());
      vsockIndex = devices.push(mux.device) - 1;
    }
    if (specs.rng) devices.push(new VirtioRng());
    const end = await consoleEnd(specs.console, stdout, log, opts.append ?? false);
    if (end) {
      closers.push(end.close);
      const c = new VirtioConsole({ output: end.output });
      end.connect?.(c);
      devices.push(c);
    }
    return { devices, netIndex, vsockIndex, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * Open the devices `specs` asks for ({@link openDevices}) and put them on `pc`'s PCI bus.
 * Resolves with the function that closes them again.
 */
export async function attachDevices(pc: Pc, specs: DeviceSpecs, stdout: ByteSink, log: (line: string) => void): Promise<DetachDevices> {
  const opened = await openDevices(specs, stdout, log);
  try {
    for (const d of opened.devices) pc.addVirtioDevice(d);
  } catch (e) {
    await opened.close();
    throw e;
  }
  return opened.close;
}

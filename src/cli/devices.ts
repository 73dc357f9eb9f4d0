/**
 * The virtio devices of `vmmapi run` (`--disk`, `--net`, `--vsock`, `--rng`, `--console`):
 * opened, put on the PC's PCI bus, and closed again when the run ends.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import type { Pc } from '../platform/pc.js';
import { VirtioBlock } from '../virtio/devices/block.js';
import { VirtioConsole } from '../virtio/devices/console.js';
import { VirtioRng } from '../virtio/devices/rng.js';
import { VirtioNet } from '../virtio/devices/net.js';
import type { NetBackend } from '../net/backend.js';
import { TapBackend } from '../net/tap.js';
import { StreamSocketBackend } from '../net/stream.js';
import { UnixMuxer } from '../vsock/unix-muxer.js';
import type { NetSpec } from './device-args.js';
import type { RunConfig } from './args.js';
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

async function consoleEnd(spec: RunConfig['console'], stdout: ByteSink, log: (line: string) => void): Promise<ConsoleEnd | undefined> {
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
        sink = ByteSink.file(spec.path);
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
  try {
    rmSync(path, { force: true });
  } catch {
    /* not a file we may remove: listen reports it */
  }
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

/**
 * Open and attach the devices `cfg` asks for, in PCI slot order: the disks, the network
 * devices, vsock, the rng, the console. UsageError naming the file when a disk or the console's file cannot be opened; on
 * any failure whatever was opened is closed again.
 */
export async function attachDevices(pc: Pc, cfg: RunConfig, stdout: ByteSink, log: (line: string) => void): Promise<DetachDevices> {
  const closers: (() => Promise<void>)[] = [];
  const detach: DetachDevices = async () => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => {});
  };
  try {
    for (const d of cfg.disks) {
      let blk: VirtioBlock;
      try {
        blk = await VirtioBlock.open({ path: d.path, readonly: d.readonly });
      } catch (e) {
        throw new UsageError(`cannot open disk image '${d.path}': ${why(e)}`);
      }
      closers.push(() => blk.close());
      pc.addVirtioDevice(blk);
    }
    for (const n of cfg.nets) {
      const backend = await netBackend(n);
      closers.push(async () => backend.close());
      pc.addVirtioDevice(new VirtioNet(n.mac === undefined ? { backend } : { backend, mac: n.mac }));
    }
    if (cfg.vsock) {
      const mux = new UnixMuxer({ socket: cfg.vsock.socket, cid: cfg.vsock.cid });
      try {
        await mux.listen();
      } catch (e) {
        throw new UsageError(`cannot listen on vsock socket '${cfg.vsock.socket}': ${why(e)}`);
      }
      closers.push(() => mux.close());
      pc.addVirtioDevice(mux.device);
    }
    if (cfg.rng) pc.addVirtioDevice(new VirtioRng());
    const end = await consoleEnd(cfg.console, stdout, log);
    if (end) {
      closers.push(end.close);
      const c = new VirtioConsole({ output: end.output });
      end.connect?.(c);
      pc.addVirtioDevice(c);
    }
    return detach;
  } catch (e) {
    await detach();
    throw e;
  }
}

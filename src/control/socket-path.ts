/**
 * Taking a Unix socket path to listen on: a live socket there (another process answers) is
 * refused, a stale one (nobody listens: a VMM that was killed) is removed, anything that is
 * not a socket is left alone and refused.
 */
import { lstatSync, rmSync } from 'node:fs';
import { connect } from 'node:net';

/** The longest Unix socket path Linux takes (sun_path is 108 bytes with its NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

/** A socket path that cannot be taken; the message is one line naming the path. */
export class SocketPathError extends Error {
  /** `message` names the path and the reason. */
  constructor(message: string) {
    super(message);
    this.name = 'SocketPathError';
  }
}

/** How a connection attempt to `path` went: someone answered, nobody did, or another error. */
function probe(path: string, timeoutMs: number): Promise<'live' | 'stale' | NodeJS.ErrnoException> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (r: 'live' | 'stale' | NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    // a listener too busy to accept within the bound is still someone else's
    const timer = setTimeout(() => done('live'), timeoutMs);
    s.once('connect', () => done('live'));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'stale' : e));
  });
}

/**
 * Make `path` free for a listening socket. SocketPathError (naming `what`, e.g. "--api-socket")
 * if the path is too long, is not a socket, or is a socket another process listens on; a
 * socket nobody listens on is removed.
 */
export async function claimSocketPath(path: string, what: string, timeoutMs = 1000): Promise<void> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new SocketPathError(`${what} '${path}': too long for a Unix socket (at most ${MAX_SOCKET_PATH_BYTES} bytes)`);
  }
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new SocketPathError(`${what} '${path}': ${(e as Error).message}`);
  }
  if (!isSocket) throw new SocketPathError(`${what} '${path}' exists and is not a socket (not removed)`);
  const r = await probe(path, timeoutMs);
  if (r === 'live') throw new SocketPathError(`${what} '${path}' is in use: another process is listening on it`);
  if (r !== 'stale') throw new SocketPathError(`${what} '${path}': ${r.code ?? r.message}`);
  try {
    rmSync(path, { force: true });
  } catch (e) {
    throw new SocketPathError(`${what} '${path}': cannot remove the stale socket (${(e as Error).message})`);
  }
}

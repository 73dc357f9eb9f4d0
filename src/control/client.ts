/**
 * The control socket's client side: connect, send one request, read its reply (bounded in
 * size and time). Used by `vmmapi ctl`; any program can speak the protocol the same way
 * (e.g. `echo '{"cmd":"info"}' | socat - UNIX-CONNECT:PATH`).
 */
import { connect } from 'node:net';
import { encodeLine, LineReader, MAX_REPLY_BYTES, type ControlReply, type ControlRequest } from './protocol.js';

/** A request that got no reply: the socket is missing or dead, the server closed, the time ran out. */
export class ControlClientError extends Error {
  /** `message` names the socket and what went wrong. */
  constructor(message: string) {
    super(message);
    this.name = 'ControlClientError';
  }
}

/** Options of {@link sendControlRequest}. */
export interface ControlClientOptions {
  /** Give up after this many ms without a reply (default 30000). */
  timeoutMs?: number;
}

const CONNECT_ERRORS: Record<string, string> = {
  ENOENT: 'no such socket',
  ECONNREFUSED: 'nobody is listening on it (a stale socket: has the VMM exited?)',
  EACCES: 'permission denied',
  ENOTSOCK: 'not a socket',
  ENOTDIR: 'a path component is not a directory',
};

/** A reply line, checked to be `{ ok: true, … }` or `{ ok: false, error }`. */
function parseReply(path: string, line: string): ControlReply {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new ControlClientError(`'${path}' sent a reply that is not JSON`);
  }
  const o = v as { ok?: unknown; error?: unknown } | null;
  if (typeof o !== 'object' || o === null || Array.isArray(o) || typeof o.ok !== 'boolean' || (o.ok === false && typeof o.error !== 'string')) {
    throw new ControlClientError(`'${path}' sent a reply that is not {"ok": …}`);
  }
  return o as ControlReply;
}

/**
 * Send `request` to the control socket at `path` and resolve with its reply (ok or not).
 * Rejects with a ControlClientError naming the path when it cannot connect, the connection
 * ends without a reply, the reply is malformed or longer than {@link MAX_REPLY_BYTES}, or no
 * reply came within `timeoutMs`.
 */
export function sendControlRequest(path: string, request: ControlRequest, opts: ControlClientOptions = {}): Promise<ControlReply> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const s = connect(path);
    const reader = new LineReader(MAX_REPLY_BYTES);
    let connected = false;
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      fn();
    };
    const fail = (message: string): void => settle(() => reject(new ControlClientError(message)));
    const timer = setTimeout(() => fail(`no reply from '${path}' within ${timeoutMs / 1000} s`), timeoutMs);
    s.on('connect', () => {
      connected = true;
      s.write(encodeLine(request));
    });
    s.on('data', (chunk: Buffer) => {
      const [line] = reader.push(chunk);
      if (reader.overflow) return fail(`'${path}' sent a reply longer than ${MAX_REPLY_BYTES} bytes`);
      if (line === undefined) return;
      try {
        const reply = parseReply(path, line);
        settle(() => resolve(reply));
      } catch (e) {
        settle(() => reject(e));
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (!connected) return fail(`cannot connect to '${path}': ${CONNECT_ERRORS[e.code ?? ''] ?? e.message}`);
      if (e.code === 'EPIPE' || e.code === 'ECONNRESET') return fail(`'${path}' closed the connection without a reply`);
      fail(`connection to '${path}' failed: ${e.code ?? e.message}`);
    });
    s.on('close', () => fail(`'${path}' closed the connection without a reply`));
  });
}

/**
 * The control socket's server: a Unix socket (mode 0600) where each connection sends request
 * lines and gets one reply line per request, in order (src/control/protocol.ts). What a
 * request does is the {@link ControlHandler}'s business.
 *
 * Bounded against hostile or broken clients: at most {@link ControlServerOptions.maxClients}
 * connections (one more gets an error reply and is closed); a connection's requests are
 * handled one at a time and it is not read while one is (so a client that sends without reading
 * replies is held back by its socket, not by our memory); a line longer than
 * {@link MAX_LINE_BYTES} ends its connection with an error reply; an idle connection is
 * closed after {@link ControlServerOptions.idleMs}; a client that disconnects mid-request
 * changes nothing (its request completes, the reply is dropped). The handler's exceptions
 * become error replies. Nothing here throws at the VMM.
 */
import { chmodSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { encodeLine, failure, isBadRequest, LineReader, MAX_LINE_BYTES, parseRequest, type ControlReply, type ControlRequest } from './protocol.js';
import { claimSocketPath, SocketPathError } from './socket-path.js';

/** What a handled request gives back: the reply, and what to do once it has been written. */
export interface ControlOutcome {
  reply: ControlReply;
  /** Called after the reply was written (or could not be: the client left), e.g. to stop the VMM. */
  after?: () => void;
}

/** Carries out one checked request. May throw or reject: that becomes an error reply. */
export type ControlHandler = (request: ControlRequest) => Promise<ControlOutcome> | ControlOutcome;

/** Options of {@link ControlServer.listen}. */
export interface ControlServerOptions {
  /** Connections at once (default 32). */
  maxClients?: number;
  /** A connection with no request for this long is closed, ms (default 300000). */
  idleMs?: number;
  /** Longest request line, bytes (default {@link MAX_LINE_BYTES}). */
  maxLineBytes?: number;
  /** What the path is, in error messages (default "control socket"). */
  what?: string;
}

/**
 * Send a last reply and end the connection: what the client still sends is read and dropped
 * (so its end is seen and the socket closes), and after 1 s it is destroyed regardless.
 */
function farewell(s: Socket, reply: ControlReply): void {
  s.end(encodeLine(reply));
  s.removeAllListeners('data');
  s.resume();
  const t = setTimeout(() => s.destroy(), 1000);
  t.unref();
  s.once('close', () => clearTimeout(t));
}

/** The overflow marker in a connection's queue of lines. */
const TOO_LONG = Symbol('line too long');

/** A listening control socket. Create it with {@link ControlServer.listen}; {@link close} it when done. */
export class ControlServer {
  /** The socket's path. */
  readonly path: string;
  readonly #server: Server;
  readonly #handler: ControlHandler;
  readonly #clients = new Set<Socket>();
  readonly #maxClients: number;
  readonly #idleMs: number;
  readonly #maxLine: number;
  #closed = false;
  #rejected = 0;

  private constructor(path: string, server: Server, handler: ControlHandler, o: Required<Omit<ControlServerOptions, 'what'>>) {
    this.path = path;
    this.#server = server;
    this.#handler = handler;
    this.#maxClients = o.maxClients;
    this.#idleMs = o.idleMs;
    this.#maxLine = o.maxLineBytes;
  }

  /**
   * Listen on `path` (a stale socket there is removed; a live one, or a file that is not a
   * socket, is refused with a SocketPathError) and serve requests with `handler`.
   */
  static async listen(path: string, handler: ControlHandler, opts: ControlServerOptions = {}): Promise<ControlServer> {
    const what = opts.what ?? 'control socket';
    await claimSocketPath(path, what);
    const server = createServer({ pauseOnConnect: false });
    const cs = new ControlServer(path, server, handler, {
      maxClients: opts.maxClients ?? 32,
      idleMs: opts.idleMs ?? 300_000,
      maxLineBytes: opts.maxLineBytes ?? MAX_LINE_BYTES,
    });
    server.on('connection', (s) => cs.#accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new SocketPathError(`cannot listen on ${what} '${path}': ${e.code ?? e.message}`)));
      server.listen(path, () => resolve());
    });
    server.on('error', () => {}); // after listening: nothing to report to
    server.unref();
    try {
      chmodSync(path, 0o600); // pause, snapshot and stop the VM: its owner only
    } catch {
      /* a file system without modes */
    }
    process.once('exit', cs.#onExit);
    return cs;
  }

  /** Connections open now. */
  get clients(): number {
    return this.#clients.size;
  }

  /** Connections refused because {@link ControlServerOptions.maxClients} were open. */
  get rejected(): number {
    return this.#rejected;
  }

  /** Stop listening, close every connection and remove the socket file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    process.removeListener('exit', this.#onExit);
    for (const s of this.#clients) s.destroy();
    this.#clients.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** The process exits without close(): at least take the socket file away (libuv unlinks on close). */
  readonly #onExit = (): void => {
    if (!this.#closed) this.#server.close();
  };

  #accept(s: Socket): void {
    s.on('error', () => s.destroy());
    if (this.#closed || this.#clients.size >= this.#maxClients) {
      this.#rejected++;
      farewell(s, failure(`too many control clients (at most ${this.#maxClients} at once); try again`));
      return;
    }
    this.#clients.add(s);
    s.on('close', () => this.#clients.delete(s));
    s.setTimeout(this.#idleMs, () => s.destroy());
    this.#serve(s);
  }

  /** Read `s`'s lines and answer them one by one, not reading while a request is handled. */
  #serve(s: Socket): void {
    const reader = new LineReader(this.#maxLine);
    const queue: (string | typeof TOO_LONG)[] = [];
    let busy = false;
    const next = (): void => {
      if (busy || s.destroyed) return;
      const line = queue.shift();
      if (line === undefined) return void s.resume();
      busy = true;
      s.pause();
      void this.#answer(s, line).then((more) => {
        busy = false;
        if (more) next();
      });
    };
    let tooLong = false;
    s.on('data', (chunk: Buffer) => {
      if (tooLong) return; // the connection is ending: what else it sends is ignored
      for (const l of reader.push(chunk)) if (l.trim() !== '') queue.push(l);
      if (reader.overflow) {
        tooLong = true;
        queue.push(TOO_LONG);
      }
      next();
    });
  }

  /** Handle one line and write its reply; false if the connection is finished. */
  async #answer(s: Socket, line: string | typeof TOO_LONG): Promise<boolean> {
    if (line === TOO_LONG) {
      farewell(s, failure(`request line longer than ${this.#maxLine} bytes; closing the connection`));
      return false;
    }
    const outcome = await this.#outcome(line);
    await new Promise<void>((resolve) => {
      if (s.destroyed || !s.writable) return resolve();
      s.write(encodeLine(outcome.reply), () => resolve());
    });
    try {
      outcome.after?.();
    } catch {
      /* the handler's follow-up is its own business */
    }
    return !s.destroyed;
  }

  async #outcome(line: string): Promise<ControlOutcome> {
    const request = parseRequest(line);
    if (isBadRequest(request)) return { reply: failure(request.error) };
    try {
      return await this.#handler(request);
    } catch (e) {
      return { reply: failure(`${request.cmd}: ${e instanceof Error ? e.message : String(e)}`) };
    }
  }
}

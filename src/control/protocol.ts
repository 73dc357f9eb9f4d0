/**
 * The control socket's protocol (`vmmapi run --api-socket PATH`, `vmmapi ctl PATH …`): over a
 * Unix stream socket, newline-delimited JSON, one request line → one reply line, in order.
 *
 * Requests:
 * - `{"cmd":"pause"}`, `{"cmd":"resume"}`, `{"cmd":"stop"}`, `{"cmd":"info"}`
 * - `{"cmd":"snapshot","dir":"/abs/dir"}`, optionally with `"leavePaused":true` (a relative
 *   `dir` is the VMM's: resolved against its working directory; `vmmapi ctl` sends absolute ones)
 *
 * Replies: `{"ok":true, …fields of the command}` or `{"ok":false,"error":"one line"}`.
 * A line is at most {@link MAX_LINE_BYTES} bytes (without its newline); a longer one is an
 * error reply and the end of the connection. Bad JSON, unknown commands and unknown or
 * mistyped fields are error replies; the connection stays usable. Blank lines are ignored.
 */

/** The longest request line the server reads: 64 KiB (the newline not counted). */
export const MAX_LINE_BYTES = 64 * 1024;

/** The longest reply line a client reads: 1 MiB. */
export const MAX_REPLY_BYTES = 2 ** 20;

/** The commands, by name. */
export const CONTROL_COMMANDS = ['pause', 'resume', 'snapshot', 'stop', 'info'] as const;

/** One command name. */
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

/** A checked request. */
export type ControlRequest =
  | { cmd: 'pause' }
  | { cmd: 'resume' }
  | { cmd: 'stop' }
  | { cmd: 'info' }
  /** Write a snapshot to `dir`; a running guest is paused for it and resumed after, unless `leavePaused`. */
  | { cmd: 'snapshot'; dir: string; leavePaused?: boolean };

/** A successful reply: `ok` and the command's fields. */
export type ControlOk = { ok: true } & Record<string, unknown>;

/** A failed request: one line saying why. */
export interface ControlFailure {
  ok: false;
  error: string;
}

/** What the server answers. */
export type ControlReply = ControlOk | ControlFailure;

/** A request line that does not check: `error` says why (the text of the error reply). */
export interface BadRequest {
  error: string;
}

/** Fields each command takes besides `cmd`, and their types. */
const FIELDS: Record<ControlCommand, Record<string, 'string' | 'boolean'>> = {
  pause: {},
  resume: {},
  stop: {},
  info: {},
  snapshot: { dir: 'string', leavePaused: 'boolean' },
};

const isCommand = (c: unknown): c is ControlCommand => typeof c === 'string' && (CONTROL_COMMANDS as readonly string[]).includes(c);

/** `text`, shortened for an error message. */
function quote(text: string, max = 40): string {
  const s = JSON.stringify(text);
  return s.length <= max ? s : `${s.slice(0, max - 4)}…"`;
}

/**
 * Parse and check one request line (without its newline). Returns the request, or
 * `{ error }` for bad JSON, a non-object, a missing or unknown `cmd`, an unknown field, a field
 * of the wrong type, or a snapshot without a non-empty `dir`.
 */
export function parseRequest(line: string): ControlRequest | BadRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    return { error: `bad request: not JSON (${(e as Error).message.split('\n')[0]})` };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { error: 'bad request: not a JSON object (send {"cmd":"info"} and the like)' };
  const o = v as Record<string, unknown>;
  if (!('cmd' in o)) return { error: `bad request: no "cmd" (commands: ${CONTROL_COMMANDS.join(', ')})` };
  if (!isCommand(o.cmd)) {
    const what = typeof o.cmd === 'string' ? quote(o.cmd) : `a ${o.cmd === null ? 'null' : typeof o.cmd}`;
    return { error: `unknown command ${what} (commands: ${CONTROL_COMMANDS.join(', ')})` };
  }
  const fields = FIELDS[o.cmd];
  for (const [k, value] of Object.entries(o)) {
    if (k === 'cmd') continue;
    const type = fields[k];
    if (type === undefined) return { error: `${o.cmd}: unknown field ${quote(k)}${Object.keys(fields).length ? ` (fields: ${Object.keys(fields).join(', ')})` : ' (it takes none)'}` };
    if (typeof value !== type) return { error: `${o.cmd}: "${k}" must be a ${type}` };
  }
  if (o.cmd !== 'snapshot') return { cmd: o.cmd };
  if (typeof o.dir !== 'string' || o.dir === '') return { error: 'snapshot: "dir" must be a non-empty path string' };
  if (o.dir.includes('\0')) return { error: 'snapshot: "dir" must not contain NUL' };
  return o.leavePaused === undefined ? { cmd: 'snapshot', dir: o.dir } : { cmd: 'snapshot', dir: o.dir, leavePaused: o.leavePaused as boolean };
}

/** True if `r` is a {@link BadRequest}. */
export function isBadRequest(r: ControlRequest | BadRequest): r is BadRequest {
  return 'error' in r;
}

/** A reply (or request) as its line: JSON and a newline. */
export function encodeLine(message: ControlReply | ControlRequest): string {
  return `${JSON.stringify(message)}\n`;
}

/** An error reply whose message is one line. */
export function failure(message: string): ControlFailure {
  return { ok: false, error: message.split('\n')[0] };
}

/**
 * Splits a byte stream into lines, holding at most `maxLine` bytes of an unfinished one.
 * {@link push} returns the complete lines a chunk finished (without their newlines, a `\r`
 * before the newline dropped); once a line grows past the bound, {@link overflow} is set and
 * the reader holds nothing and yields nothing more (the stream cannot be trusted to
 * resynchronise; the lines finished before it are still returned).
 */
export class LineReader {
  readonly #max: number;
  #parts: Buffer[] = [];
  #held = 0;
  #overflow = false;

  /** A reader of lines of at most `maxLine` bytes (default {@link MAX_LINE_BYTES}). */
  constructor(maxLine = MAX_LINE_BYTES) {
    if (!Number.isSafeInteger(maxLine) || maxLine < 1) throw new RangeError(`maxLine must be a positive integer, got ${maxLine}`);
    this.#max = maxLine;
  }

  /** True once a line was longer than the bound. */
  get overflow(): boolean {
    return this.#overflow;
  }

  /** Bytes of the unfinished line held. */
  get held(): number {
    return this.#held;
  }

  /** Feed `chunk`; returns the lines it completed (none after {@link overflow}). */
  push(chunk: Uint8Array): string[] {
    if (this.#overflow) return [];
    const lines: string[] = [];
    let buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a)) {
      if (this.#held + nl > this.#max) return this.#overflowed(lines);
      this.#parts.push(buf.subarray(0, nl));
      const line = Buffer.concat(this.#parts).toString('utf8');
      lines.push(line.endsWith('\r') ? line.slice(0, -1) : line);
      this.#parts = [];
      this.#held = 0;
      buf = buf.subarray(nl + 1);
    }
    if (this.#held + buf.length > this.#max) return this.#overflowed(lines);
    if (buf.length > 0) {
      this.#parts.push(Buffer.from(buf)); // a copy: the caller may reuse its chunk
      this.#held += buf.length;
    }
    return lines;
  }

  /** The bound was crossed: keep the lines completed before it, hold nothing more. */
  #overflowed(lines: string[]): string[] {
    this.#overflow = true;
    this.#parts = [];
    this.#held = 0;
    return lines;
  }
}

/** The host side of the guest's consoles: buffered output sinks and the serial input. */
import { closeSync, openSync, writeSync } from 'node:fs';

/** Bytes from the guest, buffered and flushed on the next turn of the event loop. */
export class ByteSink {
  readonly #write: (chunk: Uint8Array) => void;
  readonly #close: () => void;
  #buf = new Uint8Array(4096);
  #len = 0;
  #scheduled = false;

  private constructor(write: (chunk: Uint8Array) => void, close: () => void) {
    this.#write = write;
    this.#close = close;
  }

  /** A sink writing to stdout (write errors such as EPIPE are ignored: the guest keeps running). */
  static stdout(): ByteSink {
    process.stdout.on('error', () => {});
    return new ByteSink((c) => void process.stdout.write(c), () => {});
  }

  /** A sink writing to (and truncating) `path`. Throws a Node error if it cannot be opened. */
  static file(path: string): ByteSink {
    const fd = openSync(path, 'w');
    return new ByteSink((c) => void writeSync(fd, c), () => closeSync(fd));
  }

  /** Queue one byte. */
  push(byte: number): void {
    if (this.#len === this.#buf.length) this.flush();
    this.#buf[this.#len++] = byte;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Write out what is queued. */
  flush(): void {
    this.#scheduled = false;
    if (this.#len === 0) return;
    const chunk = this.#buf.slice(0, this.#len);
    this.#len = 0;
    this.#write(chunk);
  }

  /** Flush and release the destination. */
  close(): void {
    this.flush();
    this.#close();
  }
}

/** Ctrl-A: the escape byte of the terminal (as in QEMU's -nographic). */
const ESCAPE = 0x01;

/**
 * Stdin as the serial line. On a terminal it switches to raw mode (restored by
 * {@link SerialInput.close}, and on process exit) and interprets Ctrl-A x (quit) and
 * Ctrl-A Ctrl-A (a literal Ctrl-A). Elsewhere bytes pass through unchanged.
 */
export class SerialInput {
  readonly #raw: boolean;
  readonly #onData: (chunk: Buffer) => void;
  #escaped = false;
  #closed = false;
  readonly #restore = (): void => {
    if (this.#raw && process.stdin.isTTY) process.stdin.setRawMode(false);
  };

  /** Start reading stdin: bytes go to `send`; Ctrl-A x calls `quit`. */
  constructor(send: (bytes: Uint8Array) => void, quit: () => void) {
    this.#raw = process.stdin.isTTY === true;
    if (this.#raw) {
      process.stdin.setRawMode(true);
      process.on('exit', this.#restore);
    }
    this.#onData = (chunk: Buffer) => {
      if (!this.#raw) return void send(chunk);
      const out: number[] = [];
      for (const b of chunk) {
        if (this.#escaped) {
          this.#escaped = false;
          if (b === 0x78 || b === 0x58) return void quit();
          out.push(b === ESCAPE ? ESCAPE : b);
        } else if (b === ESCAPE) {
          this.#escaped = true;
        } else {
          out.push(b);
        }
      }
      if (out.length) send(Uint8Array.from(out));
    };
    process.stdin.on('data', this.#onData);
    process.stdin.on('error', () => {});
  }

  /** Stop reading and restore the terminal. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    process.stdin.removeListener('data', this.#onData);
    process.stdin.pause();
    this.#restore();
    process.removeListener('exit', this.#restore);
  }
}

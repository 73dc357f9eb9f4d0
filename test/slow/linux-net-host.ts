/**
 * The host ends of test/slow/linux-net.test.ts: `vmmapi run` inside a private network namespace
 * holding the TAP (./linux-netns.sh), and the Unix-socket side of `--vsock cid=N,socket=PATH`
 * (Firecracker's convention: the guest's connection to host port P arrives at a listener on
 * PATH_P; a host client connects to PATH, writes `CONNECT <port>\n` and reads `OK <n>\n`).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

/** ./linux-netns.sh: lo, TAP vmtap1 at 10.213.1.1/24, the TCP line server on port 7000, then the command. */
export const NETNS_SCRIPT = fileURLToPath(new URL('./linux-netns.sh', import.meta.url));

/** Why this host cannot make a network namespace with a TAP, or undefined if it can. */
export function netnsProblem(): string | undefined {
  try {
    execFileSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && ip tuntap add dev vmtap1 mode tap'], { stdio: 'pipe', timeout: 10_000 });
    return undefined;
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    return `cannot make a network namespace with a TAP (unshare -n; ip tuntap add; root or CAP_NET_ADMIN+CAP_SYS_ADMIN and /dev/net/tun needed): ${err.stderr?.toString().trim() || err.message}`;
  }
}

export interface NetnsRun {
  /** Exit status (null: killed at the limit). */
  code: number | null;
  /** The command's stdout (for `vmmapi run`, the guest's COM1; latin1). */
  out: string;
  /** Its stderr and linux-netns.sh's. */
  err: string;
  seconds: number;
}

/**
 * `unshare -n sh linux-netns.sh dir token ...command` in a process group of its own, all of it
 * SIGKILLed after `limitMs` (the TCP server and the VMM are children of the script).
 */
export async function runInNetns(opts: { dir: string; token: string; command: string[]; limitMs: number }): Promise<NetnsRun> {
  const started = Date.now();
  const child = spawn('unshare', ['-n', 'sh', NETNS_SCRIPT, opts.dir, opts.token, ...opts.command], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, NODE: process.execPath, NETNS_LIMIT_S: String(Math.ceil(opts.limitMs / 1000) + 60) },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const killGroup = (): void => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  };
  const done = new Promise<number | null>((resolve) => {
    child.on('close', (code) => resolve(code));
    child.on('error', (e) => {
      err += `spawn unshare: ${e.message}\n`;
      resolve(null);
    });
  });
  const killer = setTimeout(killGroup, opts.limitMs);
  const code = await done;
  clearTimeout(killer);
  killGroup(); // stragglers, if the script itself was killed
  return { code, out, err, seconds: (Date.now() - started) / 1000 };
}

/** Lines arriving on `socket`, one at a time (`\n`-terminated, without it). */
class LineReader {
  private buf = '';
  private waiters: { resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  private lines: string[] = [];
  private ended: Error | undefined;

  constructor(socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        this.lines.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
      }
      this.flush();
    });
    const end = (e?: Error): void => {
      this.ended ??= e ?? new Error(`the connection closed${this.buf ? ` after the partial line ${JSON.stringify(this.buf)}` : ''}`);
      this.flush();
    };
    socket.on('end', () => end());
    socket.on('close', () => end());
    socket.on('error', (e) => end(e));
  }

  private flush(): void {
    while (this.waiters.length && this.lines.length) this.waiters.shift()!.resolve(this.lines.shift()!);
    if (this.ended) for (const w of this.waiters.splice(0)) w.reject(this.ended);
  }

  next(timeoutMs: number, what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        resolve: (l) => (clearTimeout(timer), resolve(l)),
        reject: (e) => (clearTimeout(timer), reject(new Error(`no ${what}: ${e.message}`))),
      });
      this.flush();
    });
  }
}

/**
 * A Unix listener at `path` (the VMM's PATH_P for guest connections to host port P): each
 * connection's first line is recorded and answered with `answer(line)`, then the connection is
 * ended; `onLine` runs after each answer.
 */
export async function lineServer(path: string, answer: (line: string) => string, onLine: (line: string) => void): Promise<{ server: Server; lines: string[] }> {
  const lines: string[] = [];
  const server = createServer((s) => {
    s.on('error', () => {});
    new LineReader(s).next(10 * 60_000, 'line').then(
      (line) => {
        lines.push(line);
        s.end(`${answer(line)}\n`);
        onLine(line);
      },
      () => s.destroy(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return { server, lines };
}

/**
 * A host-initiated vsock connection through the VMM's Unix socket `path`: `CONNECT port`, then
 * `line` once the VMM says `OK <n>`; returns that OK line and the guest's reply line. Each
 * step waits at most `timeoutMs`.
 */
export async function hostConnect(path: string, port: number, line: string, timeoutMs: number): Promise<{ ok: string; reply: string }> {
  const s = createConnection(path);
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    const reader = new LineReader(s);
    s.write(`CONNECT ${port}\n`);
    const ok = await reader.next(timeoutMs, `answer to CONNECT ${port}`);
    if (!/^OK \d+$/.test(ok)) throw new Error(`CONNECT ${port} was answered ${JSON.stringify(ok)}`);
    s.write(`${line}\n`);
    const reply = await reader.next(timeoutMs, `reply from guest port ${port}`);
    return { ok, reply };
  } finally {
    s.destroy();
  }
}

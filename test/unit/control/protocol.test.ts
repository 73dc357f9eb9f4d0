/** The control socket's protocol (src/control/protocol.ts): request checking and the bounded line reader. */
import { describe, expect, it } from 'vitest';
import { LineReader, MAX_LINE_BYTES, encodeLine, failure, isBadRequest, parseRequest } from '../../../src/control/protocol.js';

const bad = (line: string): string => {
  const r = parseRequest(line);
  if (!isBadRequest(r)) throw new Error(`expected an error for ${line}, got ${JSON.stringify(r)}`);
  return r.error;
};

describe('parseRequest', () => {
  it('the five commands; snapshot with its dir and leavePaused', () => {
    for (const cmd of ['pause', 'resume', 'stop', 'info']) expect(parseRequest(JSON.stringify({ cmd }))).toEqual({ cmd });
    expect(parseRequest('{"cmd":"snapshot","dir":"/tmp/s"}')).toEqual({ cmd: 'snapshot', dir: '/tmp/s' });
    expect(parseRequest('{"cmd":"snapshot","dir":"/tmp/s","leavePaused":true}')).toEqual({ cmd: 'snapshot', dir: '/tmp/s', leavePaused: true });
    expect(parseRequest(' {"dir":"d","cmd":"snapshot","leavePaused":false} ')).toEqual({ cmd: 'snapshot', dir: 'd', leavePaused: false });
  });

  it('bad JSON, not an object, no cmd: clear errors', () => {
    expect(bad('{"cmd":"pause"')).toMatch(/^bad request: not JSON \(/);
    expect(bad('pause')).toMatch(/^bad request: not JSON/);
    expect(bad('')).toMatch(/^bad request: not JSON/);
    expect(bad('[{"cmd":"pause"}]')).toMatch(/^bad request: not a JSON object/);
    expect(bad('"pause"')).toMatch(/not a JSON object/);
    expect(bad('null')).toMatch(/not a JSON object/);
    expect(bad('{}')).toBe('bad request: no "cmd" (commands: pause, resume, snapshot, stop, info)');
  });

  it('unknown commands, named (long names shortened), with the list', () => {
    expect(bad('{"cmd":"reboot"}')).toBe('unknown command "reboot" (commands: pause, resume, snapshot, stop, info)');
    expect(bad('{"cmd":"PAUSE"}')).toMatch(/^unknown command "PAUSE"/);
    expect(bad('{"cmd":42}')).toMatch(/^unknown command a number/);
    expect(bad('{"cmd":null}')).toMatch(/^unknown command a null/);
    const long = bad(JSON.stringify({ cmd: 'x'.repeat(10_000) }));
    expect(long.length).toBeLessThan(120);
    expect(long).toMatch(/^unknown command "xxx+…"/);
    expect(bad('{"cmd":"__proto__"}')).toMatch(/^unknown command "__proto__"/);
    expect(bad('{"cmd":"toString"}')).toMatch(/^unknown command "toString"/);
  });

  it('unknown fields and wrong types are errors (a typo is not silently ignored)', () => {
    expect(bad('{"cmd":"pause","force":true}')).toBe('pause: unknown field "force" (it takes none)');
    expect(bad('{"cmd":"snapshot","dir":"d","leavepaused":true}')).toBe('snapshot: unknown field "leavepaused" (fields: dir, leavePaused)');
    expect(bad('{"cmd":"snapshot","dir":"d","leavePaused":"yes"}')).toBe('snapshot: "leavePaused" must be a boolean');
    expect(bad('{"cmd":"snapshot","dir":7}')).toBe('snapshot: "dir" must be a string');
    expect(bad('{"cmd":"snapshot"}')).toBe('snapshot: "dir" must be a non-empty path string');
    expect(bad('{"cmd":"snapshot","dir":""}')).toBe('snapshot: "dir" must be a non-empty path string');
    expect(bad('{"cmd":"snapshot","dir":"a\\u0000b"}')).toMatch(/must not contain NUL/);
  });

  it('replies and requests are one JSON line; failure() keeps one line', () => {
    expect(encodeLine({ ok: true, state: 'paused' })).toBe('{"ok":true,"state":"paused"}\n');
    expect(encodeLine({ cmd: 'info' })).toBe('{"cmd":"info"}\n');
    expect(failure('first\nsecond')).toEqual({ ok: false, error: 'first' });
  });
});

describe('LineReader', () => {
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

  it('lines across chunks, several in one chunk, CRLF, and a multi-byte character split between chunks', () => {
    const r = new LineReader();
    expect(r.push(enc('{"cmd":'))).toEqual([]);
    expect(r.held).toBe(7);
    expect(r.push(enc('"info"}\n{"cmd":"pause"}\r\n{"c'))).toEqual(['{"cmd":"info"}', '{"cmd":"pause"}']);
    const euro = enc('"€"\n'); // the euro sign is 3 bytes
    expect(r.push(euro.subarray(0, 2))).toEqual([]);
    expect(r.push(euro.subarray(2))).toEqual(['{"c"€"']);
    expect(r.held).toBe(0);
  });

  it('a line of exactly the bound passes; one byte more is an overflow, and nothing more is held or yielded', () => {
    const r = new LineReader(16);
    expect(r.push(enc(`${'a'.repeat(16)}\n`))).toEqual(['a'.repeat(16)]);
    expect(r.push(enc('b'.repeat(16)))).toEqual([]);
    expect(r.overflow).toBe(false);
    expect(r.push(enc('b'))).toEqual([]);
    expect(r.overflow).toBe(true);
    expect(r.held).toBe(0);
    expect(r.push(enc('\n{"cmd":"info"}\n'))).toEqual([]);
  });

  it('the lines finished before an overflow in the same chunk are still returned', () => {
    const r = new LineReader(8);
    expect(r.push(enc(`one\ntwo\n${'x'.repeat(20)}\nthree\n`))).toEqual(['one', 'two']);
    expect(r.overflow).toBe(true);
  });

  it('a flood without newlines holds at most the bound (default 64 KiB)', () => {
    const r = new LineReader();
    const chunk = new Uint8Array(8192).fill(0x41);
    let maxHeld = 0;
    for (let i = 0; i < 1024; i++) {
      r.push(chunk);
      maxHeld = Math.max(maxHeld, r.held);
    }
    expect(maxHeld).toBeLessThanOrEqual(MAX_LINE_BYTES);
    expect(r.overflow).toBe(true);
    expect(() => new LineReader(0)).toThrow(RangeError);
  });

  it('the caller may reuse its chunk buffer: held bytes are copies', () => {
    const r = new LineReader();
    const buf = new Uint8Array(enc('abc'));
    r.push(buf);
    buf.fill(0x7a);
    expect(r.push(enc('d\n'))).toEqual(['abcd']);
  });
});

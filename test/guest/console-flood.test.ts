/**
 * A real guest floods COM1 into a stream nobody reads: the CLI's ByteSink keeps what it holds
 * bounded and counts the rest as dropped, while the guest runs to its exit.
 */
import { Writable } from 'node:stream';
import { afterEach, expect, it } from 'vitest';
import { ByteSink } from '../../src/cli/console.js';
import { createPc, type Pc } from '../../src/platform/index.js';

const pcs: Pc[] = [];
afterEach(() => {
  for (const pc of pcs.splice(0)) pc.destroy();
});

it('32 KiB of COM1 output into a never-draining stream: at most 4 KiB held, the rest dropped', async () => {
  let handed = 0;
  const never = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer) {
      handed += chunk.length; // never completes: the reader is gone
    },
  });
  const notices: number[] = [];
  const sink = ByteSink.stream(never, { maxBuffered: 4096, onFirstDrop: (held) => notices.push(held) });
  const pc = createPc({ memory: 2 ** 20, serial: { onOutput: (b) => sink.push(b) } });
  pcs.push(pc);
  // mov cx, 0x8000; mov dx, 0x3f8; mov al, 'A'; l: out dx, al; loop l; mov dx, 0x501; mov al, 0; out dx, al; hlt
  pc.loadFlat(Uint8Array.from([0xb9, 0x00, 0x80, 0xba, 0xf8, 0x03, 0xb0, 0x41, 0xee, 0xe2, 0xfd, 0xba, 0x01, 0x05, 0xb0, 0x00, 0xee, 0xf4]), 0x1000);
  expect(await pc.run({ timeoutMs: 120_000 })).toEqual({ reason: 'debug-exit', status: 1 });
  sink.flush();
  expect(sink.buffered).toBeLessThanOrEqual(4096);
  // one batch (at most a chunk) reached the stream before it pushed back
  expect(handed).toBeGreaterThan(0);
  expect(handed).toBeLessThanOrEqual(4096);
  expect(sink.dropped).toBe(0x8000 - handed - sink.buffered);
  expect(notices).toHaveLength(1);
});

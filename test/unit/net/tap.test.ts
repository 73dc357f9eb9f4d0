/**
 * TapBackend: argument checks here; the real-interface test (tap-netns.test.ts) runs in a
 * child vitest inside a network namespace this test makes with `unshare -n`, holding one
 * TAP interface (vmtap0, 10.213.0.1/24) that exists nowhere else. Skipped, with the reason,
 * where unshare or ip cannot do that (not root, no CAP_SYS_ADMIN, no /dev/net/tun).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { TapBackend } from '../../../src/net/index.js';

const SETUP = 'ip link set lo up && ip tuntap add dev vmtap0 mode tap && ip link set vmtap0 up && ip addr add 10.213.0.1/24 dev vmtap0';

function netnsProblem(): string | undefined {
  try {
    execFileSync('unshare', ['-n', 'sh', '-c', SETUP], { stdio: 'pipe', timeout: 10_000 });
    return undefined;
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    return `cannot make a network namespace with a TAP (unshare -n; ip tuntap add): ${err.stderr?.toString().trim() || err.message}`;
  }
}

describe('TapBackend', () => {
  it('names bad arguments before touching the system', () => {
    expect(() => new TapBackend(5 as never)).toThrow(/name must be a string/);
    expect(() => new TapBackend('')).toThrow(/name must have 1 to 15 bytes/);
    expect(() => new TapBackend('a-very-long-name0')).toThrow(/name must have 1 to 15 bytes/);
    expect(() => new TapBackend('x', { maxReadsPerWakeup: 0 })).toThrow(/options.maxReadsPerWakeup/);
  });

  const problem = netnsProblem();
  it.skipIf(problem !== undefined)(`exchanges frames with a TAP inside a private network namespace${problem ? ` (skipped: ${problem})` : ''}`, () => {
    const r = spawnSync('unshare', ['-n', 'sh', '-c', `${SETUP} && exec npx vitest run test/unit/net/tap-netns.test.ts`], {
      env: { ...process.env, VMMAPI_TAP_NETNS: '1', FORCE_COLOR: '0' },
      encoding: 'utf8',
      timeout: 90_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.status, out).toBe(0);
    expect(out).toMatch(/2 passed/);
  }, 120_000);
});

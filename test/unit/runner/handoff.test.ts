/** The adaptive hand-off's decisions (no timing assertions: only what it chose). */
import { describe, expect, it } from 'vitest';
import { BlockPolicy, SpinPolicy, FUTEX, futexWait } from '../../../src/runner/handoff.js';
import { availableParallelism } from 'node:os';
import { HYSTERESIS, HostLoad, SPARE, busyTicks, spinsMayPay, vcpusFit } from '../../../src/runner/host-load.js';

const cell = () => new Int32Array(new SharedArrayBuffer(4));

describe('SpinPolicy', () => {
  it('returns at once when the value already changed', () => {
    const p = new SpinPolicy(0.05);
    const c = cell();
    c[0] = 1;
    expect(p.spin(c, 0, 0)).toBe(true);
  });

  it('does not spin while the host has no CPU to spare, and needs no timing of that sleep', () => {
    const spare = cell(); // 0: busy host
    const p = new SpinPolicy(50, spare);
    expect(p.spin(cell(), 0, 0)).toBe(false);
    expect(p.stats).toEqual({ paid: 0, wasted: 0, skipped: 1 });
    expect(p.learning).toBe(false);
  });

  it('after a spin that timed out, sleeps at once for a growing number of hand-offs; a quick wake-up resets it', () => {
    const p = new SpinPolicy(0.01);
    const c = cell();
    expect(p.spin(c, 0, 0)).toBe(false); // times out: wasted, skip 1
    expect(p.learning).toBe(true); // the sleep that follows tells whether spinning pays again
    expect(p.spin(c, 0, 0)).toBe(false); // skipped
    expect(p.learning).toBe(true);
    expect(p.spin(c, 0, 0)).toBe(false); // times out again: skip 2
    expect(p.spin(c, 0, 0)).toBe(false);
    expect(p.spin(c, 0, 0)).toBe(false);
    expect(p.stats).toEqual({ paid: 0, wasted: 2, skipped: 3 });
    p.slept(0); // the peer answered as fast as a spin would have seen: spinning pays again
    expect(p.spin(c, 0, 0)).toBe(false);
    expect(p.stats.wasted).toBe(3);
  });
});

describe('BlockPolicy and the bare futex', () => {
  it('futexWait reports not-equal and timed-out; a timed-out wait makes the next one go async', () => {
    const c = cell();
    expect(futexWait(c, 0, 1, 1000)).toBe(FUTEX.NOT_EQUAL);
    expect(futexWait(c, 0, 0, 1000)).toBe(FUTEX.TIMED_OUT);
    const p = new BlockPolicy(0.2);
    expect(p.wait(c, 0, 0)).toBe(false);
    expect(p.wait(c, 0, 0)).toBe(false);
    expect(p.stats).toEqual({ paid: 0, wasted: 1, skipped: 1 });
    c[0] = 5;
    expect(p.wait(c, 0, 0)).toBe(true);
  });
});

describe('busyTicks', () => {
  const line = (s: string) => {
    const b = Buffer.from(s);
    return busyTicks(b, b.length);
  };

  it('counts user, nice, system, irq and softirq; not idle, iowait or steal', () => {
    // user nice system idle iowait irq softirq steal guest guest_nice
    expect(line('cpu  1000 20 300 9000 40 5 6 700 11 0\ncpu0 1 2 3 4\n')).toBe(1000 + 20 + 300 + 5 + 6);
    // a steal-heavy sample (a nested host's wake-ups of idle CPUs) is no busier than a quiet one
    expect(line('cpu  10 0 10 100 0 0 0 900 0 0\n')).toBe(line('cpu  10 0 10 100 0 0 0 0 0 0\n'));
  });

  it('takes old kernels\' shorter lines, and refuses what is not the cpu line', () => {
    expect(line('cpu  7 1 2 50\n')).toBe(10);
    expect(line('cpu0 7 1 2 50\n')).toBeUndefined();
    expect(line('intr 7 1 2 50\n')).toBeUndefined();
    expect(line('cpu  7 1\n')).toBeUndefined();
  });
});

describe('HostLoad', () => {
  it('starts by allowing spins and keeps its cells in shared memory for the workers', () => {
    const h = new HostLoad();
    expect(h.flag.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(h.flag[SPARE.MAIN]).toBe(1);
    h.acquire(1);
    h.sample();
    h.release(1);
    expect(h.others).toBeGreaterThanOrEqual(0);
  });

  it('workers do not spin while this process runs more vCPUs than there are spare CPUs', () => {
    const h = new HostLoad(); // nothing sampled yet: no load from others
    h.acquire(1);
    const one = h.flag[SPARE.WORKER_SPIN_US];
    expect(one).toBeGreaterThan(0);
    h.acquire(4 * availableParallelism());
    expect(h.flag[SPARE.WORKER_SPIN_US]).toBe(0);
    const p = new SpinPolicy(50, h.flag, SPARE.WORKER_SPIN_US);
    expect(p.spin(cell(), 0, 0)).toBe(false);
    expect(p.stats).toEqual({ paid: 0, wasted: 0, skipped: 1 });
    expect(p.learning).toBe(false);
    h.release(4 * availableParallelism());
    expect(h.flag[SPARE.WORKER_SPIN_US]).toBe(one);
    h.release(1);
  });

  it('replaces a stale estimate with the first sample of a new spell', async () => {
    const h = new HostLoad();
    h.others = 100; // left over from an earlier, busier run
    h.acquire(1);
    expect(h.flag[SPARE.MAIN]).toBe(0); // the stale estimate decides until the first sample
    await new Promise((r) => setTimeout(r, 80));
    h.release(1);
    // a smoothed update would keep at least half of the stale 100
    expect(h.others).toBeLessThan(2 * availableParallelism() + 1);
  });
});

describe('host-load decisions', () => {
  it('spinning may pay with about 1.5 spare CPUs; a decision holds inside the band', () => {
    expect(spinsMayPay(true, 2)).toBe(true);
    expect(spinsMayPay(false, 1)).toBe(false);
    // inside the band the current decision stays, both ways
    expect(spinsMayPay(true, 1.5 - HYSTERESIS / 2)).toBe(true);
    expect(spinsMayPay(false, 1.5 + HYSTERESIS / 2)).toBe(false);
    // beyond it, it flips
    expect(spinsMayPay(true, 1.5 - 2 * HYSTERESIS)).toBe(false);
    expect(spinsMayPay(false, 1.5 + 2 * HYSTERESIS)).toBe(true);
  });

  it('1 vCPU on an idle 2-CPU host keeps spinning through a noisy sample; a busy core stops it', () => {
    // a lone sample of an idle host read 0.28 CPUs of others (10 ms ticks): no flip
    expect(vcpusFit(true, 1, 2 - 0.28)).toBe(true);
    // one core kept busy by another process: the worker sleeps at once
    expect(vcpusFit(true, 1, 1)).toBe(false);
    // and the load must fall back below the band before it spins again
    expect(vcpusFit(false, 1, 2 - 0.45)).toBe(false);
    expect(vcpusFit(false, 1, 2 - 0.3)).toBe(true);
  });

  it('2 vCPUs and the main thread do not fit 2 idle CPUs, and do fit 3', () => {
    expect(vcpusFit(true, 2, 2)).toBe(false);
    expect(vcpusFit(false, 2, 3)).toBe(true);
  });
});

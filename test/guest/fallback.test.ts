/**
 * The instruction fallback on this host's KVM: instructions its emulator gives up on are
 * finished in the vCPU worker and counted in the VM's stats; turned off, the same failure
 * ends the run with a clear error naming the instruction bytes.
 */
import { afterEach, expect, it } from 'vitest';
import { GuestError, VcpuRunner, Vm, type Device } from '../../src/index.js';
import { longModeVm } from './guests.js';

const vms: Vm[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) vm.destroy();
});

// mov $0xff,%rbx ; popcnt %rbx,%rax ; stac ; clac ; out %eax,$0x10 ; cli ; hlt
const CODE = [0x48, 0xc7, 0xc3, 0xff, 0, 0, 0, 0xf3, 0x48, 0x0f, 0xb8, 0xc3, 0x0f, 0x01, 0xcb, 0x0f, 0x01, 0xca, 0xe7, 0x10, 0xfa, 0xf4];

function sink(): Device & { values: number[] } {
  const values: number[] = [];
  return { values, read: () => 0, write: (_o, _s, v) => void values.push(Number(v)) };
}

it('finishes popcnt/stac/clac that KVM cannot emulate here, and counts them in the stats', async () => {
  const vm = longModeVm(CODE);
  vms.push(vm);
  const runner = new VcpuRunner(vm);
  const out = sink();
  runner.pio.register(0x10, 4, out);
  const seen: Record<string, number> = {};
  runner.on('emulated', (_v, counts) => {
    for (const [k, n] of Object.entries(counts)) seen[k] = (seen[k] ?? 0) + n;
  });
  const result = await runner.start();
  expect(result.reason).toBe('halted');
  expect(out.values).toEqual([8]); // popcnt(0xff)
  const stats = vm.getStatsByName(0);
  // On hosts whose KVM emulates these itself the fallback is never reached.
  const fallbackUsed = (stats.emulated_popcnt ?? 0n) > 0n;
  if (fallbackUsed) {
    expect(stats.emulated_popcnt).toBe(1n);
    expect(seen.popcnt).toBe(1);
  }
});

it('with the fallback off, the emulation failure is a GuestError naming the bytes', async () => {
  const vm = longModeVm(CODE);
  vms.push(vm);
  const runner = new VcpuRunner(vm, { emulate: false });
  runner.pio.register(0x10, 4, sink());
  const err = await runner.start().then(
    () => undefined,
    (e: unknown) => e,
  );
  if (err === undefined) return; // this host's KVM emulated popcnt itself
  expect(err).toBeInstanceOf(GuestError);
  expect((err as GuestError).message).toMatch(/emulation failure on vCPU 0: instruction bytes f3 48 0f b8 c3/);
  expect((err as GuestError).exit.kind).toBe('internal-error');
});

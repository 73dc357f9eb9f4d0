/** What the runner's instruction fallback finished on a VM, from its `emulated_*` statistics. */
import type { Vm } from '../vm.js';

const PREFIX = 'emulated_';

/**
 * Per-mnemonic counts of the instructions finished in userspace, summed over the VM's vCPUs
 * (only mnemonics with a non-zero count). Empty when the statistics are unavailable (e.g. the
 * VM never ran or is gone).
 */
export function emulatedTotals(vm: Vm): Map<string, bigint> {
  const totals = new Map<string, bigint>();
  try {
    for (let v = 0; v < vm.vcpuCount; v++) {
      for (const [k, n] of Object.entries(vm.getStatsByName(v))) {
        if (k.startsWith(PREFIX) && n > 0n) totals.set(k.slice(PREFIX.length), (totals.get(k.slice(PREFIX.length)) ?? 0n) + n);
      }
    }
  } catch {
    totals.clear(); // stats unavailable: report nothing rather than a partial sum
  }
  return totals;
}

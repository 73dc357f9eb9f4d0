/**
 * Fetching instruction bytes at CS:RIP when the bytes handed to the emulator are too few.
 */
import { segmentLinear, wrapIp } from './address.js';
import type { CpuMode } from './cpu-mode.js';
import { MAX_INSN_LENGTH } from './decoder-types.js';
import { Fault } from './fault.js';
import type { CpuState, EmulatorHost } from './host.js';
import { linearRead } from './paging.js';
import { RFLAGS, hasBit } from './flags.js';

/** Result of {@link fetchInstruction}. */
export type FetchResult = { ok: true; bytes: Uint8Array } | { ok: false; fault?: Fault; reason: string };

/**
 * Produce at least `need` instruction bytes (at most 15), starting at the instruction's first
 * byte: from `have`, then `fetchMore`, then guest memory at CS:RIP (an instruction fetch
 * through the page tables, whose faults are the instruction's). CS limit checks are not made.
 */
export function fetchInstruction(
  cpu: CpuState,
  host: EmulatorHost,
  mode: CpuMode,
  have: Uint8Array,
  need: number,
  fetchMore?: (n: number) => Uint8Array | undefined,
): FetchResult {
  need = Math.min(need, MAX_INSN_LENGTH);
  if (have.length >= need) return { ok: true, bytes: have };
  if (fetchMore) {
    const more = fetchMore(need);
    if (more instanceof Uint8Array && more.length >= need) {
      const out = new Uint8Array(Math.min(more.length, MAX_INSN_LENGTH));
      out.set(more.subarray(0, out.length));
      out.set(have.subarray(0, Math.min(have.length, out.length)));
      return { ok: true, bytes: out };
    }
  }
  const s = cpu.sregs;
  const ip = wrapIp(mode, cpu.regs.rip);
  const start = mode.long ? ip : segmentLinear({ ...mode, kind: 'real' }, s, 'cs', 0n, 1, 'read');
  const out = new Uint8Array(need);
  out.set(have.subarray(0, need));
  for (let i = have.length; i < need; i++) {
    // Each byte is fetched at its own (wrapped) address; a fault on a needed byte is the
    // instruction's fault.
    const off = wrapIp(mode, ip + BigInt(i));
    const linear = mode.long ? start + BigInt(i) : (start + off) & 0xffff_ffffn;
    const r = linearRead(host.memory, {
      cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer, cpl: mode.cpl, ac: hasBit(cpu.regs.rflags, RFLAGS.AC),
    }, linear, 1, { fetch: true });
    if (!r.ok) {
      if (r.fault) {
        const f = r.fault;
        return { ok: false, fault: f.vector === 14 ? new Fault(14, f.errorCode, f.cr2) : new Fault(13, 0), reason: 'instruction fetch faulted' };
      }
      return { ok: false, reason: `instruction bytes at guest-physical 0x${r.unbackedGpa.toString(16)} are not RAM` };
    }
    out[i] = r.bytes[0];
  }
  return { ok: true, bytes: out };
}

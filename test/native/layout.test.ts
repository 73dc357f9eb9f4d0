import { describe, expect, it } from 'vitest';
import { native } from '../../src/kvm/native.js';
import { SIZEOF, EVENTS, FPU } from '../../src/kvm/structs.js';
import { RUN } from '../../src/exits.js';

describe('struct layouts match <linux/kvm.h>', () => {
  const l = native().layout();
  it('sizes', () => {
    for (const [k, v] of Object.entries(SIZEOF)) expect(l[k], k).toBe(v);
  });
  it('offsets decoded in TypeScript', () => {
    expect(l['sregs.cr0']).toBe(224);
    expect(l['sregs.efer']).toBe(264);
    expect(l['sregs.apic_base']).toBe(272);
    expect(l['sregs.gdt']).toBe(192);
    expect(l['fpu.mxcsr']).toBe(FPU.mxcsr);
    expect(l['fpu.xmm']).toBe(FPU.xmm);
    expect(l['events.sipi_vector']).toBe(EVENTS.sipiVector);
    expect(l['events.exception_payload']).toBe(EVENTS.exceptionPayload);
    expect(l['run.exit_reason']).toBe(RUN.exitReason);
    expect(l['run.io']).toBe(RUN.ioDirection);
    expect(l['run.mmio.data']).toBe(RUN.mmioData);
    expect(l['run.mmio.len']).toBe(RUN.mmioLen);
    expect(l['run.mmio.is_write']).toBe(RUN.mmioIsWrite);
    expect(l['run.internal.data']).toBe(RUN.internalData);
    expect(l['run.emulation_failure.insn_size']).toBe(RUN.emuInsnSize);
    expect(l['run.debug.arch.pc']).toBe(RUN.debugPc);
    expect(l['run.system_event.data']).toBe(RUN.eventData);
  });
});

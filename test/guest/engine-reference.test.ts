/**
 * The KVM reference of the engine's differential tests (test/engine/kvm-reference.ts) on
 * sequences whose results are known, and the generator (test/engine/random-insns.ts) on
 * determinism and boundedness: random sequences all reach the terminator, hostile bytes all
 * end in a result, a fault or a timeout.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { assemble } from '../engine/assemble.js';
import { NativeReference } from '../engine/kvm-reference.js';
import { CODE, DATA, DEFAULT_RSP, RODATA, type SequenceResult, type SequenceTest } from '../engine/layout.js';
import { Rng, generateSequence, hostileSequence } from '../engine/random-insns.js';

const ref = new NativeReference();
afterAll(() => ref.close());

/** `r` with its data window as one Buffer (expect's element-wise typed-array comparison is slow for 64 KiB). */
function comparable(r: SequenceResult) {
  return { ...r, data: Buffer.from(r.data).toString('base64') };
}

/** Run AT&T `source` with `regs` (and optional flags/data) natively. */
function run(source: string, regs: SequenceTest['regs'] = {}, extra: Partial<SequenceTest> = {}) {
  const code = assemble(source);
  return { code, result: ref.run({ code, regs, ...extra }) };
}

describe('known results', () => {
  it('add: the sum and its flags; the state is read at the terminator', () => {
    const { code, result } = run('add %rbx,%rax', { rax: 5n, rbx: 7n, rcx: 0x1234n });
    expect(result.outcome).toBe('done');
    expect(result.rip).toBe(BigInt(CODE + code.length));
    expect(result.regs).toMatchObject({ rax: 12n, rbx: 7n, rcx: 0x1234n, rsp: DEFAULT_RSP });
    expect(result.rflags).toBe(0x6n); // PF (12 has two bits set) and the fixed bit 1
    expect(run('add %rbx,%rax', { rax: 0x7fffffffffffffffn, rbx: 1n }).result).toMatchObject({
      regs: { rax: 0x8000000000000000n },
      rflags: 0x896n, // OF SF AF PF
    });
  });

  it('adc/sbb take the initial CF; the masked RFLAGS show none of IF/IOPL/RF', () => {
    const { result } = run('adc $0,%eax ; sbb %ebx,%ebx', { rax: 0xffffffffn, rbx: 0n }, { rflags: 0x203n });
    expect(result.regs.rax).toBe(0n); // 0xffffffff + 0 + CF, zero-extended
    expect(result.regs.rbx).toBe(0xffffffffn); // 0 - 0 - CF (set by the adc)
    expect(result.rflags & 0x200n).toBe(0n);
    expect(result.rflagsRaw & 0x200n).toBe(0x200n);
  });

  it('stores land in the data window, pushes on the stack in it', () => {
    const data = new Uint8Array(0x10000).fill(0xaa);
    const { result } = run('mov %rax,8(%rbx) ; push %rcx ; movb $0x55,(%rbx)', { rax: 0x1122334455667788n, rbx: BigInt(DATA), rcx: 0xdeadn }, { data });
    expect([...result.data.subarray(0, 16)]).toEqual([0x55, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    const sp = Number(DEFAULT_RSP) - 8 - DATA;
    expect(result.regs.rsp).toBe(DEFAULT_RSP - 8n);
    expect(new DataView(result.data.buffer).getBigUint64(sp, true)).toBe(0xdeadn);
    expect(result.data[sp + 8]).toBe(0xaa);
  });

  it('div by zero is fault 0 at the div, nothing changed', () => {
    const { result } = run('mov $3,%eax ; div %rcx', { rcx: 0n, rdx: 0n });
    expect(result).toMatchObject({ outcome: 'fault', fault: { vector: 0 }, rip: BigInt(CODE + 5), regs: { rax: 3n } });
    expect(result.fault?.errorCode).toBeUndefined();
  });

  it('ud2 is fault 6; int3 is fault 3 with RIP after it', () => {
    expect(run('ud2').result).toMatchObject({ outcome: 'fault', fault: { vector: 6 }, rip: BigInt(CODE) });
    expect(run('nop ; int3').result).toMatchObject({ outcome: 'fault', fault: { vector: 3 }, rip: BigInt(CODE + 2) });
  });

  it('#PF: not present (read), protection (write to the read-only page), NX fetch — with CR2 and error code', () => {
    expect(run('mov 0x10(%rax),%ebx', { rax: 0x500000n }).result).toMatchObject({
      outcome: 'fault', rip: BigInt(CODE), fault: { vector: 14, errorCode: 0x4, cr2: 0x500010n },
    });
    expect(run('movw $1,(%rax)', { rax: BigInt(RODATA + 0xffe) }).result.fault).toEqual({ vector: 14, errorCode: 0x7, cr2: BigInt(RODATA + 0xffe) });
    expect(run('jmp *%rax', { rax: BigInt(DATA + 0x40) }).result).toMatchObject({
      rip: BigInt(DATA + 0x40), fault: { vector: 14, errorCode: 0x15, cr2: BigInt(DATA + 0x40) },
    });
    // accesses straddling a page boundary fault on the page that fails, CR2 the first byte there
    expect(run('mov (%rax),%rbx', { rax: BigInt(RODATA + 0xffc) }).result.fault).toEqual({ vector: 14, errorCode: 0x4, cr2: BigInt(RODATA + 0x1000) });
    const { result } = run('movq $-1,(%rax)', { rax: BigInt(DATA - 4) });
    expect(result.fault).toEqual({ vector: 14, errorCode: 0x6, cr2: BigInt(DATA - 4) });
    expect([...result.data.subarray(0, 4)]).toEqual([0, 0, 0, 0]);
  });

  it('#GP(0) for a non-canonical address; privileged instructions fault (IOPL 0 at CPL 3)', () => {
    expect(run('mov (%rax),%eax', { rax: 0x8000000000000000n }).result).toMatchObject({ fault: { vector: 13, errorCode: 0 }, rip: BigInt(CODE) });
    for (const insn of ['cli', 'out %al,$0x80', 'mov %cr0,%rax', 'hlt']) {
      expect(run(`nop ; ${insn}`).result, insn).toMatchObject({ outcome: 'fault', fault: { vector: 13, errorCode: 0 }, rip: BigInt(CODE + 1) });
    }
  });

  it('a loop that never ends is cut off as a timeout', () => {
    expect(run('1: inc %rax ; jmp 1b').result.outcome).toBe('timeout');
    expect(run('add $1,%rax').result).toMatchObject({ outcome: 'done', regs: { rax: 1n } }); // and the VM goes on
  });

  it('rep movsb copies within the window, honouring DF', () => {
    const data = new Uint8Array(0x10000);
    data.set([1, 2, 3, 4], 0x100);
    const regs = { rsi: BigInt(DATA + 0x103), rdi: BigInt(DATA + 0x203), rcx: 4n };
    const { result } = run('std ; rep movsb ; cld', regs, { data });
    expect([...result.data.subarray(0x200, 0x204)]).toEqual([1, 2, 3, 4]);
    expect(result.regs).toMatchObject({ rcx: 0n, rsi: BigInt(DATA + 0xff), rdi: BigInt(DATA + 0x1ff) });
  });
});

describe('generator', () => {
  it('is deterministic per seed, and seeds differ', () => {
    const same = (x: SequenceTest, y: SequenceTest): boolean =>
      Buffer.from(x.code).equals(y.code) && Buffer.from(x.data ?? []).equals(y.data ?? new Uint8Array()) && JSON.stringify(x.regs, (_k, v) => (typeof v === 'bigint' ? `${v}` : v)) === JSON.stringify(y.regs, (_k, v) => (typeof v === 'bigint' ? `${v}` : v));
    const a = generateSequence(42);
    expect(same(generateSequence(42), a)).toBe(true);
    expect(same(generateSequence(43), a)).toBe(false);
    expect(same(hostileSequence(7), hostileSequence(7))).toBe(true);
    const r = new Rng(1);
    expect([r.u32(), r.u32()]).toEqual(((x) => [x.u32(), x.u32()])(new Rng(1)));
  });

  it('500 random sequences all reach the terminator, and re-run to the same results', () => {
    const tests = Array.from({ length: 500 }, (_, i) => generateSequence(1000 + i));
    const results = ref.runBatch(tests);
    const stray = results.flatMap((r, i) => (r.outcome === 'done' ? [] : [`seed ${1000 + i}: ${r.outcome} ${JSON.stringify(r.fault)} at 0x${r.rip.toString(16)}\n  ${tests[i].listing.join('\n  ')}`]));
    expect(stray).toEqual([]);
    const again = ref.runBatch(tests.slice(0, 50));
    again.forEach((r, i) => expect(comparable(r)).toEqual(comparable(results[i])));
  });

  it('with faults asked for, sequences end in the expected kinds of fault', () => {
    const results = ref.runBatch(Array.from({ length: 200 }, (_, i) => generateSequence(5000 + i, { faults: 0.2 })));
    const vectors = new Set(results.filter((r) => r.outcome === 'fault').map((r) => r.fault?.vector));
    expect(results.every((r) => r.outcome === 'done' || r.outcome === 'fault')).toBe(true);
    for (const v of vectors) expect([0, 6, 14]).toContain(v);
    expect(vectors.has(6) && vectors.has(14)).toBe(true);
  });

  it('defineFlags leaves no undefined flag behind and the sequences still terminate', () => {
    const results = ref.runBatch(Array.from({ length: 100 }, (_, i) => generateSequence(9000 + i, { defineFlags: true })));
    expect(results.every((r) => r.outcome === 'done')).toBe(true);
  });

  it('500 hostile random-byte sequences each end in a result, a fault or a timeout', () => {
    const results = ref.runBatch(Array.from({ length: 500 }, (_, i) => hostileSequence(i)));
    const errors = results.filter((r) => r.outcome === 'error').map((r) => r.detail);
    expect(errors).toEqual([]);
    expect(results.filter((r) => r.outcome === 'fault').length).toBeGreaterThan(250);
  });
});

/** The instruction implementations, by mnemonic. */
import type { Mnemonic } from '../decoder-types.js';
import { popcnt, lzcnt, tzcnt } from './bitcount.js';
import { cmpxchg8b16b } from './cmpxchg.js';
import { ldmxcsr, stmxcsr } from './mxcsr.js';
import { logic128 } from './sse-logic.js';
import { move128, movdGpr, movqXmm } from './sse-move.js';
import { clac, fence, int3, stac } from './system.js';
import type { Handler } from './types.js';
import { fnclex, fninit, fwait } from './x87.js';
import { x87 } from './x87-native.js';
import { int1, intN, iret } from './interrupt.js';
import { cacheLine, invpcid, xgetbv, xrstor } from './xsave.js';

export type { Handler, HandlerOutcome } from './types.js';

/** Every decoded mnemonic's implementation. MOVQ is split by opcode between the GPR and XMM forms. */
export const HANDLERS: Readonly<Record<Mnemonic, Handler>> = {
  int3, clac, stac,
  popcnt, lzcnt, tzcnt,
  fwait, fninit, fnclex,
  ldmxcsr, stmxcsr, lfence: fence, mfence: fence, sfence: fence,
  cmpxchg8b: cmpxchg8b16b, cmpxchg16b: cmpxchg8b16b,
  movd: movdGpr,
  movq: (insn, ctx) => (insn.opcode === 0x6e || (insn.opcode === 0x7e && insn.prefixes.mandatory === '66') ? movdGpr : movqXmm)(insn, ctx),
  movdqa: move128, movdqu: move128, movaps: move128, movups: move128, movapd: move128, movupd: move128,
  movntdq: move128, movntps: move128, movntpd: move128,
  pxor: logic128, xorps: logic128, xorpd: logic128, pand: logic128, pandn: logic128, por: logic128,
  int: intN, int1, iret,
  xgetbv, xrstor, clwb: cacheLine, clflushopt: cacheLine, invpcid,
  x87,
};

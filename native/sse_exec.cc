// execSse: run one vetted guest SSE/MMX instruction natively (the instruction fallback's
// native path). JS (src/emulate/native-sse.ts) decides which encodings are safe and rewrites
// any memory operand to RIP-relative addressing of the scratch area that follows the
// instruction on the code page. A host fault while executing (an opcode the host lacks, an
// FP exception) is caught and reported instead of killing the process.
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#include <mutex>

#include "common.h"

extern "C" void vmmapi_sse_exec(uint64_t* ctx);

namespace vmmapi {

namespace {
constexpr size_t kPage = 4096;
constexpr size_t kScratch = 64;  // scratch area offset within the code page
std::mutex gLock;
uint8_t* gPage = nullptr;
thread_local sigjmp_buf* tJump = nullptr;
thread_local volatile sig_atomic_t tSignal = 0;
struct sigaction gOld[3];
const int kSignals[3] = {SIGILL, SIGFPE, SIGSEGV};

void OnFault(int sig, siginfo_t* si, void* uc) {
  if (tJump != nullptr) {
    tSignal = sig;
    siglongjmp(*tJump, 1);
  }
  // not ours: behave as before we were installed
  for (int i = 0; i < 3; i++) {
    if (kSignals[i] != sig) continue;
    if (gOld[i].sa_flags & SA_SIGINFO) {
      gOld[i].sa_sigaction(sig, si, uc);
    } else if (gOld[i].sa_handler != SIG_IGN && gOld[i].sa_handler != SIG_DFL) {
      gOld[i].sa_handler(sig);
    } else {
      signal(sig, SIG_DFL);
      raise(sig);
    }
  }
}

bool Setup() {
  if (gPage != nullptr) return true;
  void* p = mmap(nullptr, kPage, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  gPage = static_cast<uint8_t*>(p);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = OnFault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < 3; i++) sigaction(kSignals[i], &sa, &gOld[i]);
  return true;
}
}  // namespace

// execSse(code: Uint8Array (≤ 15 bytes, memory operand already RIP-relative to the scratch),
//         regs: Uint8Array(144) struct kvm_regs, fx: Uint8Array(512) FXSAVE image,
//         scratch: Uint8Array(64)) → 0 on success, or the host signal number.
// regs, fx and scratch are updated in place.
Napi::Value ExecSse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t *code, *regs, *fx, *scratch;
  size_t codeLen, n;
  if (!ArgBytes(info, 0, "code", 0, &code, &codeLen, 1) || !ArgBytes(info, 1, "regs", 144, &regs, &n) ||
      !ArgBytes(info, 2, "fx", 512, &fx, &n) || !ArgBytes(info, 3, "scratch", kScratch, &scratch, &n))
    return env.Undefined();
  if (codeLen > 15) return ThrowRange(env, "code must be at most 15 bytes");
  std::lock_guard<std::mutex> g(gLock);
  if (!Setup()) return ThrowErrno(env, "mmap", errno);
  alignas(16) static uint8_t guestFx[512];
  alignas(16) static uint8_t hostFx[512];
  uint64_t ctx[21];
  std::memcpy(ctx, regs, 144);
  std::memcpy(guestFx, fx, 512);
  std::memset(gPage, 0xcc, kScratch);
  std::memcpy(gPage, code, codeLen);
  gPage[codeLen] = 0xc3;  // ret
  std::memcpy(gPage + kScratch, scratch, kScratch);
  ctx[18] = reinterpret_cast<uint64_t>(gPage);
  ctx[19] = reinterpret_cast<uint64_t>(guestFx);
  ctx[20] = reinterpret_cast<uint64_t>(hostFx);
  sigjmp_buf jb;
  volatile int sig = 0;
  if (sigsetjmp(jb, 1) == 0) {
    tJump = &jb;
    vmmapi_sse_exec(ctx);
    tJump = nullptr;
  } else {
    tJump = nullptr;
    sig = tSignal;
    // the faulting instruction left the guest's state loaded: restore the host's
    __asm__ __volatile__("fxrstor %0" : : "m"(*reinterpret_cast<uint8_t(*)[512]>(hostFx)));
  }
  if (sig == 0) {
    std::memcpy(regs, ctx, 144);
    std::memcpy(fx, guestFx, 512);
    std::memcpy(scratch, gPage + kScratch, kScratch);
  }
  return Napi::Number::New(env, sig);
}

}  // namespace vmmapi

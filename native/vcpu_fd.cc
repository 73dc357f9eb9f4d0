// VcpuFd: a vCPU fd. One method per vCPU ioctl; register and state structs cross the
// boundary as raw bytes (decoded in TypeScript, src/kvm/structs.ts); no policy.
#include <signal.h>
#include <unistd.h>

#include "classes.h"

namespace vmmapi {

#define STRUCT_METHODS(NAME, TYPE, GETREQ, SETREQ)                                                   \
  InstanceMethod("get" NAME, &VcpuFd::GetStruct<TYPE, GETREQ>),                                      \
      InstanceMethod("set" NAME, &VcpuFd::SetStruct<TYPE, SETREQ>)

Napi::Function VcpuFd::Init(Napi::Env env) {
  return DefineClass(env, "VcpuFd",
                     {
                         InstanceMethod("close", &VcpuFd::Close),
                         InstanceAccessor("fd", &VcpuFd::GetFd, nullptr),
                         InstanceMethod("run", &VcpuFd::Run),
                         InstanceMethod("runBuffer", &VcpuFd::RunBuffer),
                         STRUCT_METHODS("Regs", kvm_regs, KVM_GET_REGS, KVM_SET_REGS),
                         STRUCT_METHODS("Sregs", kvm_sregs, KVM_GET_SREGS, KVM_SET_SREGS),
                         STRUCT_METHODS("Fpu", kvm_fpu, KVM_GET_FPU, KVM_SET_FPU),
                         STRUCT_METHODS("Lapic", kvm_lapic_state, KVM_GET_LAPIC, KVM_SET_LAPIC),
                         STRUCT_METHODS("VcpuEvents", kvm_vcpu_events, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS),
                         STRUCT_METHODS("MpState", kvm_mp_state, KVM_GET_MP_STATE, KVM_SET_MP_STATE),
                         STRUCT_METHODS("Debugregs", kvm_debugregs, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS),
                         STRUCT_METHODS("Xcrs", kvm_xcrs, KVM_GET_XCRS, KVM_SET_XCRS),
                         InstanceMethod("getXsave", &VcpuFd::GetXsave),
                         InstanceMethod("setXsave", &VcpuFd::SetXsave),
                         InstanceMethod("setGuestDebug", &VcpuFd::SetGuestDebug),
                         InstanceMethod("translate", &VcpuFd::Translate),
                         InstanceMethod("getMsrs", &VcpuFd::GetMsrs),
                         InstanceMethod("setMsrs", &VcpuFd::SetMsrs),
                         InstanceMethod("setCpuid2", &VcpuFd::SetCpuid2),
                         InstanceMethod("nmi", &VcpuFd::Nmi),
                         InstanceMethod("interrupt", &VcpuFd::Interrupt),
                         InstanceMethod("getStatsFd", &VcpuFd::GetStatsFd),
                         InstanceMethod("getTscKhz", &VcpuFd::GetTscKhz),
                         InstanceMethod("setTscKhz", &VcpuFd::SetTscKhz),
                     });
}

static const char* ReqName(unsigned long req) {
  switch (req) {
    case KVM_GET_REGS: return "KVM_GET_REGS";
    case KVM_SET_REGS: return "KVM_SET_REGS";
    case KVM_GET_SREGS: return "KVM_GET_SREGS";
    case KVM_SET_SREGS: return "KVM_SET_SREGS";
    case KVM_GET_FPU: return "KVM_GET_FPU";
    case KVM_SET_FPU: return "KVM_SET_FPU";
    case KVM_GET_LAPIC: return "KVM_GET_LAPIC";
    case KVM_SET_LAPIC: return "KVM_SET_LAPIC";
    case KVM_GET_VCPU_EVENTS: return "KVM_GET_VCPU_EVENTS";
    case KVM_SET_VCPU_EVENTS: return "KVM_SET_VCPU_EVENTS";
    case KVM_GET_MP_STATE: return "KVM_GET_MP_STATE";
    case KVM_SET_MP_STATE: return "KVM_SET_MP_STATE";
    case KVM_GET_DEBUGREGS: return "KVM_GET_DEBUGREGS";
    case KVM_SET_DEBUGREGS: return "KVM_SET_DEBUGREGS";
    case KVM_GET_XCRS: return "KVM_GET_XCRS";
    case KVM_SET_XCRS: return "KVM_SET_XCRS";
    default: return "ioctl";
  }
}

// new VcpuFd(fd): adopt a vCPU created by VmFd.createVcpu (in this or another thread).
VcpuFd::VcpuFd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VcpuFd>(info) {
  int32_t fd;
  if (!ArgI32(info, 0, "fd", &fd)) return;
  v_ = FindVcpu(fd);
  if (!v_) ThrowErrno(info.Env(), "VcpuFd", EBADF);
}

bool VcpuFd::Live(Napi::Env env, const char* syscall) {
  if (v_) return true;
  ThrowErrno(env, syscall, EBADF);
  return false;
}

Napi::Value VcpuFd::Close(const Napi::CallbackInfo& info) {
  v_.reset();
  return info.Env().Undefined();
}

Napi::Value VcpuFd::GetFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), v_ ? v_->fd : -1);
}

// run(timeoutMs?): one KVM_RUN. Returns kvm_run.exit_reason; a kick or a signal returns
// KVM_EXIT_INTR (10) with immediate_exit cleared, ready to re-enter. With timeoutMs, the
// watchdog kicks this vCPU if KVM_RUN has not returned by then.
Napi::Value VcpuFd::Run(const Napi::CallbackInfo& info) {
  uint32_t timeoutMs = 0;
  bool timed = info.Length() > 0 && !info[0].IsUndefined();
  if (timed && !ArgU32(info, 0, "timeoutMs", &timeoutMs)) return info.Env().Undefined();
  if (!Live(info.Env(), "KVM_RUN")) return info.Env().Undefined();
  static thread_local bool unblocked = false;
  if (!unblocked) {
    InstallKickHandler();
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, KickSignal());
    pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
    unblocked = true;
  }
  VcpuShared* v = v_.get();
  {
    std::lock_guard<std::mutex> g(v->lock);
    v->thread = pthread_self();
    v->running = true;
  }
  uint64_t deadline = timed ? ArmKickDeadline(v_, timeoutMs) : 0;
  int r, e;
  do {
    // EAGAIN: a vCPU waiting for INIT/SIPI was woken and its state changed; re-enter.
    r = ioctl(v->fd, KVM_RUN, 0);
    e = errno;
  } while (r < 0 && e == EAGAIN);
  {
    std::lock_guard<std::mutex> g(v->lock);
    v->running = false;
  }
  // a deadline that fired after KVM_RUN returned (by itself or with an error) must not cut
  // the next run short
  if (timed && DisarmKickDeadline(deadline)) __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
  if (r < 0) {
    if (e == EINTR) {
      __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
      v->run->exit_reason = KVM_EXIT_INTR;
      return Napi::Number::New(info.Env(), KVM_EXIT_INTR);
    }
    return ThrowErrno(info.Env(), "KVM_RUN", e);
  }
  return Napi::Number::New(info.Env(), v->run->exit_reason);
}

// runBuffer(): an ArrayBuffer over the vCPU's mmap'd kvm_run area (and the PIO data and
// coalesced-MMIO ring pages that follow it). It keeps the mapping (not the fd) alive.
Napi::Value VcpuFd::RunBuffer(const Napi::CallbackInfo& info) {
  if (!Live(info.Env(), "mmap")) return info.Env().Undefined();
  auto* hold = new std::shared_ptr<RunMapping>(v_->mapping);
  return Napi::ArrayBuffer::New(
      info.Env(), v_->run, v_->runSize, [](Napi::Env, void*, std::shared_ptr<RunMapping>* h) { delete h; }, hold);
}

template <typename T, unsigned long REQ>
Napi::Value VcpuFd::GetStruct(const Napi::CallbackInfo& info) {
  if (!Live(info.Env(), ReqName(REQ))) return info.Env().Undefined();
  T s;
  std::memset(&s, 0, sizeof s);
  if (xioctl(v_->fd, REQ, &s) < 0) return ThrowErrno(info.Env(), ReqName(REQ), errno);
  return CopyOut(info.Env(), &s, sizeof s);
}

template <typename T, unsigned long REQ>
Napi::Value VcpuFd::SetStruct(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t n;
  if (!ArgBytes(info, 0, "state", sizeof(T), &p, &n) || !Live(info.Env(), ReqName(REQ))) return info.Env().Undefined();
  T s;
  std::memcpy(&s, p, sizeof s);
  if (xioctl(v_->fd, REQ, &s) < 0) return ThrowErrno(info.Env(), ReqName(REQ), errno);
  return info.Env().Undefined();
}

// getXsave(): the XSAVE image (xsave.cc: KVM_GET_XSAVE2, or KVM_GET_XSAVE where it is missing).
Napi::Value VcpuFd::GetXsave(const Napi::CallbackInfo& info) {
  if (!Live(info.Env(), "KVM_GET_XSAVE2")) return info.Env().Undefined();
  return XsaveGetOn(info.Env(), v_->fd);
}

// setXsave(image): KVM_SET_XSAVE; `image` exactly as long as getXsave's (xsaveSize()).
Napi::Value VcpuFd::SetXsave(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t n;
  if (!ArgBytes(info, 0, "xsave", XsaveBytes(), &p, &n) || !Live(info.Env(), "KVM_SET_XSAVE")) return info.Env().Undefined();
  return XsaveSetOn(info.Env(), v_->fd, p);
}

Napi::Value VcpuFd::SetGuestDebug(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t n;
  if (!ArgBytes(info, 0, "debug", sizeof(kvm_guest_debug), &p, &n) || !Live(info.Env(), "KVM_SET_GUEST_DEBUG"))
    return info.Env().Undefined();
  kvm_guest_debug d;
  std::memcpy(&d, p, sizeof d);
  if (xioctl(v_->fd, KVM_SET_GUEST_DEBUG, &d) < 0) return ThrowErrno(info.Env(), "KVM_SET_GUEST_DEBUG", errno);
  return info.Env().Undefined();
}

// translate(linear): { physical: bigint, valid, writeable, usermode }
Napi::Value VcpuFd::Translate(const Napi::CallbackInfo& info) {
  uint64_t la;
  if (!ArgU64(info, 0, "linearAddress", &la) || !Live(info.Env(), "KVM_TRANSLATE")) return info.Env().Undefined();
  kvm_translation t{};
  t.linear_address = la;
  if (xioctl(v_->fd, KVM_TRANSLATE, &t) < 0) return ThrowErrno(info.Env(), "KVM_TRANSLATE", errno);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("physical", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(t.physical_address)));
  o.Set("valid", Napi::Boolean::New(info.Env(), t.valid != 0));
  o.Set("writeable", Napi::Boolean::New(info.Env(), t.writeable != 0));
  o.Set("usermode", Napi::Boolean::New(info.Env(), t.usermode != 0));
  return o;
}

static bool MsrsArg(const Napi::CallbackInfo& info, kvm_msrs** out) {
  uint8_t* p;
  size_t n;
  if (!ArgBytes(info, 0, "msrs", 0, &p, &n, kMsrsHeader)) return false;
  auto* m = reinterpret_cast<kvm_msrs*>(p);
  if (m->nmsrs > 1024 || n != kMsrsHeader + m->nmsrs * sizeof(kvm_msr_entry)) {
    ThrowRange(info.Env(), "msrs length does not match its entry count");
    return false;
  }
  *out = m;
  return true;
}

// getMsrs(raw kvm_msrs, filled in place): returns how many were read.
Napi::Value VcpuFd::GetMsrs(const Napi::CallbackInfo& info) {
  kvm_msrs* m;
  if (!MsrsArg(info, &m) || !Live(info.Env(), "KVM_GET_MSRS")) return info.Env().Undefined();
  int r = xioctl(v_->fd, kKvmGetMsrs, m);
  if (r < 0) return ThrowErrno(info.Env(), "KVM_GET_MSRS", errno);
  return Napi::Number::New(info.Env(), r);
}

// setMsrs(raw kvm_msrs): returns how many were written.
Napi::Value VcpuFd::SetMsrs(const Napi::CallbackInfo& info) {
  kvm_msrs* m;
  if (!MsrsArg(info, &m) || !Live(info.Env(), "KVM_SET_MSRS")) return info.Env().Undefined();
  int r = xioctl(v_->fd, kKvmSetMsrs, m);
  if (r < 0) return ThrowErrno(info.Env(), "KVM_SET_MSRS", errno);
  return Napi::Number::New(info.Env(), r);
}

// setCpuid2(raw kvm_cpuid2 with entries)
Napi::Value VcpuFd::SetCpuid2(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t n;
  if (!ArgBytes(info, 0, "cpuid", 0, &p, &n, kCpuid2Header)) return info.Env().Undefined();
  auto* c = reinterpret_cast<kvm_cpuid2*>(p);
  if (c->nent > 4096 || n != kCpuid2Header + c->nent * sizeof(kvm_cpuid_entry2))
    return ThrowRange(info.Env(), "cpuid length does not match its entry count");
  if (!Live(info.Env(), "KVM_SET_CPUID2")) return info.Env().Undefined();
  if (xioctl(v_->fd, kKvmSetCpuid2, c) < 0) return ThrowErrno(info.Env(), "KVM_SET_CPUID2", errno);
  return info.Env().Undefined();
}

Napi::Value VcpuFd::Nmi(const Napi::CallbackInfo& info) {
  if (!Live(info.Env(), "KVM_NMI")) return info.Env().Undefined();
  if (xioctl(v_->fd, KVM_NMI, 0ul) < 0) return ThrowErrno(info.Env(), "KVM_NMI", errno);
  return info.Env().Undefined();
}

Napi::Value VcpuFd::Interrupt(const Napi::CallbackInfo& info) {
  uint32_t irq;
  if (!ArgU32(info, 0, "irq", &irq) || !Live(info.Env(), "KVM_INTERRUPT")) return info.Env().Undefined();
  kvm_interrupt i{};
  i.irq = irq;
  if (xioctl(v_->fd, KVM_INTERRUPT, &i) < 0) return ThrowErrno(info.Env(), "KVM_INTERRUPT", errno);
  return info.Env().Undefined();
}

// getStatsFd(): the binary statistics fd number; wrap with `new FileFd(fd)`.
Napi::Value VcpuFd::GetStatsFd(const Napi::CallbackInfo& info) {
  if (!Live(info.Env(), "KVM_GET_STATS_FD")) return info.Env().Undefined();
  int r = xioctl(v_->fd, KVM_GET_STATS_FD, 0ul);
  if (r < 0) return ThrowErrno(info.Env(), "KVM_GET_STATS_FD", errno);
  return Napi::Number::New(info.Env(), r);
}

Napi::Value VcpuFd::GetTscKhz(const Napi::CallbackInfo& info) {
  if (!Live(info.Env(), "KVM_GET_TSC_KHZ")) return info.Env().Undefined();
  int r = xioctl(v_->fd, KVM_GET_TSC_KHZ, 0ul);
  if (r < 0) return ThrowErrno(info.Env(), "KVM_GET_TSC_KHZ", errno);
  return Napi::Number::New(info.Env(), r);
}

Napi::Value VcpuFd::SetTscKhz(const Napi::CallbackInfo& info) {
  uint32_t khz;
  if (!ArgU32(info, 0, "khz", &khz) || !Live(info.Env(), "KVM_SET_TSC_KHZ")) return info.Env().Undefined();
  if (xioctl(v_->fd, KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)) < 0) return ThrowErrno(info.Env(), "KVM_SET_TSC_KHZ", errno);
  return info.Env().Undefined();
}

}  // namespace vmmapi

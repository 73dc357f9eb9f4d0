// Module entry: registers the classes, receives the JS error class, and exports the few
// free functions that belong to no fd (kick, thread affinity, struct layout facts).
#include <dlfcn.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>

#include "classes.h"

namespace vmmapi {

static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) return ThrowType(info.Env(), "errorClass must be a function");
  Data(info.Env())->errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

// kick(vcpuFd): make the vCPU leave KVM_RUN (immediate_exit + signal). False if unknown.
static Napi::Value KickVcpu(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgI32(info, 0, "vcpuFd", &fd)) return info.Env().Undefined();
  return Napi::Boolean::New(info.Env(), Kick(fd));
}

// setThreadAffinity(cpu): pin the calling thread to one host CPU, or -1 for all CPUs.
static Napi::Value SetThreadAffinity(const Napi::CallbackInfo& info) {
  int32_t cpu;
  if (!ArgI32(info, 0, "cpu", &cpu)) return info.Env().Undefined();
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu < 0) {
    long n = sysconf(_SC_NPROCESSORS_CONF);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++) CPU_SET(i, &set);
  } else {
    if (cpu >= CPU_SETSIZE) return ThrowRange(info.Env(), "cpu is out of range");
    CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(0, sizeof set, &set) < 0) return ThrowErrno(info.Env(), "sched_setaffinity", errno);
  return info.Env().Undefined();
}

// getThreadAffinity(): the host CPUs the calling thread may run on.
static Napi::Value GetThreadAffinity(const Napi::CallbackInfo& info) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) < 0) return ThrowErrno(info.Env(), "sched_getaffinity", errno);
  Napi::Array a = Napi::Array::New(info.Env());
  uint32_t k = 0;
  for (int i = 0; i < CPU_SETSIZE; i++)
    if (CPU_ISSET(i, &set)) a.Set(k++, Napi::Number::New(info.Env(), i));
  return a;
}

static Napi::Value ThreadId(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(syscall(SYS_gettid)));
}

// Sizes and offsets of the structs TypeScript decodes, so tests can check its tables.
static Napi::Value Layout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#define L(NAME, VALUE) o.Set(NAME, Napi::Number::New(env, static_cast<double>(VALUE)))
  L("kvm_regs", sizeof(kvm_regs));
  L("kvm_sregs", sizeof(kvm_sregs));
  L("kvm_fpu", sizeof(kvm_fpu));
  L("kvm_lapic_state", sizeof(kvm_lapic_state));
  L("kvm_vcpu_events", sizeof(kvm_vcpu_events));
  L("kvm_debugregs", sizeof(kvm_debugregs));
  L("kvm_xcrs", sizeof(kvm_xcrs));
  L("kvm_guest_debug", sizeof(kvm_guest_debug));
  L("kvm_mp_state", sizeof(kvm_mp_state));
  L("kvm_cpuid_entry2", sizeof(kvm_cpuid_entry2));
  L("kvm_msr_entry", sizeof(kvm_msr_entry));
  L("kvm_irq_routing_entry", sizeof(kvm_irq_routing_entry));
  L("sregs.cr0", offsetof(kvm_sregs, cr0));
  L("sregs.efer", offsetof(kvm_sregs, efer));
  L("sregs.apic_base", offsetof(kvm_sregs, apic_base));
  L("sregs.gdt", offsetof(kvm_sregs, gdt));
  L("fpu.mxcsr", offsetof(kvm_fpu, mxcsr));
  L("fpu.xmm", offsetof(kvm_fpu, xmm));
  L("events.sipi_vector", offsetof(kvm_vcpu_events, sipi_vector));
  L("events.exception_payload", offsetof(kvm_vcpu_events, exception_payload));
  L("run.exit_reason", offsetof(kvm_run, exit_reason));
  L("run.io", offsetof(kvm_run, io));
  L("run.mmio.data", offsetof(kvm_run, mmio.data));
  L("run.mmio.len", offsetof(kvm_run, mmio.len));
  L("run.mmio.is_write", offsetof(kvm_run, mmio.is_write));
  L("run.internal.data", offsetof(kvm_run, internal.data));
  L("run.emulation_failure.insn_size", offsetof(kvm_run, emulation_failure.insn_size));
  L("run.debug.arch.pc", offsetof(kvm_run, debug.arch.pc));
  L("run.system_event.data", offsetof(kvm_run, system_event.data));
  L("run.kvm_valid_regs", offsetof(kvm_run, kvm_valid_regs));
  L("KVM_COALESCED_MMIO_PAGE_OFFSET", KVM_COALESCED_MMIO_PAGE_OFFSET);
#undef L
  return o;
}

// cmpxchg16b(cell, expectedLo, expectedHi, newLo, newHi): a locked 16-byte compare-exchange
// on guest memory (for the instruction fallback's `lock cmpxchg16b`). `cell` is a 16-byte,
// 16-byte-aligned view (of the guest memory's SharedArrayBuffer). Returns [ok, oldLo, oldHi].
static Napi::Value Cmpxchg16b(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* cell;
  size_t n;
  uint64_t el, eh, nl, nh;
  if (!ArgBytes(info, 0, "cell", 16, &cell, &n) || !ArgU64(info, 1, "expectedLo", &el) || !ArgU64(info, 2, "expectedHi", &eh) ||
      !ArgU64(info, 3, "newLo", &nl) || !ArgU64(info, 4, "newHi", &nh))
    return env.Undefined();
  if (reinterpret_cast<uintptr_t>(cell) % 16 != 0) return ThrowRange(env, "cell must be 16-byte aligned");
  auto* p = reinterpret_cast<unsigned __int128*>(cell);
  unsigned __int128 expected = (static_cast<unsigned __int128>(eh) << 64) | el;
  unsigned __int128 desired = (static_cast<unsigned __int128>(nh) << 64) | nl;
  uint64_t lo = static_cast<uint64_t>(expected), hi = static_cast<uint64_t>(expected >> 64);
  bool ok;
  __asm__ __volatile__("lock cmpxchg16b %1"
                       : "=@ccz"(ok), "+m"(*p), "+a"(lo), "+d"(hi)
                       : "b"(static_cast<uint64_t>(desired)), "c"(static_cast<uint64_t>(desired >> 64))
                       : "memory");
  Napi::Array out = Napi::Array::New(env, 3);
  out.Set(0u, Napi::Boolean::New(env, ok));
  out.Set(1u, Napi::BigInt::New(env, lo));
  out.Set(2u, Napi::BigInt::New(env, hi));
  return out;
}

Napi::Value ExecSse(const Napi::CallbackInfo& info);

// Keep this library loaded until the process ends. Node unloads an addon when the last
// environment that loaded it goes away — a worker thread that was its only user, exiting — but
// code here outlives any environment: guest RAM's SharedArrayBuffer deleter and its
// shared_ptr control block (run when the isolate's heap is torn down, after the environment),
// and the kick signal handler. Unloaded, the worker's teardown jumped into unmapped code.
static void KeepLoaded() {
  Dl_info self;
  if (dladdr(reinterpret_cast<void*>(&KeepLoaded), &self) != 0 && self.dli_fname != nullptr)
    dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  KeepLoaded();
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  InstallKickHandler();

  Napi::Function mapping = GuestMapping::Init(env);
  data->guestMappingCtor = Napi::Persistent(mapping);
  Napi::Function vmfd = VmFd::Init(env);
  data->vmFdCtor = Napi::Persistent(vmfd);

  exports.Set("KvmSystem", KvmSystem::Init(env));
  exports.Set("GuestMapping", mapping);
  exports.Set("VmFd", vmfd);
  exports.Set("VcpuFd", VcpuFd::Init(env));
  exports.Set("FileFd", FileFd::Init(env));
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  exports.Set("kick", Napi::Function::New(env, KickVcpu));
  exports.Set("kickSignal", Napi::Number::New(env, KickSignal()));
  exports.Set("setThreadAffinity", Napi::Function::New(env, SetThreadAffinity));
  exports.Set("getThreadAffinity", Napi::Function::New(env, GetThreadAffinity));
  exports.Set("threadId", Napi::Function::New(env, ThreadId));
  exports.Set("layout", Napi::Function::New(env, Layout));
  exports.Set("cmpxchg16b", Napi::Function::New(env, Cmpxchg16b));
  exports.Set("execSse", Napi::Function::New(env, ExecSse));
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(sysconf(_SC_PAGESIZE))));
  InitVfio(env, exports);
  InitFutex(env, exports);
  InitXsave(env, exports);
  InitFdWatcher(env, exports);
  InitTap(env, exports);
  return exports;
}

}  // namespace vmmapi

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return vmmapi::Init(env, exports); }

NODE_API_MODULE(vmmapi, InitAddon)

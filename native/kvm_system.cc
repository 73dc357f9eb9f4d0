// KvmSystem: the /dev/kvm fd. One method per system ioctl.
#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "classes.h"

namespace vmmapi {

Napi::Function KvmSystem::Init(Napi::Env env) {
  return DefineClass(env, "KvmSystem",
                     {
                         InstanceMethod("close", &KvmSystem::Close),
                         InstanceAccessor("fd", &KvmSystem::GetFd, nullptr),
                         InstanceMethod("apiVersion", &KvmSystem::ApiVersion),
                         InstanceMethod("checkExtension", &KvmSystem::CheckExtension),
                         InstanceMethod("vcpuMmapSize", &KvmSystem::VcpuMmapSize),
                         InstanceMethod("supportedCpuid", &KvmSystem::SupportedCpuid),
                         InstanceMethod("msrIndexList", &KvmSystem::MsrIndexList),
                         InstanceMethod("createVm", &KvmSystem::CreateVm),
                     });
}

// new KvmSystem(path = "/dev/kvm")
KvmSystem::KvmSystem(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvmSystem>(info) {
  std::string path = "/dev/kvm";
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsString()) {
      ThrowType(info.Env(), "path must be a string");
      return;
    }
    path = info[0].As<Napi::String>().Utf8Value();
  }
  fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) ThrowErrno(info.Env(), "open", errno);
}

KvmSystem::~KvmSystem() {
  if (fd_ >= 0) close(fd_);
}

bool KvmSystem::Open(Napi::Env env) {
  if (fd_ >= 0) return true;
  ThrowErrno(env, "ioctl", EBADF);
  return false;
}

Napi::Value KvmSystem::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

Napi::Value KvmSystem::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value KvmSystem::ApiVersion(const Napi::CallbackInfo& info) {
  if (!Open(info.Env())) return info.Env().Undefined();
  int r = xioctl(fd_, KVM_GET_API_VERSION, 0ul);
  if (r < 0) return ThrowErrno(info.Env(), "KVM_GET_API_VERSION", errno);
  return Napi::Number::New(info.Env(), r);
}

Napi::Value KvmSystem::CheckExtension(const Napi::CallbackInfo& info) {
  uint32_t cap;
  if (!ArgU32(info, 0, "cap", &cap) || !Open(info.Env())) return info.Env().Undefined();
  int r = xioctl(fd_, KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
  if (r < 0) return ThrowErrno(info.Env(), "KVM_CHECK_EXTENSION", errno);
  return Napi::Number::New(info.Env(), r);
}

Napi::Value KvmSystem::VcpuMmapSize(const Napi::CallbackInfo& info) {
  if (!Open(info.Env())) return info.Env().Undefined();
  int r = xioctl(fd_, KVM_GET_VCPU_MMAP_SIZE, 0ul);
  if (r < 0) return ThrowErrno(info.Env(), "KVM_GET_VCPU_MMAP_SIZE", errno);
  return Napi::Number::New(info.Env(), r);
}

// Returns the raw struct kvm_cpuid2 (header + entries) as an ArrayBuffer.
Napi::Value KvmSystem::SupportedCpuid(const Napi::CallbackInfo& info) {
  if (!Open(info.Env())) return info.Env().Undefined();
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    size_t size = kCpuid2Header + n * sizeof(kvm_cpuid_entry2);
    std::vector<uint8_t> buf(size);
    auto* c = reinterpret_cast<kvm_cpuid2*>(buf.data());
    c->nent = n;
    if (xioctl(fd_, kKvmGetSupportedCpuid, c) == 0) {
      return CopyOut(info.Env(), buf.data(), kCpuid2Header + c->nent * sizeof(kvm_cpuid_entry2));
    }
    if (errno != E2BIG) return ThrowErrno(info.Env(), "KVM_GET_SUPPORTED_CPUID", errno);
  }
  return ThrowErrno(info.Env(), "KVM_GET_SUPPORTED_CPUID", E2BIG);
}

// Returns the MSR indices KVM saves/restores, as a Uint32Array.
Napi::Value KvmSystem::MsrIndexList(const Napi::CallbackInfo& info) {
  if (!Open(info.Env())) return info.Env().Undefined();
  uint32_t probe[2] = {0, 0};
  if (xioctl(fd_, kKvmGetMsrIndexList, probe) < 0 && errno != E2BIG)
    return ThrowErrno(info.Env(), "KVM_GET_MSR_INDEX_LIST", errno);
  uint32_t n = probe[0];
  if (n > 65536) return ThrowErrno(info.Env(), "KVM_GET_MSR_INDEX_LIST", E2BIG);
  std::vector<uint32_t> buf(1 + n);
  buf[0] = n;
  if (xioctl(fd_, kKvmGetMsrIndexList, buf.data()) < 0) return ThrowErrno(info.Env(), "KVM_GET_MSR_INDEX_LIST", errno);
  Napi::Uint32Array out = Napi::Uint32Array::New(info.Env(), buf[0]);
  std::memcpy(out.Data(), buf.data() + 1, buf[0] * sizeof(uint32_t));
  return out;
}

// createVm(type = 0): returns the new VM's fd number; wrap it with `new VmFd(fd, mmapSize)`.
Napi::Value KvmSystem::CreateVm(const Napi::CallbackInfo& info) {
  uint32_t type = 0;
  if (info.Length() > 0 && !info[0].IsUndefined() && !ArgU32(info, 0, "type", &type)) return info.Env().Undefined();
  if (!Open(info.Env())) return info.Env().Undefined();
  int r = xioctl(fd_, KVM_CREATE_VM, static_cast<unsigned long>(type));
  if (r < 0) return ThrowErrno(info.Env(), "KVM_CREATE_VM", errno);
  fcntl(r, F_SETFD, FD_CLOEXEC);
  return Napi::Number::New(info.Env(), r);
}

}  // namespace vmmapi

// KVM_GET_XSAVE / KVM_SET_XSAVE on a vCPU fd number, for the instruction fallback's XRSTOR
// (src/emulate/instructions/xsave.ts). Thin: one function per ioctl, struct kvm_xsave
// (4096 bytes) as raw bytes, errno -> KvmError. The fd is the caller's vCPU fd (the worker's).
#include "common.h"

namespace vmmapi {

// xsaveGet(vcpuFd) -> ArrayBuffer(4096)
static Napi::Value XsaveGet(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgI32(info, 0, "vcpuFd", &fd)) return info.Env().Undefined();
  struct kvm_xsave x;
  std::memset(&x, 0, sizeof x);
  if (xioctl(fd, KVM_GET_XSAVE, &x) < 0) return ThrowErrno(info.Env(), "KVM_GET_XSAVE", errno);
  return CopyOut(info.Env(), &x, sizeof x);
}

// xsaveSet(vcpuFd, bytes: 4096 bytes)
static Napi::Value XsaveSet(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint8_t* p;
  size_t n;
  if (!ArgI32(info, 0, "vcpuFd", &fd) || !ArgBytes(info, 1, "xsave", sizeof(struct kvm_xsave), &p, &n))
    return info.Env().Undefined();
  struct kvm_xsave x;
  std::memcpy(&x, p, sizeof x);
  if (xioctl(fd, KVM_SET_XSAVE, &x) < 0) return ThrowErrno(info.Env(), "KVM_SET_XSAVE", errno);
  return info.Env().Undefined();
}

void InitXsave(Napi::Env env, Napi::Object exports) {
  exports.Set("xsaveGet", Napi::Function::New(env, XsaveGet));
  exports.Set("xsaveSet", Napi::Function::New(env, XsaveSet));
}

}  // namespace vmmapi

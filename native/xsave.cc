// KVM_GET_XSAVE2 (KVM_GET_XSAVE where it is missing) / KVM_SET_XSAVE: the one owner of the
// XSAVE image size and ioctl numbers. Used by VcpuFd.getXsave/setXsave (vcpu_fd.cc, snapshots)
// and, on a vCPU fd number, by the instruction fallback's XRSTOR
// (src/emulate/instructions/xsave.ts). Thin: the image as raw bytes, errno -> KvmError.
//
// The image can be larger than struct kvm_xsave (KVM's uabi size grows with the host's XSAVE
// features, e.g. AVX-512 or AMX: KVM_GET_XSAVE then fails with EINVAL), and KVM copies exactly
// that size in both directions. The buffer is the host CPU's largest XSAVE area (CPUID.(EAX=0DH,
// ECX=0):ECX), at least 4096 bytes, which bounds KVM's uabi size.
#include <cpuid.h>

#include <vector>

#include "common.h"

namespace vmmapi {

// struct kvm_xsave ends in a flexible array, which g++ sizes differently from C (see common.h):
// the ioctl numbers are built from the C size, 4096.
constexpr size_t kKvmXsaveSize = 4096;
constexpr unsigned long kKvmGetXsave = _IOR(KVMIO, 0xa4, uint8_t[kKvmXsaveSize]);
constexpr unsigned long kKvmSetXsave = _IOW(KVMIO, 0xa5, uint8_t[kKvmXsaveSize]);
constexpr unsigned long kKvmGetXsave2 = _IOR(KVMIO, 0xcf, uint8_t[kKvmXsaveSize]);

size_t XsaveBytes() {
  unsigned a, b, c, d;
  size_t n = kKvmXsaveSize;
  if (__get_cpuid_count(0xd, 0, &a, &b, &c, &d) && c > n) n = c;
  return (n + 63) & ~size_t{63};
}

Napi::Value XsaveGetOn(Napi::Env env, int fd) {
  std::vector<uint8_t> buf(XsaveBytes(), 0);
  if (xioctl(fd, kKvmGetXsave2, buf.data()) < 0) {
    if (errno != ENOTTY && errno != EINVAL) return ThrowErrno(env, "KVM_GET_XSAVE2", errno);
    if (xioctl(fd, kKvmGetXsave, buf.data()) < 0) return ThrowErrno(env, "KVM_GET_XSAVE", errno);
  }
  return CopyOut(env, buf.data(), buf.size());
}

Napi::Value XsaveSetOn(Napi::Env env, int fd, const uint8_t* image) {
  // a private copy: the caller's bytes may be a view over memory another thread changes
  std::vector<uint8_t> buf(image, image + XsaveBytes());
  if (xioctl(fd, kKvmSetXsave, buf.data()) < 0) return ThrowErrno(env, "KVM_SET_XSAVE", errno);
  return env.Undefined();
}

// xsaveGet(vcpuFd) -> ArrayBuffer (xsaveSize() bytes; the standard-format XSAVE image)
static Napi::Value XsaveGet(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgI32(info, 0, "vcpuFd", &fd)) return info.Env().Undefined();
  return XsaveGetOn(info.Env(), fd);
}

// xsaveSet(vcpuFd, bytes: exactly xsaveSize() bytes, as xsaveGet returned them)
static Napi::Value XsaveSet(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint8_t* p;
  size_t n;
  if (!ArgI32(info, 0, "vcpuFd", &fd) || !ArgBytes(info, 1, "xsave", XsaveBytes(), &p, &n)) return info.Env().Undefined();
  return XsaveSetOn(info.Env(), fd, p);
}

static Napi::Value XsaveSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(XsaveBytes()));
}

void InitXsave(Napi::Env env, Napi::Object exports) {
  exports.Set("xsaveGet", Napi::Function::New(env, XsaveGet));
  exports.Set("xsaveSet", Napi::Function::New(env, XsaveSet));
  exports.Set("xsaveSize", Napi::Function::New(env, XsaveSize));
}

}  // namespace vmmapi

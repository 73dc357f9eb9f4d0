// Shared helpers for the vmmapi addon: per-environment state, errno -> KvmError,
// argument readers that never crash on a wrong JS type, and raw-struct copies.
#pragma once
#include <napi.h>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <linux/kvm.h>
#include <sys/ioctl.h>

namespace vmmapi {

// In C++, g++ gives the kernel's flexible-array structs (kvm_cpuid2, kvm_msrs, kvm_msr_list,
// kvm_irq_routing) a different sizeof than C does, which changes the ioctl numbers. These are
// the C sizes and the ioctl numbers built from them.
constexpr size_t kCpuid2Header = 8;
constexpr size_t kMsrsHeader = 8;
constexpr size_t kMsrListHeader = 4;
constexpr size_t kIrqRoutingHeader = 8;
constexpr unsigned long kKvmGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kCpuid2Header);
constexpr unsigned long kKvmSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kCpuid2Header);
constexpr unsigned long kKvmGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, kMsrsHeader);
constexpr unsigned long kKvmSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, kMsrsHeader);
constexpr unsigned long kKvmGetMsrIndexList = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x02, kMsrListHeader);
constexpr unsigned long kKvmSetGsiRouting = _IOC(_IOC_WRITE, KVMIO, 0x6a, kIrqRoutingHeader);

// Per-environment (main thread or worker) addon state, better-sqlite3 style.
struct AddonData {
  Napi::FunctionReference errorClass;  // the JS KvmError class, handed over at load
  Napi::FunctionReference guestMappingCtor;
  Napi::FunctionReference vmFdCtor;
};

inline AddonData* Data(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

// Throw a KvmError(message, code, errno, syscall). Returns undefined for convenience.
Napi::Value ThrowErrno(Napi::Env env, const char* syscall, int err);
// Throw a TypeError / RangeError naming the argument.
Napi::Value ThrowType(Napi::Env env, const std::string& msg);
Napi::Value ThrowRange(Napi::Env env, const std::string& msg);

// ioctl retrying on EINTR (except KVM_RUN, which handles EINTR itself).
inline int xioctl(int fd, unsigned long req, void* arg) {
  int r;
  do {
    r = ioctl(fd, req, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}
inline int xioctl(int fd, unsigned long req, unsigned long arg) {
  int r;
  do {
    r = ioctl(fd, req, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

// Argument readers: return false after throwing a TypeError/RangeError.
bool ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name, uint32_t* out);
bool ArgI32(const Napi::CallbackInfo& info, size_t i, const char* name, int32_t* out);
bool ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name, uint64_t* out);
// A byte view (ArrayBuffer or any TypedArray/DataView) of exactly `size` bytes, or any
// size >= min when size == 0.
bool ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* name, size_t size, uint8_t** data,
              size_t* len, size_t min = 0);

// Copy a struct out to a fresh ArrayBuffer.
Napi::ArrayBuffer CopyOut(Napi::Env env, const void* src, size_t size);

// XSAVE (xsave.cc owns the image size and the ioctl numbers). XsaveBytes(): the image size
// every XSAVE call uses (the host's largest XSAVE area, at least 4096). XsaveGetOn: an
// ArrayBuffer of XsaveBytes() bytes from KVM_GET_XSAVE2 (KVM_GET_XSAVE where it is missing).
// XsaveSetOn: KVM_SET_XSAVE from `image` (XsaveBytes() bytes; the caller checked the length).
size_t XsaveBytes();
Napi::Value XsaveGetOn(Napi::Env env, int vcpuFd);
Napi::Value XsaveSetOn(Napi::Env env, int vcpuFd, const uint8_t* image);

}  // namespace vmmapi

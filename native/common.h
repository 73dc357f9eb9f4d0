// Shared helpers for the vmmapi addon: per-environment state, errno -> KvmError,
// argument readers that never crash on a wrong JS type, and raw-struct copies.
#pragma once
#include <napi.h>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <sys/ioctl.h>

namespace vmmapi {

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

}  // namespace vmmapi

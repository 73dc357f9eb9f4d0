// futexWait / futexWake on a cell of a shared Int32Array: the raw futex(2) calls, for the
// runner's hand-off between a vCPU worker and the main thread. V8's Atomics.wait/notify go
// through a mutex and a condition variable; on a busy host that costs twice the context
// switches of a bare futex. Waiters and wakers of one cell must all use these two.
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>

#include "classes.h"

namespace vmmapi {

// The cell `index` of the Int32Array argument 0, or nullptr (exception thrown).
static int32_t* Cell(const Napi::CallbackInfo& info, uint32_t* index) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    ThrowType(env, "cells must be an Int32Array");
    return nullptr;
  }
  if (!ArgU32(info, 1, "index", index)) return nullptr;
  Napi::Int32Array a = info[0].As<Napi::Int32Array>();
  if (*index >= a.ElementLength()) {
    ThrowRange(env, "index is outside cells");
    return nullptr;
  }
  return a.Data() + *index;
}

// futexWait(cells, index, expected, timeoutUs): sleep while cells[index] == expected, at most
// timeoutUs microseconds (0: no limit). Returns 0 woken, 1 not equal, 2 timed out, 3 interrupted.
static Napi::Value FutexWait(const Napi::CallbackInfo& info) {
  uint32_t index, timeoutUs;
  int32_t expected;
  int32_t* cell = Cell(info, &index);
  if (!cell || !ArgI32(info, 2, "expected", &expected) || !ArgU32(info, 3, "timeoutUs", &timeoutUs)) return info.Env().Undefined();
  struct timespec ts = {static_cast<time_t>(timeoutUs / 1000000), static_cast<long>(timeoutUs % 1000000) * 1000L};
  long r = syscall(SYS_futex, cell, FUTEX_WAIT_PRIVATE, expected, timeoutUs ? &ts : nullptr, nullptr, 0);
  int e = errno;
  int out = 0;
  if (r < 0) {
    if (e == EAGAIN) out = 1;
    else if (e == ETIMEDOUT) out = 2;
    else if (e == EINTR) out = 3;
    else return ThrowErrno(info.Env(), "futex", e);
  }
  return Napi::Number::New(info.Env(), out);
}

// futexWake(cells, index, count): wake up to `count` waiters of cells[index]; returns how many.
static Napi::Value FutexWake(const Napi::CallbackInfo& info) {
  uint32_t index, count;
  int32_t* cell = Cell(info, &index);
  if (!cell || !ArgU32(info, 2, "count", &count)) return info.Env().Undefined();
  long r = syscall(SYS_futex, cell, FUTEX_WAKE_PRIVATE, count > INT32_MAX ? INT32_MAX : count, nullptr, nullptr, 0);
  if (r < 0) return ThrowErrno(info.Env(), "futex", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

void InitFutex(Napi::Env env, Napi::Object exports) {
  exports.Set("futexWait", Napi::Function::New(env, FutexWait));
  exports.Set("futexWake", Napi::Function::New(env, FutexWake));
}

}  // namespace vmmapi

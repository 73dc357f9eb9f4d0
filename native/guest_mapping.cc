// GuestMapping: page-aligned anonymous shared memory for guest RAM, exposed to JS as a
// real SharedArrayBuffer whose backing store the addon keeps (DESIGN.md §3). The memory is
// unmapped when the last holder (this object, a VM slot, any SharedArrayBuffer in any
// thread) lets go.
#include <sys/mman.h>
#include <unistd.h>
#include <v8.h>

#include "classes.h"

namespace vmmapi {

static void UnmapDeleter(void* data, size_t length, void*) { munmap(data, length); }

Napi::Function GuestMapping::Init(Napi::Env env) {
  return DefineClass(env, "GuestMapping",
                     {
                         InstanceMethod("buffer", &GuestMapping::Buffer),
                         InstanceMethod("release", &GuestMapping::Release),
                         InstanceAccessor("length", &GuestMapping::GetLength, nullptr),
                     });
}

// new GuestMapping(length): length a positive multiple of the page size.
GuestMapping::GuestMapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GuestMapping>(info) {
  uint64_t len;
  if (!ArgU64(info, 0, "length", &len)) return;
  long page = sysconf(_SC_PAGESIZE);
  if (len == 0 || len % static_cast<uint64_t>(page) != 0) {
    ThrowRange(info.Env(), "length must be a positive multiple of the page size");
    return;
  }
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    ThrowErrno(info.Env(), "mmap", errno);
    return;
  }
  base = static_cast<uint8_t*>(p);
  length = len;
  store = v8::SharedArrayBuffer::NewBackingStore(p, len, UnmapDeleter, nullptr);
}

Napi::Value GuestMapping::Buffer(const Napi::CallbackInfo& info) {
  if (!store) return ThrowErrno(info.Env(), "buffer", EBADF);
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::Local<v8::SharedArrayBuffer> sab = v8::SharedArrayBuffer::New(isolate, store);
  return Napi::Value(info.Env(), reinterpret_cast<napi_value>(*sab));
}

Napi::Value GuestMapping::Release(const Napi::CallbackInfo& info) {
  store.reset();
  return info.Env().Undefined();
}

Napi::Value GuestMapping::GetLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(length));
}

}  // namespace vmmapi

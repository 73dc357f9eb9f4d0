// GuestMapping: page-aligned memory for guest RAM, exposed to JS as a real
// SharedArrayBuffer whose backing store the addon keeps (DESIGN.md §3): anonymous shared
// memory, or a private (copy-on-write) mapping of a file for a snapshot restore. The memory
// is unmapped when the last holder (this object, a VM slot, any SharedArrayBuffer in any
// thread) lets go.
#include <sys/mman.h>
#include <sys/stat.h>
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

// new GuestMapping(length, fd?, offset = 0): length a positive multiple of the page size.
// Without fd: anonymous shared memory (zero-filled). With fd (a regular file open for reading,
// at least offset + length bytes long, offset page-aligned): MAP_PRIVATE over the file — pages
// are read on first touch and a write copies the page, so the file is never changed. The fd
// stays the caller's (the mapping holds its own reference to the file).
GuestMapping::GuestMapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GuestMapping>(info) {
  uint64_t len;
  if (!ArgU64(info, 0, "length", &len)) return;
  long page = sysconf(_SC_PAGESIZE);
  if (len == 0 || len % static_cast<uint64_t>(page) != 0) {
    ThrowRange(info.Env(), "length must be a positive multiple of the page size");
    return;
  }
  int32_t fd = -1;
  uint64_t off = 0;
  bool file = info.Length() > 1 && !info[1].IsUndefined();
  if (file) {
    if (!ArgI32(info, 1, "fd", &fd)) return;
    if (info.Length() > 2 && !info[2].IsUndefined() && !ArgU64(info, 2, "offset", &off)) return;
    if (fd < 0) {
      ThrowRange(info.Env(), "fd must be a file descriptor (>= 0)");
      return;
    }
    if (off % static_cast<uint64_t>(page) != 0) {
      ThrowRange(info.Env(), "offset must be a multiple of the page size");
      return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
      ThrowErrno(info.Env(), "fstat", errno);
      return;
    }
    if (!S_ISREG(st.st_mode)) {
      ThrowRange(info.Env(), "fd " + std::to_string(fd) + " is not a regular file");
      return;
    }
    // a mapping past the end of the file would SIGBUS on first touch
    uint64_t size = static_cast<uint64_t>(st.st_size);
    if (off > size || len > size - off) {
      ThrowRange(info.Env(), "fd " + std::to_string(fd) + " has " + std::to_string(size) + " bytes, fewer than offset + length = " +
                                 std::to_string(off) + " + " + std::to_string(len));
      return;
    }
  }
  void* p = file ? mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, static_cast<off_t>(off))
                 : mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
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

// GuestMapping: page-aligned memory for guest RAM, exposed to JS as a real
// SharedArrayBuffer whose backing store the addon keeps (DESIGN.md §3): shared memory of a
// memfd (anonymous shared memory whose allocated ranges lseek(SEEK_DATA) can tell: what a
// snapshot must write), or a private (copy-on-write) mapping of a file for a snapshot restore. The memory
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
                         InstanceMethod("dataRanges", &GuestMapping::DataRanges),
                         InstanceAccessor("length", &GuestMapping::GetLength, nullptr),
                     });
}

// new GuestMapping(length, fd?, offset = 0): length a positive multiple of the page size.
// Without fd: a memfd of `length` bytes, mapped shared (zero-filled). With fd (a regular file open for reading,
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
  if (!file) {
    memfd = memfd_create("vmmapi-guest-ram", MFD_CLOEXEC);
    if (memfd < 0) {
      ThrowErrno(info.Env(), "memfd_create", errno);
      return;
    }
    if (ftruncate(memfd, static_cast<off_t>(len)) < 0) {
      int e = errno;
      close(memfd);
      memfd = -1;
      ThrowErrno(info.Env(), "ftruncate", e);
      return;
    }
  }
  void* p = file ? mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, static_cast<off_t>(off))
                 : mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    if (memfd >= 0) close(memfd);
    memfd = -1;
    ThrowErrno(info.Env(), "mmap", e);
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

GuestMapping::~GuestMapping() {
  if (memfd >= 0) close(memfd);  // the mapping keeps the memory
}

Napi::Value GuestMapping::Release(const Napi::CallbackInfo& info) {
  store.reset();
  if (memfd >= 0) close(memfd);
  memfd = -1;
  return info.Env().Undefined();
}

// dataRanges(): the byte ranges of a memfd-backed mapping that hold allocated memory, as a
// flat array [start0, end0, start1, end1, ...] (lseek SEEK_DATA / SEEK_HOLE; everything else
// reads as zeros and was never touched). null for a file-backed mapping, whose untouched pages
// come from its file.
Napi::Value GuestMapping::DataRanges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (memfd < 0) return env.Null();
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  off_t at = 0;
  const off_t end = static_cast<off_t>(length);
  while (at < end) {
    off_t data = lseek(memfd, at, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data after `at`
      return ThrowErrno(env, "lseek", errno);
    }
    off_t hole = lseek(memfd, data, SEEK_HOLE);
    if (hole < 0) return ThrowErrno(env, "lseek", errno);
    if (hole > end) hole = end;
    out.Set(n++, Napi::Number::New(env, static_cast<double>(data)));
    out.Set(n++, Napi::Number::New(env, static_cast<double>(hole)));
    at = hole;
  }
  return out;
}

Napi::Value GuestMapping::GetLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(length));
}

}  // namespace vmmapi

// FileFd: an fd the addon opened or received (binary stats, eventfd, VFIO container,
// group or device). Reads at an offset, writes, and closes exactly once.
#include <fcntl.h>
#include <unistd.h>

#include "classes.h"

namespace vmmapi {

Napi::Function FileFd::Init(Napi::Env env) {
  return DefineClass(env, "FileFd",
                     {
                         InstanceMethod("close", &FileFd::Close),
                         InstanceAccessor("fd", &FileFd::GetFd, nullptr),
                         InstanceMethod("pread", &FileFd::Pread),
                         InstanceMethod("read", &FileFd::Read),
                         InstanceMethod("write", &FileFd::Write),
                     });
}

// new FileFd(fd) adopts a fd number; new FileFd(path, flags) opens a path (O_CLOEXEC).
FileFd::FileFd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FileFd>(info) {
  if (info.Length() > 0 && info[0].IsString()) {
    int32_t flags = O_RDWR;
    if (info.Length() > 1 && !ArgI32(info, 1, "flags", &flags)) return;
    std::string path = info[0].As<Napi::String>().Utf8Value();
    fd_ = open(path.c_str(), flags | O_CLOEXEC);
    if (fd_ < 0) ThrowErrno(info.Env(), "open", errno);
    return;
  }
  int32_t fd;
  if (!ArgI32(info, 0, "fd", &fd)) return;
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
    ThrowErrno(info.Env(), "FileFd", EBADF);
    return;
  }
  fd_ = fd;
}

FileFd::~FileFd() {
  if (fd_ >= 0) close(fd_);
}

Napi::Value FileFd::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

Napi::Value FileFd::GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

// pread(length, offset): an ArrayBuffer of the bytes read (may be shorter at EOF).
Napi::Value FileFd::Pread(const Napi::CallbackInfo& info) {
  uint32_t len;
  uint64_t off;
  if (!ArgU32(info, 0, "length", &len) || !ArgU64(info, 1, "offset", &off)) return info.Env().Undefined();
  if (len > (64u << 20)) return ThrowRange(info.Env(), "length must be at most 64 MiB");
  if (fd_ < 0) return ThrowErrno(info.Env(), "pread", EBADF);
  std::string buf(len, '\0');
  ssize_t r;
  do {
    r = pread(fd_, buf.data(), len, static_cast<off_t>(off));
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ThrowErrno(info.Env(), "pread", errno);
  return CopyOut(info.Env(), buf.data(), static_cast<size_t>(r));
}

// read(length): like pread at the current position.
Napi::Value FileFd::Read(const Napi::CallbackInfo& info) {
  uint32_t len;
  if (!ArgU32(info, 0, "length", &len)) return info.Env().Undefined();
  if (len > (64u << 20)) return ThrowRange(info.Env(), "length must be at most 64 MiB");
  if (fd_ < 0) return ThrowErrno(info.Env(), "read", EBADF);
  std::string buf(len, '\0');
  ssize_t r;
  do {
    r = read(fd_, buf.data(), len);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ThrowErrno(info.Env(), "read", errno);
  return CopyOut(info.Env(), buf.data(), static_cast<size_t>(r));
}

// write(bytes): returns the count written.
Napi::Value FileFd::Write(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t n;
  if (!ArgBytes(info, 0, "bytes", 0, &p, &n, 0)) return info.Env().Undefined();
  if (fd_ < 0) return ThrowErrno(info.Env(), "write", EBADF);
  ssize_t r;
  do {
    r = write(fd_, p, n);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ThrowErrno(info.Env(), "write", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

}  // namespace vmmapi

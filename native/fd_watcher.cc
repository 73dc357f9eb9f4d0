// FdWatcher: call a JavaScript function on the creating thread's event loop whenever a fd is
// readable (libuv's uv_poll on that loop). It is how the main thread hears an eventfd that KVM
// signals (KVM_IOEVENTFD: a guest's queue notification without an exit to userspace). The
// callback only learns that the fd is readable; draining it (an eventfd's 8-byte counter) is
// the caller's job, with FileFd.read or FdWatcher.drainEventfd.
#include <errno.h>
#include <stdint.h>
#include <unistd.h>
#include <uv.h>

#include "classes.h"

namespace vmmapi {

class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {
                           InstanceMethod("close", &FdWatcher::Close),
                           InstanceMethod("drainEventfd", &FdWatcher::DrainEventfd),
                           InstanceAccessor("fd", &FdWatcher::GetFd, nullptr),
                       });
  }

  // new FdWatcher(fd, callback): starts watching at once. The fd stays the caller's to close
  // (after close() here).
  explicit FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    Napi::Env env = info.Env();
    int32_t fd;
    if (!ArgI32(info, 0, "fd", &fd)) return;
    if (info.Length() < 2 || !info[1].IsFunction()) {
      ThrowType(env, "callback must be a function");
      return;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ThrowErrno(env, "uv_default_loop", EINVAL);
      return;
    }
    poll_ = new uv_poll_t;
    int r = uv_poll_init(loop, poll_, fd);
    if (r < 0) {
      delete poll_;
      poll_ = nullptr;
      ThrowErrno(env, "uv_poll_init", -r);
      return;
    }
    poll_->data = this;
    r = uv_poll_start(poll_, UV_READABLE, OnReadable);
    if (r < 0) {
      ClosePoll();
      ThrowErrno(env, "uv_poll_start", -r);
      return;
    }
    fd_ = fd;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    Ref();  // alive while watching, even if JavaScript drops it
  }

  ~FdWatcher() override { ClosePoll(); }

 private:
  uv_poll_t* poll_ = nullptr;
  int fd_ = -1;
  Napi::FunctionReference callback_;

  static void OnReadable(uv_poll_t* handle, int status, int /*events*/) {
    auto* self = static_cast<FdWatcher*>(handle->data);
    if (self == nullptr || self->callback_.IsEmpty()) return;
    Napi::Env env = self->callback_.Env();
    Napi::HandleScope scope(env);
    Napi::Value arg = status < 0 ? Napi::Number::New(env, -status) : env.Null();
    // an exception in the callback surfaces as the process's uncaught exception
    self->callback_.MakeCallback(env.Global(), {arg});
  }

  void ClosePoll() {
    if (poll_ == nullptr) return;
    uv_poll_stop(poll_);
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }

  // close(): stop watching (idempotent); the object may then be collected.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) {
      ClosePoll();
      callback_.Reset();
      fd_ = -1;
      Unref();
    }
    return info.Env().Undefined();
  }

  // drainEventfd(): read the eventfd's counter (a non-blocking eventfd): the number of
  // signals since the last drain, 0 if none (EAGAIN).
  Napi::Value DrainEventfd(const Napi::CallbackInfo& info) {
    if (fd_ < 0) return ThrowErrno(info.Env(), "read", EBADF);
    uint64_t v = 0;
    ssize_t r;
    do {
      r = read(fd_, &v, sizeof v);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EAGAIN) return Napi::Number::New(info.Env(), 0);
    if (r < 0) return ThrowErrno(info.Env(), "read", errno);
    return Napi::Number::New(info.Env(), static_cast<double>(v));
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
};

void InitFdWatcher(Napi::Env env, Napi::Object exports) { exports.Set("FdWatcher", FdWatcher::Init(env)); }

}  // namespace vmmapi

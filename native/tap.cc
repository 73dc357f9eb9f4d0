// tapOpen(name, vnetHdr): attach to an existing TAP interface. Opens /dev/net/tun
// (non-blocking, close-on-exec) and binds it with TUNSETIFF (IFF_TAP | IFF_NO_PI, plus
// IFF_VNET_HDR if asked); returns the fd, the caller's to close (FileFd adopts it). The
// interface must already exist (ENODEV otherwise): TUNSETIFF with CAP_NET_ADMIN would
// otherwise create a fresh one.
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <unistd.h>

#include "classes.h"

namespace vmmapi {

static Napi::Value TapOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "name must be a string");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.empty() || name.size() >= IFNAMSIZ) return ThrowRange(env, "name must have 1 to 15 bytes");
  bool vnetHdr = info.Length() > 1 && info[1].ToBoolean().Value();
  if (if_nametoindex(name.c_str()) == 0) return ThrowErrno(env, "if_nametoindex", ENODEV);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, "open", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name.data(), name.size());
  if (xioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, "TUNSETIFF", err);
  }
  return Napi::Number::New(env, fd);
}

void InitTap(Napi::Env env, Napi::Object exports) { exports.Set("tapOpen", Napi::Function::New(env, TapOpen)); }

}  // namespace vmmapi

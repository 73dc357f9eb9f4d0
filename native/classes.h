// Declarations of the addon's classes: one per kind of file descriptor, plus guest memory.
#pragma once
#include <memory>

#include "common.h"
#include "shared_state.h"

namespace vmmapi {

// /dev/kvm: the system fd.
class KvmSystem : public Napi::ObjectWrap<KvmSystem> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit KvmSystem(const Napi::CallbackInfo& info);
  ~KvmSystem() override;

 private:
  int fd_ = -1;
  bool Open(Napi::Env env);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value ApiVersion(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value VcpuMmapSize(const Napi::CallbackInfo& info);
  Napi::Value SupportedCpuid(const Napi::CallbackInfo& info);
  Napi::Value MsrIndexList(const Napi::CallbackInfo& info);
  Napi::Value CreateVm(const Napi::CallbackInfo& info);
};

// Guest RAM handed to JS as a SharedArrayBuffer: anonymous shared memory, or a private
// (copy-on-write) mapping of a file; see guest_mapping.cc.
class GuestMapping : public Napi::ObjectWrap<GuestMapping> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit GuestMapping(const Napi::CallbackInfo& info);
  ~GuestMapping() override;
  std::shared_ptr<v8::BackingStore> store;
  uint8_t* base = nullptr;
  size_t length = 0;
  // the memfd behind anonymous guest RAM (-1 for a file-backed mapping)
  int memfd = -1;

 private:
  Napi::Value Buffer(const Napi::CallbackInfo& info);
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value DataRanges(const Napi::CallbackInfo& info);
  Napi::Value GetLength(const Napi::CallbackInfo& info);
};

// A VM fd (KVM_CREATE_VM result).
class VmFd : public Napi::ObjectWrap<VmFd> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit VmFd(const Napi::CallbackInfo& info);
  ~VmFd() override;
  std::shared_ptr<VmShared> vm;

 private:
  std::vector<int> vcpus_;
  size_t runSize_ = 0;
  bool Live(Napi::Env env, const char* syscall);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value CreateVcpu(const Napi::CallbackInfo& info);
  Napi::Value SetUserMemoryRegion(const Napi::CallbackInfo& info);
  Napi::Value SetTssAddr(const Napi::CallbackInfo& info);
  Napi::Value SetIdentityMapAddr(const Napi::CallbackInfo& info);
  Napi::Value CreateIrqchip(const Napi::CallbackInfo& info);
  Napi::Value CreatePit2(const Napi::CallbackInfo& info);
  Napi::Value IrqLine(const Napi::CallbackInfo& info);
  Napi::Value SignalMsi(const Napi::CallbackInfo& info);
  Napi::Value EnableCap(const Napi::CallbackInfo& info);
  Napi::Value RegisterCoalescedMmio(const Napi::CallbackInfo& info);
  Napi::Value UnregisterCoalescedMmio(const Napi::CallbackInfo& info);
  Napi::Value SetGsiRouting(const Napi::CallbackInfo& info);
  Napi::Value Irqfd(const Napi::CallbackInfo& info);
  Napi::Value Ioeventfd(const Napi::CallbackInfo& info);
  Napi::Value CreateDevice(const Napi::CallbackInfo& info);
  Napi::Value SetDeviceAttr(const Napi::CallbackInfo& info);
  Napi::Value MapDeviceRegion(const Napi::CallbackInfo& info);
  Napi::Value GetIrqchip(const Napi::CallbackInfo& info);
  Napi::Value SetIrqchip(const Napi::CallbackInfo& info);
  Napi::Value GetPit2(const Napi::CallbackInfo& info);
  Napi::Value SetPit2(const Napi::CallbackInfo& info);
  Napi::Value GetClock(const Napi::CallbackInfo& info);
  Napi::Value SetClock(const Napi::CallbackInfo& info);
};

// A vCPU fd. Constructed from a registered fd number, in any thread.
class VcpuFd : public Napi::ObjectWrap<VcpuFd> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit VcpuFd(const Napi::CallbackInfo& info);

 private:
  std::shared_ptr<VcpuShared> v_;
  bool Live(Napi::Env env, const char* syscall);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value RunBuffer(const Napi::CallbackInfo& info);
  template <typename T, unsigned long REQ>
  Napi::Value GetStruct(const Napi::CallbackInfo& info);
  template <typename T, unsigned long REQ>
  Napi::Value SetStruct(const Napi::CallbackInfo& info);
  Napi::Value GetXsave(const Napi::CallbackInfo& info);
  Napi::Value SetXsave(const Napi::CallbackInfo& info);
  Napi::Value SetGuestDebug(const Napi::CallbackInfo& info);
  Napi::Value Translate(const Napi::CallbackInfo& info);
  Napi::Value GetMsrs(const Napi::CallbackInfo& info);
  Napi::Value SetMsrs(const Napi::CallbackInfo& info);
  Napi::Value SetCpuid2(const Napi::CallbackInfo& info);
  Napi::Value Nmi(const Napi::CallbackInfo& info);
  Napi::Value Interrupt(const Napi::CallbackInfo& info);
  Napi::Value GetStatsFd(const Napi::CallbackInfo& info);
  Napi::Value GetTscKhz(const Napi::CallbackInfo& info);
  Napi::Value SetTscKhz(const Napi::CallbackInfo& info);
};

// A plain fd the addon reads (the binary stats fd, an eventfd, a VFIO fd).
class FileFd : public Napi::ObjectWrap<FileFd> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit FileFd(const Napi::CallbackInfo& info);
  ~FileFd() override;

 private:
  int fd_ = -1;
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value Pread(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
};

// VFIO container, group and device ioctls; see vfio.cc.
Napi::Object InitVfio(Napi::Env env, Napi::Object exports);
void InitFutex(Napi::Env env, Napi::Object exports);
void InitXsave(Napi::Env env, Napi::Object exports);
void InitFdWatcher(Napi::Env env, Napi::Object exports);
void InitTap(Napi::Env env, Napi::Object exports);

}  // namespace vmmapi

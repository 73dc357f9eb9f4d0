// Reference-counted ownership of the kernel objects that several threads touch.
//
// A VM's memory must stay mapped while *any* fd of the VM is open (a vCPU fd keeps the
// kernel VM alive, and the guest could otherwise reach unmapped or reused host memory),
// so a VmShared owns the VM fd and the guest mappings, and every VcpuShared holds it.
// A vCPU is registered by fd number so a worker thread can adopt it; the fd is closed only
// when the last holder (owner or worker) lets go, never under a running KVM_RUN.
#pragma once
#include <linux/kvm.h>
#include <pthread.h>

#include <cstdint>

#include <memory>
#include <mutex>
#include <vector>

namespace v8 {
class BackingStore;
}

namespace vmmapi {

struct VmShared {
  int fd = -1;
  std::vector<std::shared_ptr<v8::BackingStore>> memory;  // kept until the VM is gone
  std::vector<std::pair<void*, size_t>> foreignMaps;      // e.g. VFIO BAR mmaps
  ~VmShared();
};

// The vCPU's mmap'd kvm_run area. JS ArrayBuffers over it hold this (not the vCPU), so the
// fd closes promptly; the mapping itself keeps the kernel vCPU object alive until unmapped.
struct RunMapping {
  struct kvm_run* run = nullptr;
  size_t size = 0;
  ~RunMapping();
};

struct VcpuShared {
  int fd = -1;
  std::shared_ptr<VmShared> vm;
  std::shared_ptr<RunMapping> mapping;
  struct kvm_run* run = nullptr;  // == mapping->run
  size_t runSize = 0;
  std::mutex lock;  // guards thread/running against kick
  pthread_t thread{};
  bool running = false;
  ~VcpuShared();
};

// The process-wide table of vCPUs by fd number.
void RegisterVcpu(const std::shared_ptr<VcpuShared>& v);
std::shared_ptr<VcpuShared> FindVcpu(int fd);
void UnregisterVcpu(int fd);

// The real-time signal used to kick a vCPU thread out of KVM_RUN.
int KickSignal();
void InstallKickHandler();
// Set immediate_exit and signal the thread inside KVM_RUN, if any. Returns false if the
// fd names no registered vCPU.
bool Kick(int fd);
void KickShared(VcpuShared& v);

// A one-shot deadline that kicks `v` (as Kick does) after `ms` milliseconds, served by one
// process-wide watchdog thread. Disarm returns true if it fired: the kick may then have left
// immediate_exit set after KVM_RUN returned on its own, and the caller clears it.
uint64_t ArmKickDeadline(const std::shared_ptr<VcpuShared>& v, uint32_t ms);
bool DisarmKickDeadline(uint64_t token);

}  // namespace vmmapi

// The vCPU registry, the kick signal, and the destructors that release kernel objects.
#include "shared_state.h"

#include <signal.h>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>

#include <unordered_map>

namespace vmmapi {

VmShared::~VmShared() {
  // Close the VM first: once no fd refers to the VM, KVM stops using the mappings.
  if (fd >= 0) close(fd);
  for (auto& m : foreignMaps) munmap(m.first, m.second);
  memory.clear();
}

RunMapping::~RunMapping() {
  if (run != nullptr) munmap(run, size);
}

VcpuShared::~VcpuShared() {
  if (fd >= 0) close(fd);
  // `vm` is released after this body: the vCPU fd is closed before the VM's memory goes.
}

static std::mutex gRegistryLock;
static std::unordered_map<int, std::shared_ptr<VcpuShared>>& Registry() {
  static auto* r = new std::unordered_map<int, std::shared_ptr<VcpuShared>>();
  return *r;
}

void RegisterVcpu(const std::shared_ptr<VcpuShared>& v) {
  std::lock_guard<std::mutex> g(gRegistryLock);
  Registry()[v->fd] = v;
}

std::shared_ptr<VcpuShared> FindVcpu(int fd) {
  std::lock_guard<std::mutex> g(gRegistryLock);
  auto it = Registry().find(fd);
  return it == Registry().end() ? nullptr : it->second;
}

void UnregisterVcpu(int fd) {
  std::shared_ptr<VcpuShared> keep;  // released outside the lock
  std::lock_guard<std::mutex> g(gRegistryLock);
  auto it = Registry().find(fd);
  if (it != Registry().end()) {
    keep = it->second;
    Registry().erase(it);
  }
}

int KickSignal() { return SIGRTMIN + 6; }

static void EmptyHandler(int) {}

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = EmptyHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(KickSignal(), &sa, nullptr);
  });
}

bool Kick(int fd) {
  std::shared_ptr<VcpuShared> v = FindVcpu(fd);
  if (!v) return false;
  std::lock_guard<std::mutex> g(v->lock);
  __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
  if (v->running) pthread_kill(v->thread, KickSignal());
  return true;
}

}  // namespace vmmapi

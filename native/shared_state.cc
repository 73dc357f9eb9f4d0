// The vCPU registry, the kick signal, and the destructors that release kernel objects.
#include "shared_state.h"

#include <signal.h>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <thread>
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

void KickShared(VcpuShared& v) {
  std::lock_guard<std::mutex> g(v.lock);
  __atomic_store_n(&v.run->immediate_exit, 1, __ATOMIC_SEQ_CST);
  if (v.running) pthread_kill(v.thread, KickSignal());
}

bool Kick(int fd) {
  std::shared_ptr<VcpuShared> v = FindVcpu(fd);
  if (!v) return false;
  KickShared(*v);
  return true;
}

namespace {

struct Deadline {
  uint64_t token;
  std::shared_ptr<VcpuShared> vcpu;
  std::chrono::steady_clock::time_point at;
  bool fired;
};

// Never destroyed: the detached watchdog thread may still wait on it at process exit.
struct Watchdog {
  std::mutex lock;  // order: Watchdog::lock, then VcpuShared::lock
  std::condition_variable wake;
  std::vector<Deadline> deadlines;
  uint64_t next = 1;
  bool started = false;
  // when the loop will next look (max: only when notified); Arm notifies only for sooner
  std::chrono::steady_clock::time_point waitingUntil = std::chrono::steady_clock::time_point::min();

  void Loop() {
    std::unique_lock<std::mutex> l(lock);
    for (;;) {
      auto now = std::chrono::steady_clock::now();
      auto soonest = std::chrono::steady_clock::time_point::max();
      for (auto& d : deadlines) {
        if (d.fired) continue;
        if (d.at <= now) {
          d.fired = true;
          KickShared(*d.vcpu);
        } else if (d.at < soonest) {
          soonest = d.at;
        }
      }
      waitingUntil = soonest;
      if (soonest == std::chrono::steady_clock::time_point::max()) wake.wait(l);
      else wake.wait_until(l, soonest);
      waitingUntil = std::chrono::steady_clock::time_point::min();  // awake: it will look
    }
  }
};

Watchdog& TheWatchdog() {
  static auto* w = new Watchdog();
  return *w;
}

}  // namespace

uint64_t ArmKickDeadline(const std::shared_ptr<VcpuShared>& v, uint32_t ms) {
  Watchdog& w = TheWatchdog();
  std::lock_guard<std::mutex> g(w.lock);
  if (!w.started) {
    // the watchdog must not take the kick signal itself
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, KickSignal());
    pthread_sigmask(SIG_BLOCK, &block, &old);
    std::thread([&w] { w.Loop(); }).detach();
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    w.started = true;
  }
  uint64_t token = w.next++;
  auto at = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  w.deadlines.push_back({token, v, at, false});
  if (at < w.waitingUntil) w.wake.notify_one();
  return token;
}

bool DisarmKickDeadline(uint64_t token) {
  Watchdog& w = TheWatchdog();
  std::lock_guard<std::mutex> g(w.lock);
  for (auto it = w.deadlines.begin(); it != w.deadlines.end(); ++it) {
    if (it->token == token) {
      bool fired = it->fired;
      w.deadlines.erase(it);
      return fired;
    }
  }
  return false;
}

}  // namespace vmmapi

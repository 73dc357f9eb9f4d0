// VmFd: a KVM VM fd. One method per VM ioctl; no policy.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "classes.h"

namespace vmmapi {

Napi::Function VmFd::Init(Napi::Env env) {
  return DefineClass(env, "VmFd",
                     {
                         InstanceMethod("close", &VmFd::Close),
                         InstanceAccessor("fd", &VmFd::GetFd, nullptr),
                         InstanceMethod("checkExtension", &VmFd::CheckExtension),
                         InstanceMethod("createVcpu", &VmFd::CreateVcpu),
                         InstanceMethod("setUserMemoryRegion", &VmFd::SetUserMemoryRegion),
                         InstanceMethod("setTssAddr", &VmFd::SetTssAddr),
                         InstanceMethod("setIdentityMapAddr", &VmFd::SetIdentityMapAddr),
                         InstanceMethod("createIrqchip", &VmFd::CreateIrqchip),
                         InstanceMethod("createPit2", &VmFd::CreatePit2),
                         InstanceMethod("irqLine", &VmFd::IrqLine),
                         InstanceMethod("signalMsi", &VmFd::SignalMsi),
                         InstanceMethod("enableCap", &VmFd::EnableCap),
                         InstanceMethod("registerCoalescedMmio", &VmFd::RegisterCoalescedMmio),
                         InstanceMethod("unregisterCoalescedMmio", &VmFd::UnregisterCoalescedMmio),
                         InstanceMethod("setGsiRouting", &VmFd::SetGsiRouting),
                         InstanceMethod("irqfd", &VmFd::Irqfd),
                         InstanceMethod("ioeventfd", &VmFd::Ioeventfd),
                         InstanceMethod("createDevice", &VmFd::CreateDevice),
                         InstanceMethod("setDeviceAttr", &VmFd::SetDeviceAttr),
                         InstanceMethod("mapDeviceRegion", &VmFd::MapDeviceRegion),
                         InstanceMethod("getIrqchip", &VmFd::GetIrqchip),
                         InstanceMethod("setIrqchip", &VmFd::SetIrqchip),
                         InstanceMethod("getPit2", &VmFd::GetPit2),
                         InstanceMethod("setPit2", &VmFd::SetPit2),
                         InstanceMethod("getClock", &VmFd::GetClock),
                         InstanceMethod("setClock", &VmFd::SetClock),
                     });
}

// new VmFd(fd, vcpuMmapSize): adopts a fd returned by KvmSystem.createVm.
VmFd::VmFd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VmFd>(info) {
  int32_t fd;
  uint32_t runSize;
  if (!ArgI32(info, 0, "fd", &fd) || !ArgU32(info, 1, "vcpuMmapSize", &runSize)) return;
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
    ThrowErrno(info.Env(), "VmFd", EBADF);
    return;
  }
  vm = std::make_shared<VmShared>();
  vm->fd = fd;
  runSize_ = runSize;
}

VmFd::~VmFd() {
  for (int v : vcpus_) UnregisterVcpu(v);
}

bool VmFd::Live(Napi::Env env, const char* syscall) {
  if (vm) return true;
  ThrowErrno(env, syscall, EBADF);
  return false;
}

Napi::Value VmFd::Close(const Napi::CallbackInfo& info) {
  for (int v : vcpus_) UnregisterVcpu(v);
  vcpus_.clear();
  vm.reset();
  return info.Env().Undefined();
}

Napi::Value VmFd::GetFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), vm ? vm->fd : -1);
}

Napi::Value VmFd::CheckExtension(const Napi::CallbackInfo& info) {
  uint32_t cap;
  if (!ArgU32(info, 0, "cap", &cap) || !Live(info.Env(), "KVM_CHECK_EXTENSION")) return info.Env().Undefined();
  int r = xioctl(vm->fd, KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
  if (r < 0) return ThrowErrno(info.Env(), "KVM_CHECK_EXTENSION", errno);
  return Napi::Number::New(info.Env(), r);
}

// createVcpu(id): returns the vCPU fd number, registered for `new VcpuFd(fd)` in any thread.
Napi::Value VmFd::CreateVcpu(const Napi::CallbackInfo& info) {
  uint32_t id;
  if (!ArgU32(info, 0, "id", &id) || !Live(info.Env(), "KVM_CREATE_VCPU")) return info.Env().Undefined();
  int fd = xioctl(vm->fd, KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) return ThrowErrno(info.Env(), "KVM_CREATE_VCPU", errno);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  void* run = mmap(nullptr, runSize_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (run == MAP_FAILED) {
    int e = errno;
    close(fd);
    return ThrowErrno(info.Env(), "mmap", e);
  }
  auto v = std::make_shared<VcpuShared>();
  v->fd = fd;
  v->vm = vm;
  v->mapping = std::make_shared<RunMapping>();
  v->mapping->run = static_cast<kvm_run*>(run);
  v->mapping->size = runSize_;
  v->run = v->mapping->run;
  v->runSize = runSize_;
  RegisterVcpu(v);
  vcpus_.push_back(fd);
  return Napi::Number::New(info.Env(), fd);
}

// setUserMemoryRegion(slot, flags, gpa, size, mapping | null, offset = 0)
Napi::Value VmFd::SetUserMemoryRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t slot, flags;
  uint64_t gpa, size, offset = 0;
  if (!ArgU32(info, 0, "slot", &slot) || !ArgU32(info, 1, "flags", &flags) || !ArgU64(info, 2, "gpa", &gpa) ||
      !ArgU64(info, 3, "size", &size))
    return env.Undefined();
  if (info.Length() > 5 && !info[5].IsUndefined() && !ArgU64(info, 5, "offset", &offset)) return env.Undefined();
  if (!Live(env, "KVM_SET_USER_MEMORY_REGION")) return env.Undefined();
  GuestMapping* m = nullptr;
  if (info.Length() > 4 && info[4].IsObject() &&
      info[4].As<Napi::Object>().InstanceOf(Data(env)->guestMappingCtor.Value())) {
    m = GuestMapping::Unwrap(info[4].As<Napi::Object>());
  } else if (size != 0) {
    return ThrowType(env, "mapping must be a GuestMapping");
  }
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  if (m != nullptr && size != 0) {
    if (!m->store) return ThrowErrno(env, "KVM_SET_USER_MEMORY_REGION", EBADF);
    if (offset > m->length || size > m->length - offset) return ThrowRange(env, "offset + size exceeds the mapping");
    r.userspace_addr = reinterpret_cast<uint64_t>(m->base + offset);
  }
  if (xioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) return ThrowErrno(env, "KVM_SET_USER_MEMORY_REGION", errno);
  if (m != nullptr && size != 0) vm->memory.push_back(m->store);  // keep mapped while the VM lives
  return env.Undefined();
}

Napi::Value VmFd::SetTssAddr(const Napi::CallbackInfo& info) {
  uint32_t addr;
  if (!ArgU32(info, 0, "addr", &addr) || !Live(info.Env(), "KVM_SET_TSS_ADDR")) return info.Env().Undefined();
  if (xioctl(vm->fd, KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0)
    return ThrowErrno(info.Env(), "KVM_SET_TSS_ADDR", errno);
  return info.Env().Undefined();
}

Napi::Value VmFd::SetIdentityMapAddr(const Napi::CallbackInfo& info) {
  uint64_t addr;
  if (!ArgU64(info, 0, "addr", &addr) || !Live(info.Env(), "KVM_SET_IDENTITY_MAP_ADDR")) return info.Env().Undefined();
  if (xioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) return ThrowErrno(info.Env(), "KVM_SET_IDENTITY_MAP_ADDR", errno);
  return info.Env().Undefined();
}

Napi::Value VmFd::CreateIrqchip(const Napi::CallbackInfo& info) {
  if (!Live(info.Env(), "KVM_CREATE_IRQCHIP")) return info.Env().Undefined();
  if (xioctl(vm->fd, KVM_CREATE_IRQCHIP, 0ul) < 0) return ThrowErrno(info.Env(), "KVM_CREATE_IRQCHIP", errno);
  return info.Env().Undefined();
}

Napi::Value VmFd::CreatePit2(const Napi::CallbackInfo& info) {
  uint32_t flags = 0;
  if (info.Length() > 0 && !ArgU32(info, 0, "flags", &flags)) return info.Env().Undefined();
  if (!Live(info.Env(), "KVM_CREATE_PIT2")) return info.Env().Undefined();
  kvm_pit_config c{};
  c.flags = flags;
  if (xioctl(vm->fd, KVM_CREATE_PIT2, &c) < 0) return ThrowErrno(info.Env(), "KVM_CREATE_PIT2", errno);
  return info.Env().Undefined();
}

// irqLine(irq, level): returns the kernel's status (coalesced or delivered).
Napi::Value VmFd::IrqLine(const Napi::CallbackInfo& info) {
  uint32_t irq, level;
  if (!ArgU32(info, 0, "irq", &irq) || !ArgU32(info, 1, "level", &level) || !Live(info.Env(), "KVM_IRQ_LINE_STATUS"))
    return info.Env().Undefined();
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level;
  if (xioctl(vm->fd, KVM_IRQ_LINE_STATUS, &l) < 0) return ThrowErrno(info.Env(), "KVM_IRQ_LINE_STATUS", errno);
  return Napi::Number::New(info.Env(), l.status);
}

// signalMsi(addressLo, addressHi, data): > 0 delivered, 0 blocked by the guest.
Napi::Value VmFd::SignalMsi(const Napi::CallbackInfo& info) {
  uint32_t lo, hi, data;
  if (!ArgU32(info, 0, "addressLo", &lo) || !ArgU32(info, 1, "addressHi", &hi) || !ArgU32(info, 2, "data", &data) ||
      !Live(info.Env(), "KVM_SIGNAL_MSI"))
    return info.Env().Undefined();
  kvm_msi m{};
  m.address_lo = lo;
  m.address_hi = hi;
  m.data = data;
  int r = xioctl(vm->fd, KVM_SIGNAL_MSI, &m);
  if (r < 0) return ThrowErrno(info.Env(), "KVM_SIGNAL_MSI", errno);
  return Napi::Number::New(info.Env(), r);
}

// enableCap(cap, args: bigint[] (up to 4), flags = 0)
Napi::Value VmFd::EnableCap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t cap, flags = 0;
  if (!ArgU32(info, 0, "cap", &cap)) return env.Undefined();
  kvm_enable_cap c{};
  c.cap = cap;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsArray()) return ThrowType(env, "args must be an array");
    Napi::Array a = info[1].As<Napi::Array>();
    if (a.Length() > 4) return ThrowRange(env, "args has more than 4 elements");
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (v.IsBigInt()) {
        bool lossless;
        c.args[i] = v.As<Napi::BigInt>().Uint64Value(&lossless);
      } else if (v.IsNumber()) {
        c.args[i] = static_cast<uint64_t>(v.As<Napi::Number>().Int64Value());
      } else {
        return ThrowType(env, "args must hold numbers or bigints");
      }
    }
  }
  if (info.Length() > 2 && !ArgU32(info, 2, "flags", &flags)) return env.Undefined();
  c.flags = flags;
  if (!Live(env, "KVM_ENABLE_CAP")) return env.Undefined();
  if (xioctl(vm->fd, KVM_ENABLE_CAP, &c) < 0) return ThrowErrno(env, "KVM_ENABLE_CAP", errno);
  return env.Undefined();
}

static Napi::Value CoalescedZone(const Napi::CallbackInfo& info, const std::shared_ptr<VmShared>& vm,
                                 unsigned long req, const char* name) {
  uint64_t addr;
  uint32_t size, pio = 0;
  if (!ArgU64(info, 0, "addr", &addr) || !ArgU32(info, 1, "size", &size)) return info.Env().Undefined();
  if (info.Length() > 2 && !ArgU32(info, 2, "pio", &pio)) return info.Env().Undefined();
  if (!vm) return ThrowErrno(info.Env(), name, EBADF);
  kvm_coalesced_mmio_zone z{};
  z.addr = addr;
  z.size = size;
  z.pio = pio;
  if (xioctl(vm->fd, req, &z) < 0) return ThrowErrno(info.Env(), name, errno);
  return info.Env().Undefined();
}

Napi::Value VmFd::RegisterCoalescedMmio(const Napi::CallbackInfo& info) {
  return CoalescedZone(info, vm, KVM_REGISTER_COALESCED_MMIO, "KVM_REGISTER_COALESCED_MMIO");
}
Napi::Value VmFd::UnregisterCoalescedMmio(const Napi::CallbackInfo& info) {
  return CoalescedZone(info, vm, KVM_UNREGISTER_COALESCED_MMIO, "KVM_UNREGISTER_COALESCED_MMIO");
}

// setGsiRouting(raw struct kvm_irq_routing with its entries)
Napi::Value VmFd::SetGsiRouting(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t n;
  if (!ArgBytes(info, 0, "routing", 0, &p, &n, kIrqRoutingHeader)) return info.Env().Undefined();
  auto* r = reinterpret_cast<kvm_irq_routing*>(p);
  if (r->nr > 4096 || n != kIrqRoutingHeader + r->nr * sizeof(kvm_irq_routing_entry))
    return ThrowRange(info.Env(), "routing length does not match its entry count");
  if (!Live(info.Env(), "KVM_SET_GSI_ROUTING")) return info.Env().Undefined();
  if (xioctl(vm->fd, kKvmSetGsiRouting, r) < 0) return ThrowErrno(info.Env(), "KVM_SET_GSI_ROUTING", errno);
  return info.Env().Undefined();
}

// irqfd(eventfd, gsi, flags = 0, resamplefd = 0)
Napi::Value VmFd::Irqfd(const Napi::CallbackInfo& info) {
  int32_t efd, rfd = 0;
  uint32_t gsi, flags = 0;
  if (!ArgI32(info, 0, "eventfd", &efd) || !ArgU32(info, 1, "gsi", &gsi)) return info.Env().Undefined();
  if (info.Length() > 2 && !ArgU32(info, 2, "flags", &flags)) return info.Env().Undefined();
  if (info.Length() > 3 && !ArgI32(info, 3, "resamplefd", &rfd)) return info.Env().Undefined();
  if (!Live(info.Env(), "KVM_IRQFD")) return info.Env().Undefined();
  kvm_irqfd f{};
  f.fd = static_cast<uint32_t>(efd);
  f.gsi = gsi;
  f.flags = flags;
  f.resamplefd = static_cast<uint32_t>(rfd);
  if (xioctl(vm->fd, KVM_IRQFD, &f) < 0) return ThrowErrno(info.Env(), "KVM_IRQFD", errno);
  return info.Env().Undefined();
}

// ioeventfd(addr, len, eventfd, flags = 0, datamatch = 0n)
Napi::Value VmFd::Ioeventfd(const Napi::CallbackInfo& info) {
  uint64_t addr, match = 0;
  uint32_t len, flags = 0;
  int32_t efd;
  if (!ArgU64(info, 0, "addr", &addr) || !ArgU32(info, 1, "len", &len) || !ArgI32(info, 2, "eventfd", &efd))
    return info.Env().Undefined();
  if (info.Length() > 3 && !ArgU32(info, 3, "flags", &flags)) return info.Env().Undefined();
  if (info.Length() > 4 && !ArgU64(info, 4, "datamatch", &match)) return info.Env().Undefined();
  if (!Live(info.Env(), "KVM_IOEVENTFD")) return info.Env().Undefined();
  kvm_ioeventfd e{};
  e.addr = addr;
  e.len = len;
  e.fd = efd;
  e.flags = flags;
  e.datamatch = match;
  if (xioctl(vm->fd, KVM_IOEVENTFD, &e) < 0) return ThrowErrno(info.Env(), "KVM_IOEVENTFD", errno);
  return info.Env().Undefined();
}

// createDevice(type): returns the device fd (e.g. KVM_DEV_TYPE_VFIO); wrap with FileFd.
Napi::Value VmFd::CreateDevice(const Napi::CallbackInfo& info) {
  uint32_t type;
  if (!ArgU32(info, 0, "type", &type) || !Live(info.Env(), "KVM_CREATE_DEVICE")) return info.Env().Undefined();
  kvm_create_device d{};
  d.type = type;
  if (xioctl(vm->fd, KVM_CREATE_DEVICE, &d) < 0) return ThrowErrno(info.Env(), "KVM_CREATE_DEVICE", errno);
  fcntl(static_cast<int>(d.fd), F_SETFD, FD_CLOEXEC);
  return Napi::Number::New(info.Env(), d.fd);
}

// setDeviceAttr(deviceFd, group, attr, value: int32) — value is passed by address.
Napi::Value VmFd::SetDeviceAttr(const Napi::CallbackInfo& info) {
  int32_t dfd, value;
  uint32_t group;
  uint64_t attr;
  if (!ArgI32(info, 0, "deviceFd", &dfd) || !ArgU32(info, 1, "group", &group) || !ArgU64(info, 2, "attr", &attr) ||
      !ArgI32(info, 3, "value", &value))
    return info.Env().Undefined();
  kvm_device_attr a{};
  a.group = group;
  a.attr = attr;
  a.addr = reinterpret_cast<uint64_t>(&value);
  if (xioctl(dfd, KVM_SET_DEVICE_ATTR, &a) < 0) return ThrowErrno(info.Env(), "KVM_SET_DEVICE_ATTR", errno);
  return info.Env().Undefined();
}

// mapDeviceRegion(slot, gpa, size, fd, fileOffset): mmap a device region (a VFIO BAR) and
// make it guest memory at gpa. The mapping lives as long as the VM.
Napi::Value VmFd::MapDeviceRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t slot;
  uint64_t gpa, size, off;
  int32_t fd;
  if (!ArgU32(info, 0, "slot", &slot) || !ArgU64(info, 1, "gpa", &gpa) || !ArgU64(info, 2, "size", &size) ||
      !ArgI32(info, 3, "fd", &fd) || !ArgU64(info, 4, "fileOffset", &off) || !Live(env, "KVM_SET_USER_MEMORY_REGION"))
    return env.Undefined();
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(off));
  if (p == MAP_FAILED) return ThrowErrno(env, "mmap", errno);
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  r.userspace_addr = reinterpret_cast<uint64_t>(p);
  if (xioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
    int e = errno;
    munmap(p, size);
    return ThrowErrno(env, "KVM_SET_USER_MEMORY_REGION", e);
  }
  vm->foreignMaps.emplace_back(p, size);
  return env.Undefined();
}

// getIrqchip(chipId): struct kvm_irqchip (520 bytes) of chip 0 (PIC master), 1 (PIC slave) or
// 2 (IOAPIC), as KVM_GET_IRQCHIP filled it.
Napi::Value VmFd::GetIrqchip(const Napi::CallbackInfo& info) {
  uint32_t chip;
  if (!ArgU32(info, 0, "chipId", &chip) || !Live(info.Env(), "KVM_GET_IRQCHIP")) return info.Env().Undefined();
  kvm_irqchip c;
  std::memset(&c, 0, sizeof c);
  c.chip_id = chip;
  if (xioctl(vm->fd, KVM_GET_IRQCHIP, &c) < 0) return ThrowErrno(info.Env(), "KVM_GET_IRQCHIP", errno);
  return CopyOut(info.Env(), &c, sizeof c);
}

// setIrqchip(raw struct kvm_irqchip): the chip is the one its chip_id names.
Napi::Value VmFd::SetIrqchip(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t n;
  if (!ArgBytes(info, 0, "irqchip", sizeof(kvm_irqchip), &p, &n) || !Live(info.Env(), "KVM_SET_IRQCHIP"))
    return info.Env().Undefined();
  kvm_irqchip c;
  std::memcpy(&c, p, sizeof c);
  if (xioctl(vm->fd, KVM_SET_IRQCHIP, &c) < 0) return ThrowErrno(info.Env(), "KVM_SET_IRQCHIP", errno);
  return info.Env().Undefined();
}

// getPit2(): struct kvm_pit_state2 (112 bytes).
Napi::Value VmFd::GetPit2(const Napi::CallbackInfo& info) {
  if (!Live(info.Env(), "KVM_GET_PIT2")) return info.Env().Undefined();
  kvm_pit_state2 s;
  std::memset(&s, 0, sizeof s);
  if (xioctl(vm->fd, KVM_GET_PIT2, &s) < 0) return ThrowErrno(info.Env(), "KVM_GET_PIT2", errno);
  return CopyOut(info.Env(), &s, sizeof s);
}

// setPit2(raw struct kvm_pit_state2)
Napi::Value VmFd::SetPit2(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t n;
  if (!ArgBytes(info, 0, "pit", sizeof(kvm_pit_state2), &p, &n) || !Live(info.Env(), "KVM_SET_PIT2"))
    return info.Env().Undefined();
  kvm_pit_state2 s;
  std::memcpy(&s, p, sizeof s);
  if (xioctl(vm->fd, KVM_SET_PIT2, &s) < 0) return ThrowErrno(info.Env(), "KVM_SET_PIT2", errno);
  return info.Env().Undefined();
}

// getClock(): struct kvm_clock_data (48 bytes): the kvmclock value, its flags, and where
// KVM reports them, the host's realtime and TSC at that moment.
Napi::Value VmFd::GetClock(const Napi::CallbackInfo& info) {
  if (!Live(info.Env(), "KVM_GET_CLOCK")) return info.Env().Undefined();
  kvm_clock_data d;
  std::memset(&d, 0, sizeof d);
  if (xioctl(vm->fd, KVM_GET_CLOCK, &d) < 0) return ThrowErrno(info.Env(), "KVM_GET_CLOCK", errno);
  return CopyOut(info.Env(), &d, sizeof d);
}

// setClock(raw struct kvm_clock_data)
Napi::Value VmFd::SetClock(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t n;
  if (!ArgBytes(info, 0, "clock", sizeof(kvm_clock_data), &p, &n) || !Live(info.Env(), "KVM_SET_CLOCK"))
    return info.Env().Undefined();
  kvm_clock_data d;
  std::memcpy(&d, p, sizeof d);
  if (xioctl(vm->fd, KVM_SET_CLOCK, &d) < 0) return ThrowErrno(info.Env(), "KVM_SET_CLOCK", errno);
  return info.Env().Undefined();
}

}  // namespace vmmapi

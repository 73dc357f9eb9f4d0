// VFIO ioctls for PCI passthrough (container, group, device), as free functions on fd
// numbers held by FileFd objects. One function per ioctl; the policy is in
// src/passthrough/.
#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vector>

#include "classes.h"

namespace vmmapi {

static Napi::Value IoctlInt(const Napi::CallbackInfo& info, unsigned long req, const char* name, bool withArg) {
  int32_t fd;
  uint32_t arg = 0;
  if (!ArgI32(info, 0, "fd", &fd)) return info.Env().Undefined();
  if (withArg && !ArgU32(info, 1, "arg", &arg)) return info.Env().Undefined();
  int r = xioctl(fd, req, static_cast<unsigned long>(arg));
  if (r < 0) return ThrowErrno(info.Env(), name, errno);
  return Napi::Number::New(info.Env(), r);
}

static Napi::Value GetApiVersion(const Napi::CallbackInfo& info) {
  return IoctlInt(info, VFIO_GET_API_VERSION, "VFIO_GET_API_VERSION", false);
}
static Napi::Value CheckExtension(const Napi::CallbackInfo& info) {
  return IoctlInt(info, VFIO_CHECK_EXTENSION, "VFIO_CHECK_EXTENSION", true);
}
static Napi::Value SetIommu(const Napi::CallbackInfo& info) {
  return IoctlInt(info, VFIO_SET_IOMMU, "VFIO_SET_IOMMU", true);
}

// groupGetStatus(groupFd): the flags (VFIO_GROUP_FLAGS_VIABLE = 1, _CONTAINER_SET = 2).
static Napi::Value GroupGetStatus(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgI32(info, 0, "groupFd", &fd)) return info.Env().Undefined();
  vfio_group_status s{};
  s.argsz = sizeof s;
  if (xioctl(fd, VFIO_GROUP_GET_STATUS, &s) < 0) return ThrowErrno(info.Env(), "VFIO_GROUP_GET_STATUS", errno);
  return Napi::Number::New(info.Env(), s.flags);
}

static Napi::Value GroupSetContainer(const Napi::CallbackInfo& info) {
  int32_t g, c;
  if (!ArgI32(info, 0, "groupFd", &g) || !ArgI32(info, 1, "containerFd", &c)) return info.Env().Undefined();
  if (xioctl(g, VFIO_GROUP_SET_CONTAINER, &c) < 0) return ThrowErrno(info.Env(), "VFIO_GROUP_SET_CONTAINER", errno);
  return info.Env().Undefined();
}

static Napi::Value GroupUnsetContainer(const Napi::CallbackInfo& info) {
  int32_t g;
  if (!ArgI32(info, 0, "groupFd", &g)) return info.Env().Undefined();
  if (xioctl(g, VFIO_GROUP_UNSET_CONTAINER, 0ul) < 0) return ThrowErrno(info.Env(), "VFIO_GROUP_UNSET_CONTAINER", errno);
  return info.Env().Undefined();
}

// groupGetDeviceFd(groupFd, "0000:01:00.0"): the device fd.
static Napi::Value GroupGetDeviceFd(const Napi::CallbackInfo& info) {
  int32_t g;
  if (!ArgI32(info, 0, "groupFd", &g)) return info.Env().Undefined();
  if (info.Length() < 2 || !info[1].IsString()) return ThrowType(info.Env(), "name must be a string");
  std::string name = info[1].As<Napi::String>().Utf8Value();
  int r = xioctl(g, VFIO_GROUP_GET_DEVICE_FD, const_cast<char*>(name.c_str()));
  if (r < 0) return ThrowErrno(info.Env(), "VFIO_GROUP_GET_DEVICE_FD", errno);
  return Napi::Number::New(info.Env(), r);
}

// deviceGetInfo(deviceFd): { flags, numRegions, numIrqs }
static Napi::Value DeviceGetInfo(const Napi::CallbackInfo& info) {
  int32_t d;
  if (!ArgI32(info, 0, "deviceFd", &d)) return info.Env().Undefined();
  vfio_device_info i{};
  i.argsz = sizeof i;
  if (xioctl(d, VFIO_DEVICE_GET_INFO, &i) < 0) return ThrowErrno(info.Env(), "VFIO_DEVICE_GET_INFO", errno);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("flags", i.flags);
  o.Set("numRegions", i.num_regions);
  o.Set("numIrqs", i.num_irqs);
  return o;
}

// deviceGetRegionInfo(deviceFd, index): { flags, size: bigint, offset: bigint }
static Napi::Value DeviceGetRegionInfo(const Napi::CallbackInfo& info) {
  int32_t d;
  uint32_t index;
  if (!ArgI32(info, 0, "deviceFd", &d) || !ArgU32(info, 1, "index", &index)) return info.Env().Undefined();
  vfio_region_info r{};
  r.argsz = sizeof r;
  r.index = index;
  if (xioctl(d, VFIO_DEVICE_GET_REGION_INFO, &r) < 0) return ThrowErrno(info.Env(), "VFIO_DEVICE_GET_REGION_INFO", errno);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("flags", r.flags);
  o.Set("size", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(r.size)));
  o.Set("offset", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(r.offset)));
  return o;
}

// iommuMapDma(containerFd, mapping, mappingOffset, iova, size)
static Napi::Value IommuMapDma(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t c;
  uint64_t off, iova, size;
  if (!ArgI32(info, 0, "containerFd", &c)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsObject() ||
      !info[1].As<Napi::Object>().InstanceOf(Data(env)->guestMappingCtor.Value()))
    return ThrowType(env, "mapping must be a GuestMapping");
  GuestMapping* m = GuestMapping::Unwrap(info[1].As<Napi::Object>());
  if (!ArgU64(info, 2, "mappingOffset", &off) || !ArgU64(info, 3, "iova", &iova) || !ArgU64(info, 4, "size", &size))
    return env.Undefined();
  if (!m->store) return ThrowErrno(env, "VFIO_IOMMU_MAP_DMA", EBADF);
  if (off > m->length || size > m->length - off) return ThrowRange(env, "mappingOffset + size exceeds the mapping");
  vfio_iommu_type1_dma_map dm{};
  dm.argsz = sizeof dm;
  dm.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  dm.vaddr = reinterpret_cast<uint64_t>(m->base + off);
  dm.iova = iova;
  dm.size = size;
  if (xioctl(c, VFIO_IOMMU_MAP_DMA, &dm) < 0) return ThrowErrno(env, "VFIO_IOMMU_MAP_DMA", errno);
  return env.Undefined();
}

// deviceSetIrqsEventfd(deviceFd, index, start, eventfds: number[]) — ACTION_TRIGGER with
// eventfds (an empty list with count 0 disables the index).
static Napi::Value DeviceSetIrqsEventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t d;
  uint32_t index, start;
  if (!ArgI32(info, 0, "deviceFd", &d) || !ArgU32(info, 1, "index", &index) || !ArgU32(info, 2, "start", &start))
    return env.Undefined();
  if (info.Length() < 4 || !info[3].IsArray()) return ThrowType(env, "eventfds must be an array");
  Napi::Array a = info[3].As<Napi::Array>();
  if (a.Length() > 2048) return ThrowRange(env, "eventfds has more than 2048 entries");
  std::vector<uint8_t> buf(sizeof(vfio_irq_set) + a.Length() * sizeof(int32_t));
  auto* s = reinterpret_cast<vfio_irq_set*>(buf.data());
  s->argsz = buf.size();
  s->flags = (a.Length() ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE) | VFIO_IRQ_SET_ACTION_TRIGGER;
  s->index = index;
  s->start = start;
  s->count = a.Length();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber()) return ThrowType(env, "eventfds must hold fd numbers");
    int32_t fd = v.As<Napi::Number>().Int32Value();
    std::memcpy(s->data + i * sizeof(int32_t), &fd, sizeof fd);
  }
  if (xioctl(d, VFIO_DEVICE_SET_IRQS, s) < 0) return ThrowErrno(env, "VFIO_DEVICE_SET_IRQS", errno);
  return env.Undefined();
}

// eventfd(initval = 0, flags = EFD_CLOEXEC): a new eventfd number; wrap with FileFd.
static Napi::Value EventFd(const Napi::CallbackInfo& info) {
  uint32_t init = 0;
  if (info.Length() > 0 && !ArgU32(info, 0, "initval", &init)) return info.Env().Undefined();
  int r = eventfd(init, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r < 0) return ThrowErrno(info.Env(), "eventfd", errno);
  return Napi::Number::New(info.Env(), r);
}

Napi::Object InitVfio(Napi::Env env, Napi::Object exports) {
  Napi::Object v = Napi::Object::New(env);
  v.Set("getApiVersion", Napi::Function::New(env, GetApiVersion));
  v.Set("checkExtension", Napi::Function::New(env, CheckExtension));
  v.Set("setIommu", Napi::Function::New(env, SetIommu));
  v.Set("groupGetStatus", Napi::Function::New(env, GroupGetStatus));
  v.Set("groupSetContainer", Napi::Function::New(env, GroupSetContainer));
  v.Set("groupUnsetContainer", Napi::Function::New(env, GroupUnsetContainer));
  v.Set("groupGetDeviceFd", Napi::Function::New(env, GroupGetDeviceFd));
  v.Set("deviceGetInfo", Napi::Function::New(env, DeviceGetInfo));
  v.Set("deviceGetRegionInfo", Napi::Function::New(env, DeviceGetRegionInfo));
  v.Set("iommuMapDma", Napi::Function::New(env, IommuMapDma));
  v.Set("deviceSetIrqsEventfd", Napi::Function::New(env, DeviceSetIrqsEventfd));
  exports.Set("vfio", v);
  exports.Set("eventfd", Napi::Function::New(env, EventFd));
  return exports;
}

}  // namespace vmmapi

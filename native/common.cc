// Error construction and argument readers shared by every native class.
#include "common.h"

#include <cmath>

namespace vmmapi {

static std::string ErrnoName(int err) {
  const char* n = strerrorname_np(err);
  return n ? std::string(n) : "E" + std::to_string(err);
}

Napi::Value ThrowErrno(Napi::Env env, const char* syscall, int err) {
  std::string code = ErrnoName(err);
  std::string msg = std::string(syscall) + " failed: " + code + " (" + strerror(err) + ")";
  AddonData* d = Data(env);
  if (d != nullptr && !d->errorClass.IsEmpty()) {
    Napi::Object e = d->errorClass.New({Napi::String::New(env, msg), Napi::String::New(env, code),
                                        Napi::Number::New(env, err), Napi::String::New(env, syscall)});
    if (!env.IsExceptionPending()) Napi::Error(env, e).ThrowAsJavaScriptException();
  } else {
    Napi::Error e = Napi::Error::New(env, msg);
    e.Set("code", Napi::String::New(env, code));
    e.Set("errno", Napi::Number::New(env, err));
    e.Set("syscall", Napi::String::New(env, syscall));
    e.ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowRange(Napi::Env env, const std::string& msg) {
  Napi::RangeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name, uint32_t* out) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    ThrowType(info.Env(), std::string(name) + " must be a number");
    return false;
  }
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= 4294967295.0) || std::floor(v) != v) {
    ThrowRange(info.Env(), std::string(name) + " must be an integer in [0, 2^32)");
    return false;
  }
  *out = static_cast<uint32_t>(v);
  return true;
}

bool ArgI32(const Napi::CallbackInfo& info, size_t i, const char* name, int32_t* out) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    ThrowType(info.Env(), std::string(name) + " must be a number");
    return false;
  }
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= -2147483648.0 && v <= 2147483647.0) || std::floor(v) != v) {
    ThrowRange(info.Env(), std::string(name) + " must be a 32-bit integer");
    return false;
  }
  *out = static_cast<int32_t>(v);
  return true;
}

bool ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name, uint64_t* out) {
  if (i < info.Length() && info[i].IsBigInt()) {
    bool lossless = false;
    uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) {
      ThrowRange(info.Env(), std::string(name) + " must be in [0, 2^64)");
      return false;
    }
    *out = v;
    return true;
  }
  if (i < info.Length() && info[i].IsNumber()) {
    double v = info[i].As<Napi::Number>().DoubleValue();
    if (!(v >= 0 && v <= 9007199254740991.0) || std::floor(v) != v) {
      ThrowRange(info.Env(), std::string(name) + " must be a non-negative safe integer");
      return false;
    }
    *out = static_cast<uint64_t>(v);
    return true;
  }
  ThrowType(info.Env(), std::string(name) + " must be a bigint or a number");
  return false;
}

bool ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* name, size_t size, uint8_t** data,
              size_t* len, size_t min) {
  Napi::Env env = info.Env();
  if (i >= info.Length()) {
    ThrowType(env, std::string(name) + " must be an ArrayBuffer or a typed array");
    return false;
  }
  Napi::Value v = info[i];
  uint8_t* p = nullptr;
  size_t n = 0;
  if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    p = static_cast<uint8_t*>(ab.Data());
    n = ab.ByteLength();
  } else if (v.IsTypedArray()) {
    // the data pointer straight from N-API: works for views over SharedArrayBuffers too
    // (napi_get_arraybuffer_info refuses those)
    napi_typedarray_type type;
    size_t length;
    void* data = nullptr;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &off) != napi_ok || data == nullptr) {
      ThrowType(env, std::string(name) + " must be a typed array with a buffer");
      return false;
    }
    p = static_cast<uint8_t*>(data);
    n = v.As<Napi::TypedArray>().ByteLength();
  } else if (v.IsDataView()) {
    size_t length;
    void* data = nullptr;
    napi_value ab;
    size_t off;
    if (napi_get_dataview_info(env, v, &length, &data, &ab, &off) != napi_ok || data == nullptr) {
      ThrowType(env, std::string(name) + " must be a DataView with a buffer");
      return false;
    }
    p = static_cast<uint8_t*>(data);
    n = length;
  } else {
    ThrowType(env, std::string(name) + " must be an ArrayBuffer or a typed array");
    return false;
  }
  if ((size != 0 && n != size) || (size == 0 && n < min)) {
    ThrowRange(env, std::string(name) + " has " + std::to_string(n) + " bytes, expected " +
                        std::to_string(size != 0 ? size : min) + (size == 0 ? " or more" : ""));
    return false;
  }
  *data = p;
  *len = n;
  return true;
}

Napi::ArrayBuffer CopyOut(Napi::Env env, const void* src, size_t size) {
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, size);
  std::memcpy(ab.Data(), src, size);
  return ab;
}

}  // namespace vmmapi

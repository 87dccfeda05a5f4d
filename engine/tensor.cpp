// Tensor storage, factories and host/device/dtype conversions.
#include "engine/tensor.h"

#include <cstring>
#include <sstream>
#include <stdexcept>

#include "engine/backend.h"

namespace xgan {

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << '[';
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << ']';
  return o.str();
}

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  // A zero-size tensor still gets a (tiny) block so data() is never null.
  ptr = allocator_for(device).allocate(bytes ? bytes : 64);
}

Storage::~Storage() { allocator_for(device).deallocate(ptr, bytes ? bytes : 64); }

int64_t Tensor::size(int64_t d) const {
  int64_t n = dim();
  if (d < 0) d += n;
  if (d < 0 || d >= n)
    throw std::out_of_range("dimension " + std::to_string(d) + " out of range for " + str());
  return impl_->shape[static_cast<size_t>(d)];
}

namespace {
template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}
}  // namespace

template <class T>
T* Tensor::data() {
  if (dtype() != dtype_of<T>())
    throw std::runtime_error(std::string("data<") + dtype_name(dtype_of<T>()) + "> on " + str());
  return static_cast<T*>(impl_->storage->ptr);
}
template <class T>
const T* Tensor::data() const {
  return const_cast<Tensor*>(this)->data<T>();
}
template float* Tensor::data<float>();
template double* Tensor::data<double>();
template int64_t* Tensor::data<int64_t>();
template const float* Tensor::data<float>() const;
template const double* Tensor::data<double>() const;
template const int64_t* Tensor::data<int64_t>() const;

Tensor& Tensor::set_requires_grad(bool r) {
  if (!is_leaf()) throw std::runtime_error("set_requires_grad: only leaf tensors can be (un)frozen");
  if (r && dtype() == DType::i64)
    throw std::runtime_error("set_requires_grad: int64 tensors have no gradient");
  impl_->requires_grad = r;
  return *this;
}

Tensor Tensor::detach() const {
  auto t = std::make_shared<TensorImpl>();
  t->shape = impl_->shape;
  t->dtype = impl_->dtype;
  t->storage = impl_->storage;
  return Tensor(t);
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype(), device());
  t.copy_(*this);
  return t;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor t = empty(shape(), dtype(), d);
  t.copy_(*this);
  return t;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor t = empty(shape(), dt, device());
  cast(*this, t);
  return t;
}

void Tensor::copy_(const Tensor& src) {
  if (src.numel() != numel())
    throw std::runtime_error("copy_: " + src.str() + " into " + str() + ": element counts differ");
  Tensor s = src;
  if (s.dtype() != dtype())
    s = s.device() == device() || s.device().is_cpu() ? s.to(dtype()) : s.to(kCPU).to(dtype());
  const size_t n = nbytes();
  if (device().is_cpu() && s.device().is_cpu()) {
    if (raw() != s.raw()) std::memcpy(raw(), s.raw(), n);
  } else if (device().is_cuda() && s.device().is_cpu()) {
    cuda::copy_to_device(raw(), s.raw(), n);
  } else if (device().is_cpu() && s.device().is_cuda()) {
    cuda::copy_to_host(raw(), s.raw(), n);
  } else {
    cuda::copy_device_to_device(raw(), s.raw(), n);
  }
  bump_version();
}

double Tensor::item() const {
  if (numel() != 1) throw std::runtime_error("item() needs exactly one element, got " + str());
  return to_vector()[0];
}

std::vector<double> Tensor::to_vector() const {
  Tensor h = to(kCPU);
  std::vector<double> v(static_cast<size_t>(numel()));
  switch (dtype()) {
    case DType::f32:
      for (size_t i = 0; i < v.size(); ++i) v[i] = h.data<float>()[i];
      break;
    case DType::f64:
      for (size_t i = 0; i < v.size(); ++i) v[i] = h.data<double>()[i];
      break;
    case DType::i64:
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(h.data<int64_t>()[i]);
      break;
  }
  return v;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined tensor";
  return std::string(dtype_name(dtype())) + shape_str(shape()) + " " + device().str();
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
  for (auto d : shape)
    if (d < 0) throw std::runtime_error("negative dimension in shape " + shape_str(shape));
  auto t = std::make_shared<TensorImpl>();
  t->shape = shape;
  t->dtype = dtype;
  t->storage = std::make_shared<Storage>(static_cast<size_t>(numel_of(shape)) * dtype_size(dtype), device);
  return Tensor(t);
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill(t, value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor from_vector(const std::vector<double>& v, const Shape& shape, DType dtype, Device device) {
  if (static_cast<int64_t>(v.size()) != numel_of(shape))
    throw std::runtime_error("from_vector: " + std::to_string(v.size()) + " values for shape " +
                             shape_str(shape));
  Tensor h = empty(shape, DType::f64, kCPU);
  if (!v.empty()) std::memcpy(h.raw(), v.data(), v.size() * sizeof(double));
  return h.to(dtype).to(device);
}

Tensor from_vector(const std::vector<float>& v, const Shape& shape, Device device) {
  if (static_cast<int64_t>(v.size()) != numel_of(shape))
    throw std::runtime_error("from_vector: " + std::to_string(v.size()) + " values for shape " +
                             shape_str(shape));
  Tensor h = empty(shape, DType::f32, kCPU);
  if (!v.empty()) std::memcpy(h.raw(), v.data(), v.size() * sizeof(float));
  return h.to(device);
}

void fill(Tensor& t, double value) { t.device().is_cpu() ? cpu::fill(t, value) : cuda::fill(t, value); }
void cast(const Tensor& src, Tensor& dst) {
  if (src.device() != dst.device()) throw std::runtime_error("cast: tensors on different devices");
  dst.device().is_cpu() ? cpu::cast(src, dst) : cuda::cast(src, dst);
}
void add_inplace(Tensor& dst, const Tensor& src) {
  if (dst.shape() != src.shape() || dst.dtype() != src.dtype() || dst.device() != src.device())
    throw std::runtime_error("add_inplace: " + src.str() + " into " + dst.str());
  dst.device().is_cpu() ? cpu::add_inplace(dst, src) : cuda::add_inplace(dst, src);
  dst.bump_version();
}

}  // namespace xgan

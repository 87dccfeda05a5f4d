// Tensor: a shape, an element type, a device and a contiguous block of storage, plus the
// autograd fields (requires_grad, the op that produced it, the accumulated .grad).
// Storage is always contiguous and row-major (NCHW for images); a reshape shares it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "engine/dtype.h"

namespace xgan {

using Shape = std::vector<int64_t>;
int64_t numel_of(const Shape& s);
std::string shape_str(const Shape& s);

// One allocation; freed through the allocator that made it.
struct Storage {
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device;
};

class Op;
struct TensorImpl {
  Shape shape;
  DType dtype = DType::f32;
  std::shared_ptr<Storage> storage;
  bool requires_grad = false;
  std::shared_ptr<Op> grad_fn;       // null for leaves
  std::shared_ptr<TensorImpl> grad;  // accumulated by backward() on leaves
  uint64_t version = 0;              // bumped by in-place writes; checked by backward
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl_->shape; }
  int64_t dim() const { return static_cast<int64_t>(impl_->shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return numel_of(impl_->shape); }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }

  // Typed access to the storage; requires T to match dtype() (checked).
  template <class T>
  T* data();
  template <class T>
  const T* data() const;
  void* raw() { return impl_->storage->ptr; }
  const void* raw() const { return impl_->storage->ptr; }

  bool requires_grad() const { return impl_->requires_grad; }
  // Marks a leaf as a parameter (true) or freezes it (false). Requires a leaf.
  Tensor& set_requires_grad(bool r);
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  const std::shared_ptr<Op>& grad_fn() const { return impl_->grad_fn; }
  Tensor grad() const { return Tensor(impl_->grad); }
  void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
  void zero_grad() { impl_->grad.reset(); }

  Tensor detach() const;  // same storage, no history
  Tensor clone() const;   // new storage, no history
  Tensor to(Device d) const;
  Tensor to(DType t) const;
  // Copies `src` (same shape, any dtype/device) into this tensor's storage; bumps the version.
  void copy_(const Tensor& src);
  void bump_version() { ++impl_->version; }
  uint64_t version() const { return impl_->version; }

  double item() const;  // requires numel() == 1
  std::vector<double> to_vector() const;
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  std::string str() const;  // "float32[32, 1, 32, 32] cpu"

 private:
  std::shared_ptr<TensorImpl> impl_;
};

Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = kCPU);
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor scalar(double value, DType dtype = DType::f32, Device device = kCPU);  // shape []
// Host values into a tensor of `shape` (numel must match) converted to dtype.
Tensor from_vector(const std::vector<double>& v, const Shape& shape, DType dtype = DType::f32,
                   Device device = kCPU);
Tensor from_vector(const std::vector<float>& v, const Shape& shape, Device device = kCPU);

}  // namespace xgan

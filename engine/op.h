// Op: one recorded step of the computation, and the descriptor of what it computes.
// An Op object is created per call; it carries the op's attributes (stride, slope, ...), runs its
// forward on the inputs' device, and, when autograd records it, keeps its inputs so that its
// backward (vjp) can be expressed in other engine ops — which is what makes grad-of-grad work.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace xgan {

// Zero padding of a 2-D window op, rows and columns; an int gives both (Inception's 1x7 and 7x1
// convolutions pad one side only).
struct Pad2d {
  int h = 0, w = 0;
  Pad2d(int p = 0) : h(p), w(p) {}  // NOLINT: implicit, so conv2d(x, w, 2, 1) reads like PyTorch
  Pad2d(int ph, int pw) : h(ph), w(pw) {}
};

enum class OpId : uint16_t {
#define XGAN_OP(Class, name) Class,
#include "engine/ops.def"
  kCount
};
inline constexpr int kOpCount = static_cast<int>(OpId::kCount);
// Grows with every line of ops.def: update the op tables in tests/ (and this number) with it.
static_assert(kOpCount == 37, "ops.def changed: update tests/test_gradcheck.cpp and this count");

const char* op_name(OpId id);

class Op {
 public:
  virtual ~Op() = default;
  virtual OpId id() const = 0;
  const char* name() const { return op_name(id()); }

  // Forward. `out` is already allocated with the output shape, dtype and device of the inputs.
  virtual void eval_cpu(const std::vector<Tensor>& in, Tensor& out) = 0;
  virtual void eval_cuda(const std::vector<Tensor>& in, Tensor& out) = 0;

  // Backward: given the inputs and dL/d(out), returns dL/d(in[i]) for each i with need[i]
  // (undefined tensors elsewhere). Written with engine ops only, so it records when the caller
  // builds a graph (create_graph) and higher derivatives follow.
  virtual std::vector<Tensor> vjp(const std::vector<Tensor>& in, const Tensor& grad_out,
                                  const std::vector<bool>& need) = 0;

  // False for ops whose output is piecewise constant (masks): they are never recorded.
  virtual bool differentiable() const { return true; }

  // Set by the autograd recorder.
  std::vector<Tensor> inputs;
  std::vector<uint64_t> input_versions;
  uint64_t seq = 0;  // position on the tape: a consumer always has a larger seq than its producers
};

// Runs `op` on `in` into a new tensor of `out_shape` and, if grad mode is on and an input needs
// a gradient, records it on the tape. Requires all inputs defined, float, on one device, one dtype.
Tensor apply(std::shared_ptr<Op> op, std::vector<Tensor> in, const Shape& out_shape);

}  // namespace xgan

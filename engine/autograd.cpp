// The backward pass. Ops are recorded with a tape position (seq); every consumer of a tensor was
// recorded after its producer, so visiting the reachable ops in decreasing seq order guarantees
// that an op's output gradient is complete before its vjp runs. Nothing global is kept: the graph
// is owned by the tensors (output -> grad_fn -> inputs) and dies with them.
#include "engine/autograd.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "engine/backend.h"
#include "engine/op.h"
#include "engine/ops.h"

namespace xgan {

namespace {
thread_local bool g_grad_enabled = true;
thread_local VjpOverride g_vjp_override;
}  // namespace

bool GradMode::enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool on) { g_grad_enabled = on; }

VjpOverrideGuard::VjpOverrideGuard(VjpOverride rule) : prev_(std::move(g_vjp_override)) {
  g_vjp_override = std::move(rule);
}
VjpOverrideGuard::~VjpOverrideGuard() { g_vjp_override = std::move(prev_); }

namespace {

// Sums gradient contributions; the first one is taken as is (no copy).
void accumulate(std::unordered_map<const void*, Tensor>& m, const void* key, const Tensor& g) {
  auto it = m.find(key);
  if (it == m.end())
    m.emplace(key, g);
  else
    it->second = add(it->second, g);
}

struct Pass {
  // Targets: leaves (by impl) or intermediate tensors (by impl) whose gradient is wanted.
  std::unordered_set<const TensorImpl*> targets;
  bool all_leaves = false;                    // backward(): every leaf requiring grad is a target
  std::unordered_map<const Op*, bool> leads;  // memo: does running this op's vjp reach a target?

  bool is_target(const Tensor& t) const {
    if (targets.count(t.impl())) return true;
    return all_leaves && t.is_leaf() && t.requires_grad();
  }
  // Whether the gradient flowing into input `t` of some op is needed.
  bool input_needed(const Tensor& t) {
    if (!t.requires_grad()) return false;
    if (is_target(t)) return true;
    return t.grad_fn() && op_leads(t.grad_fn().get());
  }
  bool op_leads(const Op* op) {
    // Iterative DFS: graphs of deep nets and their backward graphs can be thousands of ops long.
    auto it = leads.find(op);
    if (it != leads.end()) return it->second;
    std::vector<std::pair<const Op*, size_t>> stack{{op, 0}};
    leads[op] = false;
    while (!stack.empty()) {
      auto& [cur, i] = stack.back();
      if (i == cur->inputs.size()) {
        stack.pop_back();
        continue;
      }
      const Tensor& t = cur->inputs[i];
      bool hit = false;
      if (t.requires_grad()) {
        hit = is_target(t);
        if (!hit && t.grad_fn()) {
          const Op* p = t.grad_fn().get();
          auto pit = leads.find(p);
          if (pit == leads.end()) {
            leads[p] = false;
            stack.push_back({p, 0});  // resolve the producer first, then look at input i again
            continue;
          }
          hit = pit->second;  // final: in a DAG a producer is never on the stack above its consumer
        }
      }
      ++i;
      if (hit) leads[cur] = true;
    }
    return leads[op];
  }
};

// Runs the backward from `outputs`. Returns gradients keyed by the impl of each target.
std::unordered_map<const void*, Tensor> run_backward(const std::vector<Tensor>& outputs,
                                                     const std::vector<Tensor>& grad_outputs_in, Pass& pass,
                                                     bool create_graph) {
  std::vector<Tensor> grad_outputs = grad_outputs_in;
  if (grad_outputs.empty()) {
    for (const auto& o : outputs) {
      if (o.numel() != 1)
        throw std::runtime_error("backward: grad_outputs can be omitted only for scalar outputs, got " +
                                 o.str());
      grad_outputs.push_back(ones_like(o));
    }
  }
  if (grad_outputs.size() != outputs.size())
    throw std::runtime_error("backward: " + std::to_string(outputs.size()) + " outputs but " +
                             std::to_string(grad_outputs.size()) + " grad_outputs");

  std::unordered_map<const void*, Tensor> op_grads;   // keyed by Op*
  std::unordered_map<const void*, Tensor> out_grads;  // keyed by target TensorImpl*
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& o = outputs[i];
    if (!o.requires_grad())
      throw std::runtime_error("backward: output " + std::to_string(i) + " (" + o.str() +
                               ") does not require grad; nothing connects it to a parameter");
    if (grad_outputs[i].shape() != o.shape())
      throw std::runtime_error("backward: grad_output " + grad_outputs[i].str() + " for output " + o.str());
    if (pass.is_target(o)) accumulate(out_grads, o.impl(), grad_outputs[i]);
    if (o.grad_fn() && pass.op_leads(o.grad_fn().get()))
      accumulate(op_grads, o.grad_fn().get(), grad_outputs[i]);
  }

  // The reachable ops whose vjp is needed, in tape order reversed.
  std::vector<Op*> order;
  {
    std::unordered_set<const Op*> seen;
    std::vector<Op*> stack;
    for (const auto& o : outputs)
      if (o.grad_fn() && pass.op_leads(o.grad_fn().get()) && seen.insert(o.grad_fn().get()).second)
        stack.push_back(o.grad_fn().get());
    while (!stack.empty()) {
      Op* op = stack.back();
      stack.pop_back();
      order.push_back(op);
      for (const auto& t : op->inputs)
        if (t.grad_fn() && t.requires_grad() && pass.op_leads(t.grad_fn().get()) &&
            seen.insert(t.grad_fn().get()).second)
          stack.push_back(t.grad_fn().get());
    }
    std::sort(order.begin(), order.end(), [](const Op* a, const Op* b) { return a->seq > b->seq; });
  }

  struct Restore {
    bool prev;
    ~Restore() { GradMode::set_enabled(prev); }
  } restore{GradMode::enabled()};
  GradMode::set_enabled(create_graph);

  for (Op* op : order) {
    auto git = op_grads.find(op);
    if (git == op_grads.end()) continue;  // no gradient arrived (e.g. only through masks)
    Tensor g = git->second;
    op_grads.erase(git);
    std::vector<bool> need(op->inputs.size());
    bool any = false;
    for (size_t i = 0; i < op->inputs.size(); ++i) {
      need[i] = pass.input_needed(op->inputs[i]);
      any = any || need[i];
    }
    if (!any) continue;
    // Any saved input may enter the vjp (x * w needs w for dx), so all of them must be unchanged.
    for (size_t i = 0; i < op->inputs.size(); ++i)
      if (op->inputs[i].version() != op->input_versions[i])
        throw std::runtime_error(std::string("backward: an input of ") + op->name() +
                                 " was modified in place after it was used; its gradient would be wrong");
    std::vector<Tensor> gin;
    if (!(g_vjp_override && g_vjp_override(*op, op->inputs, g, need, gin)))
      gin = op->vjp(op->inputs, g, need);
    if (gin.size() != op->inputs.size())
      throw std::logic_error(std::string("backward of ") + op->name() + " returned " +
                             std::to_string(gin.size()) + " gradients for " +
                             std::to_string(op->inputs.size()) + " inputs");
    for (size_t i = 0; i < op->inputs.size(); ++i) {
      if (!need[i] || !gin[i].defined()) continue;
      const Tensor& t = op->inputs[i];
      if (gin[i].shape() != t.shape())
        throw std::logic_error(std::string("vjp of ") + op->name() + " returned " + gin[i].str() +
                               " for input " + t.str());
      if (pass.is_target(t)) accumulate(out_grads, t.impl(), gin[i]);
      if (t.grad_fn() && pass.op_leads(t.grad_fn().get())) accumulate(op_grads, t.grad_fn().get(), gin[i]);
    }
  }
  return out_grads;
}

}  // namespace

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
              bool create_graph) {
  Pass pass;
  pass.all_leaves = true;
  // Keep the leaves alive while their gradients are keyed by address.
  auto grads = run_backward(outputs, grad_outputs, pass, create_graph);
  // Find the leaf tensors again: walk the graph once more (cheap next to the vjps).
  std::unordered_set<const Op*> seen;
  std::vector<const Op*> stack;
  std::vector<Tensor> leaves;
  std::unordered_set<const TensorImpl*> leaf_seen;
  auto visit = [&](const Tensor& t) {
    if (!t.requires_grad()) return;
    if (t.is_leaf()) {
      if (leaf_seen.insert(t.impl()).second) leaves.push_back(t);
    } else if (seen.insert(t.grad_fn().get()).second) {
      stack.push_back(t.grad_fn().get());
    }
  };
  for (const auto& o : outputs) visit(o);
  while (!stack.empty()) {
    const Op* op = stack.back();
    stack.pop_back();
    for (const auto& t : op->inputs) visit(t);
  }
  for (Tensor& leaf : leaves) {
    auto it = grads.find(leaf.impl());
    if (it == grads.end()) continue;
    Tensor g = it->second;
    if (!create_graph) g = g.detach();
    Tensor old = leaf.grad();
    if (!old.defined()) {
      // Own the buffer: a gradient may alias another tensor (e.g. a grad_output passed through).
      leaf.set_grad(create_graph ? g : g.clone());
    } else if (create_graph || old.requires_grad()) {
      leaf.set_grad(add(old, g));
    } else {
      add_inplace(old, g);
    }
  }
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool create_graph, bool allow_unused) {
  Pass pass;
  for (const auto& t : inputs) {
    if (!t.defined() || !t.requires_grad())
      throw std::runtime_error("grad: an input (" + t.str() + ") does not require grad");
    pass.targets.insert(t.impl());
  }
  auto grads = run_backward(outputs, grad_outputs, pass, create_graph);
  std::vector<Tensor> result;
  for (size_t j = 0; j < inputs.size(); ++j) {
    auto it = grads.find(inputs[j].impl());
    if (it != grads.end()) {
      result.push_back(create_graph ? it->second : it->second.detach());
    } else if (allow_unused) {
      result.push_back(zeros_like(inputs[j]));
    } else {
      throw std::runtime_error("grad: input " + std::to_string(j) + " (" + inputs[j].str() +
                               ") was not used to compute the outputs (pass allow_unused)");
    }
  }
  return result;
}

}  // namespace xgan

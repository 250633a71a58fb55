// The depth cells of the 2-D Grid LSTM (models/grid_lstm.py), forward and hand-written backward, over all
// steps of one layer at once. The time cells run on the shared LSTM cell's loops (recurrent_loops.cpp); the
// depth cells are not recurrent in time, so here a layer's depth cells are one batched matrix product and one
// fused element-wise pass forward, one pass and one product backward (the weight gradients are products over
// all steps, made in Python). The Python functions `depth_forward`
// and `depth_backward` in grid_lstm.py are the specification: the same calls in the same order, with each
// group of element-wise ATen calls fused into one vectorised pass (so results agree to float precision, not
// bit for bit).
//
// Layout (features, batch): gates (T, 4H, B), blocks i, f, o, z of H rows each; every other buffer (T, H, B).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

namespace {

template <typename scalar_t>
using Vec = at::vec::Vectorized<scalar_t>;

template <typename scalar_t>
inline Vec<scalar_t> sigmoid(Vec<scalar_t> a) {  // as ATen's vectorised sigmoid kernel
  const Vec<scalar_t> one(scalar_t(1));
  return one / (one + (Vec<scalar_t>(scalar_t(0)) - a).exp());
}

// One step: a (4, n) pre-activations, activated in place; m = i z + f m_below (m_below may be null: zero),
// s = tanh(m), h = o s.
template <typename scalar_t>
void depth_forward_pointwise(scalar_t* a, const scalar_t* m_below, scalar_t* m, scalar_t* s, scalar_t* h,
                             int64_t n) {
  using V = Vec<scalar_t>;
  scalar_t *ai = a, *af = a + n, *ao = a + 2 * n, *az = a + 3 * n;
  for (int64_t k = 0; k < n; k += V::size()) {
    const int64_t c = std::min<int64_t>(V::size(), n - k);
    const V i = sigmoid(V::loadu(ai + k, c)), f = sigmoid(V::loadu(af + k, c)), o = sigmoid(V::loadu(ao + k, c)),
            z = V::loadu(az + k, c).tanh();
    i.store(ai + k, c);
    f.store(af + k, c);
    o.store(ao + k, c);
    z.store(az + k, c);
    V mv = i * z;
    if (m_below) mv = mv + f * V::loadu(m_below + k, c);
    mv.store(m + k, c);
    const V sv = mv.tanh();
    sv.store(s + k, c);
    (o * sv).store(h + k, c);
  }
}

// One step backward: from dh, dm and the saved gates and s, the pre-activation gradients da (4, n) and the
// gradient reaching m_below (when there is one).
template <typename scalar_t>
void depth_backward_pointwise(const scalar_t* g, const scalar_t* m_below, const scalar_t* s, const scalar_t* dh,
                              const scalar_t* dm, scalar_t* da, scalar_t* dm_below, int64_t n) {
  using V = Vec<scalar_t>;
  const V one(scalar_t(1));
  const scalar_t *gi = g, *gf = g + n, *go = g + 2 * n, *gz = g + 3 * n;
  scalar_t *dai = da, *daf = da + n, *dao = da + 2 * n, *daz = da + 3 * n;
  for (int64_t k = 0; k < n; k += V::size()) {
    const int64_t c = std::min<int64_t>(V::size(), n - k);
    const V i = V::loadu(gi + k, c), f = V::loadu(gf + k, c), o = V::loadu(go + k, c), z = V::loadu(gz + k, c);
    const V sv = V::loadu(s + k, c), dhv = V::loadu(dh + k, c);
    (dhv * sv * (o * (one - o))).store(dao + k, c);
    const V dmt = dhv * o * (one - sv * sv) + V::loadu(dm + k, c);
    (dmt * z * (i * (one - i))).store(dai + k, c);
    (dmt * i * (one - z * z)).store(daz + k, c);
    if (m_below) {
      (dmt * V::loadu(m_below + k, c) * (f * (one - f))).store(daf + k, c);
      (dmt * f).store(dm_below + k, c);
    } else {
      V(scalar_t(0)).store(daf + k, c);
    }
  }
}

inline bool contiguous_or_empty(const at::Tensor& x) { return x.numel() == 0 || x.is_contiguous(); }

// Each step's (rows, B) matrix contiguous; the steps may be apart (a slice of a larger buffer).
inline bool steps_contiguous(const at::Tensor& x) {
  return x.dim() == 3 && (x.size(2) <= 1 || x.stride(2) == 1) && (x.size(1) <= 1 || x.stride(1) == x.size(2));
}

void grid_depth_forward(const at::Tensor& gates, const at::Tensor& W_up, const at::Tensor& h_time,
                        const at::Tensor& m_below, const at::Tensor& h, const at::Tensor& m, const at::Tensor& s) {
  const int64_t T = gates.size(0), B = gates.size(2), H = W_up.size(1);
  TORCH_CHECK(steps_contiguous(gates) && h_time.is_contiguous() && contiguous_or_empty(m_below) &&
                  h.is_contiguous() && m.is_contiguous() && s.is_contiguous(),
              "grid_lstm.depth_forward: buffers must be contiguous");
  gates.baddbmm_(W_up.expand({T, -1, -1}), h_time);
  const bool below = m_below.numel() > 0;
  const int64_t step = gates.stride(0), n = H * B;
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "grid_depth_forward", [&] {
    scalar_t* a = gates.data_ptr<scalar_t>();
    const scalar_t* mb = below ? m_below.data_ptr<scalar_t>() : nullptr;
    scalar_t *mp = m.data_ptr<scalar_t>(), *sp = s.data_ptr<scalar_t>(), *hp = h.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t)
      depth_forward_pointwise<scalar_t>(a + t * step, below ? mb + t * n : nullptr, mp + t * n, sp + t * n,
                                        hp + t * n, n);
  });
}

void grid_depth_backward(const at::Tensor& dh, const at::Tensor& dm, const at::Tensor& W_up,
                         const at::Tensor& gates, const at::Tensor& m_below, const at::Tensor& s,
                         const at::Tensor& dA, const at::Tensor& dm_below, const at::Tensor& dh_time) {
  const int64_t T = gates.size(0), B = gates.size(2), H = W_up.size(1);
  TORCH_CHECK(dh.is_contiguous() && dm.is_contiguous() && steps_contiguous(gates) && contiguous_or_empty(m_below) &&
                  s.is_contiguous() && steps_contiguous(dA) && contiguous_or_empty(dm_below) &&
                  dh_time.is_contiguous(),
              "grid_lstm.depth_backward: buffers must be contiguous");
  const bool below = m_below.numel() > 0;
  const int64_t step = gates.stride(0), dstep = dA.stride(0), n = H * B;
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "grid_depth_backward", [&] {
    const scalar_t *g = gates.data_ptr<scalar_t>(), *sp = s.data_ptr<scalar_t>(), *dhp = dh.data_ptr<scalar_t>(),
                   *dmp = dm.data_ptr<scalar_t>();
    const scalar_t* mb = below ? m_below.data_ptr<scalar_t>() : nullptr;
    scalar_t* da = dA.data_ptr<scalar_t>();
    scalar_t* dmb = below ? dm_below.data_ptr<scalar_t>() : nullptr;
    for (int64_t t = 0; t < T; ++t)
      depth_backward_pointwise<scalar_t>(g + t * step, below ? mb + t * n : nullptr, sp + t * n, dhp + t * n,
                                         dmp + t * n, da + t * dstep, below ? dmb + t * n : nullptr, n);
  });
  dh_time.baddbmm_(W_up.t().expand({T, -1, -1}), dA, /*beta=*/0);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqbench_recurrent, m) {
  m.def(
      "grid_depth_forward(Tensor(a!) gates, Tensor W_up, Tensor h_time, Tensor m_below, Tensor(b!) h, "
      "Tensor(c!) m, Tensor(d!) s) -> ()");
  m.def(
      "grid_depth_backward(Tensor dh, Tensor dm, Tensor W_up, Tensor gates, Tensor m_below, Tensor s, "
      "Tensor(a!) dA, Tensor(b!) dm_below, Tensor(c!) dh_time) -> ()");
}

TORCH_LIBRARY_IMPL(seqbench_recurrent, CPU, m) {
  m.impl("grid_depth_forward", &grid_depth_forward);
  m.impl("grid_depth_backward", &grid_depth_backward);
}

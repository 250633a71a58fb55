// xLSTM's sLSTM time loop (models/slstm.py), forward and hand-written backward, in C++.
//
// `slstm_recurrent` (the loop through autograd) is the specification; tests/test_mixers.py checks the two in
// float64, outputs, final state and every gradient. Per step, for the B rows at once (the recurrent matrix
// block-diagonal over heads, passed dense as Rd (d, 4d), so that the step is one product):
//   a = wx_t + h_{t-1} Rd                          gates ĩ, f̃, z̃, õ, each d wide
//   m = max(log σ(f̃) + m_{t-1}, ĩ)                  (torch.maximum: a tie splits the gradient in halves)
//   i' = exp(ĩ - m)   f' = exp(log σ(f̃) + m_{t-1} - m)
//   c = f' c_{t-1} + i' tanh(z̃)   n = f' n_{t-1} + i'   h = σ(õ) c / n
// Saved for the backward pass: a, and h, c, n, m of every step; the gates' nonlinearities are recomputed.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include "vec_util.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using namespace seqbench_vec;

// log σ(x) = min(x, 0) - log1p(exp(-|x|)), vectorised
template <typename T>
inline Vec<T> vlogsigmoid(Vec<T> x) {
  const Vec<T> zero(T(0));
  return at::vec::minimum(x, zero) - (zero - x.abs()).exp().log1p();
}

// wx (T, B, 4d) = W x + b, time-major; Rd (d, 4d); h0, c0, n0, m0 (B, d). Returns hs (T + 1, B, d) (h_0 first),
// cs, ns, ms (T + 1, B, d) and the pre-activations a (T, B, 4d); with keep = false (no backward to come) the
// states are two rolling slots and a one step.
std::vector<at::Tensor> slstm_forward(const at::Tensor& wx, const at::Tensor& Rd, const at::Tensor& h0,
                                      const at::Tensor& c0, const at::Tensor& n0, const at::Tensor& m0,
                                      bool keep) {
  const int64_t T = wx.size(0), B = wx.size(1), d = Rd.size(0), Bd = B * d;
  TORCH_CHECK(wx.size(2) == 4 * d && Rd.size(1) == 4 * d, "slstm: inconsistent shapes");
  const int64_t Tk = keep ? T : 1, Tk1 = keep ? T + 1 : 2;
  auto opt = wx.options();
  at::Tensor hs = at::empty({T + 1, B, d}, opt);  // every h: the output
  at::Tensor cs = at::empty({Tk1, B, d}, opt), ns = at::empty({Tk1, B, d}, opt), ms = at::empty({Tk1, B, d}, opt);
  at::Tensor as = at::empty({Tk, B, 4 * d}, opt);
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  ns[0].copy_(n0);
  ms[0].copy_(m0);
  AT_DISPATCH_FLOATING_TYPES(wx.scalar_type(), "slstm_forward", [&] {
    using T_ = scalar_t;
    using V = Vec<T_>;
    const V one(T_(1));
    T_ *const c_all = cs.data_ptr<T_>(), *const n_all = ns.data_ptr<T_>(), *const m_all = ms.data_ptr<T_>(),
               *const h_all = hs.data_ptr<T_>(), *const a_all = as.data_ptr<T_>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t now = keep ? t : t % 2, next = keep ? t + 1 : (t + 1) % 2, step = keep ? t : 0;
      at::Tensor a = as[step];
      at::addmm_out(a, wx[t], hs[t], Rd);
      const T_* ap = a_all + step * B * 4 * d;
      const T_ *cp = c_all + now * Bd, *np = n_all + now * Bd, *mp = m_all + now * Bd;
      T_ *c = c_all + next * Bd, *n = n_all + next * Bd, *m = m_all + next * Bd, *h = h_all + (t + 1) * Bd;
      for (int64_t b = 0; b < B; ++b) {
        const T_* ab = ap + b * 4 * d;
        chunks<T_>(d, [&](int64_t j, int64_t k) {
          const int64_t q = b * d + j;
          const V ig_raw = V::loadu(ab + j, k), lm = vlogsigmoid(V::loadu(ab + d + j, k)) + V::loadu(mp + q, k);
          const V mn = at::vec::maximum(lm, ig_raw);
          const V ig = (ig_raw - mn).exp(), fg = (lm - mn).exp();
          const V cn = fg * V::loadu(cp + q, k) + ig * V::loadu(ab + 2 * d + j, k).tanh();
          const V nn = fg * V::loadu(np + q, k) + ig;
          cn.store(c + q, k);
          nn.store(n + q, k);
          mn.store(m + q, k);
          (vsigm(V::loadu(ab + 3 * d + j, k)) * cn / nn).store(h + q, k);
        });
      }
    }
  });
  return {hs, cs, ns, ms, as};
}

// Backward through time. dhs (T, B, d) reaches h_1..h_T (the final h's gradient included); dcT, dnT, dmT the
// final c, n, m's. Returns the gradients of wx (= of a, (T, B, 4d)), Rd, h0, c0, n0, m0.
std::vector<at::Tensor> slstm_backward(const at::Tensor& dhs, const at::Tensor& dcT, const at::Tensor& dnT,
                                       const at::Tensor& dmT, const at::Tensor& Rd, const at::Tensor& hs,
                                       const at::Tensor& cs, const at::Tensor& ns, const at::Tensor& ms,
                                       const at::Tensor& as) {
  const int64_t T = as.size(0), B = as.size(1), d = Rd.size(0), Bd = B * d;
  auto opt = as.options();
  at::Tensor dA = at::empty({T, B, 4 * d}, opt);
  at::Tensor dc = dcT.clone(), dn = dnT.clone(), dm = dmT.clone();
  at::Tensor carry = at::zeros({B, d}, opt);  // Rd's share of dh_t, from step t + 1
  const at::Tensor RdT = Rd.t();
  AT_DISPATCH_FLOATING_TYPES(as.scalar_type(), "slstm_backward", [&] {
    using T_ = scalar_t;
    using V = Vec<T_>;
    const V one(T_(1)), zero(T_(0)), half(T_(0.5));
    T_ *dcp = dc.data_ptr<T_>(), *dnp = dn.data_ptr<T_>(), *dmp = dm.data_ptr<T_>();
    const T_ *const c_all = cs.data_ptr<T_>(), *const n_all = ns.data_ptr<T_>(), *const m_all = ms.data_ptr<T_>(),
                     *const a_all = as.data_ptr<T_>(), *const dh_all = dhs.data_ptr<T_>();
    T_* const da_all = dA.data_ptr<T_>();
    const T_* cr = carry.data_ptr<T_>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const T_* ap = a_all + t * B * 4 * d;
      const T_ *cp = c_all + t * Bd, *np = n_all + t * Bd, *mp = m_all + t * Bd, *c = c_all + (t + 1) * Bd,
               *n = n_all + (t + 1) * Bd, *m = m_all + (t + 1) * Bd, *dhp = dh_all + t * Bd;
      T_* da = da_all + t * B * 4 * d;
      for (int64_t b = 0; b < B; ++b) {
        const T_* ab = ap + b * 4 * d;
        T_* db = da + b * 4 * d;
        chunks<T_>(d, [&](int64_t j, int64_t k) {
          const int64_t q = b * d + j;
          const V ig_raw = V::loadu(ab + j, k), f_raw = V::loadu(ab + d + j, k);
          const V tz = V::loadu(ab + 2 * d + j, k).tanh(), so = vsigm(V::loadu(ab + 3 * d + j, k));
          const V lm = vlogsigmoid(f_raw) + V::loadu(mp + q, k), mn = V::loadu(m + q, k);
          const V ig = (ig_raw - mn).exp(), fg = (lm - mn).exp();
          // h = σ(õ) c / n
          const V g = V::loadu(dhp + q, k) + V::loadu(cr + q, k), inv_n = one / V::loadu(n + q, k),
                  cq = V::loadu(c + q, k);
          const V dcq = V::loadu(dcp + q, k) + g * so * inv_n;
          const V dnq = V::loadu(dnp + q, k) - g * so * cq * inv_n * inv_n;
          (g * cq * inv_n * so * (one - so)).store(db + 3 * d + j, k);
          // c = f' c_{t-1} + i' tanh(z̃), n = f' n_{t-1} + i'
          const V dfg = dcq * V::loadu(cp + q, k) + dnq * V::loadu(np + q, k), dig = dcq * tz + dnq;
          (dcq * ig * (one - tz * tz)).store(db + 2 * d + j, k);
          (dcq * fg).store(dcp + q, k);
          (dnq * fg).store(dnp + q, k);
          // i' = exp(ĩ - m), f' = exp(lm - m); m = max(lm, ĩ), a tie splitting the gradient in halves
          const V dmq = V::loadu(dmp + q, k) - dig * ig - dfg * fg;
          const V lm_wins = lm > ig_raw, ig_wins = ig_raw > lm, split = dmq * half;
          const V to_lm = V::blendv(V::blendv(split, dmq, lm_wins), zero, ig_wins);
          const V to_ig = V::blendv(V::blendv(split, dmq, ig_wins), zero, lm_wins);
          const V dlm = dfg * fg + to_lm;
          (dig * ig + to_ig).store(db + j, k);
          (dlm * vsigm(zero - f_raw)).store(db + d + j, k);  // d log σ(x) / dx = σ(-x)
          dlm.store(dmp + q, k);                             // lm = log σ(f̃) + m_{t-1}
        });
      }
      at::mm_out(carry, dA[t], RdT);
    }
  });
  const at::Tensor dA2 = dA.view({T * B, 4 * d});
  at::Tensor dRd = at::mm(hs.narrow(0, 0, T).reshape({T * B, d}).t(), dA2);
  return {dA, dRd, carry, dc, dn, dm};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqbench_recurrent, m) {
  m.def(
      "slstm_forward(Tensor wx, Tensor Rd, Tensor h0, Tensor c0, Tensor n0, Tensor m0, bool keep) -> Tensor[]");
  m.def(
      "slstm_backward(Tensor dhs, Tensor dcT, Tensor dnT, Tensor dmT, Tensor Rd, Tensor hs, Tensor cs, "
      "Tensor ns, Tensor ms, Tensor acts) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(seqbench_recurrent, CPU, m) {
  m.impl("slstm_forward", &slstm_forward);
  m.impl("slstm_backward", &slstm_backward);
}

// The diagonal-plus-low-rank linear recurrence of models/linear_recurrence.py (DeltaNet, Gated DeltaNet,
// RWKV-7; with no low-rank term also gated linear attention: GLA, RetNet, linear attention), forward and
// hand-written backward in one loop over time. Each (batch row, head) keeps its (d_k, d_v) state in a
// buffer while the loop walks time; the backward recomputes the states of one chunk of K steps at a time
// from the state saved at the chunk's start, as selective_scan.cpp does, so training memory is
// O(T·B·H·d + T/K·B·H·d_k·d_v).
//
// `dplr_recurrent` and `dplr_chunked` in models/linear_recurrence.py are the specification; tests/
// test_mixers.py checks this loop against both in float64.
//
//   forward:   u_t = S_{t-1}ᵀ a_t                                   (d_v; only with the low-rank term)
//              S_t = diag(e^{g_t}) S_{t-1} + b_t u_tᵀ + k_t v_tᵀ    (g: none, one per head, or per channel)
//              o_t = S_tᵀ q_t
//   backward:  G_t = dS_t + q_t do_tᵀ      (dS_t: from step t+1, or the final state's gradient)
//              dq_t = S_t do_t,  dk_t = G_t v_t,  dv_t = G_tᵀ k_t,  db_t = G_t u_t,  du_t = G_tᵀ b_t
//              da_t = S_{t-1} du_t,  dg_t = e^{g_t} ⊙ rowsum(G_t ⊙ S_{t-1})  (summed over d_k for one per head)
//              dS_{t-1} = diag(e^{g_t}) G_t + a_t du_tᵀ
//
// q, k, a, b (B, H, T, d_k); v (B, H, T, d_v); g (B, H, T, 1 or d_k) or empty; S0 (B, H, d_k, d_v); a and b
// both given or both empty. marks (B·H, ceil(T / K), d_k, d_v): the states before steps 0, K, 2K, ... The
// (batch row, head) pairs are independent and run in parallel under ATen's thread pool.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include "vec_util.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using seqbench_vec::dot;
using seqbench_vec::Vec;

// y = alpha x + beta y over n floats (beta = 1: y += alpha x)
template <typename T>
inline void axpby(T alpha, const T* __restrict__ x, T beta, T* __restrict__ y, int64_t n) {
  for (int64_t j = 0; j < n; j += Vec<T>::size()) {
    const int64_t c = std::min<int64_t>(Vec<T>::size(), n - j);
    at::vec::fmadd(Vec<T>(alpha), Vec<T>::loadu(x + j, c), Vec<T>::loadu(y + j, c) * Vec<T>(beta)).store(y + j, c);
  }
}

// y = alpha y over n floats
template <typename T>
inline void scale(T alpha, T* y, int64_t n) {
  for (int64_t j = 0; j < n; j += Vec<T>::size()) {
    const int64_t c = std::min<int64_t>(Vec<T>::size(), n - j);
    (Vec<T>::loadu(y + j, c) * Vec<T>(alpha)).store(y + j, c);
  }
}

// The sizes of the recurrence.
struct Dims {
  int64_t T, dk, dv, gd;  // gd: decays per step (0: none, 1: one per head, dk: per channel)
  bool lowrank;
};

// One forward step on the state S (dk, dv), in place. u (dv) receives S_{t-1}ᵀ a when the low-rank term is
// on; o (dv), when given, receives S_tᵀ q.
template <typename T>
inline void step(T* __restrict__ S, const Dims& d, const T* q, const T* k, const T* v, const T* a, const T* b,
                 const T* g, T* __restrict__ u, T* __restrict__ o) {
  if (d.lowrank) {
    std::fill(u, u + d.dv, T(0));
    for (int64_t i = 0; i < d.dk; ++i) axpby(a[i], S + i * d.dv, T(1), u, d.dv);
  }
  for (int64_t i = 0; i < d.dk; ++i) {
    T* Si = S + i * d.dv;
    const T e = d.gd == 0 ? T(1) : std::exp(g[d.gd == 1 ? 0 : i]);
    for (int64_t j = 0; j < d.dv; j += Vec<T>::size()) {
      const int64_t c = std::min<int64_t>(Vec<T>::size(), d.dv - j);
      Vec<T> s = at::vec::fmadd(Vec<T>(k[i]), Vec<T>::loadu(v + j, c), Vec<T>::loadu(Si + j, c) * Vec<T>(e));
      if (d.lowrank) s = at::vec::fmadd(Vec<T>(b[i]), Vec<T>::loadu(u + j, c), s);
      s.store(Si + j, c);
    }
  }
  if (o != nullptr) {
    std::fill(o, o + d.dv, T(0));
    for (int64_t i = 0; i < d.dk; ++i) axpby(q[i], S + i * d.dv, T(1), o, d.dv);
  }
}

void check(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& a,
           const at::Tensor& b, const at::Tensor& g, const at::Tensor& S0) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes(), "dplr: q and k must be (B, H, T, d_k)");
  TORCH_CHECK(v.dim() == 4 && v.size(0) == q.size(0) && v.size(1) == q.size(1) && v.size(2) == q.size(2),
              "dplr: v must be (B, H, T, d_v)");
  TORCH_CHECK((a.numel() == 0) == (b.numel() == 0), "dplr: a and b come together");
  TORCH_CHECK(a.numel() == 0 || (a.sizes() == q.sizes() && b.sizes() == q.sizes()), "dplr: a, b must be like q");
  TORCH_CHECK(g.numel() == 0 || (g.dim() == 4 && g.size(0) == q.size(0) && g.size(1) == q.size(1) &&
                                 g.size(2) == q.size(2) && (g.size(3) == 1 || g.size(3) == q.size(3))),
              "dplr: g must be (B, H, T, 1) or (B, H, T, d_k)");
  TORCH_CHECK(S0.dim() == 4 && S0.size(0) == q.size(0) && S0.size(1) == q.size(1) && S0.size(2) == q.size(3) &&
                  S0.size(3) == v.size(3),
              "dplr: the state must be (B, H, d_k, d_v)");
}

Dims dims_of(const at::Tensor& q, const at::Tensor& v, const at::Tensor& a, const at::Tensor& g) {
  return Dims{q.size(2), q.size(3), v.size(3), g.numel() == 0 ? 0 : g.size(3), a.numel() != 0};
}

std::vector<at::Tensor> dplr_forward(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                                     const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& g_in,
                                     const at::Tensor& S0_in, int64_t K, bool keep) {
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), g = g_in.contiguous();
  const at::Tensor S0 = S0_in.contiguous();
  check(q, k, v, a, b, g, S0);
  TORCH_CHECK(K >= 1, "dplr: the chunk must be >= 1");
  const Dims d = dims_of(q, v, a, g);
  const int64_t BH = q.size(0) * q.size(1), chunks = keep ? (d.T + K - 1) / K : 0, SS = d.dk * d.dv;
  at::Tensor o = at::empty_like(v);
  at::Tensor ST = S0.clone();
  at::Tensor marks = at::empty({BH, chunks, d.dk, d.dv}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "dplr_forward", [&] {
    const scalar_t *pq = q.data_ptr<scalar_t>(), *pk = k.data_ptr<scalar_t>(), *pv = v.data_ptr<scalar_t>();
    const scalar_t* pa = d.lowrank ? a.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pb = d.lowrank ? b.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pg = d.gd ? g.data_ptr<scalar_t>() : nullptr;
    scalar_t* po = o.data_ptr<scalar_t>();
    scalar_t* pS = ST.data_ptr<scalar_t>();
    scalar_t* pm = marks.data_ptr<scalar_t>();
    at::parallel_for(0, BH, 1, [&](int64_t r0, int64_t r1) {
      std::vector<scalar_t> u(d.dv);
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t* S = pS + r * SS;  // the running state, in place in the final-state output
        for (int64_t t = 0; t < d.T; ++t) {
          if (keep && t % K == 0) std::copy(S, S + SS, pm + (r * chunks + t / K) * SS);
          const int64_t ik = (r * d.T + t) * d.dk, iv = (r * d.T + t) * d.dv;
          step<scalar_t>(S, d, pq + ik, pk + ik, pv + iv, d.lowrank ? pa + ik : nullptr,
                         d.lowrank ? pb + ik : nullptr, d.gd ? pg + (r * d.T + t) * d.gd : nullptr, u.data(),
                         po + iv);
        }
      }
    });
  });
  return {o, ST, marks};
}

std::vector<at::Tensor> dplr_backward(const at::Tensor& do_in, const at::Tensor& dST_in, const at::Tensor& q_in,
                                      const at::Tensor& k_in, const at::Tensor& v_in, const at::Tensor& a_in,
                                      const at::Tensor& b_in, const at::Tensor& g_in, const at::Tensor& marks_in,
                                      int64_t K) {
  const at::Tensor dout = do_in.contiguous(), dST = dST_in.contiguous();
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), g = g_in.contiguous();
  const at::Tensor marks = marks_in.contiguous();
  check(q, k, v, a, b, g, dST);
  TORCH_CHECK(dout.sizes() == v.sizes(), "dplr_backward: do must be like v");
  const Dims d = dims_of(q, v, a, g);
  const int64_t BH = q.size(0) * q.size(1), chunks = (d.T + K - 1) / K, SS = d.dk * d.dv;
  TORCH_CHECK(marks.size(0) == BH && marks.size(1) == chunks, "dplr_backward: marks do not match T and the chunk");
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
  at::Tensor da = at::empty_like(a), db = at::empty_like(b), dg = at::zeros_like(g);
  at::Tensor dS0 = dST.clone();
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "dplr_backward", [&] {
    const scalar_t *pq = q.data_ptr<scalar_t>(), *pk = k.data_ptr<scalar_t>(), *pv = v.data_ptr<scalar_t>();
    const scalar_t* pa = d.lowrank ? a.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pb = d.lowrank ? b.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pg = d.gd ? g.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pdo = dout.data_ptr<scalar_t>();
    const scalar_t* pm = marks.data_ptr<scalar_t>();
    scalar_t *pdq = dq.data_ptr<scalar_t>(), *pdk = dk.data_ptr<scalar_t>(), *pdv = dv.data_ptr<scalar_t>();
    scalar_t* pda = d.lowrank ? da.data_ptr<scalar_t>() : nullptr;
    scalar_t* pdb = d.lowrank ? db.data_ptr<scalar_t>() : nullptr;
    scalar_t* pdg = d.gd ? dg.data_ptr<scalar_t>() : nullptr;
    scalar_t* pG = dS0.data_ptr<scalar_t>();
    at::parallel_for(0, BH, 1, [&](int64_t r0, int64_t r1) {
      // a chunk's states S_{s-1}, s = 0..L (Ss[0]: the state before its first step) and its u_s
      std::vector<scalar_t> Ss((K + 1) * SS), us(K * d.dv), du(d.dv);
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t* G = pG + r * SS;  // the gradient reaching the current state: dS_T first, dS_0 at the end
        for (int64_t c = chunks - 1; c >= 0; --c) {
          const int64_t t0 = c * K, L = std::min(K, d.T - t0);
          std::copy(pm + (r * chunks + c) * SS, pm + (r * chunks + c + 1) * SS, Ss.data());
          for (int64_t s = 0; s < L; ++s) {  // recompute the chunk's states
            const int64_t ik = (r * d.T + t0 + s) * d.dk, iv = (r * d.T + t0 + s) * d.dv;
            scalar_t* S = Ss.data() + (s + 1) * SS;
            std::copy(S - SS, S, S);
            step<scalar_t>(S, d, nullptr, pk + ik, pv + iv, d.lowrank ? pa + ik : nullptr,
                           d.lowrank ? pb + ik : nullptr, d.gd ? pg + (r * d.T + t0 + s) * d.gd : nullptr,
                           us.data() + s * d.dv, nullptr);
          }
          for (int64_t s = L - 1; s >= 0; --s) {
            const int64_t t = t0 + s, ik = (r * d.T + t) * d.dk, iv = (r * d.T + t) * d.dv;
            const scalar_t* S = Ss.data() + (s + 1) * SS;
            const scalar_t* Sp = Ss.data() + s * SS;
            const scalar_t* u = us.data() + s * d.dv;
            const scalar_t *qt = pq + ik, *kt = pk + ik, *vt = pv + iv, *dot_ = pdo + iv;
            scalar_t* dvt = pdv + iv;
            std::fill(dvt, dvt + d.dv, scalar_t(0));
            if (d.lowrank) std::fill(du.begin(), du.end(), scalar_t(0));
            for (int64_t i = 0; i < d.dk; ++i) {
              scalar_t* Gi = G + i * d.dv;
              axpby(qt[i], dot_, scalar_t(1), Gi, d.dv);  // G_t = dS_t + q_t do_tᵀ
              pdq[ik + i] = dot(S + i * d.dv, dot_, d.dv);
              pdk[ik + i] = dot(Gi, vt, d.dv);
              axpby(kt[i], Gi, scalar_t(1), dvt, d.dv);
              if (d.lowrank) {
                pdb[ik + i] = dot(Gi, u, d.dv);
                axpby(pb[ik + i], Gi, scalar_t(1), du.data(), d.dv);
              }
            }
            const scalar_t* gt = d.gd ? pg + (r * d.T + t) * d.gd : nullptr;
            for (int64_t i = 0; i < d.dk; ++i) {
              scalar_t* Gi = G + i * d.dv;
              const scalar_t* Spi = Sp + i * d.dv;
              scalar_t e = scalar_t(1);
              if (d.gd) {
                e = std::exp(gt[d.gd == 1 ? 0 : i]);
                pdg[(r * d.T + t) * d.gd + (d.gd == 1 ? 0 : i)] += e * dot(Gi, Spi, d.dv);
              }
              if (d.lowrank) pda[ik + i] = dot(Spi, du.data(), d.dv);
              // dS_{t-1} = diag(e^{g_t}) G_t + a_t du_tᵀ
              if (d.gd) scale(e, Gi, d.dv);
              if (d.lowrank) axpby(pa[ik + i], du.data(), scalar_t(1), Gi, d.dv);
            }
          }
        }
      }
    });
  });
  return {dq, dk, dv, da, db, dg, dS0};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqbench_recurrent, m) {
  m.def(
      "dplr_forward(Tensor q, Tensor k, Tensor v, Tensor a, Tensor b, Tensor g, Tensor S0, int chunk, bool keep)"
      " -> Tensor[]");
  m.def(
      "dplr_backward(Tensor do, Tensor dST, Tensor q, Tensor k, Tensor v, Tensor a, Tensor b, Tensor g,"
      " Tensor marks, int chunk) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(seqbench_recurrent, CPU, m) {
  m.impl("dplr_forward", &dplr_forward);
  m.impl("dplr_backward", &dplr_backward);
}

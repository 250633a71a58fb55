// Mamba's selective scan (models/mamba.py), forward and hand-written backward, fused: the (T, B, D, N)
// tensors exp(Δ A), Δ x B and the states h are never formed. Each batch row keeps its (D, N) state in a
// scratch buffer while the loop walks time; the backward recomputes the states of one chunk of K steps at a
// time from the state saved at the chunk's start (the paper's fused kernel recomputes them the same way), so
// training memory is O(T·B·D + T/K·B·D·N) rather than O(T·B·D·N).
//
// The chunked Python form in models/mamba.py (`_selective_chunk`: exp, product, `diagonal_scan`, einsum
// through autograd) is the specification; tests/test_mixers.py checks the two in float64.
//
//   forward:   a_t = exp(Δ_t ⊗ A)                  (D, N)
//              h_t = a_t ⊙ h_{t-1} + (Δ_t ⊙ x_t) ⊗ B_t
//              y_t = h_t C_t                        (D)
//   backward:  G_t = dh_t + dy_t ⊗ C_t + a_{t+1} ⊙ G_{t+1}        (dh_t: the final state's gradient at t = T-1)
//              dC_t = h_t^T dy_t,   dB_t = G_t^T (Δ_t ⊙ x_t)
//              dΔ_t = Σ_n G_t ⊙ (a_t ⊙ h_{t-1} ⊙ A + x_t ⊗ B_t),   dx_t = Δ_t ⊙ (G_t B_t)
//              dA = Σ_t Σ_b (G_t ⊙ a_t ⊙ h_{t-1}) ⊙ Δ_t,     dh0 = a_0 ⊙ G_0
//
// dt, x, dy (T, B, D); Bm, Cm (T, B, N); A (D, N); h0, the final state and its gradient (B, D, N);
// marks (ceil(T / K), B, D, N), the states before steps 0, K, 2K, ... Batch rows are independent: they run in
// parallel under ATen's thread pool (one thread: in turn), each with its own slice of dA summed at the end.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include "vec_util.h"

#include <algorithm>
#include <tuple>
#include <vector>

namespace {

using seqbench_vec::hsum;
using seqbench_vec::Vec;

// One step for one channel d of one batch row: a = exp(dt A_d), h = a h + (dt x) B, returns h · C. `a_out`,
// when given, receives a (the backward's recomputation keeps it).
template <typename T>
inline T channel_step(T* __restrict__ h, const T* __restrict__ Ad, const T* __restrict__ Bt,
                      const T* __restrict__ Ct, T dt, T dtx, int64_t N, T* __restrict__ a_out) {
  Vec<T> acc(T(0));
  for (int64_t n = 0; n < N; n += Vec<T>::size()) {
    const int64_t c = std::min<int64_t>(Vec<T>::size(), N - n);
    const Vec<T> a = (Vec<T>::loadu(Ad + n, c) * Vec<T>(dt)).exp();
    const Vec<T> hn = at::vec::fmadd(a, Vec<T>::loadu(h + n, c), Vec<T>::loadu(Bt + n, c) * Vec<T>(dtx));
    hn.store(h + n, c);
    if (a_out != nullptr) a.store(a_out + n, c);
    acc = at::vec::fmadd(hn, Vec<T>::loadu(Ct + n, c), acc);  // loadu with a count zero-fills the tail
  }
  return hsum(acc);
}

std::vector<at::Tensor> selective_scan_forward(const at::Tensor& dt_in, const at::Tensor& x_in,
                                               const at::Tensor& B_in, const at::Tensor& C_in,
                                               const at::Tensor& A_in, const at::Tensor& h0_in, int64_t K,
                                               bool keep) {
  const at::Tensor dt = dt_in.contiguous(), x = x_in.contiguous(), Bm = B_in.contiguous();
  const at::Tensor Cm = C_in.contiguous(), A = A_in.contiguous(), h0 = h0_in.contiguous();
  TORCH_CHECK(dt.dim() == 3 && x.sizes() == dt.sizes(), "selective_scan: dt and x must be (T, B, D)");
  const int64_t T = dt.size(0), Bn = dt.size(1), D = dt.size(2), N = A.size(1);
  TORCH_CHECK(A.dim() == 2 && A.size(0) == D, "selective_scan: A must be (D, N)");
  TORCH_CHECK(Bm.dim() == 3 && Bm.size(0) == T && Bm.size(1) == Bn && Bm.size(2) == N && Cm.sizes() == Bm.sizes(),
              "selective_scan: B and C must be (T, B, N)");
  TORCH_CHECK(h0.dim() == 3 && h0.size(0) == Bn && h0.size(1) == D && h0.size(2) == N,
              "selective_scan: h0 must be (B, D, N)");
  TORCH_CHECK(K >= 1, "selective_scan: the chunk must be >= 1");
  const int64_t chunks = keep ? (T + K - 1) / K : 0;
  at::Tensor y = at::empty({T, Bn, D}, dt.options());
  at::Tensor hT = h0.clone();
  at::Tensor marks = at::empty({chunks, Bn, D, N}, dt.options());
  AT_DISPATCH_FLOATING_TYPES(dt.scalar_type(), "selective_scan_forward", [&] {
    const scalar_t* pdt = dt.data_ptr<scalar_t>();
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pB = Bm.data_ptr<scalar_t>();
    const scalar_t* pC = Cm.data_ptr<scalar_t>();
    const scalar_t* pA = A.data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    scalar_t* ph = hT.data_ptr<scalar_t>();
    scalar_t* pm = marks.data_ptr<scalar_t>();
    const int64_t S = D * N;
    at::parallel_for(0, Bn, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        scalar_t* h = ph + b * S;  // the running state, in place in the final-state output
        for (int64_t t = 0; t < T; ++t) {
          if (keep && t % K == 0) std::copy(h, h + S, pm + ((t / K) * Bn + b) * S);
          const int64_t row = (t * Bn + b);
          const scalar_t* dtr = pdt + row * D;
          const scalar_t* xr = px + row * D;
          const scalar_t* Bt = pB + row * N;
          const scalar_t* Ct = pC + row * N;
          scalar_t* yr = py + row * D;
          for (int64_t d = 0; d < D; ++d) {
            yr[d] = channel_step<scalar_t>(h + d * N, pA + d * N, Bt, Ct, dtr[d], dtr[d] * xr[d], N, nullptr);
          }
        }
      }
    });
  });
  return {y, hT, marks};
}

std::vector<at::Tensor> selective_scan_backward(const at::Tensor& dy_in, const at::Tensor& dhT_in,
                                                const at::Tensor& dt_in, const at::Tensor& x_in,
                                                const at::Tensor& B_in, const at::Tensor& C_in,
                                                const at::Tensor& A_in, const at::Tensor& marks_in, int64_t K) {
  const at::Tensor dy = dy_in.contiguous(), dhT = dhT_in.contiguous(), dt = dt_in.contiguous();
  const at::Tensor x = x_in.contiguous(), Bm = B_in.contiguous(), Cm = C_in.contiguous();
  const at::Tensor A = A_in.contiguous(), marks = marks_in.contiguous();
  const int64_t T = dt.size(0), Bn = dt.size(1), D = dt.size(2), N = A.size(1);
  TORCH_CHECK(dy.sizes() == dt.sizes(), "selective_scan_backward: dy must be (T, B, D)");
  TORCH_CHECK(marks.size(0) == (T + K - 1) / K, "selective_scan_backward: marks do not match T and the chunk");
  at::Tensor ddt = at::empty_like(dt), dx = at::empty_like(x);
  at::Tensor dB = at::zeros_like(Bm), dC = at::zeros_like(Cm);
  at::Tensor dA_rows = at::zeros({Bn, D, N}, A.options());
  at::Tensor dh0 = dhT.clone();
  AT_DISPATCH_FLOATING_TYPES(dt.scalar_type(), "selective_scan_backward", [&] {
    const scalar_t* pdy = dy.data_ptr<scalar_t>();
    const scalar_t* pdt = dt.data_ptr<scalar_t>();
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pB = Bm.data_ptr<scalar_t>();
    const scalar_t* pC = Cm.data_ptr<scalar_t>();
    const scalar_t* pA = A.data_ptr<scalar_t>();
    const scalar_t* pm = marks.data_ptr<scalar_t>();
    scalar_t* pddt = ddt.data_ptr<scalar_t>();
    scalar_t* pdx = dx.data_ptr<scalar_t>();
    scalar_t* pdB = dB.data_ptr<scalar_t>();
    scalar_t* pdC = dC.data_ptr<scalar_t>();
    scalar_t* pdA = dA_rows.data_ptr<scalar_t>();
    scalar_t* pG = dh0.data_ptr<scalar_t>();
    const int64_t S = D * N;
    at::parallel_for(0, Bn, 1, [&](int64_t b0, int64_t b1) {
      // a chunk's states h_{s-1}, s = 0..L (hs[0]: the state before its first step) and its a_s
      std::vector<scalar_t> hs((K + 1) * S), as(K * S);
      for (int64_t b = b0; b < b1; ++b) {
        scalar_t* G = pG + b * S;  // gradient reaching the current state: dh_T first, dh0 at the end
        scalar_t* dA = pdA + b * S;
        for (int64_t c = (T + K - 1) / K - 1; c >= 0; --c) {
          const int64_t t0 = c * K, L = std::min(K, T - t0);
          std::copy(pm + (c * Bn + b) * S, pm + (c * Bn + b + 1) * S, hs.data());
          for (int64_t s = 0; s < L; ++s) {  // recompute the chunk's states
            const int64_t row = (t0 + s) * Bn + b;
            scalar_t* h = hs.data() + (s + 1) * S;
            std::copy(h - S, h, h);
            for (int64_t d = 0; d < D; ++d) {
              const scalar_t dtd = pdt[row * D + d];
              channel_step<scalar_t>(h + d * N, pA + d * N, pB + row * N, pC + row * N, dtd,
                                     dtd * px[row * D + d], N, as.data() + s * S + d * N);
            }
          }
          for (int64_t s = L - 1; s >= 0; --s) {
            const int64_t row = (t0 + s) * Bn + b;
            const scalar_t* h = hs.data() + (s + 1) * S;
            const scalar_t* hp = hs.data() + s * S;
            const scalar_t* a = as.data() + s * S;
            const scalar_t* Bt = pB + row * N;
            const scalar_t* Ct = pC + row * N;
            scalar_t* dBt = pdB + row * N;
            scalar_t* dCt = pdC + row * N;
            for (int64_t d = 0; d < D; ++d) {
              const scalar_t dyd = pdy[row * D + d], dtd = pdt[row * D + d], xd = px[row * D + d];
              const scalar_t* Ad = pA + d * N;
              scalar_t* Gd = G + d * N;
              scalar_t* dAd = dA + d * N;
              Vec<scalar_t> acc_dt(scalar_t(0)), acc_x(scalar_t(0));
              for (int64_t n = 0; n < N; n += Vec<scalar_t>::size()) {
                const int64_t k = std::min<int64_t>(Vec<scalar_t>::size(), N - n);
                const Vec<scalar_t> Cn = Vec<scalar_t>::loadu(Ct + n, k), Bv = Vec<scalar_t>::loadu(Bt + n, k);
                const Vec<scalar_t> g = at::vec::fmadd(Vec<scalar_t>(dyd), Cn, Vec<scalar_t>::loadu(Gd + n, k));
                const Vec<scalar_t> an = Vec<scalar_t>::loadu(a + d * N + n, k);
                const Vec<scalar_t> ga = g * an * Vec<scalar_t>::loadu(hp + d * N + n, k);  // dL/d(Δ A) per n
                at::vec::fmadd(Vec<scalar_t>(dyd), Vec<scalar_t>::loadu(h + d * N + n, k),
                               Vec<scalar_t>::loadu(dCt + n, k))
                    .store(dCt + n, k);
                at::vec::fmadd(g, Vec<scalar_t>(dtd * xd), Vec<scalar_t>::loadu(dBt + n, k)).store(dBt + n, k);
                const Vec<scalar_t> An = Vec<scalar_t>::loadu(Ad + n, k);
                at::vec::fmadd(ga, Vec<scalar_t>(dtd), Vec<scalar_t>::loadu(dAd + n, k)).store(dAd + n, k);
                acc_dt = at::vec::fmadd(ga, An, acc_dt);
                acc_x = at::vec::fmadd(g, Bv, acc_x);
                (g * an).store(Gd + n, k);  // passed on to h_{t-1}
              }
              const scalar_t gb = hsum(acc_x);  // G_t B_t
              pddt[row * D + d] = hsum(acc_dt) + gb * xd;
              pdx[row * D + d] = gb * dtd;
            }
          }
        }
      }
    });
  });
  return {ddt, dx, dB, dC, dA_rows.sum(0), dh0};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqbench_recurrent, m) {
  m.def(
      "selective_scan_forward(Tensor dt, Tensor x, Tensor B, Tensor C, Tensor A, Tensor h0, int chunk, bool keep)"
      " -> Tensor[]");
  m.def(
      "selective_scan_backward(Tensor dy, Tensor dhT, Tensor dt, Tensor x, Tensor B, Tensor C, Tensor A,"
      " Tensor marks, int chunk) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(seqbench_recurrent, CPU, m) {
  m.impl("selective_scan_forward", &selective_scan_forward);
  m.impl("selective_scan_backward", &selective_scan_backward);
}

// The diagonal linear scan of models/common.py (`diagonal_scan`, used by HGRN, minGRU, minLSTM and Mamba),
// forward and hand-written backward, in C++: one pass over time, each step's multiply-add vectorised over the
// M = B x ... channels, instead of one ATen call per step from Python (whose dispatch cost, not the
// arithmetic, was most of the scan's time at these sizes).
//
// The Python loop in `_DiagonalScan` is the specification; tests/test_mixers.py checks the two in float64.
//
//   forward:   h_t = a_t ⊙ h_{t-1} + b_t                          (h_{-1} = h0)
//   backward:  G_t = dh_t + a_{t+1} ⊙ G_{t+1}   (G_{T} = 0)
//              da_t = G_t ⊙ h_{t-1},  db_t = G_t,  dh0 = a_0 ⊙ G_0
//
// a, b, h, dh are (T, M) contiguous (time-major), h0 is (M).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <vector>

namespace {

at::Tensor diagonal_scan_forward(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& h0_in) {
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), h0 = h0_in.contiguous();
  TORCH_CHECK(a.sizes() == b.sizes(), "diagonal_scan: a and b must have one shape");
  const int64_t T = a.size(0), M = h0.numel();
  TORCH_CHECK(a.numel() == T * M, "diagonal_scan: a must be (T, ...) with h0's shape after T");
  at::Tensor h = at::empty_like(b);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "diagonal_scan_forward", [&] {
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.data_ptr<scalar_t>();
    const scalar_t* prev = h0.data_ptr<scalar_t>();
    scalar_t* ph = h.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* __restrict__ at_ = pa + t * M;
      const scalar_t* __restrict__ bt = pb + t * M;
      const scalar_t* __restrict__ hp = prev;
      scalar_t* __restrict__ ht = ph + t * M;
      for (int64_t i = 0; i < M; ++i) ht[i] = at_[i] * hp[i] + bt[i];
      prev = ht;
    }
  });
  return h;
}

std::vector<at::Tensor> diagonal_scan_backward(const at::Tensor& a_in, const at::Tensor& h_in,
                                               const at::Tensor& h0_in, const at::Tensor& dh_in) {
  const at::Tensor a = a_in.contiguous(), h = h_in.contiguous(), h0 = h0_in.contiguous();
  const at::Tensor dh = dh_in.contiguous();
  const int64_t T = a.size(0), M = h0.numel();
  at::Tensor G = at::empty_like(dh), da = at::empty_like(a), dh0 = at::zeros_like(h0);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "diagonal_scan_backward", [&] {
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* ph = h.data_ptr<scalar_t>();
    const scalar_t* pdh = dh.data_ptr<scalar_t>();
    scalar_t* pG = G.data_ptr<scalar_t>();
    scalar_t* pda = da.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* __restrict__ dht = pdh + t * M;
      const scalar_t* __restrict__ hp = t > 0 ? ph + (t - 1) * M : h0.data_ptr<scalar_t>();
      scalar_t* __restrict__ Gt = pG + t * M;
      scalar_t* __restrict__ dat = pda + t * M;
      if (t == T - 1) {
        for (int64_t i = 0; i < M; ++i) Gt[i] = dht[i];
      } else {
        const scalar_t* __restrict__ an = pa + (t + 1) * M;
        const scalar_t* __restrict__ Gn = pG + (t + 1) * M;
        for (int64_t i = 0; i < M; ++i) Gt[i] = dht[i] + an[i] * Gn[i];
      }
      for (int64_t i = 0; i < M; ++i) dat[i] = Gt[i] * hp[i];
    }
    if (T > 0) {
      scalar_t* pd0 = dh0.data_ptr<scalar_t>();
      for (int64_t i = 0; i < M; ++i) pd0[i] = pa[i] * pG[i];
    }
  });
  return {da, G, dh0};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqbench_recurrent, m) {
  m.def("diagonal_scan_forward(Tensor a, Tensor b, Tensor h0) -> Tensor");
  m.def("diagonal_scan_backward(Tensor a, Tensor h, Tensor h0, Tensor dh) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(seqbench_recurrent, CPU, m) {
  m.impl("diagonal_scan_forward", &diagonal_scan_forward);
  m.impl("diagonal_scan_backward", &diagonal_scan_backward);
}

// The stack RNN's time loop (models/stack_rnn.py), forward and hand-written backward, in C++.
//
// The Python `StackRNN.reference_forward` is the specification (the same equations through autograd);
// tests/test_stack_rnn_fast.py checks the two in float64, outputs and every gradient. Per step, for all
// sequences (P stacks of depth D and element width W, k elements read from each top, nA actions):
//
//   u_t = [h_{t-1}, s_{t-1}[:, :k]]                (B, H + P k W), kept for the weight gradient
//   h_t = σ(d_t + R u_t)                           d_t = U x_t + b, computed before the loop
//   a_t = softmax(A h_t + b_A) per stack            push, pop (, no-op)
//   v_t = σ(D h_t + b_D)                           the pushed element
//   s_t[0] = a_push v_t + a_pop s_{t-1}[1] + a_no-op s_{t-1}[0]
//   s_t[i] = a_push s_{t-1}[i-1] + a_pop s_{t-1}[i+1] + a_no-op s_{t-1}[i]     (s[D] = 0)
//
// The matrix products are ATen calls; the stack update and its gradient are one pass over each stack.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace {

// dims = [P, D, W, k, nA]
std::vector<at::Tensor> stack_forward(const at::Tensor& drive, const at::Tensor& R, const at::Tensor& A,
                                      const at::Tensor& bA, const at::Tensor& Dw, const at::Tensor& bD,
                                      at::IntArrayRef dims) {
  TORCH_CHECK(dims.size() == 5, "stack_rnn: expected dims P, D, W, k, nA");
  const int64_t P = dims[0], D = dims[1], W = dims[2], k = dims[3], nA = dims[4];
  const int64_t T = drive.size(0), B = drive.size(1), H = drive.size(2), U = H + P * k * W;
  auto opt = drive.options();
  at::Tensor us = at::zeros({T, B, U}, opt), hs = at::empty({T, B, H}, opt);
  at::Tensor acts = at::empty({T, B, P * nA}, opt), vs = at::empty({T, B, P * W}, opt);
  at::Tensor stacks = at::zeros({T + 1, B, P, D, W}, opt);
  const at::Tensor Rt = R.t(), At = A.t(), Dt = Dw.t();
  AT_DISPATCH_FLOATING_TYPES(drive.scalar_type(), "stack_forward", [&] {
    using T_ = scalar_t;
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor u = us[t], h = hs[t], a = acts[t], v = vs[t];
      T_* up = u.data_ptr<T_>();
      const T_* sp = stacks[t].data_ptr<T_>();
      for (int64_t b = 0; b < B; ++b) {
        if (t) std::copy_n(hs[t - 1].data_ptr<T_>() + b * H, H, up + b * U);
        for (int64_t p = 0; p < P; ++p)
          std::copy_n(sp + (b * P + p) * D * W, k * W, up + b * U + H + p * k * W);
      }
      at::addmm_out(h, drive[t], u, Rt);
      h.sigmoid_();
      at::addmm_out(a, bA, h, At);
      at::addmm_out(v, bD, h, Dt);
      v.sigmoid_();
      T_* ap = a.data_ptr<T_>();
      const T_* vp = v.data_ptr<T_>();
      T_* sn = stacks[t + 1].data_ptr<T_>();
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t p = 0; p < P; ++p) {
          T_* ab = ap + (b * P + p) * nA;
          T_ mx = ab[0];
          for (int64_t j = 1; j < nA; ++j) mx = std::max(mx, ab[j]);
          T_ sum = 0;
          for (int64_t j = 0; j < nA; ++j) sum += (ab[j] = std::exp(ab[j] - mx));
          for (int64_t j = 0; j < nA; ++j) ab[j] /= sum;
          const T_ push = ab[0], pop = ab[1], noop = nA == 3 ? ab[2] : T_(0);
          const T_* s = sp + (b * P + p) * D * W;
          T_* o = sn + (b * P + p) * D * W;
          const T_* val = vp + (b * P + p) * W;
          for (int64_t i = 0; i < D; ++i)
            for (int64_t w = 0; w < W; ++w) {
              const T_ above = i ? s[(i - 1) * W + w] : val[w];
              const T_ below = i + 1 < D ? s[(i + 1) * W + w] : T_(0);
              o[i * W + w] = push * above + pop * below + noop * s[i * W + w];
            }
        }
      }
    }
  });
  return {us, hs, acts, vs, stacks};
}

// dhs (T, B, H) reaches the outputs. Returns the gradients of drive, R, A, bA, D, bD.
std::vector<at::Tensor> stack_backward(const at::Tensor& dhs, const at::Tensor& R, const at::Tensor& A,
                                       const at::Tensor& Dw, const at::Tensor& us, const at::Tensor& hs,
                                       const at::Tensor& acts, const at::Tensor& vs, const at::Tensor& stacks,
                                       at::IntArrayRef dims) {
  const int64_t P = dims[0], D = dims[1], W = dims[2], k = dims[3], nA = dims[4];
  const int64_t T = hs.size(0), B = hs.size(1), H = hs.size(2), U = H + P * k * W;
  auto opt = hs.options();
  at::Tensor dpre = at::empty({T, B, H}, opt), dacts = at::empty({T, B, P * nA}, opt);
  at::Tensor dvs = at::empty({T, B, P * W}, opt), dS = at::zeros({B, P, D, W}, opt);
  at::Tensor dh = at::empty({B, H}, opt), du = at::zeros({B, U}, opt);
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "stack_backward", [&] {
    using T_ = scalar_t;
    T_* dsp = dS.data_ptr<T_>();
    std::vector<T_> prev(D * W);
    for (int64_t t = T - 1; t >= 0; --t) {
      const T_* sp = stacks[t].data_ptr<T_>();
      const T_* ap = acts[t].data_ptr<T_>();
      const T_* vp = vs[t].data_ptr<T_>();
      T_* dap = dacts[t].data_ptr<T_>();
      T_* dvp = dvs[t].data_ptr<T_>();
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t p = 0; p < P; ++p) {
          const T_* ab = ap + (b * P + p) * nA;
          const T_ push = ab[0], pop = ab[1], noop = nA == 3 ? ab[2] : T_(0);
          const T_* s = sp + (b * P + p) * D * W;
          const T_* val = vp + (b * P + p) * W;
          T_* g = dsp + (b * P + p) * D * W;  // reaching s_t; becomes the gradient reaching s_{t-1}
          T_ dpush = 0, dpop = 0, dnoop = 0;
          for (int64_t i = 0; i < D; ++i)
            for (int64_t w = 0; w < W; ++w) {
              const T_ gi = g[i * W + w];
              dpush += gi * (i ? s[(i - 1) * W + w] : val[w]);
              if (i + 1 < D) dpop += gi * s[(i + 1) * W + w];
              dnoop += gi * s[i * W + w];
              const T_ from_above = i + 1 < D ? g[(i + 1) * W + w] : T_(0);  // s[i] fed s_t[i+1] by a push
              const T_ from_below = i ? g[(i - 1) * W + w] : T_(0);          // and s_t[i-1] by a pop
              prev[i * W + w] = push * from_above + pop * from_below + noop * gi;
            }
          T_* dvb = dvp + (b * P + p) * W;
          for (int64_t w = 0; w < W; ++w) dvb[w] = push * g[w] * val[w] * (T_(1) - val[w]);
          std::copy(prev.begin(), prev.end(), g);
          const T_ dact[3] = {dpush, dpop, dnoop};
          T_ dot = 0;
          for (int64_t j = 0; j < nA; ++j) dot += dact[j] * ab[j];
          T_* dab = dap + (b * P + p) * nA;
          for (int64_t j = 0; j < nA; ++j) dab[j] = ab[j] * (dact[j] - dot);
        }
      }
      // dh_t = output gradient + R_h^T dpre_{t+1} (in du) + A^T da + D^T dv; then through σ
      at::Tensor dp = dpre[t];
      at::add_out(dh, dhs[t], du.narrow(1, 0, H));
      dh.addmm_(dacts[t], A);
      dh.addmm_(dvs[t], Dw);
      const at::Tensor h = hs[t];
      at::mul_out(dp, dh, h * (1 - h));
      at::mm_out(du, dp, R);
      // the top elements read at step t: their gradient joins the one reaching s_{t-1}
      const T_* dup = du.data_ptr<T_>();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t p = 0; p < P; ++p) {
          T_* g = dsp + (b * P + p) * D * W;
          const T_* src = dup + b * U + H + p * k * W;
          for (int64_t q = 0; q < k * W; ++q) g[q] += src[q];
        }
    }
  });
  const at::Tensor h2 = hs.view({T * B, H}), dp2 = dpre.view({T * B, H});
  const at::Tensor da2 = dacts.view({T * B, P * nA}), dv2 = dvs.view({T * B, P * W});
  return {dpre, at::mm(dp2.t(), us.view({T * B, U})), at::mm(da2.t(), h2), da2.sum(0), at::mm(dv2.t(), h2),
          dv2.sum(0)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqbench_recurrent, m) {
  m.def("stack_forward(Tensor drive, Tensor R, Tensor A, Tensor bA, Tensor D, Tensor bD, int[] dims) -> Tensor[]");
  m.def(
      "stack_backward(Tensor dhs, Tensor R, Tensor A, Tensor D, Tensor us, Tensor hs, Tensor acts, Tensor vs, "
      "Tensor stacks, int[] dims) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(seqbench_recurrent, CPU, m) {
  m.impl("stack_forward", &stack_forward);
  m.impl("stack_backward", &stack_backward);
}

// The Neural Turing Machine's time loop (models/ntm.py), forward and hand-written backward, in C++.
//
// The Python `NTM.forward` (implementation="reference") is the specification: the same equations, step by
// step through autograd; tests/test_ntm_fast.py checks the two in float64, outputs and every gradient. What
// differs is the cost: through autograd a step is ~60 small ATen ops forward and as many again backward over
// (batch, heads, slots), each with dispatch and graph-recording overhead; here the controller's matrix
// products stay ATen calls (BLAS), and the addressing, read and write of every head are a few plain loops
// over each sequence's (N, M) memory.
//
// Per step t and sequence (heads k = 0..K-1, the R read heads first, then the W write heads):
//   controller   a = xp_t + Wr r_{t-1} + Whh h_{t-1}; LSTM cell (i, f, g, o) -> h_t, c_t  (or h_t = tanh(a))
//   parameters   p = clamp(Wp h_t + bp, ±clip): key, β = softplus, g = σ, γ = 1 + softplus, s = softmax
//   content      wc = softmax_i(β cos(key, M_i))
//   interpolate  wg = g wc + (1 - g) w_{t-1}
//   shift        ws_i = Σ_{j=-S..S} wg_{(i-j) mod N} s_j
//   sharpen      w_i = (ws_i + ε)^γ / Σ_l (ws_l + ε)^γ
//   read         r_k = Σ_i w_k,i M_i          (the memory before this step's write)
//   write        M <- M ⊙ (1 - w e^T) + w a^T, write head after write head; e = σ, a = tanh
//
// Saved for the backward pass: the memory before every step (T + 1, B, N, M), and per step and head the
// weightings of each stage (sim, wc, wg, ws, w); the rest (norms, activations of p) is recomputed.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

namespace {

struct Dims {
  int64_t N, M, R, W, S, lstm, K, ns, per_head, P;
  explicit Dims(at::IntArrayRef d) {
    TORCH_CHECK(d.size() == 6, "ntm: expected dims N, M, R, W, S, lstm");
    N = d[0];
    M = d[1];
    R = d[2];
    W = d[3];
    S = d[4];
    lstm = d[5];
    K = R + W;
    ns = 2 * S + 1;
    per_head = M + 3 + ns;
    P = K * per_head + W * 2 * M;
  }
};

template <typename T>
using Vec = at::vec::Vectorized<T>;

template <typename T>
inline T hsum(const Vec<T>& v) {
  T lanes[Vec<T>::size()];
  v.store(lanes);
  T sum = 0;
  for (int64_t k = 0; k < Vec<T>::size(); ++k) sum += lanes[k];
  return sum;
}

// Σ a_i b_i with SIMD accumulators: a plain loop is one latency-bound chain of FMAs (no reassociation).
template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  Vec<T> acc(T(0));
  for (int64_t i = 0; i < n; i += Vec<T>::size()) {
    const int64_t c = std::min<int64_t>(Vec<T>::size(), n - i);
    acc = at::vec::fmadd(Vec<T>::loadu(a + i, c), Vec<T>::loadu(b + i, c), acc);
  }
  return hsum(acc);
}

// out_i = exp(scale * in_i + shift), vectorised (SLEEF's exp, as ATen's kernels use).
template <typename T>
inline void exp_affine(const T* in, T* out, int64_t n, T scale, T shift) {
  for (int64_t i = 0; i < n; i += Vec<T>::size()) {
    const int64_t c = std::min<int64_t>(Vec<T>::size(), n - i);
    (Vec<T>::loadu(in + i, c) * Vec<T>(scale) + Vec<T>(shift)).exp().store(out + i, c);
  }
}

// f(i, count) over [0, n) in SIMD-wide chunks: the element-wise loops over a memory row, which GCC left
// scalar (it cannot prove the rows and the scratch vectors apart).
template <typename T, typename F>
inline void chunks(int64_t n, F f) {
  for (int64_t i = 0; i < n; i += Vec<T>::size()) f(i, std::min<int64_t>(Vec<T>::size(), n - i));
}

template <typename T>
inline Vec<T> vsigm(Vec<T> a) {
  const Vec<T> one(T(1));
  return one / (one + (Vec<T>(T(0)) - a).exp());
}

template <typename T>
inline T sigm(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <typename T>
inline T softplus(T x) {  // as F.softplus (beta 1, threshold 20)
  return x > T(20) ? x : std::log1p(std::exp(x));
}

template <typename T>
inline T dsoftplus(T x) {
  return x > T(20) ? T(1) : sigm(x);
}

template <typename T>
inline T clampv(T x, double clip) {
  if (clip <= 0) return x;
  const T c = T(clip);
  return x < -c ? -c : (x > c ? c : x);
}

template <typename T>
void softmax(const T* z, T* out, int64_t n) {
  T mx = z[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, z[i]);
  exp_affine(z, out, n, T(1), -mx);
  T sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += out[i];
  const T r = T(1) / sum;
  for (int64_t i = 0; i < n; ++i) out[i] *= r;
}

// Inverse row norms 1 / max(|M_i|, eps) of one sequence's memory (N, M), and whether |M_i| > eps
// (F.normalize's clamp: below eps the norm is a constant and passes no gradient).
template <typename T>
void row_norms(const T* mem, int64_t N, int64_t M, T eps, T* inv, bool* big) {
  for (int64_t i = 0; i < N; ++i) {
    const T nrm = std::sqrt(dot(mem + i * M, mem + i * M, M));
    big[i] = nrm >= eps;
    inv[i] = T(1) / std::max(nrm, eps);
  }
}

// The head parameters of head k from the clamped projection p of one sequence.
template <typename T>
struct Head {
  const T* key;  // raw (clamped) key, M values in `keybuf`
  T kinv, beta, g, gamma;
  bool kbig;
  std::vector<T> keybuf, s;
  Head(const Dims& d, const T* p_hat, int64_t k, double clip, T eps) : keybuf(d.M), s(d.ns) {
    const T* ph = p_hat + k * d.per_head;
    T sq = 0;
    for (int64_t m = 0; m < d.M; ++m) {
      keybuf[m] = clampv(ph[m], clip);
      sq += keybuf[m] * keybuf[m];
    }
    key = keybuf.data();
    const T nrm = std::sqrt(sq);
    kbig = nrm >= eps;
    kinv = T(1) / std::max(nrm, eps);
    beta = softplus(clampv(ph[d.M], clip));
    g = sigm(clampv(ph[d.M + 1], clip));
    gamma = T(1) + softplus(clampv(ph[d.M + 2], clip));
    std::vector<T> z(d.ns);
    for (int64_t j = 0; j < d.ns; ++j) z[j] = clampv(ph[d.M + 3 + j], clip);
    softmax(z.data(), s.data(), d.ns);
  }
};

// out[S + i] = w[i mod N] for i in -S..N+S-1 (S < N): the circular convolution without a modulo per term.
template <typename T>
inline void pad_circular(const T* w, T* out, int64_t N, int64_t S) {
  for (int64_t i = 0; i < S; ++i) {
    out[i] = w[N - S + i];
    out[N + S + i] = w[i];
  }
  std::copy(w, w + N, out + S);
}

template <typename T>
void lstm_forward_pointwise(T* a, const T* c_prev, T* c, T* h, int64_t B, int64_t C) {
  using V = Vec<T>;
  for (int64_t b = 0; b < B; ++b) {
    T* ab = a + b * 4 * C;
    for (int64_t u = 0; u < C; u += V::size()) {
      const int64_t n = std::min<int64_t>(V::size(), C - u), q = b * C + u;
      const V i = vsigm(V::loadu(ab + u, n)), f = vsigm(V::loadu(ab + C + u, n));
      const V g = V::loadu(ab + 2 * C + u, n).tanh(), o = vsigm(V::loadu(ab + 3 * C + u, n));
      i.store(ab + u, n);
      f.store(ab + C + u, n);
      g.store(ab + 2 * C + u, n);
      o.store(ab + 3 * C + u, n);
      const V cn = f * V::loadu(c_prev + q, n) + i * g;
      cn.store(c + q, n);
      (o * cn.tanh()).store(h + q, n);
    }
  }
}

std::vector<at::Tensor> ntm_forward(const at::Tensor& xp, const at::Tensor& Wr, const at::Tensor& Whh,
                                    const at::Tensor& Wp, const at::Tensor& bp, const at::Tensor& M0,
                                    const at::Tensor& r0, const at::Tensor& w0, const at::Tensor& h0,
                                    const at::Tensor& c0, at::IntArrayRef dims, double clip, double eps) {
  const Dims d(dims);
  const int64_t T = xp.size(0), B = xp.size(1), G = xp.size(2), C = Wp.size(1);
  const int64_t N = d.N, M = d.M, K = d.K;
  auto opt = xp.options();
  at::Tensor gates = at::empty({T, B, G}, opt), hs = at::empty({T + 1, B, C}, opt);
  at::Tensor cs = at::empty({d.lstm ? T + 1 : 0, B, C}, opt);
  at::Tensor rs = at::empty({T + 1, B, d.R * M}, opt), ps = at::empty({T, B, d.P}, opt);
  at::Tensor mems = at::empty({T + 1, B, N, M}, opt), ws = at::empty({T + 1, B, K, N}, opt);
  at::Tensor stages = at::empty({T, 5, B, K, N}, opt);  // sim, wc, wg, ws (shifted), log(ws + eps)
  hs[0].copy_(h0);
  if (d.lstm) cs[0].copy_(c0);
  rs[0].copy_(r0);
  mems[0].copy_(M0);
  ws[0].copy_(w0);
  const at::Tensor WrT = Wr.t(), WhhT = Whh.t(), WpT = Wp.t();
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "ntm_forward", [&] {
    using T_ = scalar_t;
    const T_ e = T_(eps);
    std::vector<T_> inv(N), z(N), u(N), pad(N + 2 * d.S);
    std::unique_ptr<bool[]> big(new bool[N]);
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor a = gates[t];
      at::addmm_out(a, xp[t], rs[t], WrT);
      if (d.lstm) {
        a.addmm_(hs[t], WhhT);
        lstm_forward_pointwise(a.data_ptr<T_>(), cs[t].data_ptr<T_>(), cs[t + 1].data_ptr<T_>(),
                               hs[t + 1].data_ptr<T_>(), B, C);
      } else {
        at::Tensor h = hs[t + 1];
        at::tanh_out(h, a);
      }
      at::Tensor pt_ = ps[t];
      at::addmm_out(pt_, bp, hs[t + 1], WpT);
      const T_* pt = ps[t].data_ptr<T_>();
      const T_* mp_all = mems[t].data_ptr<T_>();
      T_* mn_all = mems[t + 1].data_ptr<T_>();
      const T_* wprev_all = ws[t].data_ptr<T_>();
      T_* w_all = ws[t + 1].data_ptr<T_>();
      T_* st = stages[t].data_ptr<T_>();
      T_* r_all = rs[t + 1].data_ptr<T_>();
      const int64_t stage = B * K * N;
      for (int64_t b = 0; b < B; ++b) {
        const T_* p = pt + b * d.P;
        const T_* mp = mp_all + b * N * M;
        row_norms(mp, N, M, e, inv.data(), big.get());
        for (int64_t k = 0; k < K; ++k) {
          const Head<T_> hd(d, p, k, clip, e);
          const int64_t off = (b * K + k) * N;
          T_ *sim = st + off, *wc = st + stage + off, *wg = st + 2 * stage + off, *wsh = st + 3 * stage + off,
             *lg = st + 4 * stage + off;
          const T_* wprev = wprev_all + off;
          T_* w = w_all + off;
          for (int64_t i = 0; i < N; ++i) {
            sim[i] = dot(hd.key, mp + i * M, M) * hd.kinv * inv[i];
            z[i] = hd.beta * sim[i];
          }
          softmax(z.data(), wc, N);
          for (int64_t i = 0; i < N; ++i) wg[i] = hd.g * wc[i] + (T_(1) - hd.g) * wprev[i];
          pad_circular(wg, pad.data(), N, d.S);  // pad[S + i] = wg[i mod N] for i in -S..N+S-1
          for (int64_t i = 0; i < N; ++i) {
            T_ acc = 0;
            for (int64_t j = -d.S; j <= d.S; ++j) acc += pad[d.S + i - j] * hd.s[j + d.S];
            wsh[i] = acc;
            u[i] = acc + e;
          }
          for (int64_t i = 0; i < N; i += Vec<T_>::size()) {  // (ws + eps)^γ = exp(γ log(ws + eps))
            const int64_t c = std::min<int64_t>(Vec<T_>::size(), N - i);
            Vec<T_>::loadu(u.data() + i, c).log().store(lg + i, c);
          }
          exp_affine(lg, u.data(), N, hd.gamma, T_(0));
          T_ total = 0;
          for (int64_t i = 0; i < N; ++i) total += u[i];
          const T_ rt = T_(1) / total;
          for (int64_t i = 0; i < N; ++i) w[i] = u[i] * rt;
        }
        // read (memory before the write), then write
        for (int64_t k = 0; k < d.R; ++k) {
          const T_* w = w_all + (b * K + k) * N;
          T_* r = r_all + b * d.R * M + k * M;
          for (int64_t m = 0; m < M; ++m) r[m] = 0;
          for (int64_t i = 0; i < N; ++i) {
            const Vec<T_> wi(w[i]);
            chunks<T_>(M, [&](int64_t m, int64_t c) {
              at::vec::fmadd(wi, Vec<T_>::loadu(mp + i * M + m, c), Vec<T_>::loadu(r + m, c)).store(r + m, c);
            });
          }
        }
        T_* mn = mn_all + b * N * M;
        std::copy(mp, mp + N * M, mn);
        for (int64_t j = 0; j < d.W; ++j) {
          const T_* w = w_all + (b * K + d.R + j) * N;
          const T_* ea = p + K * d.per_head + j * 2 * M;
          std::vector<T_> er(M), ad(M);
          for (int64_t m = 0; m < M; ++m) {
            er[m] = sigm(clampv(ea[m], clip));
            ad[m] = std::tanh(clampv(ea[M + m], clip));
          }
          for (int64_t i = 0; i < N; ++i) {
            const Vec<T_> wi(w[i]), one(T_(1));
            chunks<T_>(M, [&](int64_t m, int64_t c) {
              T_* row = mn + i * M + m;
              (Vec<T_>::loadu(row, c) * (one - wi * Vec<T_>::loadu(er.data() + m, c)) +
               wi * Vec<T_>::loadu(ad.data() + m, c))
                  .store(row, c);
            });
          }
        }
      }
    }
  });
  return {hs, cs, gates, rs, ps, mems, ws, stages};
}

// Backward through time. dhs (T, B, C) and drs (T, B, R M) reach the outputs h_1..T and r_1..T. Returns the
// gradients of xp, Wr, Whh, Wp, bp, M0, r0, w0, h0, c0.
std::vector<at::Tensor> ntm_backward(const at::Tensor& dhs, const at::Tensor& drs, const at::Tensor& Wr,
                                     const at::Tensor& Whh, const at::Tensor& Wp, const at::Tensor& hs,
                                     const at::Tensor& cs, const at::Tensor& gates, const at::Tensor& rs,
                                     const at::Tensor& ps, const at::Tensor& mems, const at::Tensor& ws,
                                     const at::Tensor& stages, at::IntArrayRef dims, double clip, double eps) {
  const Dims d(dims);
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), C = Wp.size(1);
  const int64_t N = d.N, M = d.M, K = d.K, RM = d.R * M;
  auto opt = gates.options();
  at::Tensor dA = at::empty({T, B, G}, opt), dP = at::empty({T, B, d.P}, opt);
  at::Tensor dM = at::zeros({B, N, M}, opt), dW = at::zeros({B, K, N}, opt);
  at::Tensor dh = at::empty({B, C}, opt), dr = at::empty({B, RM}, opt);
  at::Tensor dh_carry = at::zeros({B, C}, opt), dr_carry = at::zeros({B, RM}, opt);
  at::Tensor dc = at::zeros({B, C}, opt);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "ntm_backward", [&] {
    using T_ = scalar_t;
    const T_ e = T_(eps);
    std::vector<T_> inv(N), dws(N), dwg(N), dsim(N), kn(M), dkn(M), ds(d.ns), tmp(M), pad(N + 2 * d.S),
        pad2(N + 2 * d.S);
    std::vector<T_> mw(d.W > 1 ? (d.W - 1) * N * M : 0), er(d.W * M), ad(d.W * M), de(M), da(M);
    std::unique_ptr<bool[]> big(new bool[N]);
    for (int64_t t = T - 1; t >= 0; --t) {
      at::add_out(dr, drs[t], dr_carry);
      const T_* pt = ps[t].data_ptr<T_>();
      T_* dpt = dP[t].data_ptr<T_>();
      const T_* st = stages[t].data_ptr<T_>();
      const int64_t stage = B * K * N;
      for (int64_t b = 0; b < B; ++b) {
        const T_* p = pt + b * d.P;
        T_* dp = dpt + b * d.P;
        for (int64_t q = 0; q < d.P; ++q) dp[q] = 0;
        const T_* mp = mems[t].data_ptr<T_>() + b * N * M;
        T_* dm = dM.data_ptr<T_>() + b * N * M;
        T_* dw_all = dW.data_ptr<T_>() + b * K * N;
        const T_* w_all = ws[t + 1].data_ptr<T_>() + b * K * N;
        const T_* wprev_all = ws[t].data_ptr<T_>() + b * K * N;
        const T_* drb = dr.data_ptr<T_>() + b * RM;
        // the write heads' erase and add vectors, and the memory between write heads (recomputed)
        for (int64_t j = 0; j < d.W; ++j) {
          const T_* ea = p + K * d.per_head + j * 2 * M;
          for (int64_t m = 0; m < M; ++m) {
            er[j * M + m] = sigm(clampv(ea[m], clip));
            ad[j * M + m] = std::tanh(clampv(ea[M + m], clip));
          }
        }
        for (int64_t j = 1; j < d.W; ++j) {
          const T_* src = j == 1 ? mp : mw.data() + (j - 2) * N * M;
          T_* dst = mw.data() + (j - 1) * N * M;
          const T_* w = w_all + (d.R + j - 1) * N;
          for (int64_t i = 0; i < N; ++i)
            for (int64_t m = 0; m < M; ++m)
              dst[i * M + m] = src[i * M + m] * (T_(1) - w[i] * er[(j - 1) * M + m]) + w[i] * ad[(j - 1) * M + m];
        }
        // write backward, last head first: dM becomes the gradient of the memory before the write
        for (int64_t j = d.W - 1; j >= 0; --j) {
          const T_* mj = j == 0 ? mp : mw.data() + (j - 1) * N * M;
          const T_* w = w_all + (d.R + j) * N;
          T_* dwj = dw_all + (d.R + j) * N;
          const T_ *ej = er.data() + j * M, *aj = ad.data() + j * M;
          std::fill(de.begin(), de.end(), T_(0));
          std::fill(da.begin(), da.end(), T_(0));
          for (int64_t i = 0; i < N; ++i) {
            T_* g = dm + i * M;
            const T_* mr = mj + i * M;
            const Vec<T_> wi(w[i]), one(T_(1));
            Vec<T_> acc(T_(0));
            chunks<T_>(M, [&](int64_t m, int64_t c) {
              using V = Vec<T_>;
              const V gv = V::loadu(g + m, c), mv = V::loadu(mr + m, c), ev = V::loadu(ej + m, c);
              acc = at::vec::fmadd(gv, V::loadu(aj + m, c) - mv * ev, acc);
              (V::loadu(de.data() + m, c) - gv * mv * wi).store(de.data() + m, c);
              at::vec::fmadd(gv, wi, V::loadu(da.data() + m, c)).store(da.data() + m, c);
              (gv * (one - wi * ev)).store(g + m, c);
            });
            dwj[i] += hsum(acc);
          }
          T_* dea = dp + K * d.per_head + j * 2 * M;
          for (int64_t m = 0; m < M; ++m) {
            dea[m] = de[m] * ej[m] * (T_(1) - ej[m]);
            dea[M + m] = da[m] * (T_(1) - aj[m] * aj[m]);
          }
        }
        // read backward
        for (int64_t k = 0; k < d.R; ++k) {
          const T_* w = w_all + k * N;
          T_* dwk = dw_all + k * N;
          const T_* g = drb + k * M;
          for (int64_t i = 0; i < N; ++i) {
            dwk[i] += dot(g, mp + i * M, M);
            const Vec<T_> wi(w[i]);
            chunks<T_>(M, [&](int64_t m, int64_t c) {
              at::vec::fmadd(wi, Vec<T_>::loadu(g + m, c), Vec<T_>::loadu(dm + i * M + m, c)).store(dm + i * M + m, c);
            });
          }
        }
        // addressing backward, head by head
        row_norms(mp, N, M, e, inv.data(), big.get());
        for (int64_t k = 0; k < K; ++k) {
          const Head<T_> hd(d, p, k, clip, e);
          const int64_t off = (b * K + k) * N;
          const T_ *sim = st + off, *wc = st + stage + off, *wg = st + 2 * stage + off,
                   *wsh = st + 3 * stage + off, *lg = st + 4 * stage + off;
          const T_* w = w_all + k * N;
          const T_* wprev = wprev_all + k * N;
          T_* dwk = dw_all + k * N;
          T_* dph = dp + k * d.per_head;
          // sharpen
          const T_ dwdot = dot(dwk, w, N);
          for (int64_t i = 0; i < N; ++i) dws[i] = (dwk[i] - dwdot) * w[i];
          const T_ dgamma = dot(dws.data(), lg, N);
          for (int64_t i = 0; i < N; ++i) dws[i] *= hd.gamma / (wsh[i] + e);
          // shift
          pad_circular(dws.data(), pad.data(), N, d.S);
          pad_circular(wg, pad2.data(), N, d.S);
          for (int64_t l = 0; l < N; ++l) {
            T_ acc = 0;
            for (int64_t j = -d.S; j <= d.S; ++j) acc += pad[d.S + l + j] * hd.s[j + d.S];
            dwg[l] = acc;
          }
          for (int64_t j = -d.S; j <= d.S; ++j) ds[j + d.S] = dot(dws.data(), pad2.data() + d.S - j, N);
          T_ sds = 0;
          for (int64_t j = 0; j < d.ns; ++j) sds += ds[j] * hd.s[j];
          for (int64_t j = 0; j < d.ns; ++j) dph[M + 3 + j] = hd.s[j] * (ds[j] - sds);
          // interpolation; the previous weighting's gradient replaces this step's in dW
          const T_ wcdot = dot(dwg.data(), wc, N), dwcdot = hd.g * wcdot;
          const T_ dgate = wcdot - dot(dwg.data(), wprev, N);
          for (int64_t i = 0; i < N; ++i) dwk[i] = (T_(1) - hd.g) * dwg[i];
          // content softmax, cosine similarity and the two normalisations
          for (int64_t i = 0; i < N; ++i) dsim[i] = wc[i] * (hd.g * dwg[i] - dwcdot);  // dz
          const T_ dbeta = dot(dsim.data(), sim, N);
          for (int64_t i = 0; i < N; ++i) dsim[i] *= hd.beta;
          const T_ dss = hd.beta * dbeta;
          for (int64_t m = 0; m < M; ++m) {
            kn[m] = hd.key[m] * hd.kinv;
            dkn[m] = 0;
          }
          for (int64_t i = 0; i < N; ++i) {
            // dkn += dsim_i Mn_i; dM_i += dsim_i / |M_i| (kn - Mn_i sim_i), Mn_i = M_i / |M_i|
            const T_ c = dsim[i] * inv[i];
            const Vec<T_> cv(c), c2(c * (big[i] ? sim[i] : T_(0)) * inv[i]);
            chunks<T_>(M, [&](int64_t m, int64_t n) {
              using V = Vec<T_>;
              const V mv = V::loadu(mp + i * M + m, n);
              at::vec::fmadd(cv, mv, V::loadu(dkn.data() + m, n)).store(dkn.data() + m, n);
              T_* row = dm + i * M + m;
              (V::loadu(row, n) + cv * V::loadu(kn.data() + m, n) - c2 * mv).store(row, n);
            });
          }
          const T_ ks = hd.kbig ? dss : T_(0);
          for (int64_t m = 0; m < M; ++m) dph[m] = hd.kinv * (dkn[m] - kn[m] * ks);
          dph[M] = dbeta * dsoftplus(clampv(p[k * d.per_head + M], clip));
          dph[M + 1] = dgate * hd.g * (T_(1) - hd.g);
          dph[M + 2] = dgamma * dsoftplus(clampv(p[k * d.per_head + M + 2], clip));
        }
        if (clip > 0) {
          const T_ c = T_(clip);
          for (int64_t q = 0; q < d.P; ++q)
            if (p[q] < -c || p[q] > c) dp[q] = 0;
        }
      }
      // controller
      at::add_out(dh, dhs[t], dh_carry);
      dh.addmm_(dP[t], Wp);
      at::Tensor dat = dA[t];
      if (d.lstm) {
        const T_ *act = gates[t].data_ptr<T_>(), *cp = cs[t].data_ptr<T_>(), *cn = cs[t + 1].data_ptr<T_>(),
                 *dhp = dh.data_ptr<T_>();
        T_ *dcp = dc.data_ptr<T_>(), *dap = dat.data_ptr<T_>();
        using V = Vec<T_>;
        const V one(T_(1));
        for (int64_t b = 0; b < B; ++b) {
          const T_* ab = act + b * 4 * C;
          T_* db = dap + b * 4 * C;
          for (int64_t u = 0; u < C; u += V::size()) {
            const int64_t n = std::min<int64_t>(V::size(), C - u), q = b * C + u;
            const V i = V::loadu(ab + u, n), f = V::loadu(ab + C + u, n), g = V::loadu(ab + 2 * C + u, n),
                    o = V::loadu(ab + 3 * C + u, n), dhv = V::loadu(dhp + q, n);
            const V tc = V::loadu(cn + q, n).tanh();
            const V dct = V::loadu(dcp + q, n) + dhv * o * (one - tc * tc);
            (dct * g * i * (one - i)).store(db + u, n);
            (dct * V::loadu(cp + q, n) * f * (one - f)).store(db + C + u, n);
            (dct * i * (one - g * g)).store(db + 2 * C + u, n);
            (dhv * tc * o * (one - o)).store(db + 3 * C + u, n);
            (dct * f).store(dcp + q, n);
          }
        }
        at::mm_out(dh_carry, dat, Whh);
      } else {
        const at::Tensor h = hs[t + 1];
        at::mul_out(dat, dh, 1 - h * h);
      }
      at::mm_out(dr_carry, dat, Wr);
    }
  });
  const at::Tensor dA2 = dA.view({T * B, G}), dP2 = dP.view({T * B, d.P});
  at::Tensor dWr = at::mm(dA2.t(), rs.narrow(0, 0, T).reshape({T * B, RM}));
  at::Tensor dWhh = d.lstm ? at::mm(dA2.t(), hs.narrow(0, 0, T).reshape({T * B, C})) : at::zeros_like(Whh);
  at::Tensor dWp = at::mm(dP2.t(), hs.narrow(0, 1, T).reshape({T * B, C}));
  at::Tensor dbp = dP2.sum(0);
  return {dA, dWr, dWhh, dWp, dbp, dM, dr_carry, dW, dh_carry, dc};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqbench_recurrent, m) {
  m.def(
      "ntm_forward(Tensor xp, Tensor Wr, Tensor Whh, Tensor Wp, Tensor bp, Tensor M0, Tensor r0, Tensor w0, "
      "Tensor h0, Tensor c0, int[] dims, float clip, float eps) -> Tensor[]");
  m.def(
      "ntm_backward(Tensor dhs, Tensor drs, Tensor Wr, Tensor Whh, Tensor Wp, Tensor hs, Tensor cs, "
      "Tensor gates, Tensor rs, Tensor ps, Tensor mems, Tensor ws, Tensor stages, int[] dims, float clip, "
      "float eps) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(seqbench_recurrent, CPU, m) {
  m.impl("ntm_forward", &ntm_forward);
  m.impl("ntm_backward", &ntm_backward);
}

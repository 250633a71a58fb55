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
//                (h and r of a step side by side in one row [h | r], so that Whh and Wr are one product
//                [Whh | Wr] [h; r], forward and backward, and [h | r] is the read-out's input as it stands)
//   parameters   p = clamp(Wp h_t + bp, ±clip): key, β = softplus, g = σ, γ = 1 + softplus, s = softmax
//   content      wc = softmax_i(β cos(key, M_i))
//   interpolate  wg = g wc + (1 - g) w_{t-1}
//   shift        ws_i = Σ_{j=-S..S} wg_{(i-j) mod N} s_j
//   sharpen      w_i = (ws_i + ε)^γ / Σ_l (ws_l + ε)^γ
//   read         r_k = Σ_i w_k,i M_i          (the memory before this step's write)
//   write        M <- M ⊙ (1 - w e^T) + w a^T, write head after write head; e = σ, a = tanh
//
// Saved for the backward pass: the memory before every step (T + 1, B, M, N), slot-minor (see below), and per
// step and head the weightings of each stage (sim, wc, wg, ws, w); the rest (norms, activations of p) is
// recomputed. Without a backward to come (inference), only two steps' state is held.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include "vec_util.h"

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

using namespace seqbench_vec;


// The memory of each sequence is held slot-minor, (M, N): mem[m N + i] is channel m of slot i, so that every
// loop over the slots (similarities, norms, the write, their gradients) runs over full SIMD vectors of N
// slots. (Row-major (N, M) with the paper's M = 20 left every row two full vectors and a partial one, and a
// horizontal sum per slot.) The Python side passes M0 transposed and gets dM0 back in the same layout.

// Inverse slot norms 1 / max(|M_i|, eps) of one sequence's memory, and whether |M_i| >= eps (1 or 0; F.normalize's
// clamp: below eps the norm is a constant and passes no gradient). `sq` is scratch of N values.
template <typename T>
void norms_from_squares(const T* sq, int64_t N, T eps, T* inv, T* big) {
  const Vec<T> ev(eps), one(T(1));
  chunks<T>(N, [&](int64_t i, int64_t c) {
    const Vec<T> nrm = Vec<T>::loadu(sq + i, c).sqrt();
    nrm.ge(ev).store(big + i, c);  // 1 or 0
    (one / at::vec::maximum(nrm, ev)).store(inv + i, c);
  });
}

// sq_i = Σ_m M_mi^2 and, for each of the K keys (K x M), z_ki = Σ_m key_km M_mi: one pass over the memory,
// two vectors of slots at a time with every sum in registers (K is a template parameter for that).
template <typename T, int64_t K>
void slot_products_k(const T* mem, int64_t N, int64_t M, const T* keys, T* sq, T* z) {
  using V = Vec<T>;
  constexpr int64_t L = V::size();
  for (int64_t i = 0; i < N; i += 2 * L) {
    const int64_t c0 = std::min<int64_t>(L, N - i), c1 = std::max<int64_t>(0, std::min<int64_t>(L, N - i - L));
    V s0(T(0)), s1(T(0)), a0[K > 0 ? K : 1], a1[K > 0 ? K : 1];
    for (int64_t k = 0; k < K; ++k) a0[k] = a1[k] = V(T(0));
    for (int64_t m = 0; m < M; ++m) {
      const T* row = mem + m * N + i;
      const V x0 = V::loadu(row, c0), x1 = c1 > 0 ? V::loadu(row + L, c1) : V(T(0));
      s0 = at::vec::fmadd(x0, x0, s0);
      s1 = at::vec::fmadd(x1, x1, s1);
      for (int64_t k = 0; k < K; ++k) {
        const V kv(keys[k * M + m]);
        a0[k] = at::vec::fmadd(kv, x0, a0[k]);
        a1[k] = at::vec::fmadd(kv, x1, a1[k]);
      }
    }
    s0.store(sq + i, c0);
    if (c1 > 0) s1.store(sq + i + L, c1);
    for (int64_t k = 0; k < K; ++k) {
      a0[k].store(z + k * N + i, c0);
      if (c1 > 0) a1[k].store(z + k * N + i + L, c1);
    }
  }
}

template <typename T>
void slot_products(const T* mem, int64_t N, int64_t M, int64_t K, const T* keys, T* sq, T* z) {
  switch (K) {
    case 0: return slot_products_k<T, 0>(mem, N, M, keys, sq, z);
    case 1: return slot_products_k<T, 1>(mem, N, M, keys, sq, z);
    case 2: return slot_products_k<T, 2>(mem, N, M, keys, sq, z);
    case 3: return slot_products_k<T, 3>(mem, N, M, keys, sq, z);
    case 4: return slot_products_k<T, 4>(mem, N, M, keys, sq, z);
    default: break;
  }
  slot_products_k<T, 0>(mem, N, M, keys, sq, z);  // more heads: the norms here, the products one by one
  for (int64_t k = 0; k < K; ++k) {
    T* zk = z + k * N;
    std::fill(zk, zk + N, T(0));
    for (int64_t m = 0; m < M; ++m) {
      const Vec<T> kv(keys[k * M + m]);
      const T* row = mem + m * N;
      chunks<T>(N, [&](int64_t i, int64_t c) {
        at::vec::fmadd(kv, Vec<T>::loadu(row + i, c), Vec<T>::loadu(zk + i, c)).store(zk + i, c);
      });
    }
  }
}

// The head parameters of head k from the clamped projection p of one sequence (buffers allocated once).
template <typename T>
struct Head {
  const Dims& d;
  double clip;
  T eps, kinv = 0, beta = 0, g = 0, gamma = 0;
  bool kbig = false;
  std::vector<T> key, s, z;
  Head(const Dims& dims, double c, T e) : d(dims), clip(c), eps(e), key(dims.M), s(dims.ns), z(dims.ns) {}
  void load(const T* p_hat, int64_t k) {
    const T* ph = p_hat + k * d.per_head;
    T sq = 0;
    for (int64_t m = 0; m < d.M; ++m) {
      key[m] = clampv(ph[m], clip);
      sq += key[m] * key[m];
    }
    const T nrm = std::sqrt(sq);
    kbig = nrm >= eps;
    kinv = T(1) / std::max(nrm, eps);
    beta = softplus(clampv(ph[d.M], clip));
    g = sigm(clampv(ph[d.M + 1], clip));
    gamma = T(1) + softplus(clampv(ph[d.M + 2], clip));
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

// er = σ(clamp(ea_0..M-1)), ad = tanh(clamp(ea_M..2M-1)): one write head's erase and add vectors.
template <typename T>
inline void erase_add(const T* ea, int64_t M, double clip, T* er, T* ad) {
  using V = Vec<T>;
  const V lo{T(-clip)}, hi{T(clip)};
  chunks<T>(M, [&](int64_t m, int64_t c) {
    V x = V::loadu(ea + m, c), y = V::loadu(ea + M + m, c);
    if (clip > 0) {
      x = at::vec::clamp(x, lo, hi);
      y = at::vec::clamp(y, lo, hi);
    }
    vsigm(x).store(er + m, c);
    y.tanh().store(ad + m, c);
  });
}

// dst = src ⊙ (1 - w e^T) + w a^T in the slot-minor layout (src may be dst): one write head's erase and add.
template <typename T>
inline void write_head(const T* src, T* dst, const T* w, const T* er, const T* ad, int64_t N, int64_t M) {
  using V = Vec<T>;
  const V one(T(1));
  for (int64_t m = 0; m < M; ++m) {
    const V ev(er[m]), av(ad[m]);
    const T* s = src + m * N;
    T* o = dst + m * N;
    chunks<T>(N, [&](int64_t i, int64_t c) {
      const V wv = V::loadu(w + i, c);
      (V::loadu(s + i, c) * (one - wv * ev) + wv * av).store(o + i, c);
    });
  }
}

constexpr int64_t kMaxFusedReads = 8;  // read heads whose sums the fused read-and-write pass holds


// keep = false (inference, nothing will call the backward): the memory, weightings, stages and controller
// activations live in two rolling slots instead of T + 1, so the memory held does not grow with T beyond
// the output hr.
//
// Wc: [Whh | Wr] (G, C + R M) for the LSTM controller, Wr (G, R M) for the feed-forward one (its h does not
// feed back); hr0 (B, C + R M) = [h0 | r0]. Returns hr (T + 1, B, C + R M), rows [h_t | r_t], and what the
// backward reads.
std::vector<at::Tensor> ntm_forward(const at::Tensor& xp, const at::Tensor& Wc, const at::Tensor& Wp,
                                    const at::Tensor& bp, const at::Tensor& M0, const at::Tensor& hr0,
                                    const at::Tensor& w0, const at::Tensor& c0, at::IntArrayRef dims,
                                    double clip, double eps, bool keep) {
  const Dims d(dims);
  const int64_t T = xp.size(0), B = xp.size(1), G = xp.size(2), C = Wp.size(1);
  const int64_t N = d.N, M = d.M, K = d.K, RM = d.R * M, ld = C + RM;
  const int64_t Tk = keep ? T : 1, Tk1 = keep ? T + 1 : 2;  // slots of per-step and per-state history
  auto opt = xp.options();
  at::Tensor gates = at::empty({Tk, B, G}, opt), hr = at::empty({T + 1, B, ld}, opt);
  at::Tensor cs = at::empty({d.lstm ? Tk1 : 0, B, C}, opt);
  at::Tensor ps = at::empty({Tk, B, d.P}, opt);
  at::Tensor mems = at::empty({Tk1, B, M, N}, opt), ws = at::empty({Tk1, B, K, N}, opt);
  at::Tensor stages = at::empty({Tk, 5, B, K, N}, opt);  // sim, wc, wg, ws (shifted), log(ws + eps)
  at::Tensor norms = at::empty({Tk, 2, B, N}, opt);      // 1 / max(|M_i|, eps), and |M_i| >= eps (1 or 0)
  hr[0].copy_(hr0);
  if (d.lstm) cs[0].copy_(c0);
  mems[0].copy_(M0);
  ws[0].copy_(w0);
  const at::Tensor WcT = Wc.t(), WpT = Wp.t();
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "ntm_forward", [&] {
    using T_ = scalar_t;
    using V = Vec<T_>;
    const T_ e = T_(eps);
    std::vector<T_> sq(N), z(N), u(N), pad(N + 2 * d.S), er(M), ad(M), keys(K * M), kz(K * N);
    Head<T_> hd(d, clip, e);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t now = keep ? t : t % 2, next = keep ? t + 1 : (t + 1) % 2, step = keep ? t : 0;
      at::Tensor a = gates[step];
      const at::Tensor hr_t = hr[t], hr_n = hr[t + 1];
      T_* const hrn = hr_n.data_ptr<T_>();
      if (d.lstm) {
        at::addmm_out(a, xp[t], hr_t, WcT);
        lstm_forward_pointwise(a.data_ptr<T_>(), cs[now].data_ptr<T_>(), cs[next].data_ptr<T_>(), hrn, B, C, ld);
      } else {
        at::addmm_out(a, xp[t], hr_t.narrow(1, C, RM), WcT);
        const T_* ap = a.data_ptr<T_>();
        for (int64_t b = 0; b < B; ++b)
          chunks<T_>(C, [&](int64_t u, int64_t c) { V::loadu(ap + b * C + u, c).tanh().store(hrn + b * ld + u, c); });
      }
      at::Tensor pt_ = ps[step];
      at::addmm_out(pt_, bp, hr_n.narrow(1, 0, C), WpT);
      const T_* pt = pt_.data_ptr<T_>();
      const T_* mp_all = mems[now].data_ptr<T_>();
      T_* mn_all = mems[next].data_ptr<T_>();
      const T_* wprev_all = ws[now].data_ptr<T_>();
      T_* w_all = ws[next].data_ptr<T_>();
      T_* st = stages[step].data_ptr<T_>();
      T_* nm = norms[step].data_ptr<T_>();
      T_* r_all = hrn + C;  // row b's reads at r_all + b ld
      const int64_t stage = B * K * N;
      for (int64_t b = 0; b < B; ++b) {
        const T_* p = pt + b * d.P;
        const T_* mp = mp_all + b * N * M;
        for (int64_t k = 0; k < K; ++k)
          for (int64_t m = 0; m < M; ++m) keys[k * M + m] = clampv(p[k * d.per_head + m], clip);
        slot_products(mp, N, M, K, keys.data(), sq.data(), kz.data());  // |M_i|^2 and key_k . M_i
        T_ *const inv = nm + b * N, *const big = nm + (B + b) * N;
        norms_from_squares(sq.data(), N, e, inv, big);
        for (int64_t k = 0; k < K; ++k) {
          hd.load(p, k);
          const int64_t off = (b * K + k) * N;
          T_ *sim = st + off, *wc = st + stage + off, *wg = st + 2 * stage + off, *wsh = st + 3 * stage + off,
             *lg = st + 4 * stage + off;
          const T_* wprev = wprev_all + off;
          T_* w = w_all + off;
          const T_* zk = kz.data() + k * N;
          const V kinv(hd.kinv), beta(hd.beta), gv(hd.g), gc(T_(1) - hd.g), ev(e);
          chunks<T_>(N, [&](int64_t i, int64_t c) {
            const V sv = V::loadu(zk + i, c) * kinv * V::loadu(inv + i, c);
            sv.store(sim + i, c);
            (beta * sv).store(z.data() + i, c);
          });
          softmax(z.data(), wc, N);
          chunks<T_>(N, [&](int64_t i, int64_t c) {
            (gv * V::loadu(wc + i, c) + gc * V::loadu(wprev + i, c)).store(wg + i, c);
          });
          pad_circular(wg, pad.data(), N, d.S);  // pad[S + i] = wg[i mod N] for i in -S..N+S-1
          chunks<T_>(N, [&](int64_t i, int64_t c) {
            V acc(T_(0));
            for (int64_t j = -d.S; j <= d.S; ++j)
              acc = at::vec::fmadd(V::loadu(pad.data() + d.S + i - j, c), V(hd.s[j + d.S]), acc);
            acc.store(wsh + i, c);
            (acc + ev).log().store(lg + i, c);  // (ws + eps)^γ = exp(γ log(ws + eps))
          });
          exp_affine(lg, u.data(), N, hd.gamma, T_(0));
          const T_ rt = T_(1) / vsum(u.data(), N);
          chunks<T_>(N, [&](int64_t i, int64_t c) { (V::loadu(u.data() + i, c) * V(rt)).store(w + i, c); });
        }
        // read (memory before the write), then write
        T_* mn = mn_all + b * N * M;
        T_* rb = r_all + b * ld;
        int64_t first = 0;  // the write heads left to do after the read
        if (d.W > 0 && d.R <= kMaxFusedReads) {
          // the reads and the first write head in one pass over the memory
          erase_add(p + K * d.per_head, M, clip, er.data(), ad.data());
          const T_* ww = w_all + (b * K + d.R) * N;
          const T_* wr = w_all + b * K * N;
          const V one(T_(1));
          for (int64_t m = 0; m < M; ++m) {
            const T_* row = mp + m * N;
            T_* o = mn + m * N;
            const V ev(er[m]), av(ad[m]);
            V racc[kMaxFusedReads];
            for (int64_t k = 0; k < d.R; ++k) racc[k] = V(T_(0));
            chunks<T_>(N, [&](int64_t i, int64_t c) {
              const V x = V::loadu(row + i, c), wv = V::loadu(ww + i, c);
              for (int64_t k = 0; k < d.R; ++k) racc[k] = at::vec::fmadd(V::loadu(wr + k * N + i, c), x, racc[k]);
              (x * (one - wv * ev) + wv * av).store(o + i, c);
            });
            for (int64_t k = 0; k < d.R; ++k) rb[k * M + m] = hsum(racc[k]);
          }
          first = 1;
        } else {
          for (int64_t k = 0; k < d.R; ++k)
            for (int64_t m = 0; m < M; ++m) rb[k * M + m] = dot(w_all + (b * K + k) * N, mp + m * N, N);
        }
        for (int64_t j = first; j < d.W; ++j) {
          erase_add(p + K * d.per_head + j * 2 * M, M, clip, er.data(), ad.data());
          write_head(j == 0 ? mp : mn, mn, w_all + (b * K + d.R + j) * N, er.data(), ad.data(), N, M);
        }
        if (d.W == 0) std::copy(mp, mp + N * M, mn);
      }
    }
  });
  return {hr, cs, gates, ps, mems, ws, stages, norms};
}

// Backward through time. dhr (T, B, C + R M) reaches the outputs [h_t | r_t], t = 1..T. Returns the gradients
// of xp, Wc, Wp, bp, M0 (slot-minor, as M0), hr0, w0, c0.
std::vector<at::Tensor> ntm_backward(const at::Tensor& dhr, const at::Tensor& Wc, const at::Tensor& Wp,
                                     const at::Tensor& hr, const at::Tensor& cs, const at::Tensor& gates,
                                     const at::Tensor& ps, const at::Tensor& mems, const at::Tensor& ws,
                                     const at::Tensor& stages, const at::Tensor& norms, at::IntArrayRef dims,
                                     double clip, double eps) {
  const Dims d(dims);
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), C = Wp.size(1);
  const int64_t N = d.N, M = d.M, K = d.K, RM = d.R * M;
  auto opt = gates.options();
  at::Tensor dA = at::empty({T, B, G}, opt), dP = at::empty({T, B, d.P}, opt);
  at::Tensor dM = at::zeros({B, M, N}, opt), dW = at::zeros({B, K, N}, opt);
  at::Tensor dh = at::empty({B, C}, opt), dr = at::empty({B, RM}, opt);
  at::Tensor carry = at::zeros({B, C + RM}, opt);  // the gradient reaching [h_t | r_t] from step t + 1
  at::Tensor dc = at::zeros({B, C}, opt);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "ntm_backward", [&] {
    using T_ = scalar_t;
    using V = Vec<T_>;
    const T_ e = T_(eps);
    const V one(T_(1));
    std::vector<T_> dws(N), dwg(N), dsim(N), cc(N), cc2(N), kn(M), dkn(M), ds(d.ns), pad(N + 2 * d.S),
        pad2(N + 2 * d.S);
    std::vector<T_> mw(d.W > 1 ? (d.W - 1) * N * M : 0), er(d.W * M), ad(d.W * M), de(M), da(M);
    Head<T_> hd(d, clip, e);
    T_* const dm_all = dM.data_ptr<T_>();
    T_* const dw_base = dW.data_ptr<T_>();
    for (int64_t t = T - 1; t >= 0; --t) {
      at::add_out(dr, dhr[t].narrow(1, C, RM), carry.narrow(1, C, RM));
      const T_* pt = ps[t].data_ptr<T_>();
      T_* dpt = dP[t].data_ptr<T_>();
      const T_* st = stages[t].data_ptr<T_>();
      const T_* nm = norms[t].data_ptr<T_>();
      const T_* mems_t = mems[t].data_ptr<T_>();
      const T_* ws_next = ws[t + 1].data_ptr<T_>();
      const T_* ws_now = ws[t].data_ptr<T_>();
      const T_* dr_all = dr.data_ptr<T_>();
      const int64_t stage = B * K * N;
      for (int64_t b = 0; b < B; ++b) {
        const T_* p = pt + b * d.P;
        T_* dp = dpt + b * d.P;
        for (int64_t q = 0; q < d.P; ++q) dp[q] = 0;
        const T_* mp = mems_t + b * N * M;
        T_* dm = dm_all + b * N * M;
        T_* dw_all = dw_base + b * K * N;
        const T_* w_all = ws_next + b * K * N;
        const T_* wprev_all = ws_now + b * K * N;
        const T_* drb = dr_all + b * RM;
        // the write heads' erase and add vectors, and the memory between write heads (recomputed)
        for (int64_t j = 0; j < d.W; ++j) {
          erase_add(p + K * d.per_head + j * 2 * M, M, clip, er.data() + j * M, ad.data() + j * M);
        }
        for (int64_t j = 1; j < d.W; ++j) {
          const T_* src = j == 1 ? mp : mw.data() + (j - 2) * N * M;
          write_head(src, mw.data() + (j - 1) * N * M, w_all + (d.R + j - 1) * N, er.data() + (j - 1) * M,
                     ad.data() + (j - 1) * M, N, M);
        }
        // write backward, last head first: dM becomes the gradient of the memory before the write
        for (int64_t j = d.W - 1; j >= 0; --j) {
          const T_* mj = j == 0 ? mp : mw.data() + (j - 1) * N * M;
          const T_* w = w_all + (d.R + j) * N;
          T_* dwj = dw_all + (d.R + j) * N;
          const T_ *ej = er.data() + j * M, *aj = ad.data() + j * M;
          for (int64_t m = 0; m < M; ++m) {
            T_* g = dm + m * N;
            const T_* mr = mj + m * N;
            const V ev(ej[m]), av(aj[m]);
            V de_acc(T_(0)), da_acc(T_(0));
            chunks<T_>(N, [&](int64_t i, int64_t c) {
              const V gv = V::loadu(g + i, c), mv = V::loadu(mr + i, c), wv = V::loadu(w + i, c);
              at::vec::fmadd(gv, av - mv * ev, V::loadu(dwj + i, c)).store(dwj + i, c);
              de_acc = at::vec::fmadd(gv * mv, wv, de_acc);
              da_acc = at::vec::fmadd(gv, wv, da_acc);
              (gv * (one - wv * ev)).store(g + i, c);
            });
            de[m] = -hsum(de_acc);
            da[m] = hsum(da_acc);
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
          for (int64_t m = 0; m < M; ++m) {
            const V gm(g[m]);
            const T_* row = mp + m * N;
            T_* drow = dm + m * N;
            chunks<T_>(N, [&](int64_t i, int64_t c) {
              at::vec::fmadd(gm, V::loadu(row + i, c), V::loadu(dwk + i, c)).store(dwk + i, c);
              at::vec::fmadd(gm, V::loadu(w + i, c), V::loadu(drow + i, c)).store(drow + i, c);
            });
          }
        }
        // addressing backward, head by head
        const T_ *const inv = nm + b * N, *const big = nm + (B + b) * N;  // saved by the forward
        for (int64_t k = 0; k < K; ++k) {
          hd.load(p, k);
          const int64_t off = (b * K + k) * N;
          const T_ *sim = st + off, *wc = st + stage + off, *wg = st + 2 * stage + off,
                   *wsh = st + 3 * stage + off, *lg = st + 4 * stage + off;
          const T_* w = w_all + k * N;
          const T_* wprev = wprev_all + k * N;
          T_* dwk = dw_all + k * N;
          T_* dph = dp + k * d.per_head;
          // sharpen
          const V dwdot(dot(dwk, w, N)), ev(e), gamma(hd.gamma);
          chunks<T_>(N, [&](int64_t i, int64_t c) {
            ((V::loadu(dwk + i, c) - dwdot) * V::loadu(w + i, c)).store(dws.data() + i, c);
          });
          const T_ dgamma = dot(dws.data(), lg, N);
          chunks<T_>(N, [&](int64_t i, int64_t c) {
            (V::loadu(dws.data() + i, c) * gamma / (V::loadu(wsh + i, c) + ev)).store(dws.data() + i, c);
          });
          // shift
          pad_circular(dws.data(), pad.data(), N, d.S);
          pad_circular(wg, pad2.data(), N, d.S);
          chunks<T_>(N, [&](int64_t l, int64_t c) {
            V acc(T_(0));
            for (int64_t j = -d.S; j <= d.S; ++j)
              acc = at::vec::fmadd(V::loadu(pad.data() + d.S + l + j, c), V(hd.s[j + d.S]), acc);
            acc.store(dwg.data() + l, c);
          });
          for (int64_t j = -d.S; j <= d.S; ++j) ds[j + d.S] = dot(dws.data(), pad2.data() + d.S - j, N);
          T_ sds = 0;
          for (int64_t j = 0; j < d.ns; ++j) sds += ds[j] * hd.s[j];
          for (int64_t j = 0; j < d.ns; ++j) dph[M + 3 + j] = hd.s[j] * (ds[j] - sds);
          // interpolation; the previous weighting's gradient replaces this step's in dW
          const T_ wcdot = dot(dwg.data(), wc, N), dwcdot = hd.g * wcdot;
          const T_ dgate = wcdot - dot(dwg.data(), wprev, N);
          const V gv(hd.g), gc(T_(1) - hd.g), dwcv(dwcdot), beta(hd.beta);
          chunks<T_>(N, [&](int64_t i, int64_t c) {
            const V dg = V::loadu(dwg.data() + i, c);
            (gc * dg).store(dwk + i, c);
            (V::loadu(wc + i, c) * (gv * dg - dwcv)).store(dsim.data() + i, c);  // dz
          });
          // content softmax, cosine similarity and the two normalisations
          const T_ dbeta = dot(dsim.data(), sim, N);
          const T_ dss = hd.beta * dbeta;
          // dkn += c_i Mn_i |M_i|; dM_i += c_i (kn - Mn_i sim_i), c_i = β dz_i / |M_i|, Mn_i = M_i / |M_i|
          chunks<T_>(N, [&](int64_t i, int64_t c) {
            const V iv = V::loadu(inv + i, c), cv = beta * V::loadu(dsim.data() + i, c) * iv;
            cv.store(cc.data() + i, c);
            (cv * V::loadu(sim + i, c) * V::loadu(big + i, c) * iv).store(cc2.data() + i, c);
          });
          for (int64_t m = 0; m < M; ++m) {
            kn[m] = hd.key[m] * hd.kinv;
            const V knv(kn[m]);
            const T_* row = mp + m * N;
            T_* drow = dm + m * N;
            V acc(T_(0));
            chunks<T_>(N, [&](int64_t i, int64_t c) {
              const V cv = V::loadu(cc.data() + i, c), mv = V::loadu(row + i, c);
              acc = at::vec::fmadd(cv, mv, acc);
              (V::loadu(drow + i, c) + cv * knv - V::loadu(cc2.data() + i, c) * mv).store(drow + i, c);
            });
            dkn[m] = hsum(acc);
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
      at::add_out(dh, dhr[t].narrow(1, 0, C), carry.narrow(1, 0, C));
      dh.addmm_(dP[t], Wp);
      at::Tensor dat = dA[t];
      if (d.lstm) {
        const T_ *act = gates[t].data_ptr<T_>(), *cp = cs[t].data_ptr<T_>(), *cn = cs[t + 1].data_ptr<T_>(),
                 *dhp = dh.data_ptr<T_>();
        T_ *dcp = dc.data_ptr<T_>(), *dap = dat.data_ptr<T_>();
        lstm_backward_pointwise(act, cp, cn, dhp, dcp, dap, B, C);
        at::mm_out(carry, dat, Wc);  // [dh | dr] of step t - 1 in one product
      } else {
        const at::Tensor h = hr[t + 1].narrow(1, 0, C);
        at::mul_out(dat, dh, 1 - h * h);
        carry.narrow(1, C, RM).copy_(at::mm(dat, Wc));  // h does not feed back: its part stays zero
      }
    }
  });
  const at::Tensor dA2 = dA.view({T * B, G}), dP2 = dP.view({T * B, d.P});
  const at::Tensor before = hr.narrow(0, 0, T).reshape({T * B, C + RM});
  at::Tensor dWc = at::mm(dA2.t(), d.lstm ? before : before.narrow(1, C, RM));
  at::Tensor dWp = at::mm(dP2.t(), hr.narrow(0, 1, T).reshape({T * B, C + RM}).narrow(1, 0, C));
  at::Tensor dbp = dP2.sum(0);
  return {dA, dWc, dWp, dbp, dM, carry, dW, dc};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqbench_recurrent, m) {
  m.def(
      "ntm_forward(Tensor xp, Tensor Wc, Tensor Wp, Tensor bp, Tensor M0, Tensor hr0, Tensor w0, Tensor c0, "
      "int[] dims, float clip, float eps, bool keep) -> Tensor[]");
  m.def(
      "ntm_backward(Tensor dhr, Tensor Wc, Tensor Wp, Tensor hr, Tensor cs, Tensor gates, Tensor ps, "
      "Tensor mems, Tensor ws, Tensor stages, Tensor norms, int[] dims, float clip, float eps) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(seqbench_recurrent, CPU, m) {
  m.impl("ntm_forward", &ntm_forward);
  m.impl("ntm_backward", &ntm_backward);
}

// The Differentiable Neural Computer's time loop (models/dnc.py), forward and hand-written backward, in C++.
//
// `DNC.step` (the Methods' equations through autograd) is the specification; tests/test_dnc_fast.py checks
// this loop against the loop over it in float64: outputs, the final state, and the gradient of every input,
// parameter and part of the initial state. Through autograd a step is ~80 small ATen ops forward and as many
// backward over (batch, slots); here the controller's and the interface's products stay ATen calls (BLAS)
// and everything between them, per sequence, is plain loops over its (N, W) memory and (N, N) links.
//
// Per step t and sequence (R read heads, one write head; memory row-major (N, W), links (N, N)):
//   controller   a = xp_t + [Whh | Wr] [h_{t-1}; r_{t-1}]; LSTM cell -> h_t, c_t (rows [h | r] as the NTM's)
//   interface    ξ = clamp(Wξ h_t + bξ, ±clip): read keys, read strengths (1 + softplus), write key and
//                strength, erase (σ), write vector, free gates (σ), allocation and write gates (σ), read
//                modes (softmax over backward, content, forward per head)
//   usage        ψ = Π_r (1 - f_r w^r_{t-1,r});  u = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) ψ
//   allocation   s = ε + (1 - ε) u sorted ascending (at::sort over the batch, the reference's sort, so that
//                ties, as in an empty memory, fall the same way); a[φ_j] = (1 - s_j) Π_{i<j} s_i
//   write        w^w = g^w (g^a a + (1 - g^a) C(M_{t-1}, k^w, β^w));  M = M_{t-1} ⊙ (1 - w^w eᵀ) + w^w vᵀ
//   links        L[i,j] = (1 - w^w_i - w^w_j) L_{t-1}[i,j] + w^w_i p_{t-1,j} (i ≠ j), L[i,i] = 0
//   precedence   p = (1 - Σ w^w) p_{t-1} + w^w
//   read         w^r = π_b L_tᵀ w^r_{t-1} + π_c C(M_t, k^r, β^r) + π_f L_t w^r_{t-1};  r = M_tᵀ w^r
// with C(M, k, β) = softmax_i(β k̂·M̂_i), x̂ = x / max(|x|, eps) (F.normalize).
//
// Saved for the backward pass: the state after every step (memory, links, usage, precedence, weightings),
// the clamped-before interface, the sort's order; the rest (activations, norms, content weightings, the
// link products) is recomputed per step. Without a backward to come only two steps' state is held.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include "vec_util.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace {

using namespace seqbench_vec;

constexpr double kAllocEps = 1e-6;  // dnc._EPS: usage squeezed into [ε, 1] before the allocation's product

// The interface's layout (DNC.sizes): [rk R W | rs R | wk W | ws 1 | erase W | wv W | free R | ga 1 | gw 1 |
// modes 3R].
struct Dims {
  int64_t N, W, R, rk, rs, wk, ws, er, wv, fr, ga, gw, md, P;
  explicit Dims(at::IntArrayRef d) {
    TORCH_CHECK(d.size() == 3, "dnc: expected dims N, W, R");
    N = d[0];
    W = d[1];
    R = d[2];
    rk = 0;
    rs = R * W;
    wk = rs + R;
    ws = wk + W;
    er = ws + 1;
    wv = er + W;
    fr = wv + W;
    ga = fr + R;
    gw = ga + 1;
    md = gw + 1;
    P = md + 3 * R;
  }
};

// One sequence's interface after the clamp and the activations, and the per-step quantities the forward
// computes and the backward recomputes.
template <typename T>
struct Step {
  const Dims& d;
  T eps;
  std::vector<T> xi, beta_r, e, f, pi, kinv_r, kbig_r;  // keys stay in xi (no activation)
  T beta_w = 0, ga = 0, gw = 0, kinv_w = 0, kbig_w = 0;
  // scratch over the slots
  std::vector<T> inv_p, big_p, inv_n, big_n, psi, alloc, wc, simw, fwd, bwd, rc, simr, z;
  Step(const Dims& dims, T e_)
      : d(dims), eps(e_), xi(dims.P), beta_r(dims.R), e(dims.W), f(dims.R), pi(3 * dims.R), kinv_r(dims.R),
        kbig_r(dims.R), inv_p(dims.N), big_p(dims.N), inv_n(dims.N), big_n(dims.N), psi(dims.N),
        alloc(dims.N), wc(dims.N), simw(dims.N), fwd(dims.R * dims.N), bwd(dims.R * dims.N),
        rc(dims.R * dims.N), simr(dims.R * dims.N), z(dims.N) {}

  void interface(const T* raw, double clip) {
    const int64_t R = d.R, W = d.W;
    for (int64_t q = 0; q < d.P; ++q) xi[q] = clampv(raw[q], clip);
    for (int64_t r = 0; r < R; ++r) {
      beta_r[r] = T(1) + softplus(xi[d.rs + r]);
      f[r] = sigm(xi[d.fr + r]);
      softmax(xi.data() + d.md + 3 * r, pi.data() + 3 * r, 3);
      key_norm(xi.data() + d.rk + r * W, kinv_r[r], kbig_r[r]);
    }
    for (int64_t k = 0; k < W; ++k) e[k] = sigm(xi[d.er + k]);
    beta_w = T(1) + softplus(xi[d.ws]);
    ga = sigm(xi[d.ga]);
    gw = sigm(xi[d.gw]);
    key_norm(xi.data() + d.wk, kinv_w, kbig_w);
  }

  // 1 / max(|k|, eps) and whether |k| >= eps (F.normalize's clamp: below eps no gradient through the norm)
  void key_norm(const T* k, T& inv, T& big) const {
    const T n = std::sqrt(dot(k, k, d.W));
    big = n >= eps ? T(1) : T(0);
    inv = T(1) / std::max(n, eps);
  }

  // 1 / max(|M_i|, eps) and whether |M_i| >= eps, for the N rows of mem (N, W)
  void row_norms(const T* mem, T* inv, T* big) const {
    for (int64_t i = 0; i < d.N; ++i) key_norm(mem + i * d.W, inv[i], big[i]);
  }

  // sim_i = k̂·M̂_i, w = softmax(β sim)
  void content(const T* mem, const T* inv, const T* key, T kinv, T beta, T* sim, T* w) {
    for (int64_t i = 0; i < d.N; ++i) {
      sim[i] = dot(key, mem + i * d.W, d.W) * kinv * inv[i];
      z[i] = beta * sim[i];
    }
    softmax(z.data(), w, d.N);
  }

  // ψ_i = Π_r (1 - f_r w^r_{t-1}[r, i])
  void retention(const T* wrp) {
    for (int64_t i = 0; i < d.N; ++i) {
      T q = 1;
      for (int64_t r = 0; r < d.R; ++r) q *= T(1) - f[r] * wrp[r * d.N + i];
      psi[i] = q;
    }
  }

  // the allocation weighting from the sorted squeezed usage s and its order
  void allocation(const T* s, const int64_t* order) {
    T before = 1;
    for (int64_t j = 0; j < d.N; ++j) {
      alloc[order[j]] = (T(1) - s[j]) * before;
      before *= s[j];
    }
  }

  // the link products: fwd[r, i] = Σ_j L[i,j] w[r,j], bwd[r, j] = Σ_i w[r,i] L[i,j]
  void link_reads(const T* L, const T* wrp) {
    using V = Vec<T>;
    const int64_t N = d.N;
    std::fill(bwd.begin(), bwd.end(), T(0));
    for (int64_t r = 0; r < d.R; ++r) {
      const T* w = wrp + r * N;
      T* bw = bwd.data() + r * N;
      for (int64_t i = 0; i < N; ++i) {
        const T* Li = L + i * N;
        fwd[r * N + i] = dot(Li, w, N);
        const V wi(w[i]);
        chunks<T>(N, [&](int64_t j, int64_t c) {
          at::vec::fmadd(wi, V::loadu(Li + j, c), V::loadu(bw + j, c)).store(bw + j, c);
        });
      }
    }
  }
};

// g_k and g_M (added into gk, gmem) of sim_i = k̂·M̂_i given g_sim, through both normalisations.
template <typename T>
void content_backward(const Dims& d, const T* mem, const T* inv, const T* big, const T* key, T kinv, T kbig,
                      const T* gsim, T* gk, T* gmem, T* scratch) {
  using V = Vec<T>;
  const int64_t N = d.N, W = d.W;
  T* gkh = scratch;  // W values: g_k̂
  std::fill(gkh, gkh + W, T(0));
  for (int64_t i = 0; i < N; ++i) {
    const T* row = mem + i * W;
    T* grow = gmem + i * W;
    const V c(gsim[i] * inv[i]);  // g_sim_i / |M_i|, times M_i gives g_sim_i M̂_i
    // g_M̂_i = g_sim_i k̂; g_M_i = (g_M̂_i - M̂_i (M̂_i·g_M̂_i)) / |M_i| (or g_M̂_i / eps below eps)
    const T sim_dot = big[i] * gsim[i] * kinv * dot(key, row, W) * inv[i] * inv[i];  // (M̂_i·g_M̂_i) / |M_i|
    const V a(inv[i] * gsim[i] * kinv), m(sim_dot * inv[i]);
    chunks<T>(W, [&](int64_t k, int64_t n) {
      const V x = V::loadu(row + k, n);
      at::vec::fmadd(c, x, V::loadu(gkh + k, n)).store(gkh + k, n);
      (V::loadu(grow + k, n) + a * V::loadu(key + k, n) - m * x).store(grow + k, n);
    });
  }
  const T kdot = kbig * kinv * dot(key, gkh, W) * kinv;  // (k̂·g_k̂) / |k|
  for (int64_t k = 0; k < W; ++k) gk[k] += kinv * gkh[k] - kdot * key[k] * kinv;
}

// g_z of w = softmax(z) given g_w: w ⊙ (g_w - w·g_w)
template <typename T>
void softmax_backward(const T* w, const T* gw, T* gz, int64_t n) {
  const T s = dot(w, gw, n);
  for (int64_t i = 0; i < n; ++i) gz[i] = w[i] * (gw[i] - s);
}

// keep = false (inference): the state lives in two rolling slots instead of T + 1.
//
// Wc = [Whh | Wr] (4C, C + R W); hr0 = [h0 | r0] (B, C + R W). Returns hr (T + 1, B, C + R W), rows [h_t | r_t],
// and the history the backward reads: cs, gates (activations), xis (the interface before the clamp), mems
// (B, N, W), links (B, N, N), usage, precedence, ww (B, N), wr (B, R, N), order (the allocation's sort).
std::vector<at::Tensor> dnc_forward(const at::Tensor& xp, const at::Tensor& Wc, const at::Tensor& Wi,
                                    const at::Tensor& bi, const at::Tensor& hr0, const at::Tensor& c0,
                                    const at::Tensor& M0, const at::Tensor& L0, const at::Tensor& u0,
                                    const at::Tensor& p0, const at::Tensor& ww0, const at::Tensor& wr0,
                                    at::IntArrayRef dims, double clip, double eps, bool keep) {
  const Dims d(dims);
  const int64_t T = xp.size(0), B = xp.size(1), G = xp.size(2), C = Wi.size(1);
  const int64_t N = d.N, W = d.W, R = d.R, RW = R * W, ld = C + RW;
  TORCH_CHECK(G == 4 * C && Wi.size(0) == d.P, "dnc: inconsistent shapes");
  const int64_t Tk = keep ? T : 1, Tk1 = keep ? T + 1 : 2;
  auto opt = xp.options();
  at::Tensor hr = at::empty({T + 1, B, ld}, opt), cs = at::empty({Tk1, B, C}, opt);
  at::Tensor gates = at::empty({Tk, B, G}, opt), xis = at::empty({Tk, B, d.P}, opt);
  at::Tensor mems = at::empty({Tk1, B, N, W}, opt), links = at::empty({Tk1, B, N, N}, opt);
  at::Tensor usage = at::empty({Tk1, B, N}, opt), prec = at::empty({Tk1, B, N}, opt);
  at::Tensor wws = at::empty({Tk1, B, N}, opt), wrs = at::empty({Tk1, B, R, N}, opt);
  at::Tensor orders = at::empty({Tk, B, N}, opt.dtype(at::kLong)), sorted = at::empty({Tk, B, N}, opt);
  hr[0].copy_(hr0);
  cs[0].copy_(c0);
  mems[0].copy_(M0);
  links[0].copy_(L0);
  usage[0].copy_(u0);
  prec[0].copy_(p0);
  wws[0].copy_(ww0);
  wrs[0].copy_(wr0);
  at::Tensor squeezed = at::empty({B, N}, opt);
  const at::Tensor WcT = Wc.t(), WiT = Wi.t();
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "dnc_forward", [&] {
    using T_ = scalar_t;
    using V = Vec<T_>;
    const T_ ae = T_(kAllocEps);
    std::vector<Step<T_>> steps;
    steps.reserve(B);
    for (int64_t b = 0; b < B; ++b) steps.emplace_back(d, T_(eps));
    for (int64_t t = 0; t < T; ++t) {
      const int64_t now = keep ? t : t % 2, next = keep ? t + 1 : (t + 1) % 2, step = keep ? t : 0;
      at::Tensor a = gates[step];
      const at::Tensor hr_n = hr[t + 1];
      T_* const hrn = hr_n.data_ptr<T_>();
      at::addmm_out(a, xp[t], hr[t], WcT);
      lstm_forward_pointwise(a.data_ptr<T_>(), cs[now].data_ptr<T_>(), cs[next].data_ptr<T_>(), hrn, B, C, ld);
      at::Tensor xi_t = xis[step];
      at::addmm_out(xi_t, bi, hr_n.narrow(1, 0, C), WiT);
      const T_* xr = xi_t.data_ptr<T_>();
      const T_ *Mp_all = mems[now].data_ptr<T_>(), *Lp_all = links[now].data_ptr<T_>(),
               *up_all = usage[now].data_ptr<T_>(), *pp_all = prec[now].data_ptr<T_>(),
               *wwp_all = wws[now].data_ptr<T_>(), *wrp_all = wrs[now].data_ptr<T_>();
      T_ *M_all = mems[next].data_ptr<T_>(), *L_all = links[next].data_ptr<T_>(),
         *u_all = usage[next].data_ptr<T_>(), *p_all = prec[next].data_ptr<T_>(),
         *ww_all = wws[next].data_ptr<T_>(), *wr_all = wrs[next].data_ptr<T_>();
      T_* sq = squeezed.data_ptr<T_>();
      // usage, then the batch's sort (the reference's kernel: the same order for ties), then the rest
      for (int64_t b = 0; b < B; ++b) {
        Step<T_>& s = steps[b];
        s.interface(xr + b * d.P, clip);
        s.retention(wrp_all + b * R * N);
        const T_ *up = up_all + b * N, *wwp = wwp_all + b * N;
        T_* u = u_all + b * N;
        for (int64_t i = 0; i < N; ++i) {
          u[i] = (up[i] + wwp[i] - up[i] * wwp[i]) * s.psi[i];
          sq[b * N + i] = ae + (T_(1) - ae) * u[i];
        }
      }
      at::Tensor sorted_t = sorted[step], order_t = orders[step];
      at::sort_out(sorted_t, order_t, squeezed, -1, false);
      const T_* srt = sorted_t.data_ptr<T_>();
      const int64_t* ord = order_t.data_ptr<int64_t>();
      for (int64_t b = 0; b < B; ++b) {
        Step<T_>& s = steps[b];
        const T_ *Mp = Mp_all + b * N * W, *Lp = Lp_all + b * N * N, *pp = pp_all + b * N,
                 *wrp = wrp_all + b * R * N;
        T_ *M = M_all + b * N * W, *L = L_all + b * N * N, *p = p_all + b * N, *ww = ww_all + b * N,
           *wr = wr_all + b * R * N;
        s.allocation(srt + b * N, ord + b * N);
        if (t == 0) {
          s.row_norms(Mp, s.inv_p.data(), s.big_p.data());
        } else {  // M_{t-1}'s norms: the previous step computed them for its reads
          std::swap(s.inv_p, s.inv_n);
          std::swap(s.big_p, s.big_n);
        }
        s.content(Mp, s.inv_p.data(), s.xi.data() + d.wk, s.kinv_w, s.beta_w, s.simw.data(), s.wc.data());
        T_ sum_w = 0;
        for (int64_t i = 0; i < N; ++i) {
          ww[i] = s.gw * (s.ga * s.alloc[i] + (T_(1) - s.ga) * s.wc[i]);
          sum_w += ww[i];
        }
        const T_* v = s.xi.data() + d.wv;
        const V one(T_(1));
        for (int64_t i = 0; i < N; ++i) {
          const V wi(ww[i]);
          chunks<T_>(W, [&](int64_t k, int64_t c) {
            (V::loadu(Mp + i * W + k, c) * (one - wi * V::loadu(s.e.data() + k, c)) + wi * V::loadu(v + k, c))
                .store(M + i * W + k, c);
          });
          const V keep_i(T_(1) - ww[i]);
          chunks<T_>(N, [&](int64_t j, int64_t c) {
            ((keep_i - V::loadu(ww + j, c)) * V::loadu(Lp + i * N + j, c) + wi * V::loadu(pp + j, c))
                .store(L + i * N + j, c);
          });
          L[i * N + i] = 0;
        }
        for (int64_t j = 0; j < N; ++j) p[j] = (T_(1) - sum_w) * pp[j] + ww[j];
        s.link_reads(L, wrp);
        s.row_norms(M, s.inv_n.data(), s.big_n.data());
        T_* rb = hrn + b * ld + C;
        for (int64_t r = 0; r < R; ++r) {
          T_ *rc = s.rc.data() + r * N, *wrr = wr + r * N;
          s.content(M, s.inv_n.data(), s.xi.data() + d.rk + r * W, s.kinv_r[r], s.beta_r[r],
                    s.simr.data() + r * N, rc);
          const T_ *pi = s.pi.data() + 3 * r, *fw = s.fwd.data() + r * N, *bw = s.bwd.data() + r * N;
          for (int64_t i = 0; i < N; ++i) wrr[i] = pi[0] * bw[i] + pi[1] * rc[i] + pi[2] * fw[i];
          T_* rr = rb + r * W;
          std::fill(rr, rr + W, T_(0));
          for (int64_t i = 0; i < N; ++i) {
            const V wi(wrr[i]);
            chunks<T_>(W, [&](int64_t k, int64_t c) {
              at::vec::fmadd(wi, V::loadu(M + i * W + k, c), V::loadu(rr + k, c)).store(rr + k, c);
            });
          }
        }
      }
    }
  });
  return {hr, cs, gates, xis, mems, links, usage, prec, wws, wrs, orders, sorted};
}

// Backward through time. dhr (T, B, C + R W) reaches the rows [h_t | r_t], t = 1..T (the final h and r's
// gradients included); dcT, dMT, dLT, duT, dpT, dwwT, dwrT the final state's. Returns the gradients of xp, Wc,
// Wi, bi and of the initial state: hr0, c0, M0, L0, u0, p0, ww0, wr0.
std::vector<at::Tensor> dnc_backward(const at::Tensor& dhr, const at::Tensor& dcT, const at::Tensor& dMT,
                                     const at::Tensor& dLT, const at::Tensor& duT, const at::Tensor& dpT,
                                     const at::Tensor& dwwT, const at::Tensor& dwrT, const at::Tensor& Wc,
                                     const at::Tensor& Wi, const at::Tensor& hr, const at::Tensor& cs,
                                     const at::Tensor& gates, const at::Tensor& xis, const at::Tensor& mems,
                                     const at::Tensor& links, const at::Tensor& usage, const at::Tensor& prec,
                                     const at::Tensor& wws, const at::Tensor& wrs, const at::Tensor& orders,
                                     const at::Tensor& sorted, at::IntArrayRef dims, double clip, double eps) {
  const Dims d(dims);
  const int64_t T = gates.size(0), B = gates.size(1), G = gates.size(2), C = Wi.size(1);
  const int64_t N = d.N, W = d.W, R = d.R, RW = R * W;
  auto opt = gates.options();
  at::Tensor dA = at::empty({T, B, G}, opt), dXi = at::empty({T, B, d.P}, opt);
  at::Tensor gM = dMT.clone(), gL = dLT.clone(), gu = duT.clone(), gp = dpT.clone(), gww = dwwT.clone(),
             gwr = dwrT.clone(), dc = dcT.clone();
  at::Tensor dh = at::empty({B, C}, opt), dr = at::empty({B, RW}, opt);
  at::Tensor carry = at::zeros({B, C + RW}, opt);  // the gradient reaching [h_t | r_t] from step t + 1
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "dnc_backward", [&] {
    using T_ = scalar_t;
    using V = Vec<T_>;
    const V one(T_(1));
    Step<T_> s(d, T_(eps));
    std::vector<T_> gwr_t(R * N), gwrp(R * N), gsim(N), gz(N), gfwd(R * N), gbwd(R * N), galloc(N), gwc(N), gkh(W);
    T_ *const gM_all = gM.data_ptr<T_>(), *const gL_all = gL.data_ptr<T_>(), *const gu_all = gu.data_ptr<T_>(),
               *const gp_all = gp.data_ptr<T_>(), *const gww_all = gww.data_ptr<T_>(),
               *const gwr_all = gwr.data_ptr<T_>();
    for (int64_t t = T - 1; t >= 0; --t) {
      at::add_out(dr, dhr[t].narrow(1, C, RW), carry.narrow(1, C, RW));
      const T_* xr = xis[t].data_ptr<T_>();
      T_* dxt = dXi[t].data_ptr<T_>();
      const T_ *Mp_all = mems[t].data_ptr<T_>(), *M_all = mems[t + 1].data_ptr<T_>(),
               *Lp_all = links[t].data_ptr<T_>(), *L_all = links[t + 1].data_ptr<T_>(),
               *up_all = usage[t].data_ptr<T_>(), *pp_all = prec[t].data_ptr<T_>(),
               *wwp_all = wws[t].data_ptr<T_>(), *ww_all = wws[t + 1].data_ptr<T_>(),
               *wrp_all = wrs[t].data_ptr<T_>(), *wr_all = wrs[t + 1].data_ptr<T_>(),
               *srt_all = sorted[t].data_ptr<T_>(), *dr_all = dr.data_ptr<T_>();
      const int64_t* ord_all = orders[t].data_ptr<int64_t>();
      for (int64_t b = 0; b < B; ++b) {
        const T_ *Mp = Mp_all + b * N * W, *M = M_all + b * N * W, *Lp = Lp_all + b * N * N,
                 *L = L_all + b * N * N, *up = up_all + b * N, *pp = pp_all + b * N, *wwp = wwp_all + b * N,
                 *ww = ww_all + b * N, *wrp = wrp_all + b * R * N, *wr = wr_all + b * R * N,
                 *srt = srt_all + b * N, *drb = dr_all + b * RW;
        const int64_t* ord = ord_all + b * N;
        T_ *gMb = gM_all + b * N * W, *gLb = gL_all + b * N * N, *gub = gu_all + b * N, *gpb = gp_all + b * N,
           *gwwb = gww_all + b * N, *gwrb = gwr_all + b * R * N;
        T_* dx = dxt + b * d.P;
        for (int64_t q = 0; q < d.P; ++q) dx[q] = 0;
        // recompute this step's quantities
        s.interface(xr + b * d.P, clip);
        s.retention(wrp);
        s.allocation(srt, ord);
        s.row_norms(Mp, s.inv_p.data(), s.big_p.data());
        s.content(Mp, s.inv_p.data(), s.xi.data() + d.wk, s.kinv_w, s.beta_w, s.simw.data(), s.wc.data());
        s.link_reads(L, wrp);
        s.row_norms(M, s.inv_n.data(), s.big_n.data());
        // reads r = w^r M: the gradients of w^r_t (with what step t + 1 sent) and of M_t
        for (int64_t r = 0; r < R; ++r) {
          const T_* g = drb + r * W;
          for (int64_t i = 0; i < N; ++i) {
            gwr_t[r * N + i] = gwrb[r * N + i] + dot(g, M + i * W, W);
            const V wi(wr[r * N + i]);
            T_* gm = gMb + i * W;
            chunks<T_>(W, [&](int64_t k, int64_t c) {
              at::vec::fmadd(wi, V::loadu(g + k, c), V::loadu(gm + k, c)).store(gm + k, c);
            });
          }
        }
        // read weightings: modes, content on M_t, the link products
        for (int64_t r = 0; r < R; ++r) {
          const T_* gw = gwr_t.data() + r * N;
          T_* rc = s.rc.data() + r * N;
          T_* sim = s.simr.data() + r * N;
          s.content(M, s.inv_n.data(), s.xi.data() + d.rk + r * W, s.kinv_r[r], s.beta_r[r], sim, rc);
          const T_* pi = s.pi.data() + 3 * r;
          const T_ gpi[3] = {dot(gw, s.bwd.data() + r * N, N), dot(gw, rc, N), dot(gw, s.fwd.data() + r * N, N)};
          const T_ mean = pi[0] * gpi[0] + pi[1] * gpi[1] + pi[2] * gpi[2];
          for (int64_t k = 0; k < 3; ++k) dx[d.md + 3 * r + k] = pi[k] * (gpi[k] - mean);
          for (int64_t i = 0; i < N; ++i) {
            gbwd[r * N + i] = pi[0] * gw[i];
            gfwd[r * N + i] = pi[2] * gw[i];
            gwc[i] = pi[1] * gw[i];  // g of the content weighting (scratch)
          }
          softmax_backward(rc, gwc.data(), gz.data(), N);
          dx[d.rs + r] = dot(gz.data(), sim, N) * dsoftplus(s.xi[d.rs + r]);
          for (int64_t i = 0; i < N; ++i) gsim[i] = s.beta_r[r] * gz[i];
          content_backward(d, M, s.inv_n.data(), s.big_n.data(), s.xi.data() + d.rk + r * W, s.kinv_r[r],
                           s.kbig_r[r], gsim.data(), dx + d.rk + r * W, gMb, gkh.data());
        }
        // fwd[r,i] = Σ_j L[i,j] wrp[r,j], bwd[r,j] = Σ_i wrp[r,i] L[i,j]
        std::fill(gwrp.begin(), gwrp.end(), T_(0));
        for (int64_t r = 0; r < R; ++r) {
          const T_ *w = wrp + r * N, *gf = gfwd.data() + r * N, *gb = gbwd.data() + r * N;
          T_* gwp = gwrp.data() + r * N;
          for (int64_t i = 0; i < N; ++i) {
            const T_* Li = L + i * N;
            T_* gLi = gLb + i * N;
            const V gfi(gf[i]), wi(w[i]);
            gwp[i] += dot(Li, gb, N);
            chunks<T_>(N, [&](int64_t j, int64_t c) {
              (V::loadu(gLi + j, c) + gfi * V::loadu(w + j, c) + wi * V::loadu(gb + j, c)).store(gLi + j, c);
              at::vec::fmadd(gfi, V::loadu(Li + j, c), V::loadu(gwp + j, c)).store(gwp + j, c);
            });
          }
        }
        // precedence p = (1 - Σ w^w) p_{t-1} + w^w
        T_ sum_w = 0;
        for (int64_t i = 0; i < N; ++i) sum_w += ww[i];
        const T_ gp_pp = dot(gpb, pp, N);
        for (int64_t i = 0; i < N; ++i) {
          gwwb[i] += gpb[i] - gp_pp;
          gpb[i] *= T_(1) - sum_w;
        }
        // links (the diagonal's gradient dropped: L[i,i] = 0 always)
        for (int64_t i = 0; i < N; ++i) gLb[i * N + i] = 0;
        for (int64_t i = 0; i < N; ++i) {
          T_* G = gLb + i * N;
          const T_* Li = Lp + i * N;
          const V wi(ww[i]), keep_i(T_(1) - ww[i]);
          V acc(T_(0));
          chunks<T_>(N, [&](int64_t j, int64_t c) {
            const V g = V::loadu(G + j, c), l = V::loadu(Li + j, c);
            acc = at::vec::fmadd(g, V::loadu(pp + j, c) - l, acc);
            (V::loadu(gwwb + j, c) - g * l).store(gwwb + j, c);
            at::vec::fmadd(g, wi, V::loadu(gpb + j, c)).store(gpb + j, c);
            (g * (keep_i - V::loadu(ww + j, c))).store(G + j, c);
          });
          gwwb[i] += hsum(acc);
        }
        // write M = M_{t-1} ⊙ (1 - w^w eᵀ) + w^w vᵀ
        const T_* v = s.xi.data() + d.wv;
        T_ *de = dx + d.er, *dv = dx + d.wv;
        const T_* e = s.e.data();
        for (int64_t i = 0; i < N; ++i) {
          T_* g = gMb + i * W;
          const T_* mp = Mp + i * W;
          const V wi(ww[i]);
          V acc(T_(0));
          chunks<T_>(W, [&](int64_t k, int64_t c) {
            const V gv = V::loadu(g + k, c), mv = V::loadu(mp + k, c), ev = V::loadu(e + k, c);
            acc = at::vec::fmadd(gv, V::loadu(v + k, c) - mv * ev, acc);
            (V::loadu(de + k, c) - gv * mv * wi).store(de + k, c);
            at::vec::fmadd(gv, wi, V::loadu(dv + k, c)).store(dv + k, c);
            (gv * (one - wi * ev)).store(g + k, c);
          });
          gwwb[i] += hsum(acc);
        }
        for (int64_t k = 0; k < W; ++k) dx[d.er + k] *= s.e[k] * (T_(1) - s.e[k]);
        // write weighting w^w = g^w (g^a a + (1 - g^a) c)
        T_ ggw = 0, gga = 0;
        for (int64_t i = 0; i < N; ++i) {
          ggw += gwwb[i] * (s.ga * s.alloc[i] + (T_(1) - s.ga) * s.wc[i]);
          gga += gwwb[i] * (s.alloc[i] - s.wc[i]);
          galloc[i] = s.gw * s.ga * gwwb[i];
          gwc[i] = s.gw * (T_(1) - s.ga) * gwwb[i];
        }
        dx[d.gw] = ggw * s.gw * (T_(1) - s.gw);
        dx[d.ga] = s.gw * gga * s.ga * (T_(1) - s.ga);
        // the write's content weighting on M_{t-1}
        softmax_backward(s.wc.data(), gwc.data(), gz.data(), N);
        dx[d.ws] = dot(gz.data(), s.simw.data(), N) * dsoftplus(s.xi[d.ws]);
        for (int64_t i = 0; i < N; ++i) gsim[i] = s.beta_w * gz[i];
        content_backward(d, Mp, s.inv_p.data(), s.big_p.data(), s.xi.data() + d.wk, s.kinv_w, s.kbig_w,
                         gsim.data(), dx + d.wk, gMb, gkh.data());
        // allocation: ds_k = (Σ_{j>k} g_j a_j / s_k - g_k Π_{i<k} s_i) (1 - ε), in sorted order
        {
          T_ after = 0;
          std::vector<T_>& pre = gz;  // Π_{i<k} s_i
          T_ before = 1;
          for (int64_t k = 0; k < N; ++k) {
            pre[k] = before;
            before *= srt[k];
          }
          for (int64_t k = N - 1; k >= 0; --k) {
            const T_ g = galloc[ord[k]];
            const T_ ds = (after / srt[k] - g * pre[k]) * (T_(1) - T_(kAllocEps));
            after += g * (T_(1) - srt[k]) * pre[k];
            gub[ord[k]] += ds;
          }
        }
        // usage u = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) ψ: the previous usage and write weighting
        for (int64_t i = 0; i < N; ++i) {
          const T_ g = gub[i];
          gz[i] = g * (up[i] + wwp[i] - up[i] * wwp[i]);  // g_ψ
          gub[i] = g * s.psi[i] * (T_(1) - wwp[i]);
          gwwb[i] = g * s.psi[i] * (T_(1) - up[i]);  // w^w_{t-1}'s gradient (w^w_t's is spent)
        }
        // retention ψ = Π_r (1 - f_r w^r_{t-1,r})
        for (int64_t r = 0; r < R; ++r) {
          T_ gf = 0;
          for (int64_t i = 0; i < N; ++i) {
            T_ others = 1;
            for (int64_t q = 0; q < R; ++q)
              if (q != r) others *= T_(1) - s.f[q] * wrp[q * N + i];
            gf -= gz[i] * others * wrp[r * N + i];
            gwrp[r * N + i] -= gz[i] * others * s.f[r];
          }
          dx[d.fr + r] = gf * s.f[r] * (T_(1) - s.f[r]);
        }
        std::copy(gwrp.begin(), gwrp.end(), gwrb);
        if (clip > 0) {
          const T_ c = T_(clip), *raw = xr + b * d.P;
          for (int64_t q = 0; q < d.P; ++q)
            if (raw[q] < -c || raw[q] > c) dx[q] = 0;
        }
      }
      // controller
      at::add_out(dh, dhr[t].narrow(1, 0, C), carry.narrow(1, 0, C));
      dh.addmm_(dXi[t], Wi);
      at::Tensor dat = dA[t];
      lstm_backward_pointwise(gates[t].data_ptr<T_>(), cs[t].data_ptr<T_>(), cs[t + 1].data_ptr<T_>(),
                              dh.data_ptr<T_>(), dc.data_ptr<T_>(), dat.data_ptr<T_>(), B, C);
      at::mm_out(carry, dat, Wc);  // [dh | dr] of step t - 1 in one product
    }
  });
  const at::Tensor dA2 = dA.view({T * B, G}), dX2 = dXi.view({T * B, d.P});
  at::Tensor dWc = at::mm(dA2.t(), hr.narrow(0, 0, T).reshape({T * B, C + RW}));
  at::Tensor dWi = at::mm(dX2.t(), hr.narrow(0, 1, T).reshape({T * B, C + RW}).narrow(1, 0, C));
  at::Tensor dbi = dX2.sum(0);
  return {dA, dWc, dWi, dbi, carry, dc, gM, gL, gu, gp, gww, gwr};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqbench_recurrent, m) {
  m.def(
      "dnc_forward(Tensor xp, Tensor Wc, Tensor Wi, Tensor bi, Tensor hr0, Tensor c0, Tensor M0, Tensor L0, "
      "Tensor u0, Tensor p0, Tensor ww0, Tensor wr0, int[] dims, float clip, float eps, bool keep) -> Tensor[]");
  m.def(
      "dnc_backward(Tensor dhr, Tensor dcT, Tensor dMT, Tensor dLT, Tensor duT, Tensor dpT, Tensor dwwT, "
      "Tensor dwrT, Tensor Wc, Tensor Wi, Tensor hr, Tensor cs, Tensor gates, Tensor xis, Tensor mems, "
      "Tensor links, Tensor usage, Tensor prec, Tensor wws, Tensor wrs, Tensor orders, Tensor sorted, "
      "int[] dims, float clip, float eps) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(seqbench_recurrent, CPU, m) {
  m.impl("dnc_forward", &dnc_forward);
  m.impl("dnc_backward", &dnc_backward);
}

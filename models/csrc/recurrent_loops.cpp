// The time loops of the shared LSTM cell (models/lstm_cell.py), forward and hand-written backward, in C++,
// with each step's element-wise work fused into one pass over the (H, B) state; below them the same for the
// depth-gated LSTM (models/depth_gated_lstm.py) and Cho et al.'s GRU (models/gru_cho.py).
//
// The Python loops (`forward_steps`, `backward_steps` in lstm_cell.py) are the specification: the same
// equations, buffers and layout; tests/test_recurrent_zoo.py checks the two against each other and against
// the autograd oracle. What differs is the cost: there a step is ~10 element-wise ATen calls forward and ~20
// backward, each a pass over memory costing ~3-20 us on 4,096 elements; here it is one pass, with
// at::vec::Vectorized (the SIMD type ATen's own kernels use, with SLEEF's exp and tanh). The matrix products
// stay ATen calls (BLAS). Rounding differs from the Python loops by a few ulp (FMA, and the exp-based
// sigmoid of ATen's vectorised kernel applied to every element), so results agree to float precision, not bit
// for bit.
//
// Layout (features, batch): a step's gates are (nH, B), block b of them rows [b H, (b + 1) H), each row B
// contiguous values of one unit. flags: input_gate, has_f_weights, output_gate, input_activation,
// output_activation, peepholes, coupled, gate_recurrence (0 or 1 each).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

namespace {

struct Flags {
  bool i, f, o, g, h, peep, coupled, fgr;
  int64_t n_if, nblocks, bi, bf, bo, bz;  // block positions in the layout i, f, o, z (those present)
  explicit Flags(at::IntArrayRef fl) {
    TORCH_CHECK(fl.size() == 8, "lstm_cell: expected 8 flags");
    i = fl[0];
    f = fl[1];
    o = fl[2];
    g = fl[3];
    h = fl[4];
    peep = fl[5];
    coupled = fl[6];
    fgr = fl[7];
    n_if = int64_t(i) + int64_t(f);
    int64_t k = 0;
    bi = i ? k++ : -1;
    bf = f ? k++ : -1;
    bo = o ? k++ : -1;
    bz = k++;
    nblocks = k;
  }
};

template <typename scalar_t>
using Vec = at::vec::Vectorized<scalar_t>;

// Each step's (rows, B) matrix of a (T, rows, B) buffer is contiguous (the steps themselves may be apart,
// as in a slice of a larger buffer): all the element-wise passes need. As in torch's own test, the stride of a
// dimension of size 1 does not matter: at batch 1 a gradient can arrive with any stride there.
inline bool steps_contiguous(const at::Tensor& x) {
  return x.numel() == 0 || (x.dim() == 3 && (x.size(2) <= 1 || x.stride(2) == 1) &&
                            (x.size(1) <= 1 || x.stride(1) == x.size(2)));
}

template <typename scalar_t>
inline Vec<scalar_t> sigmoid(Vec<scalar_t> a) {  // as ATen's vectorised sigmoid kernel
  const Vec<scalar_t> one(scalar_t(1));
  return one / (one + (Vec<scalar_t>(scalar_t(0)) - a).exp());
}

// A row pointer into block `b` (or null when the block is absent) of a (nH, B) step buffer.
template <typename scalar_t>
inline scalar_t* block(scalar_t* step, int64_t b, int64_t H, int64_t B) {
  return b < 0 ? nullptr : step + b * H * B;
}

// One forward step, element-wise part: a holds the pre-activations (nH, B) and becomes the activated gates.
template <typename scalar_t>
void forward_pointwise(const Flags& v, scalar_t* a, const scalar_t* c_prev, scalar_t* c, scalar_t* s,
                       scalar_t* y, const scalar_t* peep, int64_t H, int64_t B) {
  using V = Vec<scalar_t>;
  const V one(scalar_t(1));
  scalar_t *ai = block(a, v.bi, H, B), *af = block(a, v.bf, H, B), *ao = block(a, v.bo, H, B),
           *az = block(a, v.bz, H, B);
  for (int64_t r = 0; r < H; ++r) {
    const V pi(peep[r]), pf(peep[H + r]), po(peep[2 * H + r]);
    for (int64_t col = 0; col < B; col += V::size()) {
      const int64_t k = r * B + col, n = std::min<int64_t>(V::size(), B - col);
      const V cp = V::loadu(c_prev + k, n);
      V i = one, f = one, z = V::loadu(az + k, n);
      if (v.i) {
        i = V::loadu(ai + k, n);
        if (v.peep) i = i + pi * cp;
        i = sigmoid(i);
        i.store(ai + k, n);
      }
      if (v.f) {
        f = V::loadu(af + k, n);
        if (v.peep) f = f + pf * cp;
        f = sigmoid(f);
        f.store(af + k, n);
      } else if (v.coupled) {
        f = one - i;
      }
      if (v.g) {
        z = z.tanh();
        z.store(az + k, n);
      }
      const V cn = z * i + f * cp;
      cn.store(c + k, n);
      V sv = cn;
      if (v.h) {
        sv = cn.tanh();
        sv.store(s + k, n);
      }
      if (v.o) {
        V o = V::loadu(ao + k, n);
        if (v.peep) o = o + po * cn;  // the output gate peeps at the new cell
        o = sigmoid(o);
        o.store(ao + k, n);
        sv = sv * o;
      }
      sv.store(y + k, n);
    }
  }
}

// One backward step, element-wise part. In: dy (H, B) reaching y_t, dc (H, B) reaching c_t (updated in place
// to the gradient reaching c_{t-1}), dg (3H, B) reaching the gate values from the next step's gate
// recurrence (FGR; null otherwise). Out: da, the pre-activation gradients (nH, B).
template <typename scalar_t>
void backward_pointwise(const Flags& v, const scalar_t* act, const scalar_t* c_prev, const scalar_t* s,
                        const scalar_t* dy, scalar_t* dc, const scalar_t* dg, scalar_t* da, const scalar_t* peep,
                        int64_t H, int64_t B) {
  using V = Vec<scalar_t>;
  const V one(scalar_t(1)), zero(scalar_t(0));
  const scalar_t *gi = block(act, v.bi, H, B), *gf = block(act, v.bf, H, B), *go = block(act, v.bo, H, B),
                 *gz = block(act, v.bz, H, B);
  scalar_t *dai = block(da, v.bi, H, B), *daf = block(da, v.bf, H, B), *dao = block(da, v.bo, H, B),
           *daz = block(da, v.bz, H, B);
  for (int64_t r = 0; r < H; ++r) {
    const V pi(peep[r]), pf(peep[H + r]), po(peep[2 * H + r]);
    for (int64_t col = 0; col < B; col += V::size()) {
      const int64_t k = r * B + col, n = std::min<int64_t>(V::size(), B - col);
      const V dyv = V::loadu(dy + k, n), cp = V::loadu(c_prev + k, n), z = V::loadu(gz + k, n);
      V dcv = V::loadu(dc + k, n);
      // y = h(c) ⊙ o
      V ds = dyv, d_o = zero;
      const V sv = V::loadu(s + k, n);
      if (v.o) {
        const V o = V::loadu(go + k, n);
        d_o = dyv * sv;
        if (dg) d_o = d_o + V::loadu(dg + 2 * H * B + k, n);
        d_o = d_o * (o * (one - o));
        d_o.store(dao + k, n);
        ds = dyv * o;
      }
      if (v.h) ds = ds * (one - sv * sv);
      dcv = dcv + ds;
      if (v.o && v.peep) dcv = dcv + d_o * po;
      // c = z ⊙ i + f ⊙ c_prev
      V i = one, dz = dcv;
      if (v.i) {
        i = V::loadu(gi + k, n);
        dz = dcv * i;
        V d_i = dcv * z;
        if (dg) d_i = d_i + V::loadu(dg + k, n);
        if (v.coupled) d_i = d_i - dcv * cp;  // f = 1 - i
        d_i = d_i * (i * (one - i));
        d_i.store(dai + k, n);
      }
      if (v.g) dz = dz * (one - z * z);
      dz.store(daz + k, n);
      V dc_prev = dcv;
      if (v.f) {
        const V f = V::loadu(gf + k, n);
        V d_f = dcv * cp;
        if (dg) d_f = d_f + V::loadu(dg + H * B + k, n);
        d_f = d_f * (f * (one - f));
        d_f.store(daf + k, n);
        dc_prev = dcv * f;
        if (v.peep) dc_prev = dc_prev + d_f * pf;
      } else if (v.coupled) {
        dc_prev = dcv * (one - i);
      }
      if (v.i && v.peep) dc_prev = dc_prev + V::loadu(dai + k, n) * pi;
      dc_prev.store(dc + k, n);
    }
  }
}

void forward_steps(const at::Tensor& gates, const at::Tensor& R, const at::Tensor& G, const at::Tensor& peep,
                   const at::Tensor& ys, const at::Tensor& cs, const at::Tensor& ss, at::IntArrayRef flags) {
  const Flags v(flags);
  const int64_t T = gates.size(0), B = gates.size(2), H = R.size(1);
  TORCH_CHECK(steps_contiguous(gates) && steps_contiguous(ys) && steps_contiguous(cs) && steps_contiguous(ss),
              "lstm_cell.forward_steps: buffers must be contiguous");
  const at::Tensor p = peep.contiguous();
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_cell_forward_steps", [&] {
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor g = gates.select(0, t);
      g.addmm_(R, ys.select(0, t));
      if (v.fgr && t) g.narrow(0, 0, 3 * H).addmm_(G, gates.select(0, t - 1).narrow(0, 0, 3 * H));
      forward_pointwise<scalar_t>(v, g.data_ptr<scalar_t>(), cs.select(0, t).data_ptr<scalar_t>(),
                                  cs.select(0, t + 1).data_ptr<scalar_t>(),
                                  v.h ? ss.select(0, t).data_ptr<scalar_t>() : nullptr,
                                  ys.select(0, t + 1).data_ptr<scalar_t>(), p.data_ptr<scalar_t>(), H, B);
    }
  });
}

void backward_steps(const at::Tensor& dys, const at::Tensor& dc, const at::Tensor& R, const at::Tensor& G,
                    const at::Tensor& peep, const at::Tensor& gates, const at::Tensor& ys, const at::Tensor& cs,
                    const at::Tensor& ss, const at::Tensor& dA, const at::Tensor& dR, const at::Tensor& dG,
                    at::IntArrayRef flags) {
  const Flags v(flags);
  const int64_t T = gates.size(0), B = gates.size(2), H = R.size(1);
  TORCH_CHECK(steps_contiguous(gates) && steps_contiguous(cs) && steps_contiguous(ss) && steps_contiguous(dA) &&
                  dc.is_contiguous(),
              "lstm_cell.backward_steps: buffers must be contiguous");
  const at::Tensor p = peep.contiguous(), Rt = R.t();
  at::Tensor dy = at::empty({H, B}, gates.options());
  at::Tensor dg;  // gradient into this step's gate values from the next step's gate recurrence (FGR)
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_cell_backward_steps", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      at::Tensor da = dA.select(0, t);
      if (t == T - 1)
        dy.copy_(dys.select(0, t));
      else
        at::addmm_out(dy, dys.select(0, t), Rt, dA.select(0, t + 1));
      // s: tanh(c_t), or c_t itself without the output activation
      const at::Tensor s = v.h ? ss.select(0, t) : cs.select(0, t + 1);
      backward_pointwise<scalar_t>(v, gates.select(0, t).data_ptr<scalar_t>(), cs.select(0, t).data_ptr<scalar_t>(),
                                   s.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(), dc.data_ptr<scalar_t>(),
                                   dg.defined() ? dg.data_ptr<scalar_t>() : nullptr, da.data_ptr<scalar_t>(),
                                   p.data_ptr<scalar_t>(), H, B);
      dR.addmm_(da, ys.select(0, t).t());
      if (v.fgr && t) {
        dg = at::mm(G.t(), da.narrow(0, 0, 3 * H));
        dG.addmm_(da.narrow(0, 0, 3 * H), gates.select(0, t - 1).narrow(0, 0, 3 * H).t());
      } else {
        dg = at::Tensor();
      }
    }
  });
}

// ---- Depth-gated LSTM (models/depth_gated_lstm.py): one layer's loops, blocks i, f, z, o, and on layers
// above the first the depth gate d = σ(d_in + w_cd ⊙ c_{t-1}) that adds d ⊙ c_below to the cell. d_in
// holds the parts of d's pre-activation known before the loop. The Python loops there are the specification.

template <typename scalar_t>
void dg_forward_pointwise(scalar_t* a, scalar_t* d, const scalar_t* below, const scalar_t* w_cd,
                          const scalar_t* c_prev, scalar_t* c, scalar_t* s, scalar_t* h, int64_t H, int64_t B) {
  using V = Vec<scalar_t>;
  const int64_t n_all = H * B;
  scalar_t *ai = a, *af = a + n_all, *az = a + 2 * n_all, *ao = a + 3 * n_all;
  for (int64_t r = 0; r < H; ++r) {
    const V w(w_cd ? w_cd[r] : scalar_t(0));
    for (int64_t col = 0; col < B; col += V::size()) {
      const int64_t k = r * B + col, n = std::min<int64_t>(V::size(), B - col);
      const V cp = V::loadu(c_prev + k, n);
      const V i = sigmoid(V::loadu(ai + k, n)), f = sigmoid(V::loadu(af + k, n)), z = V::loadu(az + k, n).tanh(),
              o = sigmoid(V::loadu(ao + k, n));
      i.store(ai + k, n);
      f.store(af + k, n);
      z.store(az + k, n);
      o.store(ao + k, n);
      V cn = f * cp + i * z;
      if (d) {
        const V dv = sigmoid(V::loadu(d + k, n) + w * cp);
        dv.store(d + k, n);
        cn = cn + dv * V::loadu(below + k, n);
      }
      cn.store(c + k, n);
      const V sv = cn.tanh();
      sv.store(s + k, n);
      (o * sv).store(h + k, n);
    }
  }
}

template <typename scalar_t>
void dg_backward_pointwise(const scalar_t* act, const scalar_t* d, const scalar_t* below, const scalar_t* w_cd,
                           const scalar_t* c_prev, const scalar_t* s, scalar_t* dh, const scalar_t* dc_out,
                           scalar_t* dc, scalar_t* da, scalar_t* dd, scalar_t* dbelow, int64_t H, int64_t B) {
  using V = Vec<scalar_t>;
  const V one(scalar_t(1));
  const int64_t n_all = H * B;
  const scalar_t *gi = act, *gf = act + n_all, *gz = act + 2 * n_all, *go = act + 3 * n_all;
  scalar_t *dai = da, *daf = da + n_all, *daz = da + 2 * n_all, *dao = da + 3 * n_all;
  for (int64_t r = 0; r < H; ++r) {
    const V w(w_cd ? w_cd[r] : scalar_t(0));
    for (int64_t col = 0; col < B; col += V::size()) {
      const int64_t k = r * B + col, n = std::min<int64_t>(V::size(), B - col);
      const V i = V::loadu(gi + k, n), f = V::loadu(gf + k, n), z = V::loadu(gz + k, n), o = V::loadu(go + k, n);
      const V sv = V::loadu(s + k, n), dhv = V::loadu(dh + k, n), cp = V::loadu(c_prev + k, n);
      (dhv * sv * (o * (one - o))).store(dao + k, n);
      const V dcv = V::loadu(dc + k, n) + dhv * o * (one - sv * sv) + V::loadu(dc_out + k, n);
      (dcv * i * (one - z * z)).store(daz + k, n);
      (dcv * z * (i * (one - i))).store(dai + k, n);
      (dcv * cp * (f * (one - f))).store(daf + k, n);
      V dc_prev = dcv * f;
      if (d) {
        const V dv = V::loadu(d + k, n);
        const V ddv = dcv * V::loadu(below + k, n) * (dv * (one - dv));
        ddv.store(dd + k, n);
        (dcv * dv).store(dbelow + k, n);
        dc_prev = dc_prev + ddv * w;
      }
      dc_prev.store(dc + k, n);
    }
  }
}

void dg_forward_steps(const at::Tensor& gates, const at::Tensor& d, const at::Tensor& c_below, const at::Tensor& R,
                      const at::Tensor& w_cd, const at::Tensor& hs, const at::Tensor& cs, const at::Tensor& ss) {
  const int64_t T = gates.size(0), B = gates.size(2), H = R.size(1);
  const bool gated = d.numel() > 0;
  TORCH_CHECK(steps_contiguous(gates) && steps_contiguous(hs) && steps_contiguous(cs) && steps_contiguous(ss) &&
                  (!gated || (steps_contiguous(d) && steps_contiguous(c_below))),
              "depth_gated_lstm.forward_steps: buffers must be contiguous");
  const at::Tensor w = gated ? w_cd.contiguous() : w_cd;
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "dg_forward_steps", [&] {
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor g = gates.select(0, t);
      g.addmm_(R, hs.select(0, t));
      dg_forward_pointwise<scalar_t>(
          g.data_ptr<scalar_t>(), gated ? d.select(0, t).data_ptr<scalar_t>() : nullptr,
          gated ? c_below.select(0, t).data_ptr<scalar_t>() : nullptr, gated ? w.data_ptr<scalar_t>() : nullptr,
          cs.select(0, t).data_ptr<scalar_t>(), cs.select(0, t + 1).data_ptr<scalar_t>(),
          ss.select(0, t).data_ptr<scalar_t>(), hs.select(0, t + 1).data_ptr<scalar_t>(), H, B);
    }
  });
}

void dg_backward_steps(const at::Tensor& dh_out, const at::Tensor& dc_out, const at::Tensor& R,
                       const at::Tensor& w_cd, const at::Tensor& gates, const at::Tensor& d,
                       const at::Tensor& c_below, const at::Tensor& hs, const at::Tensor& cs, const at::Tensor& ss,
                       const at::Tensor& dA, const at::Tensor& dd, const at::Tensor& dbelow, const at::Tensor& dR) {
  const int64_t T = gates.size(0), B = gates.size(2), H = R.size(1);
  const bool gated = d.numel() > 0;
  TORCH_CHECK(steps_contiguous(gates) && steps_contiguous(cs) && steps_contiguous(ss) && steps_contiguous(dA) &&
                  steps_contiguous(dc_out) &&
                  (!gated || (steps_contiguous(d) && steps_contiguous(dd) && steps_contiguous(dbelow) &&
                              steps_contiguous(c_below))),
              "depth_gated_lstm.backward_steps: buffers must be contiguous");
  const at::Tensor w = gated ? w_cd.contiguous() : w_cd, Rt = R.t();
  at::Tensor dh = at::empty({H, B}, gates.options()), dc = at::zeros({H, B}, gates.options());
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "dg_backward_steps", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      at::Tensor da = dA.select(0, t);
      if (t == T - 1)
        dh.copy_(dh_out.select(0, t));
      else
        at::addmm_out(dh, dh_out.select(0, t), Rt, dA.select(0, t + 1));
      dg_backward_pointwise<scalar_t>(
          gates.select(0, t).data_ptr<scalar_t>(), gated ? d.select(0, t).data_ptr<scalar_t>() : nullptr,
          gated ? c_below.select(0, t).data_ptr<scalar_t>() : nullptr, gated ? w.data_ptr<scalar_t>() : nullptr,
          cs.select(0, t).data_ptr<scalar_t>(), ss.select(0, t).data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(),
          dc_out.select(0, t).data_ptr<scalar_t>(), dc.data_ptr<scalar_t>(), da.data_ptr<scalar_t>(),
          gated ? dd.select(0, t).data_ptr<scalar_t>() : nullptr,
          gated ? dbelow.select(0, t).data_ptr<scalar_t>() : nullptr, H, B);
      dR.addmm_(da, hs.select(0, t).t());
    }
  });
}

// ---- GRU as Cho et al. wrote it (models/gru_cho.py): blocks r, u, n of a (3H, B) step; the reset gate acts
// on h_{t-1} before U_n, so a step is two products with a pass between them. No per-row constants here, so
// each pass runs over a step's H x B values as one flat array.

template <typename scalar_t>
void gru_gate_pointwise(scalar_t* a, const scalar_t* h, scalar_t* rh, int64_t n_all) {
  using V = Vec<scalar_t>;
  scalar_t *ar = a, *au = a + n_all;
  for (int64_t k = 0; k < n_all; k += V::size()) {
    const int64_t n = std::min<int64_t>(V::size(), n_all - k);
    const V r = sigmoid(V::loadu(ar + k, n));
    r.store(ar + k, n);
    sigmoid(V::loadu(au + k, n)).store(au + k, n);
    (r * V::loadu(h + k, n)).store(rh + k, n);
  }
}

template <typename scalar_t>
void gru_state_pointwise(scalar_t* a, const scalar_t* h, scalar_t* h_new, int64_t n_all) {
  using V = Vec<scalar_t>;
  const scalar_t* au = a + n_all;
  scalar_t* an = a + 2 * n_all;
  for (int64_t k = 0; k < n_all; k += V::size()) {
    const int64_t n = std::min<int64_t>(V::size(), n_all - k);
    const V nv = V::loadu(an + k, n).tanh();
    nv.store(an + k, n);
    (nv + V::loadu(au + k, n) * (V::loadu(h + k, n) - nv)).store(h_new + k, n);  // u h + (1 - u) n
  }
}

// Backward, first pass: dh = dh_out + carry (the gradient reaching h_t from step t + 1); writes the
// pre-activation gradients of u and n and restarts carry at the direct path u ⊙ dh into h_{t-1}.
template <typename scalar_t>
void gru_backward_state(const scalar_t* act, const scalar_t* h, const scalar_t* dh_out, scalar_t* carry,
                        scalar_t* da, int64_t n_all) {
  using V = Vec<scalar_t>;
  const V one(scalar_t(1));
  const scalar_t *gu = act + n_all, *gn = act + 2 * n_all;
  scalar_t *dau = da + n_all, *dan = da + 2 * n_all;
  for (int64_t k = 0; k < n_all; k += V::size()) {
    const int64_t n = std::min<int64_t>(V::size(), n_all - k);
    const V dh = V::loadu(dh_out + k, n) + V::loadu(carry + k, n);
    const V u = V::loadu(gu + k, n), nv = V::loadu(gn + k, n), hp = V::loadu(h + k, n);
    (dh * (one - u) * (one - nv * nv)).store(dan + k, n);
    (dh * (hp - nv) * (u * (one - u))).store(dau + k, n);
    (dh * u).store(carry + k, n);
  }
}

// Backward, second pass: drh = U_n^T da_n, the gradient reaching r ⊙ h_{t-1}; splits it between r and h_{t-1}.
template <typename scalar_t>
void gru_backward_reset(const scalar_t* act, const scalar_t* h, const scalar_t* drh, scalar_t* carry,
                        scalar_t* da, int64_t n_all) {
  using V = Vec<scalar_t>;
  const V one(scalar_t(1));
  for (int64_t k = 0; k < n_all; k += V::size()) {
    const int64_t n = std::min<int64_t>(V::size(), n_all - k);
    const V r = V::loadu(act + k, n), d = V::loadu(drh + k, n);
    (d * V::loadu(h + k, n) * (r * (one - r))).store(da + k, n);
    (V::loadu(carry + k, n) + d * r).store(carry + k, n);
  }
}

void gru_forward_steps(const at::Tensor& gates, const at::Tensor& U, const at::Tensor& hs, const at::Tensor& rhs) {
  const int64_t T = gates.size(0), B = gates.size(2), H = U.size(1);
  TORCH_CHECK(steps_contiguous(gates) && steps_contiguous(hs) && steps_contiguous(rhs),
              "gru_cho.forward_steps: buffers must be contiguous");
  const at::Tensor U_ru = U.narrow(0, 0, 2 * H), U_n = U.narrow(0, 2 * H, H);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_forward_steps", [&] {
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor g = gates.select(0, t), h = hs.select(0, t), rh = rhs.select(0, t);
      g.narrow(0, 0, 2 * H).addmm_(U_ru, h);
      gru_gate_pointwise<scalar_t>(g.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), rh.data_ptr<scalar_t>(), H * B);
      g.narrow(0, 2 * H, H).addmm_(U_n, rh);
      gru_state_pointwise<scalar_t>(g.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                                    hs.select(0, t + 1).data_ptr<scalar_t>(), H * B);
    }
  });
}

void gru_backward_steps(const at::Tensor& dh_out, const at::Tensor& U, const at::Tensor& gates, const at::Tensor& hs,
                        const at::Tensor& dA) {
  const int64_t T = gates.size(0), B = gates.size(2), H = U.size(1);
  TORCH_CHECK(steps_contiguous(gates) && steps_contiguous(hs) && steps_contiguous(dA) && steps_contiguous(dh_out),
              "gru_cho.backward_steps: buffers must be contiguous");
  const at::Tensor U_rut = U.narrow(0, 0, 2 * H).t(), U_nt = U.narrow(0, 2 * H, H).t();
  at::Tensor carry = at::zeros({H, B}, gates.options()), drh = at::empty({H, B}, gates.options());
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_backward_steps", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const at::Tensor g = gates.select(0, t), h = hs.select(0, t), da = dA.select(0, t);
      gru_backward_state<scalar_t>(g.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                                   dh_out.select(0, t).data_ptr<scalar_t>(), carry.data_ptr<scalar_t>(),
                                   da.data_ptr<scalar_t>(), H * B);
      at::mm_out(drh, U_nt, da.narrow(0, 2 * H, H));
      gru_backward_reset<scalar_t>(g.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), drh.data_ptr<scalar_t>(),
                                   carry.data_ptr<scalar_t>(), da.data_ptr<scalar_t>(), H * B);
      if (t) carry.addmm_(U_rut, da.narrow(0, 0, 2 * H));  // h_0 is zero: nothing to send it
    }
  });
}

}  // namespace

TORCH_LIBRARY(seqbench_recurrent, m) {
  m.def(
      "forward_steps(Tensor(a!) gates, Tensor R, Tensor G, Tensor peep, Tensor(b!) ys, Tensor(c!) cs, "
      "Tensor(d!) ss, int[] flags) -> ()");
  m.def(
      "backward_steps(Tensor dys, Tensor(a!) dc, Tensor R, Tensor G, Tensor peep, Tensor gates, Tensor ys, "
      "Tensor cs, Tensor ss, Tensor(b!) dA, Tensor(c!) dR, Tensor(d!) dG, int[] flags) -> ()");
  m.def(
      "dg_forward_steps(Tensor(a!) gates, Tensor(b!) d, Tensor c_below, Tensor R, Tensor w_cd, Tensor(c!) hs, "
      "Tensor(d!) cs, Tensor(e!) ss) -> ()");
  m.def(
      "dg_backward_steps(Tensor dh_out, Tensor dc_out, Tensor R, Tensor w_cd, Tensor gates, Tensor d, "
      "Tensor c_below, Tensor hs, Tensor cs, Tensor ss, Tensor(a!) dA, Tensor(b!) dd, Tensor(c!) dbelow, "
      "Tensor(d!) dR) -> ()");
  m.def("gru_forward_steps(Tensor(a!) gates, Tensor U, Tensor(b!) hs, Tensor(c!) rhs) -> ()");
  m.def("gru_backward_steps(Tensor dh_out, Tensor U, Tensor gates, Tensor hs, Tensor(a!) dA) -> ()");
}

TORCH_LIBRARY_IMPL(seqbench_recurrent, CPU, m) {
  m.impl("forward_steps", &forward_steps);
  m.impl("backward_steps", &backward_steps);
  m.impl("dg_forward_steps", &dg_forward_steps);
  m.impl("dg_backward_steps", &dg_backward_steps);
  m.impl("gru_forward_steps", &gru_forward_steps);
  m.impl("gru_backward_steps", &gru_backward_steps);
}

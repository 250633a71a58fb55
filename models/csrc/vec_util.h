// SIMD helpers shared by the C++ loops (ntm_loops.cpp, dnc_loops.cpp, selective_scan.cpp, linear_recurrence.cpp):
// dot products, softmax and the activations of the memory models' interfaces, the LSTM cell's pointwise steps. Part of the extension's source
// digest (models/cpp_loops.py), so a change here rebuilds it.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>

namespace seqbench_vec {

template <typename T>
using Vec = at::vec::Vectorized<T>;

// The lanes of v summed in order.
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

// max_i x_i: full vectors, then the tail (a zero-padded partial load would bring in zeros).
template <typename T>
inline T vmax(const T* x, int64_t n) {
  constexpr int64_t L = Vec<T>::size();
  T mx = x[0];
  int64_t i = 0;
  if (n >= L) {
    Vec<T> acc = Vec<T>::loadu(x);
    for (i = L; i + L <= n; i += L) acc = at::vec::maximum(acc, Vec<T>::loadu(x + i));
    T lanes[L];
    acc.store(lanes);
    for (int64_t k = 0; k < L; ++k) mx = std::max(mx, lanes[k]);
  }
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  return mx;
}

template <typename T>
inline T vsum(const T* x, int64_t n) {
  Vec<T> acc(T(0));
  chunks<T>(n, [&](int64_t i, int64_t c) { acc = acc + Vec<T>::loadu(x + i, c); });
  return hsum(acc);
}

template <typename T>
inline void vscale(T* x, int64_t n, T r) {
  chunks<T>(n, [&](int64_t i, int64_t c) { (Vec<T>::loadu(x + i, c) * Vec<T>(r)).store(x + i, c); });
}

template <typename T>
void softmax(const T* z, T* out, int64_t n) {
  exp_affine(z, out, n, T(1), -vmax(z, n));
  vscale(out, n, T(1) / vsum(out, n));
}

// The LSTM cell's forward on the gates a (B, 4C: i, f, g, o), overwritten with their activations; c and h
// (h rows ld apart, as in the [h | r] rows of the memory models) from c_prev.
template <typename T>
void lstm_forward_pointwise(T* a, const T* c_prev, T* c, T* h, int64_t B, int64_t C, int64_t ld) {
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
      (o * cn.tanh()).store(h + b * ld + u, n);
    }
  }
}

// The LSTM cell's backward from its saved activations act (B, 4C: σ(i), σ(f), tanh(g), σ(o)), the cell states
// before and after, dh and the carried dc (updated in place to the gradient of the cell state before): da (B, 4C).
template <typename T>
void lstm_backward_pointwise(const T* act, const T* cp, const T* cn, const T* dhp, T* dcp, T* dap, int64_t B,
                             int64_t C) {
  using V = Vec<T>;
  const V one(T(1));
  for (int64_t b = 0; b < B; ++b) {
    const T* ab = act + b * 4 * C;
    T* db = dap + b * 4 * C;
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
}

}  // namespace seqbench_vec

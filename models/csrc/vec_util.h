// SIMD helpers shared by the C++ loops (ntm_loops.cpp, selective_scan.cpp, linear_recurrence.cpp). Part of the extension's source
// digest (models/cpp_loops.py), so a change here rebuilds it.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>

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

}  // namespace seqbench_vec

// SIMD helpers shared by the C++ loops (ntm_loops.cpp, selective_scan.cpp). Part of the extension's source
// digest (models/cpp_loops.py), so a change here rebuilds it.
#pragma once

#include <ATen/cpu/vec/vec.h>

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

}  // namespace seqbench_vec

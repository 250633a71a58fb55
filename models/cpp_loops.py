"""Builds and loads the C++ time loops of the recurrent models: one extension, `seqbench_recurrent`, from every
source in `csrc/` (`recurrent_loops.cpp`: the shared LSTM cell, the depth-gated LSTM and Cho et al.'s GRU;
`grid_lstm.cpp`: the Grid LSTM's depth cells; `ntm_loops.cpp`: the NTM; `dnc_loops.cpp`: the DNC; `slstm_loops.cpp`: xLSTM's sLSTM; `stack_loops.cpp`: the stack RNN;
`scan_loops.cpp`: the diagonal linear scan of HGRN, minGRU and minLSTM, `common.diagonal_scan`;
`selective_scan.cpp`: Mamba's selective scan, fused; `linear_recurrence.cpp`: the DPLR and gated linear
attention recurrences of the linear-attention mixers, fused).
A new source file registers its ops with `TORCH_LIBRARY_FRAGMENT(seqbench_recurrent, m)` (only one file may
hold the `TORCH_LIBRARY` block) and is built with the others.

The C++ loops fuse each step's element-wise work into vectorised passes (see the C++ file); the Python
loops in `lstm_cell.py`, `depth_gated_lstm.py`, `gru_cho.py` and `grid_lstm.py` are their specification, and the two agree
to float precision. The extension is compiled with `torch.utils.cpp_extension` on first use (needs a C++
compiler and ninja; ~20-60 s, once) and cached in torch's extension folder (`TORCH_EXTENSIONS_DIR`, by default
~/.cache/torch_extensions) for later processes. It is built for the SIMD level ATen itself uses on this CPU
(AVX2 on an AVX2 or AVX-512 machine, else portable code), and that level is in the extension's name (with a
digest of the source), so a cache shared by different machines never loads code the CPU cannot run. If the
build fails, a warning says why and the Python loops run instead. `SEQBENCH_LSTM_KERNEL=python` skips the
build; `=cpp` makes a failed build an error.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from seqbench.provenance import note_kernel, note_one_off

SOURCES = sorted(Path(__file__).with_name("csrc").glob("*.cpp"))
# headers the sources include: in the digest too, so that a changed header rebuilds the extension
HEADERS = sorted(Path(__file__).with_name("csrc").glob("*.h"))
ENV = "SEQBENCH_LSTM_KERNEL"


def choice() -> str:
    """auto (the C++ loops where they build), cpp (they must) or python, from SEQBENCH_LSTM_KERNEL."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "cpp", "python"):
        from seqbench.errors import OptionsError  # a ValueError too

        raise OptionsError(f"{ENV} must be auto, cpp or python, not {value!r}.")
    return value


def simd() -> tuple[str, list[str]]:
    """The SIMD level to build for, and its compiler flags: ATen's vector types need both the -m flags and
    the CPU_CAPABILITY macros that select their implementation."""
    level = torch.backends.cpu.get_cpu_capability()
    if level in ("AVX2", "AVX512"):
        return "avx2", ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return "default", ["-DCPU_CAPABILITY=DEFAULT", "-DCPU_CAPABILITY_DEFAULT"]


@functools.cache
def load() -> Any | None:
    """torch.ops.seqbench_recurrent once built (building it if needed), or None (with a warning) if not."""
    from torch.utils import cpp_extension

    level, flags = simd()
    # The source's and flags' digest in the name: a changed source (a seqbench upgrade) builds afresh, with
    # the message below, and two versions sharing a cache each keep their own build instead of rebuilding.
    digest = hashlib.sha256(
        b"".join(p.read_bytes() for p in SOURCES + HEADERS) + " ".join(flags).encode()
    ).hexdigest()[:10]
    name = f"seqbench_recurrent_{level}_{digest}"
    started = time.perf_counter()
    try:
        build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
        if not any(build_dir.glob(f"{name}*.so")):
            print(
                f"seqbench: compiling the C++ recurrent loops for {level} (once; cached in {build_dir})",
                file=sys.stderr,
                flush=True,
            )
        cpp_extension.load(
            name=name,
            sources=[str(p) for p in SOURCES],
            extra_cflags=["-O3", *flags],
            is_python_module=False,
            verbose=False,
        )
        ops = torch.ops.seqbench_recurrent
        _register_flops(ops)
        return ops
    except Exception as exc:  # no compiler, no ninja, an unsupported platform: never break a run
        if choice() == "cpp":
            raise
        return _fallback(exc)
    finally:
        # Building (or loading a cached build) is first-use work, no part of a training step's time.
        note_one_off(time.perf_counter() - started)


def _fallback(exc: Exception) -> None:
    warnings.warn(
        f"The C++ recurrent loops did not build ({type(exc).__name__}: {exc}); the Python loops "
        f"run instead (same equations, slower). Set {ENV}=python to skip the attempt.",
        RuntimeWarning,
        stacklevel=3,
    )


def ops_for(model: str, device: torch.device) -> Any | None:
    """The C++ ops for a model's loops on `device` (the CPU, where they build), or None where its Python loops
    must run; either way notes which ran under `model` for the row's `kernels` column."""
    ops = load() if device.type == "cpu" and choice() != "python" else None
    note_kernel(model, "python" if ops is None else f"cpp-{simd()[0]}")
    return ops


def _register_flops(ops: Any) -> None:
    """Matrix-product FLOPs of the C++ loops for torch's FlopCounterMode, which sees the custom ops but not the
    products inside them: the same products, step for step, as the Python loops make (a test compares)."""
    from torch.utils.flop_counter import register_flop_formula

    def fgr(flags: list[int], G: Any, T: int, B: int) -> int:  # one product with G per step after the first
        return 2 * (T - 1) * G[0] * G[1] * B if flags[7] else 0

    @register_flop_formula(ops.forward_steps)
    def _(gates, R, G, peep, ys, cs, ss, flags, out_shape=None) -> int:
        T, nH, B = gates
        return 2 * T * nH * R[1] * B + fgr(flags, G, T, B)

    @register_flop_formula(ops.backward_steps)
    def _(dys, dc, R, G, peep, gates, ys, cs, ss, dA, dR, dG, flags, out_shape=None) -> int:
        T, nH, B = gates  # dy = R^T da from the second-last step down, dR += da y^T at every step
        return 2 * (2 * T - 1) * nH * R[1] * B + 2 * fgr(flags, G, T, B)

    @register_flop_formula(ops.dg_forward_steps)
    def _(gates, d, c_below, R, w_cd, hs, cs, ss, out_shape=None) -> int:
        T, _, B = gates
        return 2 * T * R[0] * R[1] * B

    @register_flop_formula(ops.dg_backward_steps)
    def _(dh_out, dc_out, R, w_cd, gates, d, c_below, hs, cs, ss, dA, dd, dbelow, dR, out_shape=None):
        T, _, B = gates
        return 2 * (2 * T - 1) * R[0] * R[1] * B

    @register_flop_formula(ops.gru_forward_steps)
    def _(gates, U, hs, rhs, out_shape=None) -> int:  # U_ru h and U_n (r ⊙ h): all of U once a step
        T, _, B = gates
        return 2 * T * U[0] * U[1] * B

    @register_flop_formula(ops.gru_backward_steps)
    def _(dh_out, U, gates, hs, dA, out_shape=None) -> int:  # U_n^T at every step, U_ru^T from the second
        T, _, B = gates
        H = U[1]
        return 2 * T * H * H * B + 2 * (T - 1) * 2 * H * H * B

    @register_flop_formula(ops.grid_depth_forward)
    def _(gates, W_up, h_time, m_below, h, m, s, out_shape=None) -> int:  # W_up h_time, all steps at once
        T, nH, B = gates
        return 2 * T * nH * W_up[1] * B

    @register_flop_formula(ops.grid_depth_backward)
    def _(dh, dm, W_up, gates, m_below, s, dA, dm_below, dh_time, out_shape=None) -> int:
        T, nH, B = gates  # dh_time = W_up^T dA
        return 2 * T * nH * W_up[1] * B

    _register_memory_flops(ops)


def _register_memory_flops(ops: Any) -> None:
    """Mamba's fused selective scan (selective_scan.cpp): the products of the chunked form's y_t = h_t C_t.
    The fused linear recurrence (linear_recurrence.cpp): the products of its recurrent form (a test compares).
    The NTM's, the DNC's and the stack RNN's C++ loops (ntm_loops.cpp, dnc_loops.cpp, stack_loops.cpp): their
    matrix products per step, and for the NTM and the DNC the products its reference loop makes as bmm/matmul (content similarity, read and
    shift), forward once and backward twice (the gradients of both factors), as the counter counts the
    reference loop's products. Not checked to equality against the reference loop's count (which also sees
    products of the controller's input that the C++ path hoists out of the loop): a close estimate."""
    from torch.utils.flop_counter import register_flop_formula

    def ntm_step(xp: Any, Wc: Any, Wp: Any, dims: list[int]) -> int:
        _, B, G = xp
        N, M, R, W, S, _lstm = dims
        K, C = R + W, Wp[1]
        ctrl = 2 * B * G * Wc[1] + 2 * B * C * Wp[0]  # Wc: [Whh | Wr], or Wr alone (feed-forward)
        addressing = 2 * B * K * M * N + 2 * B * R * N * M + 2 * B * K * N * (2 * S + 1)
        return ctrl + addressing

    @register_flop_formula(ops.ntm_forward)
    def _(xp, Wc, Wp, bp, M0, hr0, w0, c0, dims, clip, eps, keep, out_shape=None) -> int:
        return xp[0] * ntm_step(xp, Wc, Wp, dims)

    @register_flop_formula(ops.ntm_backward)
    def _(dhr, Wc, Wp, hr, cs, gates, *rest, out_shape=None) -> int:
        dims = rest[-3]
        return 2 * gates[0] * ntm_step(gates, Wc, Wp, dims)

    def dnc_step(xp: Any, Wc: Any, Wi: Any, dims: list[int]) -> int:
        _, B, G = xp
        N, W, R = dims
        ctrl = 2 * B * G * Wc[1] + 2 * B * Wi[0] * Wi[1]  # [Whh | Wr] and the interface
        # content similarities (write key, read keys), the link products (forward, backward), the reads
        return ctrl + 2 * B * (R + 1) * N * W + 4 * B * R * N * N + 2 * B * R * N * W

    @register_flop_formula(ops.dnc_forward)
    def _(xp, Wc, Wi, bi, *rest, out_shape=None) -> int:
        return xp[0] * dnc_step(xp, Wc, Wi, rest[-4])

    @register_flop_formula(ops.dnc_backward)
    def _(dhr, dcT, dMT, dLT, duT, dpT, dwwT, dwrT, Wc, Wi, hr, cs, gates, *rest, out_shape=None) -> int:
        return 2 * gates[0] * dnc_step(gates, Wc, Wi, rest[-3])

    @register_flop_formula(ops.slstm_forward)
    def _(wx, Rd, h0, c0, n0, m0, keep, out_shape=None) -> int:
        T, B, _ = wx
        return 2 * T * B * Rd[0] * Rd[1]  # h_{t-1} Rd, the block-diagonal R as one dense product

    @register_flop_formula(ops.slstm_backward)
    def _(dhs, dcT, dnT, dmT, Rd, hs, cs, ns, ms, acts, out_shape=None) -> int:
        T, B, _ = acts
        return 4 * T * B * Rd[0] * Rd[1]  # dh_{t-1} = da Rdᵀ and dRd += h_{t-1}ᵀ da

    def stack_step(B: int, R: Any, A: Any, D: Any) -> int:
        return 2 * B * (R[0] * R[1] + A[0] * A[1] + D[0] * D[1])

    @register_flop_formula(ops.selective_scan_forward)
    def _(dt, x, B, C, A, h0, chunk, keep, out_shape=None) -> int:  # y_t = h_t C_t: the chunked form's einsum
        return 2 * dt[0] * dt[1] * dt[2] * A[1]

    @register_flop_formula(ops.selective_scan_backward)
    def _(dy, dh, dt, *rest, out_shape=None) -> int:  # the einsum's two gradients
        return 4 * dt[0] * dt[1] * dt[2] * rest[3][1]

    def dplr(
        q: Any, v: Any, a: Any
    ) -> int:  # the recurrent form's products a step: u = Sᵀa (with a), o = Sᵀq
        B, H, T, dk = q
        return 2 * B * H * T * dk * v[3] * (2 if a[0] else 1)

    @register_flop_formula(ops.dplr_forward)
    def _(q, k, v, a, b, g, S0, chunk, keep, out_shape=None) -> int:
        return dplr(q, v, a)

    @register_flop_formula(ops.dplr_backward)
    def _(do, dST, q, k, v, a, *rest, out_shape=None) -> int:  # each product's two gradients
        return 2 * dplr(q, v, a)

    @register_flop_formula(ops.stack_forward)
    def _(drive, R, A, bA, D, bD, dims, out_shape=None) -> int:
        return drive[0] * stack_step(drive[1], R, A, D)

    @register_flop_formula(ops.stack_backward)
    def _(dhs, R, A, D, *rest, out_shape=None) -> int:
        return 2 * dhs[0] * stack_step(dhs[1], R, A, D)

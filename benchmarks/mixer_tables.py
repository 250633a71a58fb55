"""The three speed tables of the backbone mixers (issues 14 and 15) from one `bench_mixers.py` session's
pytest-benchmark JSON: each figure is the fastest round of its case (`--stat min`, the default: on a shared
machine other jobs only ever add time, and with the two rounds of the long cases a median is their mean,
one disturbed round moving it by half its delay) or the median (`--stat median`); every ratio is between
cases of that same session.

    python benchmarks/mixer_tables.py mixer-speed.json [--stat min] > mixer-speed.md

Targets: recurrent / parallel >= 10 at the longest length; parallel / nn.LSTM (equal parameters) <= 3 at
T = 1000; the parallel form's time exponent near 1 (hyena and s4d, FFT: T log T, about 1.1 over 100..2000).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from seqbench.bench import fit_exponent


def load(path: str, stat: str = "min") -> tuple[dict[tuple[str, int, str], dict[str, Any]], dict[str, Any]]:
    with open(path) as f:
        data = json.load(f)
    cases = {}
    for b in data["benchmarks"]:
        e = b["extra_info"]
        cases[e["model"], e["T"], e["form"]] = {
            **e,
            "median": b["stats"][stat],
            "rounds": b["stats"]["rounds"],
        }
    return cases, data


def fmt(exponent: float | None) -> str:
    return "-" if exponent is None else f"{exponent:.2f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def tables(cases: dict[tuple[str, int, str], dict[str, Any]], data: dict[str, Any], stat: str = "min") -> str:
    models = list(dict.fromkeys(m for m, _, _ in cases))
    lengths = sorted({T for _, T, _ in cases})
    longest = max(lengths)
    first = next(iter(cases.values()))
    loads = [c[k] for c in cases.values() for k in ("loadavg_before", "loadavg_after") if k in c]
    out = [
        f"Session {data['datetime']}, torch {first['torch']}, {first['threads']} thread, "
        f"{data['machine_info'].get('cpu', {}).get('brand_raw', '?')}; hidden {first['hidden']}, "
        f"batch {first['batch']}, 16 inputs; {stat} of each case's rounds; load average {min(loads):.1f}-{max(loads):.1f} during the cases.",
        "",
        f"## 1. Parallel form against recurrent form, T = {longest}",
        "",
        "Whole model: `model(x)` against `model.step` over every step (both layers, norms, MLPs stepped). "
        "Mixer alone: `mixer(u)` against `mixer.recurrent_scan(u, state)` on a (B, T, d) input.",
        "",
        "| model | v | parallel s | recurrent s | recurrent / parallel | mixer parallel s | mixer recurrent s "
        "| mixer ratio | >= 10x (model / mixer) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        par, rec = cases.get((m, longest, "parallel")), cases.get((m, longest, "recurrent"))
        mpar, mrec = cases.get((m, longest, "mixer parallel")), cases.get((m, longest, "mixer recurrent"))
        if par is None:
            continue
        if rec is None or mrec is None or mpar is None:
            note = "not measured"
            if par.get("recurrent_only"):
                note = "recurrent form only (nonlinear recurrence)"
            elif not par["recurrent"]:
                note = "no recurrent form"
            out.append(f"| {m} | {par['version']} | {par['median']:.3f} | - | - | - | - | - | {note} |")
            continue
        r, mr = rec["median"] / par["median"], mrec["median"] / mpar["median"]
        out.append(
            f"| {m} | {par['version']} | {par['median']:.3f} | {rec['median']:.3f} | {r:.1f}x | "
            f"{mpar['median']:.3f} | {mrec['median']:.3f} | {mr:.1f}x | {verdict(r >= 10)} / {verdict(mr >= 10)} |"
        )
    out += [
        "",
        "## 2. Parallel form against nn.LSTM at equal parameters; 3. time exponent in T",
        "",
        "nn.LSTM: one layer, 16 inputs, the hidden size H whose parameter count is nearest the model's. "
        f"Exponent: least-squares slope of log time against log T over T = {', '.join(map(str, lengths))}.",
        "",
        "| model | params | nn.LSTM H (params) | "
        + " | ".join(f"T {T}: parallel ms / nn.LSTM ms / ratio" for T in lengths)
        + " | <= 3x at T 1000 | time ~T^ | nn.LSTM ~T^ |",
        "|---|---|---|" + "---|" * len(lengths) + "---|---|---|",
    ]
    for m in models:
        row, par_t, lstm_t = [], [], []
        info = None
        for T in lengths:
            par, lstm = cases.get((m, T, "parallel")), cases.get((m, T, "nn.LSTM"))
            if par is None or lstm is None:
                row.append("-")
                par_t.append(None)
                lstm_t.append(None)
                continue
            info = par
            par_t.append(par["median"])
            lstm_t.append(lstm["median"])
            row.append(
                f"{1e3 * par['median']:.0f} / {1e3 * lstm['median']:.0f} / {par['median'] / lstm['median']:.2f}x"
            )
        if info is None:
            continue
        at1000 = cases.get((m, 1000, "parallel")), cases.get((m, 1000, "nn.LSTM"))
        target = (
            verdict(at1000[0]["median"] / at1000[1]["median"] <= 3)
            if at1000[0] and at1000[1]
            else "not measured"
        )
        ex = fit_exponent(lengths, par_t)
        exl = fit_exponent(lengths, lstm_t)
        out.append(
            f"| {m} | {info['params']:,} | {info['lstm_hidden']} ({info['lstm_params']:,}) | "
            + " | ".join(row)
            + f" | {target} | {fmt(ex)} | {fmt(exl)} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json")
    ap.add_argument("--stat", choices=["min", "median"], default="min")
    args = ap.parse_args()
    cases, data = load(args.json, args.stat)
    print(tables(cases, data, args.stat), end="")


if __name__ == "__main__":
    main()

"""The report's horizon-against-truncation section: drawn from stored runs, only where tbptt runs exist."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from seqbench.cli import main
from seqbench.config import make_run_config
from seqbench.report_trainers import horizon_sections, horizons, studies
from seqbench.runner import run

BUDGET = {"steps": 100, "batch_size": 8, "hidden_size": 16, "lr": 0.01, "trainer": "bptt", "threads": 1}


def row(seed: int, T: int, accuracy: float, k2: int | None = None, **over) -> dict:
    train = {
        **BUDGET,
        "trainer": "tbptt" if k2 else "bptt",
        "trainer_options": {"k1": k2, "k2": k2} if k2 else {},
    }
    r = {
        "task": "copy_memory",
        "model": "lstm",
        "model_options": json.dumps({"num_layers": 1}),
        "hidden_size": 16,
        "train_config": json.dumps(train),
        "task_options": json.dumps({"T": T, "symbols": 4, "copy_length": 1}),
        "train_length": T,
        "trainer": "tbptt" if k2 else "bptt",
        "trainer_options": json.dumps({"k1": k2, "k2": k2} if k2 else {}),
        "seed": seed,
        "accuracy": accuracy,
        "status": "ok",
        "stream_episodes": 0,
    }
    r.update(over)
    return r


def grid(cells: dict[tuple[int | None, int], list[float]]) -> pd.DataFrame:
    """{(k2 or None for bptt, T): [accuracy of seed 0, seed 1, ...]} -> rows."""
    return pd.DataFrame(
        [row(seed, T, acc, k2) for (k2, T), accs in cells.items() for seed, acc in enumerate(accs)]
    )


def test_horizon_per_seed_stops_at_the_first_length_missed():
    runs = grid(
        {
            (5, 5): [1.0, 1.0],
            (5, 10): [0.3, 1.0],
            (5, 20): [1.0, 0.2],  # seed 0 recalls at 20 after missing 10: its horizon is still 5
            (None, 5): [1.0, 1.0],
            (None, 10): [1.0, 1.0],
            (None, 20): [1.0, 0.95],
        }
    )
    (fixed, study), *rest = list(studies(runs))
    assert not rest and fixed["knob"] == "T" and fixed["model"] == "lstm"
    assert horizons(study, 0.9) == {"bptt": [20, 20], "tbptt k1=5 k2=5": [5, 10]}


def test_old_spellings_of_the_same_configuration_form_one_study():
    """Rows stored before options were resolved ({}), or before an option existed, group with the rest, as
    their config_hash does; the threads setting does not split a study either."""
    runs = grid({(5, 5): [1.0], (5, 10): [0.0], (None, 5): [1.0], (None, 10): [1.0]})
    old = row(
        1,
        5,
        1.0,
        5,
        model_options="{}",
        task_options=json.dumps({"T": 5, "symbols": 4, "copy_length": 1, "eval_lengths": None}),
        train_config=json.dumps({**BUDGET, "trainer": "tbptt", "threads": 2}),
    )
    found = list(studies(pd.concat([runs, pd.DataFrame([old])], ignore_index=True)))
    assert len(found) == 1
    assert horizons(found[0][1], 0.9)["tbptt k1=5 k2=5"] == [5, 5]


def test_a_different_budget_is_another_study_and_no_tbptt_means_none():
    runs = grid({(5, 5): [1.0], (5, 10): [0.0], (None, 5): [1.0], (None, 10): [1.0]})
    wider = runs.assign(hidden_size=32)
    assert len(list(studies(pd.concat([runs, wider], ignore_index=True)))) == 2
    bptt_only = grid({(None, 5): [1.0], (None, 10): [1.0]})
    assert list(studies(bptt_only)) == [] and horizon_sections(bptt_only) == []
    streamed = runs.assign(stream_episodes=4)
    assert list(studies(streamed)) == []


def test_the_section_draws_mean_and_confidence_band_against_k2():
    runs = grid(
        {
            (5, 5): [1.0, 1.0, 1.0],
            (5, 10): [0.0, 1.0, 0.0],
            (10, 5): [1.0, 1.0, 1.0],
            (10, 10): [1.0, 1.0, 1.0],
            (None, 5): [1.0, 1.0, 1.0],
            (None, 10): [1.0, 1.0, 1.0],
        }
    )
    (section,) = horizon_sections(runs)
    fig = section.figures[0]
    tb, bound, full = fig.lines
    assert tb.x == [5.0, 10.0] and tb.y == pytest.approx([20 / 3, 10.0])
    assert tb.lo[0] < tb.y[0] < tb.hi[0] and tb.lo[1] == tb.hi[1] == 10.0  # no spread, no band
    assert bound.y == bound.x and full.y == [10.0, 10.0]
    table = section.tables[0]
    assert table.cells[0][:3] == ["tbptt k1=5 k2=5", "3", "5, 10, 5"]
    assert table.cells[-1][0] == "bptt"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    for T in (3, 5):
        for trainer, opts in (("bptt", {}), ("tbptt", {"k1": 2, "k2": 2})):
            cfg = make_run_config(
                "copy_memory",
                "lstm",
                preset="smoke",
                steps=3,
                hidden_size=8,
                task_options={"T": T, "copy_length": 1, "symbols": 4},
                trainer=trainer,
                trainer_options=opts,
                threads=1,
            )
            assert run(cfg, root)["status"] == "ok"
    return root


def test_report_has_the_section_only_with_tbptt_runs(store, tmp_path):
    out = tmp_path / "report.md"
    res = CliRunner().invoke(
        main, ["report", "--results", str(store), "--format", "markdown", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "trainers: copy_memory/lstm (H=8) horizon against truncation" in text
    assert "memory horizon against truncation" in text  # the figure
    plain = make_run_config("copy", "lstm", preset="smoke", steps=2, hidden_size=8, threads=1)
    other = tmp_path / "plain"
    run(plain, other)
    res = CliRunner().invoke(
        main, ["report", "--results", str(other), "--format", "markdown", "--out", str(out)]
    )
    assert res.exit_code == 0 and "horizon against truncation" not in out.read_text()

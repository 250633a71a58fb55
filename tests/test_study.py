"""Studies (seqbench.study): the learning rate chosen on the validation set, the climb that stops at the
first rung not solved, resuming, the quick variant's runs reused, and the report and leaderboard views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqbench.cli import main
from seqbench.errors import OptionsError, SeqbenchError
from seqbench.executors import EXECUTORS
from seqbench.store import read_runs
from seqbench.study import (
    Ladder,
    Study,
    choose_lr,
    horizon_table,
    load_study,
    stored_studies,
    write_definition,
)

SPEC = """
name: tiny
models: [lstm]
seeds: 2
lrs: [0.001, 0.003, 0.01]
params: 2000
preset: smoke
executor: serial
train: {{steps: 4, eval_every: 2}}
results: {results}
tasks:
  copy:
    knob: max_length
    rungs: [1, 2]
    options: {{eval_lengths: ["{{rung}}"]}}
    threshold: {threshold}
quick: {{seeds: 1}}
"""


def _study(tmp_path: Path, threshold: float, quick: bool = False) -> tuple[Study, Path]:
    path = tmp_path / "study.yaml"
    path.write_text(SPEC.format(results=tmp_path / "res", threshold=threshold))
    return Study(load_study(path, quick=quick)), path


def _run(study: Study) -> list:
    executor = EXECUTORS["serial"](same_process=True)
    return list(study.run(executor, lambda *a: None))


def test_lr_is_chosen_on_validation_never_on_test():
    rows = {
        1e-3: {"val_accuracy": 0.50, "accuracy": 0.99, "solved": False, "val_loss": 0.7},
        3e-3: {"val_accuracy": 0.80, "accuracy": 0.10, "solved": False, "val_loss": 0.4},
        1e-2: {"val_accuracy": 0.79, "accuracy": 0.10, "solved": False, "val_loss": 0.3},
    }
    # 0.79 is within 0.01 of the best: neither solved, so the lower validation loss decides
    assert choose_lr(rows) == 1e-2
    rows[1e-2]["val_accuracy"] = 0.60
    assert choose_lr(rows) == 3e-3  # the test accuracy of 1e-3 (0.99) plays no part
    solved = {
        1e-3: {"val_accuracy": 1.0, "solved": True, "steps_to_solve": 900, "val_loss": 0.01},
        3e-3: {"val_accuracy": 1.0, "solved": True, "steps_to_solve": 300, "val_loss": 0.02},
        1e-2: None,  # not stored: never chosen
    }
    assert choose_lr(solved) == 3e-3  # both solved: the faster one


def test_ladder_criteria():
    acc = Ladder(knob="max_length", rungs=[1], threshold=0.9)
    assert acc.solves(0.9) and not acc.solves(0.89) and not acc.solves(float("nan"))
    mse = Ladder(knob="T", rungs=[10], metric="mse", threshold=0.01, below=True)
    assert mse.solves(0.005) and not mse.solves(0.01)
    opts = Ladder(knob="max_length", rungs=[4], options={"eval_lengths": ["{rung}"], "bits": 8})
    assert opts.task_options(4) == {"eval_lengths": [4], "bits": 8, "max_length": 4}


def test_climb_to_the_top_then_resume_runs_nothing(tmp_path):
    study, _ = _study(tmp_path, threshold=0.0)  # every rung solved: the climb reaches the top
    outcomes = _run(study)
    # 3 learning rates at rung 1 (seed 0), then seed 1 at rung 1, then seeds 0 and 1 at rung 2
    assert len(outcomes) == 3 + 1 + 2
    runs = read_runs(tmp_path / "res")
    assert (runs["train_config"].map(lambda s: json.loads(s)["monitor"]) == "validation").all()
    assert runs["val_accuracy"].notna().all()
    (pair,) = study.pairs(runs)
    assert pair.finished and pair.horizon == 2 and pair.lr in (0.001, 0.003, 0.01)
    assert [len(r.rows) for r in pair.rungs] == [2, 2]
    assert _run(study) == []  # everything is stored: a second invocation runs nothing
    columns, cells = horizon_table(study.spec, [pair])
    assert columns[-1] == "copy (max_length)" and cells[0][-1] == "2 (2/2)"


def test_climb_stops_at_the_first_rung_not_solved_and_quick_runs_are_reused(tmp_path):
    quick, _ = _study(tmp_path, threshold=2.0, quick=True)  # never solved; quick: one seed
    assert quick.spec.name == "tiny-quick" and quick.spec.seeds == 1
    assert len(_run(quick)) == 3  # the three rates; their best at seed 0 is rung 1's only seed
    full, _ = _study(tmp_path, threshold=2.0)
    outcomes = _run(full)
    assert len(outcomes) == 1  # seed 1 at rung 1, and no rung 2: the quick variant's runs count
    (pair,) = full.pairs(read_runs(tmp_path / "res"))
    assert pair.horizon == 0 and pair.finished and len(pair.rungs) == 1
    assert {s.name for s in stored_studies(tmp_path / "res")} == {"tiny", "tiny-quick"}


def test_report_opens_with_the_heatmap_and_leaderboard_shows_horizons(tmp_path):
    study, _ = _study(tmp_path, threshold=0.0)
    _run(study)
    res = str(tmp_path / "res")
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", "--results", res, "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = out.read_text()
    first = doc.index("<h2>")
    assert doc[first:].startswith("<h2>study tiny: memory horizons</h2>")
    assert doc.index("<svg", first) < doc.index("<h2>", first + 1)  # the heatmap before anything else
    result = CliRunner().invoke(
        main, ["leaderboard", "--results", res, "--study", "tiny", "--format", "markdown"]
    )
    assert result.exit_code == 0 and "| lstm |" in result.output and "2 (2/2)" in result.output
    result = CliRunner().invoke(main, ["leaderboard", "--results", res, "--study", "tiyn"])
    assert result.exit_code == 2 and "Did you mean 'tiny'" in result.output


def test_a_changed_study_carries_its_version_in_its_definition_and_headings(tmp_path):
    study, path = _study(tmp_path, threshold=0.0)
    definition = tmp_path / "res" / "studies" / "tiny.json"
    write_definition(study.spec)
    assert "version" not in json.loads(definition.read_text())  # version 1: stored as before the field
    path.write_text(path.read_text().replace("name: tiny", "name: tiny\nversion: 2"))
    spec = load_study(path)
    assert spec.label == "tiny v2" and load_study(path, quick=True).label == "tiny-quick v2"
    _run(Study(spec))
    assert json.loads(definition.read_text())["version"] == 2
    (stored,) = [s for s in stored_studies(tmp_path / "res") if s.name == "tiny"]
    assert stored.version == 2
    board = CliRunner().invoke(main, ["leaderboard", "--results", str(tmp_path / "res"), "--study", "tiny"])
    assert board.exit_code == 0 and "study tiny v2: memory horizons" in board.output


def test_invalid_studies_are_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(results=tmp_path, threshold=0.5).replace("0.001, 0.003, 0.01", "0.001, 0.01"))
    with pytest.raises(OptionsError, match="lrs"):
        load_study(path)
    path.write_text(SPEC.format(results=tmp_path, threshold=0.5).replace("[lstm]", "[lsmt]"))
    with pytest.raises(SeqbenchError, match="lstm"):
        load_study(path)
    path.write_text(SPEC.format(results=tmp_path, threshold=0.5).replace("quick: {seeds: 1}", ""))
    with pytest.raises(OptionsError, match="quick"):
        load_study(path, quick=True)
    result = CliRunner().invoke(main, ["study", "--config", str(path), "--status"])
    assert result.exit_code == 0 and "lstm" in result.output  # nothing stored yet: nothing to show but names


from tests.test_report import CHROMIUM, REQUIRED, chromium  # noqa: E402


@pytest.mark.skipif(not CHROMIUM and not REQUIRED, reason="Chromium is not installed (.ci/run installs it)")
def test_study_report_renders_in_headless_chromium_heatmap_first(tmp_path):
    import re

    study, _ = _study(tmp_path, threshold=0.0)
    _run(study)
    out = tmp_path / "r.html"
    assert (
        CliRunner().invoke(main, ["report", "--results", str(tmp_path / "res"), "--out", str(out)]).exit_code
        == 0
    )
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", out.as_uri(), profile=tmp_path / "p").stdout
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom).group(1)))
    assert attrs["script-errors"] == "0" and attrs["figures-rendered"] == attrs["figures"]
    first_figure = dom.index("<figure")
    assert dom.index("test accuracy over models x rungs") < dom.index("<table")  # the heatmap, then tables
    assert first_figure < dom.index("<table")


def test_agreement_counts_model_pairs_ordered_alike():
    from seqbench.study import Pair, Rung, agreement

    ladder = Ladder(knob="max_length", rungs=[1, 2, 3], threshold=0.9)

    def pair(model: str, accuracies: list[float], seeds: int = 1) -> Pair:
        p = Pair("copy", model, ladder)
        p.rungs = [
            Rung(v, [{"accuracy": a}] * seeds, seeds, ladder)
            for v, a in zip([1, 2, 3], accuracies, strict=False)
        ]
        return p

    full = [pair("a", [1.0, 1.0, 0.2], 3), pair("b", [1.0, 0.5], 3), pair("c", [0.1], 3)]
    quick = [pair("a", [1.0, 0.4]), pair("b", [1.0, 0.6]), pair("c", [0.3])]
    (row,) = agreement(full, quick)
    # full: a (2 rungs) > b (1) > c (0); quick: b (1, 0.6) > a (1, 0.4) > c: a-b disagree, a-c and b-c agree
    assert row == {"task": "copy", "models": 3, "pairs_alike": 2, "pairs": 3, "horizons_equal": 2}


def test_a_study_runs_only_the_models_asked_for(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(SPEC.format(results=tmp_path / "res", threshold=2.0).replace("[lstm]", "[lstm, rnn]"))
    study = Study(load_study(path))
    outcomes = list(study.run(EXECUTORS["serial"](same_process=True), lambda *a: None, models=["rnn"]))
    assert {c.model for c, _ in outcomes} == {"rnn"} and len(outcomes) == 4  # 3 rates, then seed 1
    by = {p.model: p for p in study.pairs(read_runs(tmp_path / "res"))}
    assert by["rnn"].finished and not by["lstm"].finished and by["lstm"].horizon is None


def test_a_quick_variant_naming_an_unknown_task_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    text = SPEC.format(results=tmp_path, threshold=0.5).replace(
        "quick: {seeds: 1}", "quick: {tasks: [adding]}"
    )
    path.write_text(text)
    with pytest.raises(OptionsError, match="adding"):
        load_study(path, quick=True)

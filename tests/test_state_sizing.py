"""Sizing to an equal state size (issue 21's second view): `network.hidden_for_state`, `make_run_config(state=)`,
`--state` on run and sweep, a sweep's `states:`, a study's `state:`. Every registered model either lands on
the closest state its widths reach or is refused with the reason; parameter-sized configurations keep their
hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from seqbench import sweep as sw
from seqbench.cli import main
from seqbench.config import ADDED_LATER, hash_payload, make_run_config
from seqbench.errors import OptionsError
from seqbench.executors import EXECUTORS
from seqbench.leaderboard import aggregate
from seqbench.network import count_state, hidden_for_state
from seqbench.options import resolve_options
from seqbench.registry import MODELS, TASKS
from seqbench.runner import run
from seqbench.store import read_runs
from seqbench.study import CAPPED, Study, horizon_cell, load_study, write_definition
from tests.fakes import FakeEntryPoint

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
LIMIT = 8192  # hidden_for_state's default


def _task(name: str = "copy", **options):
    cls = TASKS.get(name)
    return cls(**resolve_options(cls, options, name))


def _options(model: str) -> dict:
    return resolve_options(MODELS.get(model), {}, model)


def _state(task, model: str, hidden: int, options: dict) -> int | None:
    try:
        return count_state(task, model, hidden, options)
    except (OptionsError, ValueError):
        return None


@pytest.mark.parametrize("target", [2048, 10**9])
@pytest.mark.parametrize("model", MODELS.names())
def test_every_model_lands_on_its_closest_state_or_says_why_not(model, target):
    task, options = _task(), _options(model)
    try:
        hidden = hidden_for_state(task, model, target, options)
    except OptionsError as exc:
        message = str(exc)
        assert model in message and f"{target:,}" in message
        if "at least" in message:  # the part no width sets is already larger: it names what sets it
            assert _state(task, model, 1, options) is None or _state(task, model, 1, options) > target
            assert "options" in message
        elif "at most" in message:
            assert _state(task, model, LIMIT, options) < target
        else:
            assert "does not depend on the width" in message
        return
    assert target != 10**9, f"{model}: no width up to {LIMIT} should reach a billion floats"
    got = _state(task, model, hidden, options)
    # the closest state any width reaches: neither neighbour is closer, and it is the widest with that state
    for other in (hidden - 1, hidden + 1):
        near = _state(task, model, other, options) if 1 <= other <= LIMIT else None
        if near is not None:
            assert abs(got - target) <= abs(near - target), (model, hidden, got, other, near)
    if hidden < LIMIT:
        assert _state(task, model, hidden + 1, options) > got
    # and close: the state grows in steps of at most a few percent here (attention's head width in units)
    assert abs(got - target) <= 0.1 * target, (model, hidden, got)


def test_memory_models_are_refused_below_their_memory_and_sized_above_it():
    task = _task()
    with pytest.raises(OptionsError, match=r"ntm's state is at least 2,838 .*memory_slots, memory_width"):
        hidden_for_state(task, "ntm", 2048, _options("ntm"))
    small = {**_options("ntm"), "memory_slots": 16, "memory_width": 8}
    hidden = hidden_for_state(task, "ntm", 2048, small)
    assert count_state(task, "ntm", hidden, small) == pytest.approx(2048, abs=2)
    with pytest.raises(OptionsError, match=r"stack_rnn's state is at least 513 .*stacks, depth, stack_width"):
        hidden_for_state(task, "stack_rnn", 512, _options("stack_rnn"))


def test_a_growing_state_is_counted_at_the_training_length():
    """The transformer's key/value cache is state_per_step floats a step, counted at the training length:
    one target gives a narrower width on a longer task, and the stored state_size is what was sized."""
    short, long = _task(max_length=10), _task(max_length=40)
    options = _options("transformer")
    w_short = hidden_for_state(short, "transformer", 4096, options)
    w_long = hidden_for_state(long, "transformer", 4096, options)
    assert w_long < w_short
    for task in (short, long):
        width = hidden_for_state(task, "transformer", 4096, options)
        assert abs(count_state(task, "transformer", width, options) - 4096) <= 0.1 * 4096
    config = make_run_config("copy", "transformer", preset="smoke", steps=1, state=4096)
    row = run(config, store=False)
    assert row["target_state"] == 4096 and row["state_size"] == count_state(
        config.make_task(), "transformer", config.train.hidden_size, config.model_options
    )
    assert row["state_per_step"] > 0 and row["target_params"] is None


class WidthFreeState(nn.Module):
    """A state set by an option alone (`slots` x 4), whatever the width."""

    def __init__(self, input_size: int, hidden_size: int, slots: int = 8) -> None:
        super().__init__()
        self.lin = nn.Linear(input_size, hidden_size)
        self.state_size = 4 * slots

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class LengthOnlyState(WidthFreeState):
    """Carries nothing fixed; its history grows by 3 floats a step, whatever the width."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.state_size, self.state_per_step = 0, 3


class NoDeclaredState(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lin = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class WideOnly(WidthFreeState):
    """State = width, but the constructor refuses widths below 5."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        if hidden_size < 5:
            raise OptionsError("wide_only: hidden_size must be >= 5")
        super().__init__(input_size, hidden_size)
        self.state_size = hidden_size


@pytest.fixture
def fakes(extra_entry_points):
    names = {
        "width_free": "WidthFreeState",
        "length_only": "LengthOnlyState",
        "no_state": "NoDeclaredState",
        "wide_only": "WideOnly",
    }
    extra_entry_points(
        MODELS, *(FakeEntryPoint(n, f"tests.test_state_sizing:{cls}") for n, cls in names.items())
    )


def test_a_state_the_width_does_not_set_is_refused_with_what_sets_it(fakes):
    task = _task()
    with pytest.raises(OptionsError, match=r"does not depend on the width.*options slots.*Change slots"):
        hidden_for_state(task, "width_free", 64, {"slots": 8})
    with pytest.raises(OptionsError, match=r"does not depend on the width.*3 floats per step.*length 20"):
        hidden_for_state(task, "length_only", 64, {})
    with pytest.raises(OptionsError, match=r"declares no state_size.*--params"):
        hidden_for_state(task, "no_state", 64, {})
    with pytest.raises(OptionsError, match="must be positive"):
        hidden_for_state(task, "rnn", 0, {})


def test_widths_the_constructor_refuses_count_as_too_small(fakes):
    task = _task()
    assert hidden_for_state(task, "wide_only", 12, {}) == 12
    assert hidden_for_state(task, "wide_only", 5, {}) == 5
    with pytest.raises(OptionsError, match=r"at least 5 floats per sequence \(width 5"):
        hidden_for_state(task, "wide_only", 3, {})
    with pytest.raises(OptionsError, match=r"at most 8,192 floats .*width 8192"):
        hidden_for_state(task, "wide_only", 10_000, {})


def test_make_run_config_state_is_recorded_exclusive_and_added_later():
    config = make_run_config("copy", "lstm", state=64)
    assert config.state_target == 64 and config.params_target is None and config.train.hidden_size == 32
    for kwargs, message in (
        ({"state": 64, "params": 20000}, "not both"),
        ({"state": 64, "hidden_size": 8}, "not both"),
        ({"state": 0}, "must be positive"),
    ):
        with pytest.raises(OptionsError, match=message):
            make_run_config("copy", "lstm", **kwargs)
    # Added later: at its default it is left out of the hash, so every stored hash stays what it was.
    assert ADDED_LATER["state_target"] is None
    plain = make_run_config("copy", "lstm")
    dumped = plain.model_dump()
    del dumped["state_target"]  # the configuration as the code before this field dumped it
    assert plain.config_hash() == hash_payload(dumped, TASKS.get("copy"), MODELS.get("lstm"))
    assert plain.config_hash() == "20775219a8f297fd"  # the stored quick copy/lstm runs' hash
    # ...and a state-sized run is its own experiment, not the explicit width it landed on
    same_width = make_run_config("copy", "lstm", hidden_size=32)
    assert config.config_hash() != same_width.config_hash()
    assert config.config_hash() != make_run_config("copy", "lstm", state=128).config_hash()


def test_run_and_sweep_take_state(tmp_path):
    cli = CliRunner()
    args = ["run", "--task", "copy", "--model", "gru", "--preset", "smoke", "--steps", "1", "--threads", "1"]
    res = cli.invoke(main, [*args, "--state", "24", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    row = read_runs(tmp_path).iloc[0]
    assert row["target_state"] == 24 and row["state_size"] == 24 and row["hidden_size"] == 24
    assert aggregate(read_runs(tmp_path)).iloc[0]["target_state"] == 24  # the leaderboard carries it
    both = cli.invoke(main, [*args, "--state", "24", "--params", "2000", "--results", str(tmp_path)])
    assert both.exit_code == 2 and "not both" in both.output
    refused = cli.invoke(main, [*args[:4], "ntm", *args[5:], "--state", "24", "--results", str(tmp_path)])
    assert refused.exit_code == 2 and "memory_slots" in refused.output

    spec = sw.make_spec(
        {"tasks": ["copy"], "models": ["lstm", "gru"], "params": [2000], "states": [32, 64], "seeds": 2}
    )
    configs = sw.expand(spec)
    assert len(configs) == 2 * 3 * 2  # models x (one parameter target, then two state targets) x seeds
    sizes = [(c.model, c.params_target, c.state_target) for c in configs[::2]]
    assert sizes[:3] == [("lstm", 2000, None), ("lstm", None, 32), ("lstm", None, 64)]
    assert [c.train.hidden_size for c in configs[2::2][:2]] == [16, 32]  # lstm: 2 floats per unit
    assert "state~32" in sw.describe(configs[2])
    path = tmp_path / "sweep.yaml"
    path.write_text("tasks: [copy]\nmodels: [lstm]\nstates: [64]\npreset: smoke\n")
    assert [c.state_target for c in sw.expand(sw.make_spec(sw.load_spec_file(path)))] == [64]
    sweep = ["sweep", "--task", "copy", "--model", "gru", "--state", "24", "--preset", "smoke"]
    dry = cli.invoke(main, [*sweep, "--steps", "1", "--same-process", "--results", str(tmp_path)])
    assert dry.exit_code == 0, dry.output
    assert "1 already stored" in dry.output  # the run above: one experiment, however it was asked for


STUDY = """
name: tiny-state
models: [gru, ntm]
seeds: 1
lrs: [0.001, 0.003, 0.01]
{size}
preset: smoke
executor: serial
train: {{steps: 2, eval_every: 2}}
results: {results}
tasks:
  copy:
    knob: max_length
    rungs: [1, 2]
    options: {{eval_lengths: ["{{rung}}"]}}
    threshold: 2.0
"""


def test_a_study_sized_by_state(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(size="state: 24", results=tmp_path / "res"))
    study = Study(load_study(path))
    outcomes = list(study.run(EXECUTORS["serial"](same_process=True), lambda *a: None))
    # gru: three rates at rung 1 (seed 0 at the chosen rate is one of them), not solved: the climb ends there;
    # ntm: refused (its memory alone is more than 24 floats)
    assert len(outcomes) == 3
    rows = read_runs(tmp_path / "res")
    assert set(rows["model"]) == {"gru"} and set(rows["target_state"]) == {24}
    assert set(rows["state_size"]) == {24} and rows["target_params"].isna().all()
    pairs = {p.model: p for p in study.pairs(rows)}
    assert pairs["ntm"].error and "memory_slots" in pairs["ntm"].error and pairs["gru"].state_size == 24
    assert json.loads((tmp_path / "res" / "studies" / "tiny-state.json").read_text())["state"] == 24
    out = tmp_path / "report.md"
    made = CliRunner().invoke(
        main, ["report", "--results", str(tmp_path / "res"), "--format", "markdown", "--out", str(out)]
    )
    assert made.exit_code == 0, made.output
    assert "cannot take any task at this budget (n/a): ntm" in out.read_text()
    assert "not run yet" not in out.read_text()
    for size, message in (("params: 2000\nstate: 24", "not both"), ("", "one of them")):
        path.write_text(STUDY.format(size=size, results=tmp_path / "res"))
        with pytest.raises(OptionsError, match=message):
            load_study(path)


def test_a_parameter_study_keeps_its_definition_and_its_stored_runs():
    spec = load_study(REFERENCE / "study.yaml", quick=True, results=str(REFERENCE))
    assert spec.state is None and spec.params == 20000
    # the committed quick study's rows are still found: its configurations hash as they did
    pairs = Study(spec).pairs(read_runs(REFERENCE))
    assert sum(r is not None for p in pairs for r in p.lr_rows.values()) > 0
    stored = json.loads((REFERENCE / "studies" / "reference-quick.json").read_text())
    ours = json.loads(spec.model_dump_json(exclude={"state"}))
    assert "state" not in stored and {**ours, "results": None} == {**stored, "results": None}


def test_the_stored_definition_of_a_parameter_study_has_no_state_key(tmp_path):
    spec = load_study(REFERENCE / "study.yaml", quick=True, results=str(tmp_path))
    assert "state" not in json.loads(write_definition(spec).read_text())


def test_a_climb_ends_below_the_first_rung_the_state_budget_cannot_size(tmp_path):
    # 24 floats: a transformer's cache fits at copy length 1 (width 7), not at length 2 (32 floats at width 1)
    path = tmp_path / "study.yaml"
    text = STUDY.format(size="state: 24", results=tmp_path / "res").replace("[gru, ntm]", "[transformer]")
    path.write_text(text.replace("threshold: 2.0", "threshold: 0.0"))  # every rung run is solved
    study = Study(load_study(path))
    outcomes = list(study.run(EXECUTORS["serial"](same_process=True), lambda *a: None))
    assert len(outcomes) == 3  # the three rates at rung 1; rung 2 is never asked for
    (pair,) = study.pairs(read_runs(tmp_path / "res"))
    assert pair.finished and pair.horizon == 1 and not pair.error
    assert pair.capped.startswith("rung 2:") and "no width gives 24" in pair.capped
    assert horizon_cell(pair) == f"1 (1/1){CAPPED}"
    board = CliRunner().invoke(
        main, ["leaderboard", "--results", str(tmp_path / "res"), "--study", "tiny-state"]
    )
    assert board.exit_code == 0, board.output
    assert "cannot be sized" in " ".join(board.output.split())

"""The stored tables' columns, declared once: name, type, default and a one-line meaning.

Everything else derives from these lists: the Parquet schemas (`store.RUN_SCHEMA`, ...), a result row's
defaults before training (`run_defaults`), and the README's column table (`markdown`; a test checks that
the README holds exactly it). Column names are forever: renaming one breaks every stored leaderboard. Add a
column at the end of its list (files stored before it read back with nulls there); never rename.

    python -m seqbench.columns    # prints the README's table of result-row columns
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Stored types, by name (mapped onto Arrow types in `store.arrow_schema`).
TYPES = ("string", "int64", "float64", "bool", "timestamp")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # one of TYPES; "timestamp" is UTC, microseconds
    doc: str
    default: Any = None  # what a row holds before anything sets it

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: type {self.type!r} is not one of {TYPES}")


def _c(name: str, type: str, doc: str, default: Any = None) -> Column:
    return Column(name, type, doc, default)


#: Where and with what a row was produced: one `provenance.provenance()` fills them for runs, bench rows
#: and probes alike.
PROVENANCE = [
    _c("created_at", "timestamp", "when the row was made (UTC)"),
    _c("seqbench_version", "string", "seqbench's version"),
    _c(
        "git_sha",
        "string",
        "commit of the seqbench checkout that ran, `-dirty` if changed; `unknown` outside one",
    ),
    _c("device", "string", "cpu or cuda"),
    _c("device_name", "string", "the CPU's model name or the GPU's name"),
    _c("torch_version", "string", "torch's version"),
    _c("python_version", "string", "Python's version"),
    _c("platform", "string", "the operating system (`platform.platform()`)"),
    _c("kernels", "string", "which implementation of a model's own loops ran, e.g. `lstm_cell=cpp-avx2`"),
    _c("threads", "int64", "torch CPU threads"),
]
_P = {c.name: c for c in PROVENANCE}

RUN_COLUMNS = [
    # identity
    _c("run_id", "string", "unique, sortable by time"),
    _c("kind", "string", "`run`", "run"),
    _P["created_at"],
    _P["seqbench_version"],
    _P["git_sha"],
    _c("config_hash", "string", "the experiment: everything but the seed, the device and the threads"),
    # what ran
    _c("task", "string", "registered task name"),
    _c("task_options", "string", "JSON: the task's complete options (defaults filled in)"),
    _c("task_provider", "string", "package==version providing the task"),
    _c("model", "string", "registered model name"),
    _c("model_options", "string", "JSON: the model's complete options (defaults filled in)"),
    _c("model_provider", "string", "package==version providing the model"),
    _c("seed", "int64", "seeds data and initialisation"),
    _c("preset", "string", "smoke, quick or paper"),
    _c("train_config", "string", "JSON: optimiser, lr, clipping, batch size, steps, ..."),
    _P["device"],
    _P["device_name"],
    _c("dtype", "string", "floating-point type of the parameters", "float32"),
    _P["torch_version"],
    _P["python_version"],
    _P["platform"],
    _P["kernels"],
    _P["threads"],
    # size
    _c("hidden_size", "int64", "width of the model (the NTM's controller size)"),
    _c("params", "int64", "trainable parameters of the whole network (read-in, model, read-out)"),
    _c(
        "state_size",
        "int64",
        "floats per sequence carried between steps or held in memory, at the training length",
    ),
    # training
    _c("steps", "int64", "optimiser steps taken", 0),
    _c("samples_seen", "int64", "training sequences", 0),
    _c("tokens_seen", "int64", "training tokens (sequences x length)", 0),
    _c("train_time_s", "float64", "time in training steps (no evaluation)", 0.0),
    _c("data_time_s", "float64", "of which generating the batches", 0.0),
    _c("eval_time_s", "float64", "time in evaluations (during training and the final one)", 0.0),
    _c("wall_time_s", "float64", "the whole run", 0.0),
    _c("status", "string", "ok, diverged, oom, error or interrupted", "ok"),
    _c("error", "string", "what went wrong, when status is not ok"),
    # speed
    _c("train_tokens_per_s", "float64", "training tokens/s, warm-up steps and evaluation excluded"),
    _c("infer_tokens_per_s", "float64", "tokens/s of the final evaluation's forward passes"),
    # memory
    _c("peak_memory_bytes", "int64", "peak memory of the run (see memory_kind)"),
    _c("memory_kind", "string", "cuda: max_memory_allocated; cpu: growth of the peak resident set"),
    # quality
    _c(
        "accuracy",
        "float64",
        "primary accuracy at the training length, or the task's own summary (the Chomsky suite's mean over its evaluation lengths, Zoology's over its test configurations), final model",
    ),
    _c("loss", "float64", "loss at the training length (or in the task's summary), final model"),
    _c("metrics", "string", "JSON: the task's own metrics at the training length"),
    _c("accuracy_by_length", "string", 'JSON: accuracy at each evaluation length, {"10": 1.0, ...}'),
    _c("chance_accuracy", "float64", "accuracy of guessing, at the training length"),
    _c("train_length", "int64", "the longest training length"),
    _c("solved", "bool", "accuracy reached solve_threshold at the training length", False),
    _c("steps_to_solve", "int64", "steps when it did"),
    _c("samples_to_solve", "int64", "sequences when it did"),
    _c("time_to_solve_s", "float64", "training time when it did"),
    # added after the first release of the schema (older files read back with nulls here)
    _c("target_params", "int64", "the parameter count the width was sized to (--params), if any"),
    _c("state_per_step", "int64", "floats a growing state (attention history) adds per step; 0 if fixed"),
    _c("chance_metrics", "string", "JSON: the chance predictor's metrics on the scored evaluation set"),
    _c("task_version", "int64", "the task class's `version` (null: stored before versions existed, i.e. 1)"),
    _c(
        "model_version", "int64", "the model class's `version` (null: stored before versions existed, i.e. 1)"
    ),
    _c(
        "trainer",
        "string",
        "how gradients were computed: bptt, tbptt, rtrl or uoro (seqbench.trainers)",
        "bptt",
    ),
    _c("trainer_options", "string", 'JSON, complete: {"k1": 10, "k2": 20} for tbptt', "{}"),
    _c("stream_episodes", "int64", "episodes per batch of an unending stream (--stream); 0: episodes", 0),
    _c("updates", "int64", "optimiser updates (tbptt, rtrl and uoro make several per batch)", 0),
    _c(
        "val_accuracy",
        "float64",
        "primary accuracy on the validation set (its own seed, never the test set's) at the training length, final model",
    ),
    _c("val_loss", "float64", "loss on the validation set at the training length, final model"),
    _c(
        "target_state",
        "int64",
        "the state size (floats per sequence, at the training length) the width was sized to (--state), if any",
    ),
]

CURVE_COLUMNS = [
    _c("run_id", "string", "the run this curve belongs to"),
    _c("step", "int64", "optimiser step"),
    _c("samples_seen", "int64", "training sequences so far"),
    _c("train_time_s", "float64", "training time so far"),
    _c(
        "split",
        "string",
        "train (running mean since the last point), eval (the test set) or val (the validation set)",
    ),
    _c("length", "int64", "evaluation length; null for train"),
    _c("metric", "string", "metric name"),
    _c("value", "float64", "its value"),
]

BENCH_COLUMNS = [
    _c("kind", "string", "`bench`", "bench"),
    _c("bench_id", "string", "one `seqbench bench`"),
    _P["created_at"],
    _P["seqbench_version"],
    _P["git_sha"],
    _c("model", "string", "a registered model, or nn.LSTM (the reference), nn.GRU, nn.RNN"),
    _c("model_options", "string", "JSON"),
    _P["device"],
    _P["device_name"],
    _P["threads"],
    _P["torch_version"],
    _P["python_version"],
    _P["platform"],
    _P["kernels"],
    _c("hidden_size", "int64", "width"),
    _c("length", "int64", "sequence length"),
    _c("batch_size", "int64", "sequences per step"),
    _c("input_size", "int64", "input features"),
    _c("rounds", "int64", "interleaved timing rounds"),
    _c("status", "string", "ok or error"),
    _c("error", "string", "what went wrong"),
    _c("params", "int64", "parameters of the model"),
    _c("state_size", "int64", "floats of state per sequence"),
    _c("train_step_s", "float64", "median forward + backward"),
    _c("train_tokens_per_s", "float64", "tokens/s of the training step"),
    _c("infer_step_s", "float64", "median forward under no_grad"),
    _c("infer_tokens_per_s", "float64", "tokens/s of inference"),
    _c("peak_memory_bytes", "int64", "peak memory of one training step"),
    _c("memory_kind", "string", "cuda or cpu"),
    _c("flops", "int64", "per training step (forward + backward)"),
    _c("flops_per_s", "float64", "flops / train_step_s"),
    _c("matmul_flops_per_s", "float64", "a large matrix product on the same device, same run"),
    _c("flops_fraction", "float64", "flops_per_s / matmul_flops_per_s"),
    _c("ratio_train", "float64", "to nn.LSTM of the same hidden size and length, same rounds"),
    _c("ratio_infer", "float64", "inference time to nn.LSTM's"),
    _c("ratio_memory", "float64", "peak memory to nn.LSTM's"),
    _c("family_reference", "string", "nn.GRU / nn.RNN for the GRU and RNN families"),
    _c("ratio_family", "float64", "train time against family_reference, same rounds"),
    _c("time_exponent", "float64", "train_step_s ∝ length^exponent over the bench's lengths"),
    _c("memory_exponent", "float64", "peak memory ∝ length^exponent"),
]

PROBE_COLUMNS = [
    _c("probe_id", "string", "one `seqbench probe`"),
    _P["created_at"],
    _c("task", "string", "task name"),
    _c("task_options", "string", "JSON: complete options"),
    _c("model", "string", "model name"),
    _c("model_options", "string", "JSON: complete options"),
    _c("hidden_size", "int64", "width"),
    _c("seed", "int64", "seed of data and initialisation"),
    _c("stage", "string", "init or trained"),
    _c("steps_trained", "int64", "training steps before this profile"),
    _c("length", "int64", "sequence length"),
    _c("step", "int64", "input position"),
    _c("distance", "int64", "steps before the last scored position"),
    _c("grad_norm", "float64", "mean over sequences of ||dL_final / dx_step||"),
    _c("relative", "float64", "grad_norm / grad_norm at distance 0"),
    # added later: the provenance every row carries
    *(c for c in PROVENANCE if c.name != "created_at"),
]


def defaults(columns: list[Column]) -> dict[str, Any]:
    """Every column of a row, at its default."""
    return {c.name: c.default for c in columns}


def run_defaults() -> dict[str, Any]:
    """A result row before training: every column, at its default."""
    return defaults(RUN_COLUMNS)


def markdown(columns: list[Column] = RUN_COLUMNS) -> str:
    """The columns as a Markdown table (the README's, for the result row)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.type} | {c.doc} |" for c in columns]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")

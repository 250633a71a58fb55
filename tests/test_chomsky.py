"""The Chomsky-hierarchy suite against its definition: every answer recomputed from the input by a plain
Python oracle written from NNCH's task descriptions, the answer tape, the termination masks, the protocol's
lengths and its score."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import seqbench
from seqbench.registry import TASKS
from seqbench.tasks.chomsky.modular_arithmetic import evaluate

SUITE = TASKS.names("chomsky/*")
OPS = {5: "+", 6: "-", 7: "*", 8: "(", 9: ")"}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def little(bits: list[int]) -> int:
    return sum(b << i for i, b in enumerate(bits))


def ended(result: list[int], n_out: int) -> list[int]:
    return [*result, 2] + [0] * (n_out - len(result) - 1)


def stack_oracle(x: list[int]) -> list[int]:
    if len(x) == 1:
        return [x[0], 2]
    s = 0
    while s < len(x) and x[s] < 2:
        s += 1
    stack = x[:s]
    for a in x[s:]:
        stack = stack[:-1] if a == 2 else [*stack, a - 3]
    return ended(stack[::-1], len(x) + 1)


def solve_oracle(x: list[int]) -> list[int]:
    if len(x) < 3:
        return [0]
    chars = {**{d: str(d) for d in range(5)}, 5: "+", 6: "-", 7: "(", 8: ")", 9: "x"}
    left, right = "".join(chars[t] for t in x[:-2]), x[-1]
    assert x[-2] == 10 and left.count("x") == 1
    solutions = [v for v in range(5) if eval(left.replace("x", str(v))) % 5 == right]
    assert len(solutions) == 1  # + and - only: the solution is unique
    return solutions


def binary_oracle(x: list[int], op) -> list[int]:
    n = len(x)
    if n <= 2:
        return (
            ended([int(b) for b in f"{little(x):b}"[::-1]], n + 1)
            if op is int.__add__
            else ended([0] * (n - 1), n)
        )
    sep = x.index(2)
    value = op(little(x[:sep]), little(x[sep + 1 :]))
    return ended([int(b) for b in f"{value:b}"[::-1]], n + 1 if op is int.__add__ else n)


ORACLES = {
    "chomsky/even_pairs": lambda x: [sum(a != b for a, b in itertools.pairwise(x)) % 2],
    "chomsky/parity_check": lambda x: [sum(x) % 2],
    "chomsky/cycle_navigation": lambda x: [sum(a - 1 for a in x) % 5],
    "chomsky/modular_arithmetic": lambda x: [eval("".join(OPS.get(t, str(t)) for t in x)) % 5],
    "chomsky/stack_manipulation": stack_oracle,
    "chomsky/reverse_string": lambda x: x[::-1],
    "chomsky/modular_arithmetic_brackets": lambda x: [eval("".join(OPS.get(t, str(t)) for t in x)) % 5],
    "chomsky/solve_equation": solve_oracle,
    "chomsky/duplicate_string": lambda x: x + x,
    "chomsky/missing_duplicate_string": lambda x: (
        [1] if len(x) == 1 else [x[(x.index(2) + len(x) // 2) % (2 * (len(x) // 2))]]
    ),
    "chomsky/odds_first": lambda x: x[1::2] + x[::2],
    "chomsky/binary_addition": lambda x: binary_oracle(x, int.__add__),
    "chomsky/binary_multiplication": lambda x: binary_oracle(x, int.__mul__),
    "chomsky/compute_sqrt": lambda x: [
        int(b) for b in f"{math.isqrt(int(''.join(map(str, x)), 2)):b}".zfill(math.ceil(len(x) / 2))
    ],
    "chomsky/bucket_sort": sorted,
}


def test_the_suite_is_the_papers_fifteen_tasks_in_three_classes():
    assert set(SUITE) == set(ORACLES)
    levels = {name: TASKS.get(name).level for name in SUITE}
    assert sorted(levels.values()).count("regular") == 4
    assert sorted(levels.values()).count("dcf") == 4 and sorted(levels.values()).count("cs") == 7
    assert all(TASKS.get(name).suite == "chomsky" for name in SUITE)


@pytest.mark.parametrize("name", SUITE)
@pytest.mark.parametrize("length", [1, 2, 3, 8, 23, 40])
def test_answers_follow_from_the_input(name, length):
    task = seqbench.load_task(name, eval_lengths=(41,))
    b = task.sample(24, length, gen(length))
    m = task.output_length(length)
    n = length - 1 if name == "chomsky/modular_arithmetic" and length % 2 == 0 else length
    assert b.inputs.shape == (24, n + m)
    assert torch.all(b.inputs[:, n:] == task.answer) and torch.all(b.inputs[:, :n] < task.answer)
    assert not b.mask[:, :n].any()
    for row in range(24):
        x, y = b.inputs[row, :n].tolist(), b.targets[row, n:].tolist()
        assert y == ORACLES[name](x), (x, y)
        scored = b.mask[row, n:].tolist()
        if task.termination is not None:  # scored up to and including the first termination token
            end = y.index(task.termination)
            assert scored == [True] * (end + 1) + [False] * (m - end - 1)
        else:
            assert all(scored)


def test_worked_examples():
    # modular arithmetic: 1 - 2*3 + 4 = -1 = 4 (mod 5); 1 + 2*3 = 2; 0*1 + 4*3 - 2 = 0 (NNCH's examples)
    expressions = torch.tensor([[1, 6, 2, 7, 3, 5, 4], [1, 5, 2, 7, 3, 5, 0]])
    assert evaluate(expressions).squeeze(1).tolist() == [4, 2]
    assert evaluate(torch.tensor([[0, 7, 1, 5, 4, 7, 3, 6, 2]])).item() == 0
    # binary addition: 001 + 01101 = 4 + 22 = 26 -> 01011, end, padding to n + 1
    assert binary_oracle([0, 0, 1, 2, 0, 1, 1, 0, 1], int.__add__) == [0, 1, 0, 1, 1, 2, 0, 0, 0, 0]
    assert stack_oracle([0, 1, 1, 0, 4, 2, 2]) == [1, 1, 0, 2, 0, 0, 0, 0]


def test_loss_counts_the_padding_and_accuracy_does_not():
    task = seqbench.load_task("chomsky/binary_addition", eval_lengths=(41,))
    b = task.sample(8, 12, gen(1))
    perfect = torch.nn.functional.one_hot(b.targets, 3).float() * 20
    assert task.metrics(perfect, b) == {"accuracy": 1.0, "sequence_accuracy": 1.0}
    wrong_padding = perfect.clone()
    after = (b.inputs == task.answer) & ~b.mask
    assert after.any()
    wrong_padding[after] = torch.tensor([0.0, 20.0, 0.0])  # a 1 where the padding 0 belongs
    assert task.metrics(wrong_padding, b)["accuracy"] == 1.0
    assert task.loss(wrong_padding, b) > task.loss(perfect, b) + 1.0


def test_protocol_lengths_and_score():
    task = seqbench.load_task("chomsky/parity_check")
    assert task.train_lengths == (1, 40) and task.train_length == 40
    assert task.eval_lengths == tuple(range(40, 501))
    by_length = {
        40: {"accuracy": 1.0, "loss": 0.0},
        41: {"accuracy": 0.5, "loss": 1.0},
        500: {"accuracy": 0.7, "loss": 3.0},
    }
    s = task.summary(by_length)
    assert s["accuracy"] == pytest.approx(0.6) and s["loss"] == pytest.approx(2.0)
    assert s["train_length_accuracy"] == 1.0
    assert task.summary({40: {"accuracy": 0.25}}) == {"accuracy": 0.25}  # stopped before the final evaluation
    assert not task.solved({"accuracy": 1.0}, 0.99)  # a fixed budget, as NNCH trains
    assert task.chance(40)["accuracy"] == 0.5
    with pytest.raises(seqbench.errors.OptionsError, match="beyond"):
        seqbench.load_task("chomsky/parity_check", eval_lengths=(10, 20))


def test_a_seed_gives_the_same_batch_for_the_python_generated_tasks():
    task = seqbench.load_task("chomsky/modular_arithmetic_brackets", eval_lengths=(41,))
    a, b, c = (task.sample(4, 30, gen(s)) for s in (5, 5, 6))
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)


def test_missing_duplicate_string_has_a_regular_shortcut():
    """ww holds an even number of 1s, so the missing symbol is the parity of the visible ones: NNCH's
    context-sensitive task is solved by a parity automaton (the LSTM rows in results/reference/literature
    reach 100% at every length up to 500 after 500 steps)."""
    task = seqbench.load_task("chomsky/missing_duplicate_string", eval_lengths=(41,))
    for n in (2, 9, 40):
        b = task.sample(256, n, gen(n))
        visible = b.inputs[:, :n]
        assert torch.equal((visible == 1).sum(1) % 2, b.targets[:, -1])

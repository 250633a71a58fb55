"""Associative recall (Graves, Wayne & Danihelka 2014, "Neural Turing Machines", §4.3, arXiv:1410.5401;
encoding of MarkPKCollier/NeuralTuringMachine `generate_data.py`, `AssociativeRecallData`, the
reproduction of Collier & Beel 2018).

An item is `item_length` (3) consecutive random `bits`-bit (6) vectors. The default (`variant="markpk"`) is
MarkPK's encoding: `bits + 1` channels; the items follow one another with no delimiter between them (the
extra channel is 0 on every item vector); then a delimiter vector (MarkPK's `eos`: 1 on every channel),
a copy of one item (never the last, uniform over the others), the delimiter again, and `item_length` zero
vectors during which the model answers the item that followed the queried one. The knob (`length`) is the
number of items: 2..6 in training, more in evaluation.

Worked example, 2 items of length 1 (`e`: the all-ones delimiter; `.`: ignored):

    step      1    2    3    4    5    6
    input     A    B    e    A    e    0
    target    .    .    .    .    .    B
    mask      0    0    0    0    0    1

T = n item_length + 2 + 2 item_length steps. Loss: binary cross-entropy on the answer. Metrics: bit errors
per answer, item accuracy (the primary `accuracy`: the whole answer right).
Published: NTM near zero cost after about 30k episodes; LSTM not at zero after 1M.

`variant="seqbench"` is the form seqbench used before (task version 1), closer to the paper's figure: an item
delimiter (channel `bits`) before each item and a query delimiter (channel `bits + 1`) around the query,
`bits + 2` channels, T = n (1 + item_length) + 2 + 2 item_length.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, BitTask


def nn_pad(vectors: torch.Tensor) -> torch.Tensor:
    """(..., c) -> (..., c + 1): the item vectors with MarkPK's extra channel, 0."""
    return torch.nn.functional.pad(vectors, (0, 1))


class AssociativeRecall(BitTask):
    version = 2  # 1: item and query delimiter channels (bits + 2 channels)
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 4000, "batch_size": 32, "eval_every": 100, "eval_size": 128},
        "paper": {"steps": 100_000, "batch_size": 1, "eval_every": 1000, "eval_size": 256},
    }

    def __init__(
        self,
        bits: int = 6,
        item_length: int = 3,
        min_items: int = 2,
        max_items: int = 6,
        eval_lengths: tuple[int, ...] = (6, 8, 12, 15, 20),
        variant: Literal["markpk", "seqbench"] = "markpk",
    ) -> None:
        if variant not in ("markpk", "seqbench"):
            raise OptionsError(
                f"associative_recall: variant must be 'markpk' or 'seqbench', got {variant!r}."
            )
        self.variant = variant
        if bits < 1 or item_length < 1:
            raise OptionsError("associative_recall: bits and item_length must be >= 1.")
        if not 2 <= min_items <= max_items:
            raise OptionsError(
                f"associative_recall: need 2 <= min_items <= max_items, got {min_items}..{max_items}."
            )
        if min(eval_lengths) < 2:
            raise OptionsError(
                "associative_recall: an episode needs at least 2 items (one to query, one to answer)."
            )
        self.bits, self.item_length = bits, item_length
        self.input_size = bits + 1 if variant == "markpk" else bits + 2
        self.output_size = bits
        self.train_lengths = (min_items, max_items)
        self.eval_lengths = tuple(sorted(set(eval_lengths) | {max_items}))

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        if length < 2:
            raise OptionsError(f"associative_recall: needs at least 2 items, got {length}.")
        g, dev, B, n, k, c = generator, generator.device, batch_size, length, self.item_length, self.bits
        items = torch.randint(0, 2, (B, n, k, c), generator=g, device=dev).float()
        query = torch.randint(0, n - 1, (B,), generator=g, device=dev)  # never the last item
        rows = torch.arange(B, device=dev)
        if self.variant == "markpk":
            eos = torch.ones(B, 1, c + 1, device=dev)  # MarkPK's delimiter: every channel 1
            inputs = torch.cat(
                [
                    nn_pad(items.flatten(1, 2)),  # (B, n k, c + 1), the extra channel 0
                    eos,
                    nn_pad(items[rows, query]),
                    eos,
                    torch.zeros(B, k, c + 1, device=dev),
                ],
                dim=1,
            )
            T = inputs.shape[1]
            targets = torch.zeros(B, T, c, device=dev)
            targets[:, T - k :] = items[rows, query + 1]
            mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
            mask[:, T - k :] = True
            return Batch(inputs, targets, mask)
        episode = torch.zeros(B, n, 1 + k, c + 2, device=dev)  # (B, items, delimiter + item, channels)
        episode[:, :, 0, c] = 1.0
        episode[:, :, 1:, :c] = items
        tail = torch.zeros(B, 2 + 2 * k, c + 2, device=dev)  # query delimiter, query, delimiter, answer phase
        tail[:, 0, c + 1] = tail[:, k + 1, c + 1] = 1.0
        tail[:, 1 : k + 1, :c] = items[rows, query]
        inputs = torch.cat([episode.flatten(1, 2), tail], dim=1)  # (B, T, c + 2)
        T = inputs.shape[1]
        targets = torch.zeros(B, T, c, device=dev)
        targets[:, T - k :] = items[rows, query + 1]
        mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
        mask[:, T - k :] = True
        return Batch(inputs, targets, mask)

    def chance(self, length: int) -> dict[str, float]:
        n_bits = self.bits * self.item_length
        return {"accuracy": 2.0**-n_bits, "bit_accuracy": 0.5, "cost_bits": float(n_bits)}

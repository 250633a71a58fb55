"""The block backbone that today's sequence models share (Zoology, Arora et al. 2023; MAD, Poli et al. 2024):
a mixer that moves information along time, inside pre-norm residual blocks.

    h = read_in(x)                                     Linear(input_size, d), d = hidden_size
    for each of num_layers layers:
        h = h + Mixer(Conv(Norm(h)))                   Conv: causal depthwise, length short_conv (0: none)
        h = h + MLP(Norm(h))                           d -> mlp_ratio·d -> d, GELU (mlp_ratio=0: no MLP)
    out = Norm(h)                                      (B, T, hidden_size)

Norm is LayerNorm. The short convolution is a causal depthwise convolution at width d (no bias, no activation)
on the mixer's input, for every model alike: Mamba and Mamba-2 place theirs after their input projection, on
the x (and B, C) branches; one place for all models makes `short_conv=0` mean the same thing for each of
them (Zoology's users found one model compared without the short convolution every other model had).

**Writing a mixer** (one file, one class, and a one-line model class registered as an entry point):

    class MyMixer(Mixer):
        def __init__(self, d_model: int, expand: int = 2, my_option: float = 0.5): ...
        def forward(self, x):                       # (B, T, d) -> (B, T, d), causal: the parallel form
        def step(self, x_t, state):                 # (B, d), state -> (B, d), state: the recurrent form
        def initial_state(self, batch, device, dtype) -> tuple[Tensor, ...]   # the zero state
        def scan(self, x, state):                   # optional: the parallel form from `state`, returning
            ...                                     # (y, final state); the default loops over `step`

    class MyModel(MixerModel):
        mixer = MyMixer
        short_conv = 4        # the default length of the short convolution (0 where the paper has none)

    # pyproject.toml: [project.entry-points."seqbench.models"]  my_model = "seqbench.models.my:MyModel"

- The mixer's constructor takes `d_model` and its own options as keywords with defaults (annotated, they are
  checked and coerced like every model option). It should take `expand` (its inner width factor) and may take
  `layer` and `num_layers`, which the backbone then passes (its position in the stack).
- The model's options are the backbone's (`num_layers`, `short_conv`, `mlp_ratio`) followed by the mixer's:
  the model class's signature is built from both, so `--model-opt d_state=8` is validated, and a run's stored
  options name `short_conv`.
- `step` is the specification; `forward` must equal it (tests compare them in float64, to 1e-10, outputs and
  every gradient). A mixer without a recurrent form (attention, long convolutions) leaves `step`,
  `initial_state` and `scan` out and sets `state_per_step` (floats its cache grows by per step).
- A state is a tuple of tensors whose first dimension is the batch. `state_size` counts its floats per
  sequence from `initial_state` (a complex number counts two): the number of floats the recurrent form carries.

**The whole model's recurrent form** (for truncated BPTT and streaming, when every mixer has one):
`model.initial_state(batch, device, dtype)`, `model.step(x_t, state) -> (h_t, state)` with x_t (B, input_size),
and `model.scan(x, state) -> (h, state)`, the parallel form continued from `state`. A model state is a tuple
with, per layer, the short convolution's last `short_conv - 1` inputs (B, short_conv - 1, d), when it has one,
then the mixer's state tensors.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, ClassVar

import torch
from torch import nn

from seqbench.errors import OptionsError

State = tuple[torch.Tensor, ...]


def count_floats(state: State) -> int:
    """Floats per sequence in a state (first dimension the batch); a complex number counts two."""
    return sum((2 if t.is_complex() else 1) * t[0].numel() for t in state)


class Mixer(nn.Module):
    """Base class of the sequence mixers (see the module docstring for the contract)."""

    state_per_step: int = 0  # floats a growing cache adds per step (attention's keys and values)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError(f"{type(self).__name__} has no recurrent form")

    def initial_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        raise NotImplementedError(f"{type(self).__name__} has no recurrent form")

    @property
    def recurrent(self) -> bool:
        return type(self).step is not Mixer.step

    def scan(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The parallel form continued from `state`, with the final state. This default is the recurrent
        form itself; mixers override it with their scan."""
        return self.recurrent_scan(x, state)

    def recurrent_scan(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Step through `x` (B, T, d) one step at a time: the specification the parallel forms must equal."""
        ys = []
        for x_t in x.unbind(1):
            y_t, state = self.step(x_t, state)
            ys.append(y_t)
        return torch.stack(ys, 1), state

    @property
    def state_size(self) -> int:
        if not self.recurrent:
            return 0
        return count_floats(self.initial_state(1, "meta", torch.float32))


class ShortConv(nn.Module):
    """Causal depthwise convolution over time: y_t = Σ_{j<k} w_j ⊙ x_{t-j}, no bias."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.conv = nn.Conv1d(d, d, k, groups=d, bias=False)

    def forward(
        self, x: torch.Tensor, history: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, d), history (B, k-1, d) the previous inputs (zeros when None) -> (y, new history)."""
        if history is None:
            history = x.new_zeros(x.shape[0], self.k - 1, x.shape[2])
        full = torch.cat([history, x], 1)  # (B, k-1+T, d)
        y = self.conv(full.transpose(1, 2)).transpose(1, 2)
        return y, full[:, full.shape[1] - (self.k - 1) :]

    def step(self, x_t: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.cat([history, x_t.unsqueeze(1)], 1)  # (B, k, d), oldest first
        y_t = torch.einsum("bkd,dk->bd", window, self.conv.weight[:, 0])
        return y_t, window[:, 1:]


class Block(nn.Module):
    def __init__(self, d: int, mixer: Mixer, short_conv: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.conv = ShortConv(d, short_conv) if short_conv > 0 else None
        self.mixer = mixer
        self.mlp = (
            nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d))
            if mlp_ratio > 0
            else None
        )

    def _mlp(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.mlp is None else h + self.mlp(self.norm2(h))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        u = self.norm1(h)
        if self.conv is not None:
            u = self.conv(u)[0]
        return self._mlp(h + self.mixer(u))

    def initial_state(self, batch: int, device: Any, dtype: torch.dtype) -> State:
        conv = (
            ()
            if self.conv is None
            else (
                torch.zeros(
                    batch, self.conv.k - 1, self.norm1.normalized_shape[0], device=device, dtype=dtype
                ),
            )
        )
        return conv + tuple(self.mixer.initial_state(batch, device, dtype))

    def _split(self, state: State) -> tuple[torch.Tensor | None, State]:
        return (None, state) if self.conv is None else (state[0], state[1:])

    def scan(self, h: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        history, inner = self._split(state)
        u = self.norm1(h)
        conv_state: State = ()
        if self.conv is not None:
            u, new_history = self.conv(u, history)
            conv_state = (new_history,)
        y, inner = self.mixer.scan(u, inner)
        return self._mlp(h + y), conv_state + tuple(inner)

    def step(self, h_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        history, inner = self._split(state)
        u = self.norm1(h_t)
        conv_state: State = ()
        if self.conv is not None:
            u, new_history = self.conv.step(u, history)
            conv_state = (new_history,)
        y, inner = self.mixer.step(u, inner)
        return self._mlp(h_t + y), conv_state + tuple(inner)


def _mixer_parameters(mixer: type[Mixer]) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(mixer.__init__)
    params = []
    for name, p in inspect.signature(mixer.__init__).parameters.items():
        if name in ("self", "d_model", "layer", "num_layers") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        params.append(p.replace(kind=p.KEYWORD_ONLY, annotation=hints.get(name, p.annotation)))
    return params


class MixerModel(nn.Module):
    """A mixer inside the block backbone: (B, T, input_size) -> (B, T, hidden_size). Subclasses name their
    `mixer` class and the default `short_conv`; their constructor's signature is the backbone's options
    followed by the mixer's."""

    mixer: ClassVar[type[Mixer]]
    short_conv: ClassVar[int] = 0
    version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__ or not hasattr(cls, "mixer"):
            return

        def __init__(self: MixerModel, input_size: int, hidden_size: int, **options: Any) -> None:
            MixerModel.__init__(self, input_size, hidden_size, **options)

        P = inspect.Parameter
        backbone = [
            P("num_layers", P.KEYWORD_ONLY, default=2, annotation=int),
            P("short_conv", P.KEYWORD_ONLY, default=cls.short_conv, annotation=int),
            P("mlp_ratio", P.KEYWORD_ONLY, default=4, annotation=int),
        ]
        head = [P("self", P.POSITIONAL_OR_KEYWORD)] + [
            P(n, P.POSITIONAL_OR_KEYWORD, annotation=int) for n in ("input_size", "hidden_size")
        ]
        params = head + backbone + _mixer_parameters(cls.mixer)
        __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        __init__.__annotations__ = {p.name: p.annotation for p in params[1:]} | {"return": None}
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__  # type: ignore[method-assign]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        short_conv: int | None = None,
        mlp_ratio: int = 4,
        **mixer_options: Any,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        short_conv = type(self).short_conv if short_conv is None else short_conv
        if num_layers < 1:
            raise OptionsError(f"{name}: num_layers must be >= 1, got {num_layers}.")
        if short_conv < 0 or mlp_ratio < 0:
            raise OptionsError(f"{name}: short_conv and mlp_ratio must be >= 0 (0 switches them off).")
        d = hidden_size
        self.read_in = nn.Linear(input_size, d)
        self.init_embed(d)
        takes = inspect.signature(self.mixer.__init__).parameters
        blocks = []
        for layer in range(num_layers):
            extra = {"layer": layer, "num_layers": num_layers} if "layer" in takes else {}
            blocks.append(Block(d, self.mixer(d, **mixer_options, **extra), short_conv, mlp_ratio))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d)
        self.recurrent = all(b.mixer.recurrent for b in self.blocks)
        conv = sum((b.conv.k - 1) * d for b in self.blocks if b.conv is not None)
        self.state_size = conv + sum(b.mixer.state_size for b in self.blocks)
        self.state_per_step = sum(b.mixer.state_per_step for b in self.blocks)

    def init_embed(self, d: int) -> None:
        """Parameters of `embed` beyond the read-in (the transformer's learned positions), made here so
        they are drawn right after it."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The read-in, (B, T, input_size) -> (B, T, d); the transformer adds its positions here."""
        return self.read_in(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    # -- the recurrent form of the whole model --------------------------------------------------------------
    def _require_recurrent(self) -> None:
        if not self.recurrent:
            raise OptionsError(f"{type(self).__name__} has no recurrent form (a mixer without `step`).")

    def initial_state(self, batch: int, device: Any, dtype: torch.dtype) -> State:
        self._require_recurrent()
        return tuple(t for b in self.blocks for t in b.initial_state(batch, device, dtype))

    def _per_block(self, state: State) -> list[State]:
        if not hasattr(self, "_tensors_per_block"):  # how many of the state's tensors each block holds
            self._tensors_per_block = [len(b.initial_state(1, "meta", torch.float32)) for b in self.blocks]
        out, i = [], 0
        for n in self._tensors_per_block:
            out.append(tuple(state[i : i + n]))
            i += n
        return out

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step, x_t (B, input_size) -> h_t (B, hidden_size). Positions (the transformer) do not apply."""
        self._require_recurrent()
        h = self.read_in(x_t)
        new: list[torch.Tensor] = []
        for b, s in zip(self.blocks, self._per_block(state), strict=True):
            h, s = b.step(h, s)
            new.extend(s)
        return self.norm(h), tuple(new)

    def scan(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The parallel form continued from `state`: (h (B, T, hidden_size), final state)."""
        self._require_recurrent()
        h = self.read_in(x)
        new: list[torch.Tensor] = []
        for b, s in zip(self.blocks, self._per_block(state), strict=True):
            h, s = b.scan(h, s)
            new.extend(s)
        return self.norm(h), tuple(new)

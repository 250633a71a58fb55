"""Validated options for tasks and models, derived from their constructors' signatures.

A plugin writes a plain `__init__(self, input_size, hidden_size, num_layers: int = 1)`; seqbench turns the
signature into a pydantic model (unknown keys rejected unless the constructor takes `**kwargs`), so options
from the command line (`--model-opt num_layers=2`) are coerced and checked the same way for every provider.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Iterable
from typing import Any

import pydantic

from seqbench.errors import OptionsError

_POSITIONAL = {"self", "input_size", "hidden_size"}


def _signature_fields(cls: type) -> tuple[dict[str, Any], bool]:
    init = cls.__init__
    sig = inspect.signature(init)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # unresolvable annotations: accept any value rather than refuse the provider
        hints = {}
    fields: dict[str, Any] = {}
    open_ended = False
    for name, param in sig.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
            continue
        if name in _POSITIONAL or param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    return fields, open_ended


def validate_options(cls: type, options: dict[str, Any], what: str) -> dict[str, Any]:
    """Check `options` against `cls.__init__`; return them coerced to the declared types.

    Only the keys the user gave are returned (defaults stay the constructor's business), so the stored
    config records what was asked for.
    """
    fields, open_ended = _signature_fields(cls)
    config = pydantic.ConfigDict(extra="allow" if open_ended else "forbid", arbitrary_types_allowed=True)
    schema = pydantic.create_model(f"{cls.__name__}Options", __config__=config, **fields)
    try:
        parsed = schema.model_validate(options)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(options)"
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}: {msg}")
        accepted = ", ".join(f"{k}" for k in fields) or "(none)"
        raise OptionsError(
            f"Invalid options for {what}: {'; '.join(problems)}. Accepted: {accepted}."
        ) from None
    dumped = parsed.model_dump()
    return {k: dumped.get(k, v) for k, v in options.items()}


def parse_key_values(pairs: Iterable[str], flag: str) -> dict[str, Any]:
    """Parse repeated `KEY=VALUE` flags. Values are read as JSON where they parse (`3`, `0.1`, `true`,
    `[1,2]`), otherwise kept as strings; the target's types then coerce them."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise OptionsError(f"{flag} expects KEY=VALUE, got {pair!r} (e.g. {flag} max_length=20).")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out

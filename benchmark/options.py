"""Validated options for tasks and models, derived from their constructors' signatures.

A plugin writes a plain `__init__(self, input_size, hidden_size, num_layers: int = 1)`; seqbench turns the
signature into a pydantic model (unknown keys rejected unless the constructor takes `**kwargs`), so options
from the command line (`--model-opt num_layers=2`) are coerced and checked the same way for every provider.
An annotation may carry a constraint (`num_layers: Annotated[int, Field(ge=1)] = 1`), checked the same way.

`resolve_options` is what a run configuration stores: every option, coerced, defaults filled in, so that
`10`, `"10"`, `10.0` and "left at the default" are one value. `non_default` is its canonical form for
hashing: only what differs from the defaults, so an option added later with a default that reproduces the
old behaviour leaves stored configurations' hashes alone (a changed default changes what the class
computes: bump its `version`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import typing
from collections.abc import Iterable
from typing import Any

import pydantic

from seqbench.errors import OptionsError

_POSITIONAL = {"self", "input_size", "hidden_size"}


@functools.lru_cache(maxsize=256)
def _signature_fields(cls: type) -> tuple[dict[str, Any], bool]:
    """(name -> (annotation, default or ...), whether the constructor takes **kwargs). Defaults are coerced
    to their annotation where they fit it (`lr: float = 1` -> 1.0), so a default and the same value given
    explicitly are equal."""
    init = cls.__init__
    sig = inspect.signature(init)
    try:
        hints = typing.get_type_hints(init, include_extras=True)
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
        hint = hints.get(name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        if default is not ...:
            # A default outside its own annotation (`x: int = None`) is kept as written.
            with contextlib.suppress(Exception):
                default = pydantic.TypeAdapter(hint).validate_python(default)
        fields[name] = (hint, default)
    return fields, open_ended


@functools.lru_cache(maxsize=256)
def _schema(cls: type) -> tuple[type[pydantic.BaseModel], dict[str, Any]]:
    fields, open_ended = _signature_fields(cls)
    config = pydantic.ConfigDict(extra="allow" if open_ended else "forbid", arbitrary_types_allowed=True)
    return pydantic.create_model(f"{cls.__name__}Options", __config__=config, **fields), fields


def _parse(cls: type, options: dict[str, Any], what: str) -> dict[str, Any]:
    schema, fields = _schema(cls)
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
    return parsed.model_dump()


def validate_options(cls: type, options: dict[str, Any], what: str) -> dict[str, Any]:
    """Check `options` against `cls.__init__`; return the keys given, coerced to the declared types."""
    parsed = _parse(cls, options, what)
    return {k: parsed[k] for k in options}


def resolve_options(cls: type, options: dict[str, Any], what: str) -> dict[str, Any]:
    """Check `options` against `cls.__init__`; return every option, coerced, with the defaults filled in:
    what a run configuration stores. `what` names the target in error messages ("model 'lstm'")."""
    return _parse(cls, options, what)


def option_defaults(cls: type) -> dict[str, Any]:
    """The constructor's defaults, coerced to their annotations (options without one are left out)."""
    return {k: d for k, (_, d) in _signature_fields(cls)[0].items() if d is not ...}


def canonical_json(value: Any) -> str:
    """One spelling of a value: sorted keys, tuples as lists, anything else JSON lacks as its str()."""
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def non_default(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The options that differ from `cls`'s defaults (compared in their canonical JSON form)."""
    defaults = option_defaults(cls)
    return {
        k: v
        for k, v in options.items()
        if k not in defaults or canonical_json(v) != canonical_json(defaults[k])
    }


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

"""Name -> class registries fed by entry points (groups `seqbench.tasks` and `seqbench.models`).

Built-ins are declared in seqbench's own pyproject exactly as a plugin declares its own, so the entry points
are the one list of names. Listing names imports nothing: a provider is imported only by `get()`, and a
provider that fails to import fails only the caller that asked for it, with its package, version and cause.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from seqbench.errors import DuplicateNameError, ProviderImportError, UnknownNameError, suggest

TASK_GROUP = "seqbench.tasks"
MODEL_GROUP = "seqbench.models"
DISABLE_AUTOLOAD_ENV = "SEQBENCH_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class Provider:
    """One entry point: a name, its `module:attr` target and the distribution that declares it."""

    name: str
    target: str
    package: str
    version: str

    @property
    def spec(self) -> str:
        """`package==version`, as recorded in result rows."""
        return f"{self.package}=={self.version}"

    def load(self) -> Any:
        module_name, _, attr = self.target.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in filter(None, attr.split(".")):
                obj = getattr(obj, part)
        except Exception as exc:  # any failure inside a plugin's import is the plugin's, reported as such
            raise ProviderImportError(
                f"{self.name!r} is provided by {self.spec} ({self.target}), which failed to import: "
                f"{type(exc).__name__}: {exc}. Fix or reinstall {self.package}, or choose another name."
            ) from exc
        return obj


def _natural_key(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _provider_of(ep: Any) -> Provider:
    dist = getattr(ep, "dist", None)
    package = getattr(dist, "name", None) or (dist.metadata["Name"] if dist is not None else None)
    version = getattr(dist, "version", None) if dist is not None else None
    return Provider(ep.name, ep.value, package or "unknown", version or "unknown")


class Registry:
    """A lazily loaded registry over one entry-point group.

    `entry_points` is injectable so tests can hand in fakes without installing anything.
    """

    def __init__(
        self,
        group: str,
        kind: str,
        entry_points: Callable[[], Iterable[Any]] | None = None,
    ) -> None:
        self.group = group
        self.kind = kind  # "task" or "model", for messages
        self._entry_points = entry_points or (lambda: metadata.entry_points(group=group))
        self._providers: dict[str, list[Provider]] | None = None
        self._loaded: dict[str, Any] = {}

    # -- discovery (no imports) -------------------------------------------------------------------------
    def _scan(self) -> dict[str, list[Provider]]:
        if self._providers is None:
            autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip() in ("", "0")
            found: dict[str, list[Provider]] = {}
            for ep in self._entry_points():
                provider = _provider_of(ep)
                if not autoload and provider.package != "seqbench":
                    continue
                same_name = found.setdefault(provider.name, [])
                # One distribution seen twice on sys.path (e.g. an editable install) is not a conflict.
                if all((p.target, p.package) != (provider.target, provider.package) for p in same_name):
                    same_name.append(provider)
            self._providers = found
        return self._providers

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names in natural order, optionally filtered by a wildcard such as `'*lstm*'`."""
        names = self._scan()
        selected = [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]
        return sorted(selected, key=_natural_key)

    def providers(self) -> dict[str, list[Provider]]:
        return dict(self._scan())

    def provider(self, name: str) -> Provider:
        """The one provider of `name`; unknown and doubly provided names are errors."""
        providers = self._scan()
        if name not in providers:
            known = self.names()
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{suggest(name, known)} Available: {', '.join(known) or '(none)'}. "
                f"`seqbench ls {self.kind}s` lists them with their providers."
            )
        candidates = providers[name]
        if len(candidates) > 1:
            who = " and ".join(f"{p.spec} ({p.target})" for p in candidates)
            raise DuplicateNameError(
                f"The {self.kind} name {name!r} is provided twice: by {who}. "
                f"Uninstall one of them, or ask one provider to rename its entry point in group {self.group!r}."
            )
        return candidates[0]

    # -- loading -----------------------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        """The class registered as `name`, imported on first use."""
        if name not in self._loaded:
            self._loaded[name] = self.provider(name).load()
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._scan()

    def refresh(self) -> None:
        self._providers, self._loaded = None, {}


TASKS = Registry(TASK_GROUP, "task")
MODELS = Registry(MODEL_GROUP, "model")

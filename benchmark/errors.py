"""Errors a user can act on. Each says what was wrong, what the alternatives are and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(name: str, known: Iterable[str]) -> str:
    """ " Did you mean 'x' or 'y'?" for the known names close to `name`, or "" when none is."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class SeqbenchError(Exception):
    """Base class. `exit_code` is what the CLI exits with (2 = bad usage, as click does)."""

    exit_code = 1


class UnknownNameError(SeqbenchError, KeyError):
    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateNameError(SeqbenchError):
    exit_code = 2


class ProviderImportError(SeqbenchError):
    """A plugin (or built-in) named by the user could not be imported."""

    exit_code = 1


class OptionsError(SeqbenchError, ValueError):
    """Options that do not fit a task, a model or the runner."""

    exit_code = 2


class ContractError(SeqbenchError, AssertionError):
    """A model or task that breaks the plugin contract (DESIGN.md "Contracts"). An AssertionError too, so
    a plugin author's test reads it as a failed check; raised explicitly, so `python -O` cannot drop it."""

    exit_code = 1


class StoreError(SeqbenchError):
    """The results directory cannot be written (checked before training)."""

    exit_code = 2


class UnstoredRunError(SeqbenchError):
    """A finished run whose store failed at the end; it was stored in a fallback directory (named)."""

    exit_code = 1

    def __init__(self, message: str, row: dict | None = None) -> None:
        super().__init__(message)
        self.row = row

"""Tables shared by the commands: one description, rendered for the terminal (rich) or as Markdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Table:
    title: str
    columns: list[str]
    cells: list[list[str]]
    notes: str = ""
    left: int = 1  # leading columns aligned left (names); the rest are numbers


def fmt(v: Any, spec: str) -> str:
    """A number formatted with `spec`, or "-" for a missing one (None or NaN)."""
    return "-" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def to_markdown(table: Table) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"### {table.title}", "", "| " + " | ".join(map(cell, table.columns)) + " |"]
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    for row in table.cells:
        padded = row + [""] * (len(table.columns) - len(row))
        lines.append("| " + " | ".join(map(cell, padded)) + " |")
    return "\n".join(lines) + ("\n\n" + table.notes if table.notes else "") + "\n"


def to_rich(table: Table) -> Any:
    from rich.table import Table as RichTable

    out = RichTable(title=table.title, caption=table.notes or None)
    for i, col in enumerate(table.columns):
        out.add_column(col, justify="left" if i < table.left else "right")
    for row in table.cells:
        out.add_row(*row)
    return out

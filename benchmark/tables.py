"""Tables shared by the commands: one description, rendered for the terminal (rich) or as Markdown."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    title: str
    columns: list[str]
    cells: list[list[str]]
    notes: str = ""
    left: int = 1  # leading columns aligned left (names, never cut); the rest are numbers
    optional: list[str] = field(default_factory=list)  # columns a narrow terminal may leave out, first first
    short: dict[str, int] = field(
        default_factory=dict
    )  # column -> width its cells may be cut to on a terminal


def fmt(v: Any, spec: str) -> str:
    """A number formatted with `spec`, or "-" for a missing one (None or NaN)."""
    return "-" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def md_escape(text: Any) -> str:
    """Text safe to put in Markdown: a stored name (a plugin's model, a task option) may hold HTML, which
    Markdown renderers pass through; `&`, `<` and `>` become entities, so it shows as written."""
    return html.escape(str(text), quote=False)


def to_markdown(table: Table) -> str:
    def cell(text: str) -> str:
        return md_escape(text).replace("|", "\\|")

    lines = [f"### {md_escape(table.title)}", "", "| " + " | ".join(map(cell, table.columns)) + " |"]
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    for row in table.cells:
        padded = row + [""] * (len(table.columns) - len(row))
        lines.append("| " + " | ".join(map(cell, padded)) + " |")
    return "\n".join(lines) + ("\n\n" + md_escape(table.notes) if table.notes else "") + "\n"


def _natural(table: Table, i: int) -> int:
    """Width column i needs: its longest cell, or its longest header word (headers fold)."""
    col = table.columns[i]
    cells = [len(str(row[i])) for row in table.cells if i < len(row)]
    return max(max(cells, default=0), *(len(w) for w in col.split()))


def fit(table: Table, width: int | None) -> tuple[Table, list[str]]:
    """The table with optional columns left out (in `table.optional` order) until it fits `width`
    terminal columns, and the names of those left out. Names (the leading columns) are never cut."""
    if width is None:
        return table, []
    keep = list(range(len(table.columns)))
    dropped: list[str] = []

    def needed() -> int:  # each column's width, one space of padding on either side and a separator
        return sum(_natural(table, i) for i in keep) + 3 * len(keep)

    for name in table.optional:
        if needed() <= width:
            break
        if name in table.columns and table.columns.index(name) in keep:
            keep.remove(table.columns.index(name))
            dropped.append(name)
    if not dropped:
        return table, []
    cells = [[row[i] for i in keep if i < len(row)] for row in table.cells]
    cut = Table(table.title, [table.columns[i] for i in keep], cells, table.notes, table.left)
    return cut, dropped


def to_rich(table: Table, width: int | None = None) -> Any:
    """A rich table; with `width`, optional columns are left out until it fits (said in the caption).
    Name columns never wrap or get cut; numbers and headers fold rather than end in '…'."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table as RichTable

    table, dropped = fit(table, width)
    notes = table.notes
    if dropped:
        notes += f" Left out to fit {width} columns: {', '.join(dropped)} (--format markdown or csv has all)."
    # Cells are data, never rich markup: a name such as "[bold]x" prints as written.
    kw = {"box": box.SIMPLE_HEAD, "show_edge": False} if width is not None else {}
    out = RichTable(title=escape(table.title), caption=escape(notes) if notes else None, **kw)
    for i, col in enumerate(table.columns):
        name = i < table.left
        out.add_column(
            escape(col),
            justify="left" if name else "right",
            no_wrap=name,
            min_width=_natural(table, i) if name or width is not None else None,
            overflow="fold",
        )
    for row in table.cells:
        out.add_row(*(escape(str(c)) for c in row))
    return out

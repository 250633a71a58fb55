"""The README's Python example must keep working: it is executed here."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_python_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example stores its run under ./results
    text = README.read_text()
    section = text[text.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    assert tuple(scope["batch"].inputs.shape) == (32, 41, 9)
    assert tuple(scope["h"].shape) == (32, 41, 100)
    row = scope["row"]
    assert row["status"] == "ok" and row["target_params"] == 80_000
    assert abs(row["params"] - 80_000) <= 8_000 and (tmp_path / "results" / "runs").is_dir()


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", README.read_text(), re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in ci


def test_readme_lists_exactly_the_result_row_columns():
    from seqbench.columns import markdown
    from seqbench.store import RUN_SCHEMA

    text = README.read_text()
    block = re.search(r"<!-- columns:[^\n]*-->\n(.*?)<!-- /columns -->", text, re.S).group(1)
    assert block == markdown(), "README's column table is stale: paste `python -m seqbench.columns`"
    listed = re.findall(r"^\| `(\w+)` \|", block, re.M)
    assert listed == RUN_SCHEMA.names

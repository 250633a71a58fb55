"""`seqbench report` on a small real result set: self-contained, escaped, every section present; and the
report opened in headless Chromium with the network off (every figure rendered, no script error)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqbench.cli import main
from seqbench.config import make_run_config
from seqbench.registry import MODELS
from seqbench.runner import run
from tests.fakes import FakeEntryPoint

EVIL = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two models (one with a name a plugin could choose) x two seeds on copy, a bench and a probe."""
    root = tmp_path_factory.mktemp("results")
    for model in ("lstm", "gru"):
        for seed in (0, 1):
            cfg = make_run_config(
                "copy", model, seed=seed, preset="smoke", steps=20, task_options={"max_length": 5}
            )
            run(cfg, root)
    cli = CliRunner()
    bench = ["bench", "--model", "gru", "--hidden", "8", "--length", "5", "--length", "10", "--rounds", "1"]
    assert (
        cli.invoke(main, [*bench, "--batch-size", "2", "--no-memory", "--results", str(root)]).exit_code == 0
    )
    probe = ["probe", "--model", "gru", "--task", "adding", "--steps", "3", "--task-opt", "T=20"]
    assert cli.invoke(main, [*probe, "--hidden-size", "8", "--results", str(root)]).exit_code == 0
    return root


def add_evil_run(root: Path, extra_entry_points) -> None:
    extra_entry_points(MODELS, FakeEntryPoint(EVIL, "seqbench.models.rnn:RNN", package="evil", version="1"))
    run(make_run_config("copy", EVIL, preset="smoke", steps=10, task_options={"max_length": 5}), root)


def test_html_report_is_self_contained_and_escaped(results, tmp_path, extra_entry_points):
    root = tmp_path / "r"
    shutil.copytree(results, root)
    add_evil_run(root, extra_entry_points)
    out = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["report", "--results", str(root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert EVIL not in text and html.escape(EVIL) in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched
    assert "<link" not in text and "@import" not in text
    for heading in ("copy: leaderboard", "copy: learning curves", "copy: accuracy against length"):
        assert heading in text
    assert "copy: speed against accuracy" in text and "time against sequence length" in text
    assert "adding: gradient reaching back in time" in text  # the probe, though no run is on adding
    assert text.count("<svg") == text.count("</svg>") >= 5


def test_markdown_report_writes_its_figures(results, tmp_path):
    out = tmp_path / "report.md"
    res = CliRunner().invoke(
        main, ["report", "--results", str(results), "--format", "markdown", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    text = out.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((tmp_path / link).is_file() for link in links)
    assert "| copy | lstm | 2 | 0 |" in text


def test_interactive_report_inlines_plotly(results, tmp_path):
    out = tmp_path / "i.html"
    res = CliRunner().invoke(main, ["report", "--results", str(results), "--interactive", "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "Plotly.newPlot" in text and "<script src" not in text and len(text) > 1_000_000


def test_no_runs_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["report", "--results", str(tmp_path), "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 2 and "No runs stored" in res.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# .ci/run installs Chromium and sets this, so that there the browser test cannot be skipped.
REQUIRED = os.environ.get("SEQBENCH_REQUIRE_BROWSER") == "1"


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # the network is off: no name resolves
        "--proxy-server=127.0.0.1:9",  # and nothing connects
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM and not REQUIRED, reason="Chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("interactive", [False, True])
def test_report_renders_in_headless_chromium(results, tmp_path, interactive):
    assert CHROMIUM, "SEQBENCH_REQUIRE_BROWSER=1 but no chromium on PATH"
    out = tmp_path / "report.html"
    args = [
        "report",
        "--results",
        str(results),
        "--out",
        str(out),
        *(["--interactive"] if interactive else []),
    ]
    assert CliRunner().invoke(main, args).exit_code == 0
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", out.as_uri(), profile=tmp_path / "p1").stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))
    assert attrs["script-errors"] == "0"
    figures = int(attrs["figures"])
    assert figures >= 5
    if interactive:  # plotly draws an <svg class="main-svg"> into every figure's div
        assert dom.count('class="plotly-figure') == figures and dom.count("main-svg") >= figures
    else:
        assert attrs["figures-rendered"] == str(figures)
    shot = tmp_path / "report.png"
    chromium("--window-size=1200,1800", f"--screenshot={shot}", out.as_uri(), profile=tmp_path / "p2")
    assert shot.stat().st_size > 20_000

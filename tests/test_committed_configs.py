"""Every sweep and study file committed under results/ still loads, validates and sizes under the current
code: a task or model that changed its options (a new version with a new default, a renamed option) must not
leave a committed file that can no longer be run or resumed (mqar v2 did, until stop 28)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seqbench.study import load_study
from seqbench.sweep import expand, load_spec_file, make_spec

ROOT = Path(__file__).resolve().parents[1] / "results"
FILES = sorted(p for p in ROOT.rglob("*.yaml") if "runs" not in p.parts and "curves" not in p.parts)


def _is_study(path: Path) -> bool:
    data = yaml.safe_load(path.read_text()) or {}
    return isinstance(data.get("tasks"), dict)  # a study's tasks are ladders by name; a sweep's, a list


def test_there_are_committed_files():
    assert len(FILES) >= 10, FILES


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_committed_file_loads_and_every_configuration_resolves(path: Path):
    if _is_study(path):
        for quick in (False, True):
            spec = load_study(path, quick=quick)
            assert spec.models and spec.tasks
        return
    configs = expand(make_spec(load_spec_file(path)))  # validates, resolves and sizes every configuration
    assert configs, f"{path} expands to no run"

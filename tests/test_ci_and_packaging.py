"""Issue 20, rows 15 and 21: the declared pyarrow excludes the vulnerable release; CI's Chromium install
updates stale or missing package lists instead of failing or installing an old build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def test_pyarrow_lower_bound_excludes_cve_2023_47248():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pyarrow,) = [Requirement(d) for d in deps if Requirement(d).name == "pyarrow"]
    assert not pyarrow.specifier.contains("14.0.0") and pyarrow.specifier.contains("14.0.1")


FAKE_APT = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$1" in
  update) touch "$FAKE_STATE/updated" ;;
  install) [ -e "$FAKE_STATE/updated" ] || [ -n "${APT_KNOWS:-}" ] || { echo "E: Unable to locate package chromium" >&2; exit 100; } ;;
esac
"""


@pytest.fixture
def fake_apt(tmp_path):
    bin_dir, state, lists = tmp_path / "bin", tmp_path / "state", tmp_path / "lists"
    for d in (bin_dir, state, lists):
        d.mkdir()
    for name, text in {
        "apt-get": FAKE_APT,
        "sudo": '#!/usr/bin/env bash\nexec "$@"\n',
        "id": "#!/usr/bin/env bash\necho 1000\n",
    }.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "apt.log"

    def run(**env: str) -> tuple[int, list[str]]:
        full = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "FAKE_LOG": str(log),
            "FAKE_STATE": str(state),
            "SEQBENCH_APT_LISTS": str(lists),
            **env,
        }
        res = subprocess.run(
            [str(ROOT / ".ci" / "install-chromium")], env=full, capture_output=True, timeout=60
        )
        return res.returncode, log.read_text().splitlines() if log.exists() else []

    return run, lists


def test_missing_package_lists_are_updated_before_the_install(fake_apt):
    run, _ = fake_apt
    assert run() == (0, ["update", "install -y chromium"])


def test_a_failed_install_updates_the_lists_and_tries_once_more(fake_apt):
    run, lists = fake_apt
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages").write_text("")  # fresh
    assert run() == (0, ["install -y chromium", "update", "install -y chromium"])


def test_fresh_lists_and_a_known_package_install_directly(fake_apt):
    run, lists = fake_apt
    (lists / "x_Packages").write_text("")
    assert run(APT_KNOWS="1") == (0, ["install -y chromium"])


def test_stale_lists_are_updated_first(fake_apt):
    run, lists = fake_apt
    stale = lists / "x_Packages"
    stale.write_text("")
    os.utime(stale, (0, 0))  # 1970: far older than a day
    assert run(APT_KNOWS="1") == (0, ["update", "install -y chromium"])


def test_ci_run_calls_the_installer():
    assert ".ci/install-chromium" in (ROOT / ".ci" / "run").read_text()

from __future__ import annotations

import sys

import pytest

from seqbench.errors import DuplicateNameError, ProviderImportError, UnknownNameError
from seqbench.registry import MODELS, TASKS, Registry
from tests.fakes import BROKEN_IMPORT, FakeEntryPoint


def fake_registry(*eps: FakeEntryPoint) -> Registry:
    return Registry("seqbench.models", "model", entry_points=lambda: list(eps))


def test_builtins_are_declared_through_entry_points():
    assert {"rnn", "lstm", "gru", "ntm"} <= set(MODELS.names())
    assert "copy" in TASKS.names()
    assert MODELS.provider("ntm").package == "seqbench"


def test_listing_imports_nothing():
    reg = fake_registry(FakeEntryPoint("lazy", "tests.lazy_never_imported:Model"))
    assert reg.names() == ["lazy"]
    assert "tests.lazy_never_imported" not in sys.modules


def test_get_loads_the_target():
    reg = fake_registry(FakeEntryPoint("nan", "tests.fakes:NaNModel"))
    from tests.fakes import NaNModel

    assert reg.get("nan") is NaNModel


def test_unknown_name_suggests_close_matches():
    reg = fake_registry(
        FakeEntryPoint("lstm", "x:y"), FakeEntryPoint("lstm_cifg", "x:z"), FakeEntryPoint("gru", "x:w")
    )
    with pytest.raises(UnknownNameError) as info:
        reg.get("lstn")
    msg = str(info.value)
    assert "Did you mean 'lstm'" in msg
    assert "Available: gru, lstm, lstm_cifg" in msg


def test_duplicate_name_names_both_packages():
    reg = fake_registry(
        FakeEntryPoint("rnn", "pkg_a.m:RNN", package="pkg-a", version="1.0"),
        FakeEntryPoint("rnn", "pkg_b.m:RNN", package="pkg-b", version="2.0"),
        FakeEntryPoint("gru", "pkg_b.m:GRU", package="pkg-b", version="2.0"),
    )
    with pytest.raises(DuplicateNameError) as info:
        reg.get("rnn")
    assert "pkg-a==1.0" in str(info.value) and "pkg-b==2.0" in str(info.value)
    assert reg.names() == ["gru", "rnn"]  # listing still works; only using the name fails


def test_same_distribution_seen_twice_is_not_a_duplicate():
    ep = FakeEntryPoint("nan", "tests.fakes:NaNModel")
    reg = fake_registry(ep, FakeEntryPoint("nan", "tests.fakes:NaNModel"))
    assert reg.get("nan").__name__ == "NaNModel"


def test_broken_provider_fails_only_when_asked_for():
    reg = fake_registry(
        FakeEntryPoint("broken", BROKEN_IMPORT, package="broken-plugin", version="0.3"),
        FakeEntryPoint("nan", "tests.fakes:NaNModel"),
    )
    assert reg.get("nan").__name__ == "NaNModel"  # unaffected by its broken neighbour
    with pytest.raises(ProviderImportError) as info:
        reg.get("broken")
    msg = str(info.value)
    assert "broken-plugin==0.3" in msg and "ModuleNotFoundError" in msg and "tests.does_not_exist" in msg


def test_wildcard_and_natural_sort():
    reg = fake_registry(*(FakeEntryPoint(n, "x:y") for n in ["lstm10", "lstm2", "gru", "lstm_nfg"]))
    assert reg.names("lstm*") == ["lstm2", "lstm10", "lstm_nfg"]


def test_autoload_can_be_switched_off(monkeypatch):
    reg = Registry(
        "seqbench.models",
        "model",
        entry_points=lambda: [
            FakeEntryPoint("rnn", "seqbench.models.rnn:RNN", package="seqbench", version="0.1.0"),
            FakeEntryPoint("plug", "x:y"),
        ],
    )
    monkeypatch.setenv("SEQBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert reg.names() == ["rnn"]

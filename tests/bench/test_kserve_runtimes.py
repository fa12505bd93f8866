"""Without a way to build KServe's runtimes, a smoke run leaves them out and says why; a full run stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import kserve_runtimes
from bench.run import BenchConfig, Results, peers_phase


@pytest.fixture
def no_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kserve_runtimes, "VENV", tmp_path / "venv")  # nothing cached
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # and no Go toolchain to fetch the module


def test_without_go_the_venv_cannot_be_built_and_says_why(no_go: None) -> None:
    assert kserve_runtimes.venv_python() is None
    with pytest.raises(kserve_runtimes.PeerUnavailable, match=r"Go toolchain is needed .*go not found"):
        kserve_runtimes.ensure_venv()


def test_smoke_run_skips_the_runtimes_with_the_reason(no_go: None, tmp_path: Path) -> None:
    res = Results(machine={}, config={})
    assert peers_phase(None, BenchConfig.smoke_config(tmp_path), tmp_path, res) == []  # type: ignore[arg-type]
    for runtime in ("xgbserver", "sklearnserver"):
        assert "go not found" in res.peers[runtime]["skipped"]


def test_full_run_stops_and_names_the_flag_that_leaves_them_out(no_go: None, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="--no-kserve-runtimes"):
        peers_phase(None, BenchConfig(out_dir=tmp_path), tmp_path, Results(machine={}, config={}))  # type: ignore[arg-type]

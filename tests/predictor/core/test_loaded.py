"""predictor.core.loaded.load_bundle reads each bundle file once: what is parsed is what was hashed (item 10)."""

from __future__ import annotations

import builtins
import io
from collections import Counter
from pathlib import Path

import pytest

from bundle.manifest import BundleError, load_manifest
from predictor.core.loaded import load_bundle


@pytest.mark.parametrize("fixture", ["boston_xgb", "boston_forest"])
def test_every_bundle_file_is_read_once(fixture, request, monkeypatch):
    directory: Path = request.getfixturevalue(fixture)
    listed = set(load_manifest(directory).files) | {"bundle.json"}
    opened: Counter[str] = Counter()
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if isinstance(file, (str, Path)) and Path(file).parent == directory:
            opened[Path(file).name] += 1
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)  # Path.read_bytes opens through io.open
    load_bundle(directory)
    assert {name: opened[name] for name in listed} == dict.fromkeys(listed, 1)


def test_a_file_changed_on_disk_is_refused_before_it_is_parsed(boston_xgb, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(boston_xgb, copy)
    model = copy / load_manifest(copy).model_file
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    with pytest.raises(BundleError, match="does not match"):
        load_bundle(copy)

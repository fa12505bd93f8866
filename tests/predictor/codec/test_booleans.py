"""Same types everywhere: JSON true/false is a number only for a column that was boolean in the data.

The metadata says which: BOOL in the predictor's V2 metadata and ``boolean`` in the MLflow
signature for the boolean column, INT64 / ``long`` for the integer one, which refuses true.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kserve.errors import InvalidInput

from predictor.codec.decode import Decoder
from predictor.core.loaded import load_bundle
from predictor.transport.model import HousingModel
from registry.pyfunc import signature
from training.api import TrainConfig, run_training


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    n = 200
    garage = rng.random(n) < 0.5
    rooms = rng.integers(1, 7, n)
    area = rng.uniform(50, 250, n)
    price = 1000 * area * (1 + 0.2 * garage) * (1 + 0.05 * rooms)
    root = tmp_path_factory.mktemp("booleans")
    frame = pd.DataFrame({"area": area, "rooms": rooms, "garage": garage, "price": price})
    frame.to_csv(root / "houses.csv", index=False)
    cfg = TrainConfig(
        dataset=str(root / "houses.csv"),
        target="price",
        fast=True,
        candidates=("linear",),
        register=False,
        progress=False,
        bundle_root=str(root / "bundles"),
    )
    return Path(run_training(cfg).bundle_dir)


def test_true_is_a_number_only_for_the_boolean_column(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    decoder = Decoder(bundle.schema, max_batch_size=10)
    yes = decoder.v1({"instances": [{"area": 100.0, "rooms": 3, "garage": True}]})
    no = decoder.v1({"instances": [{"area": 100.0, "rooms": 3, "garage": False}]})
    assert yes[0, bundle.schema.index["garage"]] == 1.0 and no[0, bundle.schema.index["garage"]] == 0.0
    assert bundle.predict(yes)[0] > bundle.predict(no)[0]
    with pytest.raises(InvalidInput, match="rooms: must be a number, got a boolean"):
        decoder.v1({"instances": [{"area": 100.0, "rooms": True, "garage": True}]})


def test_the_metadata_says_which_column_is_boolean(bundle_dir: Path) -> None:
    model = HousingModel("houses", bundle_dir)
    model.load()
    types = {t["name"]: t["datatype"] for t in model.get_input_types()}
    assert types == {"area": "FP64", "rooms": "INT64", "garage": "BOOL"}
    columns = {c["name"]: c["type"] for c in signature(load_bundle(bundle_dir).manifest).inputs.to_dict()}
    assert columns == {"area": "double", "rooms": "long", "garage": "boolean"}

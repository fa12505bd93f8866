"""predictor.observe.request_logs: per-request log lines off by default, on when asked; errors logged always."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from bundle.schema import CATEGORICAL
from predictor.observe.request_logs import OFF, ON, RequestLogs, add_arguments, apply, from_args, on_off
from predictor.transport.model import HousingModel
from testkit.kserve_app import kserve_app

PREDICT = "/v1/models/housing:predict"


@pytest.fixture(scope="module")
def model(ames_xgb) -> HousingModel:
    model = HousingModel("housing", ames_xgb)
    model.load()
    return model


@pytest.fixture(scope="module")
def row(model: HousingModel) -> dict[str, Any]:
    return {
        f.name: next(iter(f.categories)) if f.kind == CATEGORICAL else (f.min if f.min is not None else 1)
        for f in model.bundle.schema.features
    }


def test_flags_default_off_and_read_true_false(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*argv: str) -> RequestLogs:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return from_args(parser.parse_args(list(argv)))

    monkeypatch.delenv("HOUSING_ACCESS_LOG", raising=False)
    monkeypatch.delenv("HOUSING_TRACE_LOG", raising=False)
    assert parse() == OFF
    assert parse("--access_log", "true", "--trace_log", "1") == ON
    monkeypatch.setenv("HOUSING_TRACE_LOG", "on")
    assert parse() == RequestLogs(access=False, trace=True)
    with pytest.raises(argparse.ArgumentTypeError):
        on_off("maybe")


def _lines(client: TestClient, body: bytes, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        client.post(PREDICT, content=body)
    return [r.name for r in caplog.records]


def test_trace_lines_only_when_asked_for_errors_always(
    model: HousingModel, row: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = orjson.dumps({"instances": [row]}), orjson.dumps({"instances": [{**row, "nope": 1}]})
    with TestClient(kserve_app(model, logs=OFF), raise_server_exceptions=False) as off:
        assert "kserve.trace" not in _lines(off, good, caplog)
        assert "kserve.trace" not in _lines(off, bad, caplog)
        server = [r for r in caplog.records if r.name.split(".")[0] in ("predictor", "kserve", "uvicorn")]
        assert [(r.name, r.levelno) for r in server] == [("predictor", logging.WARNING)]  # the client error's line
    with TestClient(kserve_app(model, logs=ON), raise_server_exceptions=False) as on:
        assert "kserve.trace" in _lines(on, good, caplog)


def test_the_access_line_is_left_out_by_its_logger() -> None:
    access = logging.getLogger("uvicorn.access")
    saved = (list(access.handlers), access.propagate)
    try:
        access.addHandler(logging.NullHandler())
        apply(ON)
        assert access.hasHandlers()  # on: as KServe configured it
        apply(OFF)
        assert not access.hasHandlers()  # off: uvicorn writes (and formats) no access line
    finally:
        access.handlers, access.propagate = saved

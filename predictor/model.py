"""The KServe custom predictor: :class:`HousingModel`, a ``kserve.Model`` subclass.

``load()`` verifies every digest in ``bundle.json`` (and the pinned bundle digest, if any)
before reading a model file; a bundle that fails verification raises
:class:`~bundle.manifest.BundleError` and the model is never marked ready (``python -m
predictor`` then exits non-zero with a one-line message, which is what KServe users see as a
crash-looping, never-ready predictor pod).

Requests and answers (V1, ``:explain``, V2 REST and gRPC, out-of-range flags) follow the
protocol described in ``predictor/README.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.model import Model
from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelInferRequest
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from bundle.schema import CATEGORICAL
from predictor.codec import BatchTooLarge, Decoder
from predictor.loaded import LoadedBundle, load_bundle
from predictor.metrics import ModelMetrics
from predictor.ranges import RangeCheck

log = logging.getLogger("predictor")

DEFAULT_MAX_BATCH_SIZE = 10_000
OUT_OF_RANGE_HEADER = "x-housing-out-of-range"
OUTPUT_NAME = "predictions"

_V2_TYPES = {"float64": "FP64", "int64": "INT64", "bool": "BOOL"}


class HousingModel(Model):
    """Serves one artifact bundle (see ``predictor/bundle.py``) over V1, V2 REST and V2 gRPC."""

    def __init__(
        self,
        name: str,
        model_dir: str | Path,
        expected_digest: str | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        drift_window: int = 2000,
    ) -> None:
        super().__init__(name, return_response_headers=True)
        self.model_dir = Path(model_dir)
        self.expected_digest = expected_digest or None
        self.max_batch_size = max_batch_size
        self.drift_window = drift_window
        self.bundle: LoadedBundle | None = None
        self.decoder: Decoder | None = None
        self.ranges: RangeCheck | None = None
        self.metrics: ModelMetrics | None = None
        self.version = ""

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> bool:
        """Verify and load the bundle; raises BundleError (model stays not ready) on mismatch."""
        self.ready = False
        bundle = load_bundle(self.model_dir, self.expected_digest)
        self.bundle = bundle
        self.version = bundle.manifest.model_version
        self.decoder = Decoder(bundle.schema, self.max_batch_size)
        self.ranges = RangeCheck(bundle.schema)
        self.metrics = ModelMetrics(
            self.name, self.version, bundle.schema, bundle.reference, bundle.flavor, bundle.digest, self.drift_window
        )
        log.info(
            "loaded bundle %s: %s version %s (%s, %d features, digest %s)",
            self.model_dir,
            bundle.manifest.model_name,
            self.version,
            bundle.flavor,
            bundle.n_features,
            bundle.digest,
        )
        self.ready = True
        return self.ready

    # -- --workers > 1: KServe spawns REST worker processes and pickles the model into them ------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["metrics"] = None  # prometheus children and the drift window hold locks
        if self.bundle is not None:
            state["bundle"] = dataclasses.replace(self.bundle, _booster=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.bundle is not None:  # each worker process counts its own requests
            b = self.bundle
            self.metrics = ModelMetrics(
                self.name, self.version, b.schema, b.reference, b.flavor, b.digest, self.drift_window
            )

    # -- metadata --------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        if self.bundle is None:
            return []
        return [
            {
                "name": f.name,
                "datatype": "BYTES" if f.kind == CATEGORICAL else _V2_TYPES.get(f.dtype, "FP64"),
                "shape": [-1],
            }
            for f in self.bundle.schema.features
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": OUTPUT_NAME, "datatype": "FP64", "shape": [-1]}]

    # -- inference -------------------------------------------------------------------------
    def decode(self, payload: Any) -> tuple[np.ndarray, str]:
        """Request → (encoded matrix, protocol label); InvalidInput for client mistakes."""
        assert self.decoder is not None
        if isinstance(payload, ModelInferRequest):
            payload = InferRequest.from_grpc(payload)
        if isinstance(payload, InferRequest):
            return self.decoder.v2(payload), "grpc" if payload.from_grpc else "v2"
        return self.decoder.v1(payload), "v1"

    def predict(
        self,
        payload: dict | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        assert self.bundle is not None and self.decoder is not None and self.metrics is not None
        started = time.perf_counter()
        # client errors raise InvalidInput; they are counted where they are answered
        # (predictor.rest, predictor.grpc_server), with KServe's own rejections
        X, protocol = self.decode(payload)
        if isinstance(payload, InferRequest):
            self._check_requested_outputs(payload)
        prices = self.bundle.predict(X)
        assert self.ranges is not None
        mask = self.ranges.out_of_range(X)  # flagged in the answer, counted by the metrics
        self.metrics.observe(protocol, X, prices, mask, time.perf_counter() - started)
        oor_names = [] if mask is None else [self.bundle.schema.names[j] for j in np.flatnonzero(mask.any(axis=0))]
        if isinstance(payload, InferRequest):
            params: dict[str, Any] = {}
            if oor_names:
                params = {"out_of_range": ",".join(oor_names), "out_of_range_rows": int(mask.any(axis=1).sum())}
            output = InferOutput(name=OUTPUT_NAME, shape=[len(prices)], datatype="FP64", data=prices.tolist())
            return InferResponse(
                response_id=payload.id or str(uuid.uuid4()),
                model_name=self.name,
                model_version=self.version,
                infer_outputs=[output],
                parameters=params or None,
                use_binary_outputs=payload.use_binary_outputs,
                requested_outputs=payload.request_outputs,
            )
        if oor_names and response_headers is not None:
            response_headers[OUT_OF_RANGE_HEADER] = ",".join(oor_names)
        return {"predictions": prices.tolist()}

    @staticmethod
    def _check_requested_outputs(request: InferRequest) -> None:
        for out in request.request_outputs or []:
            if out.name != OUTPUT_NAME:
                raise InvalidInput(f"outputs.{out.name}: unknown output (this model has only {OUTPUT_NAME!r})")

    def explain(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        """Per-feature contributions that sum (with the bias) to the model-scale prediction."""
        assert self.bundle is not None and self.metrics is not None
        X, _ = self.decode(payload)
        if len(X) > 1000:
            raise BatchTooLarge(f"instances: explain handles at most 1000 rows per request, got {len(X)}")
        contribs, bias = self.bundle.contributions(X)
        model_scale = self.bundle.predict_model_scale(X)
        prices = self.bundle.to_price(model_scale.copy())
        self.metrics.predictions["explain"].inc(len(X))
        names = self.bundle.schema.names
        return {
            "scale": "log" if self.bundle.transform == "log" else "price",
            "explanations": [
                {
                    "prediction": float(model_scale[i]),
                    "price": float(prices[i]),
                    "bias": float(bias[i]),
                    "contributions": dict(zip(names, contribs[i].tolist(), strict=True)),
                }
                for i in range(len(X))
            ],
        }

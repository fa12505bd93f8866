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
import itertools
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.model import Model
from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelInferRequest
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from bundle.schema import CATEGORICAL
from predictor.codec.decode import BatchTooLarge, DecodedInferRequest, Decoder
from predictor.codec.v2_grpc import decode_grpc
from predictor.core.loaded import LoadedBundle, load_bundle
from predictor.core.ranges import RangeCheck
from predictor.guard.client_errors import REQUEST_ID_HEADER, request_id
from predictor.observe.metrics import ModelMetrics
from predictor.observe.payload_log import PayloadConfig, PayloadLog, received_body
from predictor.observe.payload_rows import Layout

log = logging.getLogger("predictor")

DEFAULT_MAX_BATCH_SIZE = 10_000
OUT_OF_RANGE_HEADER = "x-housing-out-of-range"
OUTPUT_NAME = "predictions"

#: Request ids made here: a random prefix per process and a counter (a uuid4 per request costs 5 µs).
_ID_PREFIX = uuid.uuid4().hex[:8]
_ID_COUNTER = itertools.count()

_V2_TYPES = {"float64": "FP64", "int64": "INT64", "bool": "BOOL"}


class HousingModel(Model):
    """Serves one artifact bundle (loaded by :func:`predictor.core.loaded.load_bundle`) over V1, V2 REST and V2 gRPC."""

    def __init__(
        self,
        name: str,
        model_dir: str | Path,
        expected_digest: str | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        drift_window: int = 2000,
        payload: PayloadConfig | None = None,
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
        self.payload = payload
        self.payload_log: PayloadLog | None = None
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
        self._start_payload_log()
        self.ready = True
        return self.ready

    def _start_payload_log(self, prepare: bool = True) -> None:
        """This process's payload log (each REST worker process starts its own, ``prepare`` False)."""
        if self.payload is None or self.bundle is None:
            return
        schema = self.bundle.schema
        unknown = sorted(set(self.payload.drop) - set(schema.names))
        if unknown:  # a misspelt name would log the very feature it was meant to keep out
            raise ValueError(f"--payload_log_drop: not features of this model: {', '.join(unknown)}")
        layout = Layout.of(schema.names, (f.name for f in schema.features if f.kind == CATEGORICAL), self.payload.drop)
        self.payload_log = PayloadLog(self.payload, self.name, self.version, layout, prepare)

    def log_refused(self, protocol: str, model_name: str | None, status: int, reason: str, rid: str) -> None:
        """Log a request of this model refused before it reached :meth:`predict` / :meth:`explain` (the
        guard's 401/408/413/429/503, a body that does not decode): one row with its status and reason."""
        if self.payload_log is not None and (model_name is None or model_name == self.name):
            self.payload_log.refuse(rid, protocol, status, reason)

    def close_payload_log(self) -> None:
        """Write the payload log's last rows (the REST app's shutdown; exit hooks do it otherwise)."""
        if self.payload_log is not None:
            self.payload_log.close()

    # -- --workers > 1: KServe spawns REST worker processes and pickles the model into them ------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["metrics"] = None  # prometheus children and the drift window hold locks
        state["payload_log"] = None  # a thread and a queue: each process has its own
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
            self._start_payload_log(prepare=False)

    # -- metadata --------------------------------------------------------------------------
    @property
    def max_inputs(self) -> int:
        """The most input tensors a V2 request may have before they are even looked at: one per feature,
        with room for a few mistakes (an unknown or repeated tensor gets its own message from the codec)."""
        return 2 * len(self.bundle.schema.features) + 8 if self.bundle is not None else 0

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

    # -- the decode entry the transports call (predictor.codec.entry.DecodeEntry) ---------------
    def decode_v2_json(self, body: bytes, model_name: str) -> DecodedInferRequest | None:
        """A plain columnar V2 JSON body decoded from its bytes by this model's decoder (no Python object
        per value); None for any other body, or before :meth:`load`."""
        decoder = self.decoder
        return None if decoder is None else decoder.v2_json(body, model_name)

    def decode_grpc(self, request: ModelInferRequest) -> DecodedInferRequest | None:
        """A plain ``ModelInferRequest`` decoded straight from its tensors; None for any other request, or
        while the model is not ready (KServe's servicer then answers). More tensors than :attr:`max_inputs`
        is an ``InvalidInput`` before any tensor is read."""
        decoder = self.decoder
        if decoder is None or not self.ready:
            return None
        if len(request.inputs) > self.max_inputs:
            raise InvalidInput(
                f"inputs: {len(request.inputs)} tensors; the model takes at most {self.max_inputs} "
                "(one per feature, or one 2-D tensor in schema order)"
            )
        return decode_grpc(decoder, request)

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
        if self.payload_log is None:
            return self._predict(payload, response_headers, None, time.perf_counter())
        started = time.perf_counter()
        if isinstance(payload, ModelInferRequest):
            payload = InferRequest.from_grpc(payload)
        # the id the row is filed under: the client's (or the gateway's), else made here and returned
        given = (headers or {}).get(REQUEST_ID_HEADER)
        if not given and type(payload) is not dict:
            given = getattr(payload, "id", None)
        rid = _request_id(given)
        if response_headers is not None:
            response_headers[REQUEST_ID_HEADER] = rid
        try:
            return self._predict(payload, response_headers, rid, started)
        except Exception as exc:
            # logged with its status and reason as answered (predictor.transport.rest_middleware), then re-raised
            protocol = ("grpc" if payload.from_grpc else "v2") if isinstance(payload, InferRequest) else "v1"
            self._log_error(exc, rid, protocol, payload, started)
            raise

    def _log_error(self, exc: Exception, rid: str, protocol: str, payload: Any, started: float) -> None:
        """The row of a request the model refused or failed, with the status it is answered with."""
        assert self.payload_log is not None
        exc.request_id = rid  # type: ignore[attr-defined]  # the error answer carries the same id, and logs no 2nd row
        status = 413 if isinstance(exc, BatchTooLarge) else 400 if isinstance(exc, InvalidInput) else 500
        reason = f"{type(exc).__name__}: {exc}"
        latency = time.perf_counter() - started
        self.payload_log.record(rid, protocol, _body(payload), None, None, latency, status, reason)

    def _predict(
        self,
        payload: dict | InferRequest,
        response_headers: dict[str, str] | None,
        request_id: str | None,
        started: float,
    ) -> dict | InferResponse:
        assert self.bundle is not None and self.decoder is not None and self.metrics is not None
        # client errors raise InvalidInput; they are counted where they are answered
        # (predictor.transport.rest_middleware, predictor.transport.grpc_server), with KServe's own rejections
        X, protocol = self.decode(payload)
        if isinstance(payload, InferRequest):
            self._check_requested_outputs(payload)
        prices = self.bundle.predict(X)
        assert self.ranges is not None
        mask = self.ranges.out_of_range(X)  # flagged in the answer, counted by the metrics
        latency = time.perf_counter() - started
        self.metrics.observe(protocol, X, prices, mask, latency)
        oor_names = [] if mask is None else [self.bundle.schema.names[j] for j in np.flatnonzero(mask.any(axis=0))]
        if request_id is not None and self.payload_log is not None:
            flags = (",".join(oor_names) or None) if len(prices) == 1 else mask
            self.payload_log.record(request_id, protocol, _body(payload), prices, flags, latency)
        if isinstance(payload, InferRequest):
            params: dict[str, Any] = {}
            if oor_names:
                params = {"out_of_range": ",".join(oor_names), "out_of_range_rows": int(mask.any(axis=1).sum())}
            output = InferOutput(name=OUTPUT_NAME, shape=[len(prices)], datatype="FP64", data=prices.tolist())
            return InferResponse(
                response_id=payload.id or request_id or str(uuid.uuid4()),
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

    def _flagged(self, mask: np.ndarray | None) -> list[str]:
        """The names of the features flagged out of range in any row of ``mask``."""
        assert self.bundle is not None
        return [] if mask is None else [self.bundle.schema.names[j] for j in np.flatnonzero(mask.any(axis=0))]

    @staticmethod
    def _check_requested_outputs(request: InferRequest) -> None:
        for out in request.request_outputs or []:
            if out.name != OUTPUT_NAME:
                raise InvalidInput(f"outputs.{out.name}: unknown output (this model has only {OUTPUT_NAME!r})")

    def explain(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        """Per-feature contributions that sum (with the bias) to the model-scale prediction.

        With the payload log on, the call is logged like a prediction (protocol ``explain``: the
        prices, the range flags, or the error's status and reason) under the client's ``x-request-id``,
        else one made here and set in ``headers`` — the dict KServe's V1 explain route also answers
        with as response headers (``DataPlane.explain``), so the client gets the id back."""
        if self.payload_log is None:
            return self._explain(payload, None, time.perf_counter())
        started = time.perf_counter()
        rid = _request_id((headers or {}).get(REQUEST_ID_HEADER))
        if headers is not None:
            headers[REQUEST_ID_HEADER] = rid
        try:
            return self._explain(payload, rid, started)
        except Exception as exc:
            self._log_error(exc, rid, "explain", payload, started)
            raise

    def _explain(self, payload: dict, rid: str | None, started: float) -> dict:
        assert self.bundle is not None and self.metrics is not None
        X, _ = self.decode(payload)
        if len(X) > 1000:
            raise BatchTooLarge(f"instances: explain handles at most 1000 rows per request, got {len(X)}")
        contribs, bias = self.bundle.contributions(X)
        model_scale = self.bundle.predict_model_scale(X)
        prices = self.bundle.to_price(model_scale.copy())
        self.metrics.predictions["explain"].inc(len(X))
        if rid is not None and self.payload_log is not None:
            assert self.ranges is not None
            mask = self.ranges.out_of_range(X)
            flags = (",".join(self._flagged(mask)) or None) if len(X) == 1 else mask
            latency = time.perf_counter() - started
            self.payload_log.record(rid, "explain", _body(payload), prices, flags, latency)
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


def _request_id(given: str | None) -> str:
    """The id a logged request is filed under: the client's (cleaned), else one made here."""
    return request_id(given) if given else f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


def _body(payload: Any) -> Any:
    """What the payload log keeps of a request: bytes where it can (they cost the garbage collector
    nothing while queued) — a JSON body as received, a V1 object the data plane did not keep the bytes
    of re-encoded — else the request."""
    if type(payload) is dict:
        body = received_body(payload)  # the V1 body as received (the data plane kept it)
        if body is not None:
            return body
        try:
            return orjson.dumps(payload)
        except TypeError:
            return payload
    if type(payload) is DecodedInferRequest:  # what the decode entry made: the bytes it read,
        body = payload.body if payload.body is not None else payload.message  # or its gRPC request
        return payload if body is None else body  # (read into values in the writer thread)
    return payload

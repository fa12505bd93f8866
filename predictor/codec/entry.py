"""The typed decode entry a model offers its transports: a request decoded by the model's own codec
before KServe's data plane runs.

The V2 REST route (:mod:`predictor.transport.v2_rest`) hands the model a JSON body's bytes, the gRPC
servicer (:mod:`predictor.transport.grpc_server`) a ``ModelInferRequest``; the model answers with a
:class:`~predictor.codec.decode.DecodedInferRequest` carrying its finished matrix, or None, and the
request then goes KServe's usual way (``InferRequest`` from the body or the protobuf, the model's
``decode``). The transports ask through :class:`DecodeEntry`, never through the model's other fields.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from predictor.codec.decode import DecodedInferRequest


@runtime_checkable
class DecodeEntry(Protocol):
    """A model that decodes its own requests (``predictor.transport.model.HousingModel``), and the most it
    takes, which the binary V2 body check (:class:`~predictor.codec.v2_binary.CheckedDataPlane`) holds a
    body to before KServe decodes it."""

    #: The most rows one request may have (``--max_batch_size``).
    max_batch_size: int
    #: The most input tensors one request may have; 0 before the model is loaded.
    max_inputs: int

    def decode_v2_json(self, body: bytes, model_name: str) -> DecodedInferRequest | None:
        """A plain columnar V2 JSON body (one ``[n]`` tensor per feature) decoded from its bytes; None for
        any other body, or before the model is loaded."""

    def decode_grpc(self, request: Any) -> DecodedInferRequest | None:
        """A plain ``ModelInferRequest`` decoded from its tensors; None for any other request, or while the
        model is not ready. A request with more tensors than the model could take is refused here
        (``InvalidInput``), before any tensor is read."""


#: class → whether its instances are a :class:`DecodeEntry`. A runtime protocol check costs about 6 µs
#: in Python 3.11 (it walks the protocol's members); a request pays one dict look-up instead.
_ENTRY_CLASSES: dict[type, bool] = {}


def decode_entry(model: object) -> DecodeEntry | None:
    """``model`` as a :class:`DecodeEntry`, or None when its class does not offer one (KServe's own
    models, another ``kserve.Model``): the transport then leaves decoding to KServe. Decided once per
    class, from its first instance: the entry is the class's methods and the attributes every instance
    has from its ``__init__``."""
    cls = type(model)
    offers = _ENTRY_CLASSES.get(cls)
    if offers is None:
        offers = _ENTRY_CLASSES[cls] = isinstance(model, DecodeEntry)
    return model if offers else None  # type: ignore[return-value]  # checked above; no cast() call per request

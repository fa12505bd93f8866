"""The KServe floor: a ``kserve.Model`` that returns a constant, served by the same ModelServer.

``python -m bench.floor --model_name housing --http_port P --grpc_port Q`` — whatever our
predictor achieves is measured against this in the same run; nothing can beat the framework
it runs in, so ours ÷ floor says how much of the budget the model itself spends.
"""

from __future__ import annotations

import argparse

import kserve
from kserve import InferOutput, InferRequest, InferResponse
from kserve.model_server import parser as kserve_parser

from housing.config import DEFAULT_MODEL_NAME


class ConstantModel(kserve.Model):
    """Answers every V1 or V2 request with the constant 0.0 per row."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    def load(self) -> bool:
        """Nothing to load."""
        self.ready = True
        return True

    async def predict(self, payload, headers=None):  # noqa: ANN001, ANN201 - kserve signature
        """One 0.0 per instance (V1) or per row of the first input (V2)."""
        if isinstance(payload, InferRequest):
            rows = payload.inputs[0].shape[0] if payload.inputs else 1
            out = InferOutput(name="predictions", shape=[rows], datatype="FP64", data=[0.0] * rows)
            return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id)
        instances = payload.get("instances") if isinstance(payload, dict) else None
        return {"predictions": [0.0] * (len(instances) if isinstance(instances, list) else 1)}


def main() -> None:
    """Serve the constant model with KServe's own ModelServer and flags."""
    parser = argparse.ArgumentParser(parents=[kserve_parser], conflict_handler="resolve")
    parser.add_argument("--model_name", default=DEFAULT_MODEL_NAME)
    args, _ = parser.parse_known_args()
    model = ConstantModel(args.model_name)
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers).start([model])


if __name__ == "__main__":
    main()

"""Challenger bundles derived from a trained one, for rollout tests (local and on the node)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import uuid
from pathlib import Path

from bundle.manifest import Manifest, write_bundle


def derive_bundle(src: Path, dst: Path, *, relative_shift: float = 0.0, version: str | None = None) -> Path:
    """Copy a linear bundle, shift its intercept so predictions move by ``relative_shift``, re-write it.

    Log target: intercept += log(1 + shift), every prediction × (1 + shift). Price target:
    intercept += shift × the training mean prediction, the mean moves by ``shift``. The copy gets
    its own ``model_version`` (so its series are told apart from the source's) and valid digests.
    """
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    manifest = Manifest(**json.loads((dst / "bundle.json").read_text()))
    model = json.loads((dst / manifest.model_file).read_text())
    if manifest.target.get("transform") == "log":
        delta = math.log1p(relative_shift)
    else:
        reference = json.loads((dst / "reference.json").read_text())
        delta = relative_shift * float(reference["prediction"]["mean"])
    model["intercept"] = float(model["intercept"]) + delta
    (dst / manifest.model_file).write_text(json.dumps(model))
    manifest = dataclasses.replace(
        manifest, model_version=version or f"{manifest.model_version}-{uuid.uuid4().hex[:6]}"
    )
    (dst / "bundle.json").unlink()
    write_bundle(dst, manifest)
    return dst

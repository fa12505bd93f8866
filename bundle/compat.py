"""Whether two versions may share a registered model: the same target and the same features.

A registered model name holds one kind of model. A version is compatible with the champion when
its target has the same name and every feature has the same name and kind (numeric or
categorical); the order of the features and the fitted encodings may differ. Training refuses to
register an incompatible version and rollouts refuse to canary one, both with
:func:`describe_differences`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Names listed per kind of difference before "and N more".
MAX_LISTED = 8


@dataclass(frozen=True)
class SchemaShape:
    """What must agree between versions: the target's name and each feature's kind."""

    target: str
    kinds: Mapping[str, str]  # feature name -> numeric | categorical

    @classmethod
    def of_manifest(cls, manifest: Any) -> SchemaShape:
        """The shape of a :class:`~bundle.manifest.Manifest` (or its ``bundle.json`` dict)."""
        data = manifest if isinstance(manifest, Mapping) else vars(manifest)
        kinds = {f["name"]: f["kind"] for f in data["schema"]["features"]}
        return cls(str(data["target"]["name"]), kinds)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def differences(old: SchemaShape, new: SchemaShape) -> list[str]:
    """Each difference as a phrase (empty when compatible); ``old`` is the champion."""
    out = []
    if old.target != new.target:
        out.append(f"target {new.target!r} instead of {old.target!r}")
    gone = [n for n in old.kinds if n not in new.kinds]
    added = [n for n in new.kinds if n not in old.kinds]
    changed = [
        f"{n} ({old.kinds[n]} → {new.kinds[n]})" for n in old.kinds if n in new.kinds and old.kinds[n] != new.kinds[n]
    ]
    if gone:
        out.append(f"missing features {_names(gone)}")
    if added:
        out.append(f"new features {_names(added)}")
    if changed:
        out.append(f"features of another kind {_names(changed)}")
    return out


def describe_differences(model_name: str, champion_version: str, diffs: list[str]) -> str:
    """One phrase: what differs from the champion of ``model_name``."""
    return f"model {model_name!r}: the feature schema differs from its champion (version {champion_version}): " + (
        "; ".join(diffs)
    )

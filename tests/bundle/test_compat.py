"""Two versions may share a registered model only with the same target and the same features' kinds."""

from __future__ import annotations

from bundle.compat import SchemaShape, describe_differences, differences


def _manifest(target: str, **kinds: str) -> dict:
    return {"target": {"name": target}, "schema": {"features": [{"name": n, "kind": k} for n, k in kinds.items()]}}


def test_same_shape_in_another_order_is_compatible() -> None:
    a = SchemaShape.of_manifest(_manifest("MEDV", CRIM="numeric", RM="numeric"))
    b = SchemaShape.of_manifest(_manifest("MEDV", RM="numeric", CRIM="numeric"))
    assert differences(a, b) == []


def test_every_difference_is_named() -> None:
    champion = SchemaShape.of_manifest(_manifest("MEDV", CRIM="numeric", RM="numeric", ZONE="categorical"))
    other = SchemaShape.of_manifest(_manifest("Sale_Price", RM="categorical", ZONE="categorical", Lot_Area="numeric"))
    diffs = differences(champion, other)
    assert diffs == [
        "target 'Sale_Price' instead of 'MEDV'",
        "missing features CRIM",
        "new features Lot_Area",
        "features of another kind RM (numeric → categorical)",
    ]
    line = describe_differences("housing", "3", diffs)
    assert line.startswith("model 'housing': the feature schema differs from its champion (version 3): target")


def test_long_lists_are_cut() -> None:
    champion = SchemaShape.of_manifest(_manifest("y", **{f"f{i}": "numeric" for i in range(20)}))
    other = SchemaShape.of_manifest(_manifest("y"))
    assert differences(champion, other) == ["missing features f0, f1, f2, f3, f4, f5, f6, f7 and 12 more"]

"""Named sections of docs/benchmarks.md that one bench mode writes and the others keep.

``housing bench`` (the comparison) rewrites the page; ``--mode start``, ``--mode soak``,
``--mode payload``, ``--mode fuzz``, ``--mode train-scale`` and ``--mode speed`` write only their own section, between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``, as does the node tier's gateway overhead
(tests/cluster/test_node_gateway.py, with ``HOUSING_GATEWAY_BENCH_MD`` set); the per-replica capacity
(tests/cluster/test_node_autoscale.py, ``HOUSING_BENCH_CAPACITY=1``) is written by hand from what it prints.
"""

from __future__ import annotations

import re
from pathlib import Path

ORDER = ("speed", "start", "soak", "payload", "fuzz", "gateway", "capacity", "train-scale")


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- {name}:begin -->\n.*?<!-- {name}:end -->\n", re.S)


def sections(text: str) -> dict[str, str]:
    """The named sections present in ``text`` (markers included)."""
    found = {}
    for name in ORDER:
        match = _pattern(name).search(text)
        if match:
            found[name] = match.group(0)
    return found


def write_section(path: Path, name: str, lines: list[str]) -> None:
    """Put ``lines`` into section ``name`` of ``path`` (appended if the section is new)."""
    block = f"<!-- {name}:begin -->\n" + "\n".join(lines) + f"\n<!-- {name}:end -->\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if _pattern(name).search(text):
        text = _pattern(name).sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def keep_sections(path: Path, new_text: str) -> str:
    """``new_text`` with the sections the old ``path`` had appended (a comparison rewrite)."""
    old = sections(path.read_text()) if path.exists() else {}
    return new_text.rstrip("\n") + "".join("\n\n" + old[name] for name in ORDER if name in old) + "\n"

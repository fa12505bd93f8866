"""Read requirements/lock.txt (uv pip compile --generate-hashes output) with the standard library only.

    python scripts/lock/pick.py uv < requirements/lock.txt       # the hashed requirement of uv, for pip
    python scripts/lock/pick.py --versions < requirements/lock.txt  # name==version, one a line

Used where no uv exists yet: scripts/tools/uv.sh bootstraps uv from the lock's own entry, and so does
the Dockerfile's build stage.
"""

from __future__ import annotations

import re
import sys


def blocks(text: str) -> dict[str, str]:
    """Each pinned requirement's lines (``name==version \\`` and its ``--hash`` lines), keyed by name."""
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        head = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if head:
            name = re.sub(r"[-_.]+", "-", head.group(1)).lower()
            out[name] = line.rstrip(" \\")
        elif name and line.strip().startswith("--hash="):
            out[name] += " " + line.strip().rstrip(" \\")
        else:
            name = None
    return out


def main(argv: list[str]) -> int:
    found = blocks(sys.stdin.read())
    if argv == ["--versions"]:
        print("\n".join(block.split()[0] for block in found.values()))
        return 0
    missing = [n for n in argv if re.sub(r"[-_.]+", "-", n).lower() not in found]
    if not argv or missing:
        print(f"pick.py: not in the lock: {' '.join(missing) or '(no name given)'}", file=sys.stderr)
        return 2
    for n in argv:
        print(found[re.sub(r"[-_.]+", "-", n).lower()])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env bash
# `make lock`: re-resolve requirements/lock.txt on purpose, against the package index as it stands
# now. Moves pyproject's [tool.uv] exclude-newer to this instant (every later resolution, here or in
# an image build, sees the same index), re-locks with --upgrade and prints what changed.
# Then: `make install` syncs .venv to the new lock, and tests/test_lock.py says what still differs.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
uv="$(bash scripts/tools/uv.sh)"
old="$(mktemp)"; trap 'rm -f "$old"' EXIT
python3 scripts/lock/pick.py --versions < requirements/lock.txt > "$old"
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
sed -i "s/^exclude-newer = \".*\"/exclude-newer = \"$now\"/" pyproject.toml
grep -q "^exclude-newer = \"$now\"" pyproject.toml || { echo "lock: no exclude-newer line in pyproject.toml" >&2; exit 1; }
"$uv" pip compile pyproject.toml --extra dev --generate-hashes --upgrade \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements/lock.txt -q
python3 - "$old" <<'PY'
import subprocess, sys
def versions(lines):
    return dict(line.split("==", 1) for line in lines if "==" in line)
before = versions(open(sys.argv[1]).read().split())
after = versions(subprocess.run([sys.executable, "scripts/lock/pick.py", "--versions"], stdin=open("requirements/lock.txt"),
                                capture_output=True, text=True, check=True).stdout.split())
rows = [(n, before.get(n, "-"), after.get(n, "-")) for n in sorted(before.keys() | after.keys()) if before.get(n) != after.get(n)]
for name, old, new in rows:
    print(f"  {name:32} {old:>14} -> {new}")
print(f"lock: {len(rows)} of {len(after)} packages changed; run `make install`, then `make test`")
PY

#!/usr/bin/env bash
# `make test` (and so `.ci/run`): every test tier, with the slow tool builds and the node tier
# overlapped with the tiers that need neither.
#
#   1. tools-base (MinIO, Debian packages, helm/kubectl, checkov, the peers' venvs), in front;
#   2. in the background: tools-node (Kubernetes and KServe from source, skaffold, Prometheus with
#      k8s SD, a registry, the images: most of a cold run), then, as soon as those are ready,
#      pytest part 2: the node tier (-m node), the longest part;
#   3. meanwhile in the foreground: pytest part 1, unit, integration, bench (-m "not cluster and not
#      node and not images"), then, once tools-node is ready, part 1b: helm renders, the real API
#      server and the images (-m "(cluster or images) and not node"), so that they are not added to
#      the node tier's time.
# All parts mostly wait on servers, pods and builds, so they share the 2 cores well. Part 2's
# output is printed when all are done (its log: $LOG_DIR/pytest-part2.log). Extra arguments go to
# every pytest run. Exit status: non-zero if a tool build or a pytest run failed; a part whose
# selection holds no test (pytest's 5, e.g. with -k) is not a failure by itself. Each part ends with
# its 25 slowest tests (--durations): where CI's minutes go.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LOG_DIR="$(pwd)/${HOUSING_HOME:-.housing}/logs"; mkdir -p "$LOG_DIR"
NODE_LOG="$LOG_DIR/tools-node.log" PART1_LOG="$LOG_DIR/pytest-part1.log" PART2_LOG="$LOG_DIR/pytest-part2.log"
PART1B_LOG="$LOG_DIR/pytest-part1b.log"
RC_FILE="$LOG_DIR/part2.rc" READY_FILE="$LOG_DIR/tools-node.ready"
stamp() { date -u +%H:%M:%S; }
T0=$SECONDS
rm -f "$RC_FILE" "$READY_FILE" "$PART2_LOG" "$PART1B_LOG"

echo "== $(stamp) tools-base"
make --no-print-directory tools-base || { echo "test.sh: make tools-base failed" >&2; exit 1; }
echo "== $(stamp) tools-base done in $((SECONDS - T0)) s"

echo "== $(stamp) in the background: tools-node (log: $NODE_LOG), then pytest part 2: the node tier"
export T0
setsid bash -c '
  make --no-print-directory tools-node > "$0" 2>&1 || { echo tools > "$3"; exit; }
  touch "$2"
  echo "== $(date -u +%H:%M:%S) tools-node ready after $((SECONDS)) s; pytest part 2: the node tier" > "$1"
  "$4" -m pytest -m node --durations=25 "${@:5}" >> "$1" 2>&1
  echo $? > "$3"
' "$NODE_LOG" "$PART2_LOG" "$READY_FILE" "$RC_FILE" "$PY" "$@" &
BG=$!
trap 'kill -- "-$BG" 2>/dev/null' EXIT

T1=$SECONDS
echo "== $(stamp) pytest part 1: unit, integration, bench"
"$PY" -m pytest -m "not cluster and not node and not images" --durations=25 "$@" 2>&1 | tee "$PART1_LOG"
RC1=${PIPESTATUS[0]}
echo "== $(stamp) part 1 done in $((SECONDS - T1)) s (exit $RC1); part 1b waits for tools-node"
while [[ ! -e "$READY_FILE" ]] && [[ "$(cat "$RC_FILE" 2>/dev/null)" != tools ]] && kill -0 "$BG" 2>/dev/null; do
  sleep 5
done
RC1B=missing
if [[ -e "$READY_FILE" ]]; then
  T1B=$SECONDS
  echo "== $(stamp) pytest part 1b: helm, API server, images"
  "$PY" -m pytest -m "(cluster or images) and not node" --durations=25 "$@" 2>&1 | tee "$PART1B_LOG"
  RC1B=${PIPESTATUS[0]}
  echo "== $(stamp) part 1b done in $((SECONDS - T1B)) s (exit $RC1B); waiting for part 2"
fi
wait "$BG"
trap - EXIT
RC2="$(cat "$RC_FILE" 2>/dev/null || echo missing)"

echo "== tools-node timings:"
grep -E "built in|up to date|already built" "$NODE_LOG" | tail -40 || true
if [[ "$RC2" == tools || "$RC2" == missing ]]; then
  echo "test.sh: make tools-node failed; the end of $NODE_LOG:" >&2
  tail -60 "$NODE_LOG" >&2
  exit 1
fi
echo "== pytest part 2 (the node tier), as it ran beside parts 1 and 1b:"
cat "$PART2_LOG"
echo "== $(stamp) make test took $((SECONDS - T0)) s (part 1 exit $RC1, part 1b exit $RC1B, part 2 exit $RC2)"

# every part in one closing line
summary() { tail -n 1 "$1" 2>/dev/null; }
total() {
  { summary "$PART1_LOG"; summary "$PART1B_LOG"; summary "$PART2_LOG"; } | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'
}
echo "tests: $(total passed) passed, $(( $(total failed) + $(total 'errors?') )) failed, $(total skipped) skipped"

ok() { [[ $1 -eq 0 || $1 -eq 5 ]]; }  # 5: this selection holds no test
if ok "$RC1" && ok "$RC1B" && ok "$RC2"; then
  [[ $RC1 -eq 5 && $RC1B -eq 5 && $RC2 -eq 5 ]] && exit 5
  exit 0
fi
for rc in "$RC1" "$RC1B" "$RC2"; do ok "$rc" || exit "$rc"; done

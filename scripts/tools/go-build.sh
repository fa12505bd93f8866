# Sourced by the tools scripts that build Go programs from the module proxy (kserve.sh,
# skaffold.sh, prometheus.sh, traefik.sh, metrics-server.sh, registry.sh): one way to fetch a
# module and build a package from it, cached in TOOLS_DIR with a version stamp. It also gives the
# caller its preamble: TOOLS_DIR (${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}) and log/die,
# whose messages start with the sourcing script's name.
TOOLS_DIR="${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}"
GO_BUILD_CALLER="$(basename "${BASH_SOURCE[1]}")"
die() { echo "$GO_BUILD_CALLER: $*" >&2; exit 1; }
log() { echo "$GO_BUILD_CALLER: $*" >&2; }
GO_PAR="${HOUSING_GO_BUILD_P:-2}"
command -v go >/dev/null || die "the Go toolchain is needed (go not found)"
mkdir -p "$TOOLS_DIR"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOWORK=off

module_dir() {  # module@version -> its read-only directory in the module cache
  go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

# go_build OUT VERSION MODULE PKG [LDFLAGS] [TAGS]: go build PKG from a writable copy of
# MODULE@VERSION into TOOLS_DIR/OUT, unless OUT's stamp already says VERSION
go_build() {
  local out="$1" version="$2" module="$3" pkg="$4" ldflags="${5:-}" tags="${6:-}"
  local stamp; stamp="$(dirname "$TOOLS_DIR/$out")/.$(basename "$out")-version"
  if [[ -x "$TOOLS_DIR/$out" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
    log "$out $version already built"; return 0
  fi
  log "building $out $version from $module${tags:+ (tags $tags)}…"
  local t0=$SECONDS src work
  src="$(module_dir "$module@$version")"
  [[ -d "$src" ]] || die "go mod download $module@$version failed"
  work="$(mktemp -d)"
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  (cd "$work" && GOMAXPROCS="$GO_PAR" nice -n 10 go build -mod=mod -p "$GO_PAR" -tags "$tags" \
     -ldflags "-s -w $ldflags" -o "$TOOLS_DIR/$out.tmp" "$pkg")
  mv -f "$TOOLS_DIR/$out.tmp" "$TOOLS_DIR/$out"
  rm -rf "$work"
  echo "$version" > "$stamp"
  log "$out built in $((SECONDS - t0)) s"
}

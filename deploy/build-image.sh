#!/usr/bin/env bash
# Builds a static (musl) release stratus-node and the image stratus-node:dev around
# it (FROM scratch: nothing is pulled, no registry needed), then the host's
# `stratus` CLI (a normal release build). Safe to run again: cargo and docker only
# redo what changed.
#
#   deploy/build-image.sh               image and host CLI
#   deploy/build-image.sh --image-only  image only (what the drill test uses)
#
# Environment: CARGO_TARGET_DIR (default ./target), STRATUS_IMAGE (default
# stratus-node:dev).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
target=x86_64-unknown-linux-musl
image="${STRATUS_IMAGE:-stratus-node:dev}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
build_cli=1

die() { printf 'build-image: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
  case "$arg" in
    --image-only) build_cli=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown argument $arg (try --help)" ;;
  esac
done

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup) first"
command -v docker >/dev/null 2>&1 || die "docker not found: install Docker Engine (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 \
  || die "cannot reach the Docker engine (\`docker info\` failed): start dockerd, or check your access to /var/run/docker.sock"
sysroot="$(rustc --print sysroot)"
[ -d "$sysroot/lib/rustlib/$target" ] \
  || die "the Rust target $target is not installed: rustup target add $target"
# mimalloc compiles C: for a musl target cc-rs wants musl-gcc.
command -v musl-gcc >/dev/null 2>&1 \
  || die "musl-gcc not found (needed to compile mimalloc's C for $target): apt-get install musl-tools"

# Started from a cargo-run program (the docker drill test), this script inherits
# that package's CARGO_MANIFEST_DIR, CARGO_PKG_* and the like; ring's build script
# tracks CARGO_MANIFEST_DIR, so cargo would rebuild (minutes) what a build from a
# shell already made. Drop them: cargo sets its own for every crate it builds.
while IFS= read -r var; do
  unset "$var"
done < <(compgen -e | grep -E '^CARGO_(MANIFEST_|PKG_|CRATE_|BIN_|PRIMARY_|TARGET_TMPDIR|RUSTC_)' || true)

echo "build-image: cargo build --release --target $target -p stratus-node"
# No debug info in the shipped binary: it would triple its size for nothing a
# container needs.
CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo \
  cargo build --manifest-path "$repo/Cargo.toml" --locked --release --target "$target" -p stratus-node
bin="$target_dir/$target/release/stratus-node"
[ -x "$bin" ] || die "cargo finished but $bin is missing"
# A dynamically linked binary would not start in an empty image.
if command -v readelf >/dev/null 2>&1 && readelf -l "$bin" | grep -q 'INTERP'; then
  die "$bin is dynamically linked; a FROM scratch image needs a static binary"
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$bin" "$context/stratus-node"
mkdir -m 1777 "$context/tmp"
cp "$repo/deploy/Dockerfile" "$context/Dockerfile"
echo "build-image: docker build -t $image"
docker build --quiet --tag "$image" "$context" >/dev/null
# The image must run: ask the binary for its version inside it.
docker run --rm "$image" --version >/dev/null \
  || die "the image $image was built but its stratus-node does not run"
echo "build-image: $image ready ($(docker image inspect --format '{{.Id}}' "$image" | cut -c1-19))"

if [ "$build_cli" = 1 ]; then
  echo "build-image: cargo build --release -p stratus-client (the host's stratus CLI)"
  cargo build --manifest-path "$repo/Cargo.toml" --locked --release -p stratus-client --bin stratus
  echo "build-image: host CLI at $target_dir/release/stratus"
fi

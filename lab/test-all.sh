#!/usr/bin/env bash
# lab/test-all.sh — everything CI runs, in order; stops at the first failure.
#   1. lab/install.sh           (packages, pytest, hugepages)
#   2. cargo build --release
#   3. cargo test --workspace --release
#   4. python3 -m pytest -v tests/e2e   (namespace lab + rvsd; needs root)
# Extra arguments go to pytest, e.g. `bash lab/test-all.sh -k rr`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v cargo >/dev/null 2>&1 || { [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"; }

step() { printf '\n==> %s\n' "$*"; "$@"; }

step bash lab/install.sh
step cargo build --release
RVSD=${RVSD:-$ROOT/target/release/rvsd}
[ -x "$RVSD" ] || { echo "test-all: cargo build produced no rvsd at $RVSD" >&2; exit 1; }
export RVSD
step cargo test --workspace --release
step python3 -m pytest -v tests/e2e "$@"
printf '\ntest-all: all passed\n'

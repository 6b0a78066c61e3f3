#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the third-party peers it
# needs (npm smpp, smpplib, SIPp, tshark, schemathesis, PostgreSQL), checks formatting and
# lints, builds, runs unit, end-to-end and interop tests, fuzzes the HTTP API
# with schemathesis and smoke-runs the fuzz targets.
# With CI=true a missing peer is a failure, never a skip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${CI:-}" in
  true|TRUE|True|1|yes)
    # Reuse a build cache outside the clone between CI runs on one machine
    # (without a HOME, cargo's default target/ in the clone).
    if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -n "${HOME:-}" ]; then
        export CARGO_TARGET_DIR="$HOME/.cache/verigate/target"
    fi
    export CARGO_INCREMENTAL=0
    ;;
esac

step() { printf '\n==> %s\n' "$*"; }

step "installing test peers (npm smpp 0.5.1, smpplib 2.2.4, sipp, tshark)"
tests/interop/setup.sh

# Minimal rustup profiles ship without rustfmt and clippy.
for component in rustfmt clippy; do
    sub=${component/rustfmt/fmt}
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            step "installing $component (rustup component add $component)"
            rustup component add "$component"
        else
            echo "test.sh: cargo $sub is missing and there is no rustup to install $component" >&2
            exit 1
        fi
    fi
done

step "rustfmt"
cargo fmt --all -- --check

# --locked: a lockfile out of date is an error here, not a silent re-resolve.
step "clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "build"
cargo build --locked --workspace --bins

step "PostgreSQL for the store tests (scripts/pg.sh: Debian postgresql, a throw-away server)"
pg_dir=""
if [ -n "${VERIGATE_TEST_PG_URL:-}" ]; then
    echo "using VERIGATE_TEST_PG_URL"
elif pg_env="$(scripts/pg.sh start)"; then
    eval "$pg_env"
    pg_dir="$VERIGATE_TEST_PG_DIR"
    echo "PostgreSQL at $VERIGATE_TEST_PG_URL"
else
    # Under CI=true the PostgreSQL tests then fail, naming what is missing.
    echo "test.sh: could not start PostgreSQL" >&2
fi

step "tests (unit, end-to-end, interop)"
log="$(mktemp)"
trap 'rm -f "$log"; if [ -n "$pg_dir" ]; then scripts/pg.sh stop "$pg_dir"; fi' EXIT
cargo test --locked --no-fail-fast --workspace 2>&1 | tee "$log"
read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
} END { print p + 0, f + 0 }' "$log")

step "API fuzzing (schemathesis against a lab daemon's /openapi.json)"
api_rc=0
tests/api/schemathesis.sh || api_rc=$?

step "fuzz targets (build + smoke run)"
fuzz/smoke.sh

echo
echo "verigate: ${passed} passed, ${failed} failed; API fuzzing $([ "$api_rc" -eq 0 ] && echo passed || echo FAILED)"
[ "$api_rc" -eq 0 ]

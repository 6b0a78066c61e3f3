#!/usr/bin/env bash
# Fuzz smoke test for CI: builds every fuzz target with plain stable cargo
# (release, no coverage instrumentation, no sanitizer, assertions and
# overflow checks on), then runs each binary over its committed seeds and
# regression inputs plus a bounded number of random mutations. libFuzzer
# without coverage feedback still mutates the seeds, so this catches crashes
# and property violations near the seeds, not deep ones: real fuzzing is
# `cargo fuzz run` (see README.md).
#
# Usage: fuzz/smoke.sh [target...]          (default: all targets)
# Env:   CARGO_TARGET_DIR   honoured (binaries are located from cargo's output)
#        SMOKE_RUNS         runs per target        (default 20000)
#        SMOKE_SECONDS      time cap per target    (default 20)
#        SMOKE_SEED         libFuzzer seed (default 1; 0 = random)
#        VERIGATE_FUZZ_STRICT=1  also assert the known, reported bugs
# Exits non-zero if the build fails or any target crashes; the crashing
# input is kept in fuzz/artifacts/<target>/ (git-ignored).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
runs="${SMOKE_RUNS:-20000}"
# A fixed seed keeps CI reproducible (a new finding must not make CI flaky);
# set SMOKE_SEED=0 for a random one when hunting.
seed="${SMOKE_SEED:-1}"
secs="${SMOKE_SECONDS:-20}"
all_targets=(pdu_decode session_input text_decode dlr_parse media_decode)
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=("${all_targets[@]}")
fi

start=$(date +%s)
echo "== building fuzz targets (cargo build --release --manifest-path $here/Cargo.toml)"
build_log="$(mktemp)"
work="$(mktemp -d)"
trap 'rm -rf "$work" "$build_log"' EXIT
# The JSON messages name every built executable, wherever CARGO_TARGET_DIR
# (or a cargo config) puts it; diagnostics are still rendered on stderr.
cargo build --locked --release --manifest-path "$here/Cargo.toml" --bins \
    --message-format=json-render-diagnostics >"$build_log"

failed=()
for t in "${targets[@]}"; do
    bin="$(grep -o "\"executable\":\"[^\"]*/$t\"" "$build_log" | head -n1 | cut -d'"' -f4 || true)"
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
        echo "!! no binary for target '$t'" >&2
        failed+=("$t")
        continue
    fi
    corpus="$work/$t"          # scratch: libFuzzer writes new inputs to the first dir
    artifacts="$here/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    inputs=("$here/seeds/$t")
    if [ -d "$here/regressions/$t" ]; then
        inputs+=("$here/regressions/$t")
    fi
    # The minimized corpus of the last campaign (docs/FUZZING.md): every
    # input that reached new code then is replayed here each run.
    if [ -d "$here/corpora/$t" ]; then
        inputs+=("$here/corpora/$t")
    fi
    t0=$(date +%s)
    echo "== $t: seeds + $runs runs (max ${secs}s)"
    if "$bin" -seed="$seed" -runs="$runs" -max_total_time="$secs" -timeout=10 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 \
        "$corpus" "${inputs[@]}" >"$work/$t.log" 2>&1; then
        execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo '?')"
        echo "   ok: $execs inputs in $(( $(date +%s) - t0 ))s"
    else
        echo "!! $t FAILED:" >&2
        # The panic message, then where libFuzzer saved the input.
        grep -A4 -m1 'panicked at' "$work/$t.log" >&2 || grep -v '^#' "$work/$t.log" | tail -n 30 >&2
        grep -E 'Test unit written to|^0x|^(\\x|[0-9a-f]{2},)' "$work/$t.log" | head -n 3 >&2 || true
        failed+=("$t")
    fi
done

echo "== smoke finished in $(( $(date +%s) - start ))s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "!! failing targets: ${failed[*]} (inputs in $here/artifacts/)" >&2
    exit 1
fi

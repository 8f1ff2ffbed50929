#!/usr/bin/env bash
# CI smoke fuzz: 60 seconds of the token_response target, 30 each of token_file,
# cache_entry, jws and json_array, and 20 of link_header, each on a temporary copy of its seeds and regressions, so the
# repository stays clean. Exits non-zero on a crash (or a build
# failure); without nightly or cargo-fuzz it says "fuzz smoke skipped: <reason>" and
# exits 0, because stable CI replays every saved input anyway (cargo test --test
# suite fuzz_regressions). Bounded: install <= 10 min, build <= 10 min, run <= 5 min.
set -euo pipefail
cd "$(dirname "$0")"

run_seconds=60

skip() {
    echo "fuzz smoke skipped: $1"
    exit 0
}

cargo +nightly --version >/dev/null 2>&1 ||
    skip "no nightly toolchain (rustup toolchain install nightly)"
command -v "${CXX:-c++}" >/dev/null 2>&1 ||
    skip "no C++ compiler to build libFuzzer with (${CXX:-c++})"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz"
    timeout 600 cargo install cargo-fuzz --locked ||
        skip "cargo-fuzz is missing and 'cargo install cargo-fuzz --locked' failed"
    cargo +nightly fuzz --version >/dev/null 2>&1 ||
        skip "cargo-fuzz installed but 'cargo +nightly fuzz' does not run"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Runs one target for $2 seconds on a temporary copy of its seeds and regressions.
smoke() {
    local target=$1 seconds=$2 rc=0 dict=()
    rm -rf "$tmp/corpus" "$tmp/artifacts"
    mkdir "$tmp/corpus" "$tmp/artifacts"
    cp seeds/"$target"/* regressions/"$target"/* "$tmp/corpus/"
    [ -f "$target.dict" ] && dict=(-dict="$target.dict")

    if ! timeout 600 cargo +nightly fuzz build "$target"; then
        echo "fuzz smoke failed: cargo +nightly fuzz build $target did not succeed" >&2
        exit 1
    fi
    # -timeout: an input that takes 10 s counts as a failure. The later -artifact_prefix
    # wins over the one cargo-fuzz passes, keeping crash files out of the tree until we
    # copy them.
    timeout 300 cargo +nightly fuzz run "$target" "$tmp/corpus" -- \
        "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
        -artifact_prefix="$tmp/artifacts/" -print_final_stats=1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "fuzz smoke passed: ${seconds}s of $target, no crash"
        return 0
    fi
    if [ "$rc" -eq 124 ]; then
        echo "fuzz smoke failed: the run did not stop within 300 s" >&2
    fi
    for crash in "$tmp"/artifacts/*; do
        [ -e "$crash" ] || continue
        mkdir -p "artifacts/$target"
        cp "$crash" "artifacts/$target/"
        echo "fuzz smoke failed: $target crashed on fuzz/artifacts/$target/$(basename "$crash"):" >&2
        od -A d -c "$crash" | head -n 40 >&2
        echo "Keep it: copy it into fuzz/regressions/$target/ with a descriptive name." >&2
    done
    echo "fuzz smoke failed: cargo fuzz run $target exited $rc" >&2
    exit "$rc"
}

smoke token_response "$run_seconds"
smoke token_file 30
smoke cache_entry 30
smoke jws 30
smoke json_array 30
smoke link_header 20

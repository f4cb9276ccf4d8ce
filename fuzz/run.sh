#!/usr/bin/env bash
# Builds the fuzz targets (cargo-fuzz, libFuzzer) and runs each for a bounded time on a copy
# of its committed corpus, so that the inputs libFuzzer finds are not written into the
# repository. Fails when a target crashes, printing the input's path and the commands that
# reproduce it. See fuzz/README.md.
#
#   ./dev fuzz [--seconds N] [--build-only] [TARGET...]     (or: bash fuzz/run.sh ...)
#
#   --seconds N    fuzzing time per target (default 20; ETL_FUZZ_SECONDS)
#   --build-only   build, do not run
#   TARGET...      only these targets (default: every fuzz/fuzz_targets/*.rs)
#
# cargo-fuzz is installed into the tool cache when missing; the build goes to a target dir
# of its own (instrumented code must not mix with the workspace's): ETL_FUZZ_TARGET_DIR,
# default ~/.cache/etl-platform/fuzz-target. Crash inputs go to fuzz/artifacts/<target>/.
set -euo pipefail

FUZZ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ")"
CACHE="${ETL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/etl-platform}"
TOOLS="$CACHE/tools"
TARGET_DIR="${ETL_FUZZ_TARGET_DIR:-$CACHE/fuzz-target}"
CARGO_FUZZ_VERSION="0.13.2"
export PATH="$TOOLS/bin:$PATH"
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, sanitizer-coverage passes);
# RUSTC_BOOTSTRAP lets the stable compiler accept them, as OSS-Fuzz does.
export RUSTC_BOOTSTRAP=1

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

seconds="${ETL_FUZZ_SECONDS:-20}" build_only=0 targets=() chosen=0
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) [ $# -ge 2 ] || die "--seconds needs a number"; seconds="$2"; shift ;;
        --seconds=*) seconds="${1#*=}" ;;
        --build-only) build_only=1 ;;
        -h|--help) sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) targets+=("$1") ;;
    esac
    shift
done
case "$seconds" in ''|*[!0-9]*) die "--seconds: not a number: $seconds" ;; esac
[ ${#targets[@]} -gt 0 ] && chosen=1
if [ ${#targets[@]} = 0 ]; then
    for f in "$FUZZ"/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
for t in "${targets[@]}"; do
    [ -f "$FUZZ/fuzz_targets/$t.rs" ] || die "no fuzz target $t (fuzz/fuzz_targets/$t.rs)"
done

command -v cargo >/dev/null 2>&1 || die "cargo not found"
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS"
    t0=$SECONDS
    CARGO_TARGET_DIR="$CACHE/cargo-fuzz-build" cargo install cargo-fuzz \
        --version "$CARGO_FUZZ_VERSION" --locked --root "$TOOLS" </dev/null
    rm -rf "$CACHE/cargo-fuzz-build"
    say "cargo-fuzz installed in $((SECONDS - t0)) s"
fi

# -O: optimized. Debug assertions and overflow checks are on in the project's crates only
# (fuzz/Cargo.toml's profile), so that an overflow of ours is a crash here.
build=(cargo fuzz build --fuzz-dir "$FUZZ" --target-dir "$TARGET_DIR" -O)
say "${build[*]}"
t0=$SECONDS
if [ "$chosen" = 1 ]; then
    for t in "${targets[@]}"; do (cd "$ROOT" && "${build[@]}" "$t"); done
else
    (cd "$ROOT" && "${build[@]}")
fi
say "fuzz targets built in $((SECONDS - t0)) s"
[ "$build_only" = 1 ] && exit 0

triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$TARGET_DIR/$triple/release"
work="$(mktemp -d "${TMPDIR:-/tmp}/etl-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    bin="$bin_dir/$t"
    [ -x "$bin" ] || die "$bin was not built"
    mkdir -p "$work/corpus/$t" "$FUZZ/artifacts/$t"
    [ -d "$FUZZ/corpus/$t" ] && cp -R "$FUZZ/corpus/$t/." "$work/corpus/$t/"
    log="$work/$t.log"
    say "$t: ${seconds} s on a copy of fuzz/corpus/$t ($(ls "$work/corpus/$t" | wc -l) inputs)"
    rc=0
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$FUZZ/artifacts/$t/" "$work/corpus/$t" >"$log" 2>&1 || rc=$?
    if [ "$rc" = 0 ]; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
        cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n1)"
        echo "  ok $t: ${runs:-?} runs, ${cov:-cov: ?}, corpus $(ls "$work/corpus/$t" | wc -l) inputs"
        continue
    fi
    failed+=("$t")
    echo "----- last 60 lines of the $t run -----" >&2
    tail -n 60 "$log" >&2
    echo "-----" >&2
    input="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)"
    if [ -n "$input" ]; then
        echo "FAILED $t (exit $rc): input $input" >&2
        echo "  reproduce: $bin $input" >&2
        echo "  or:        (cd $ROOT && RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -O $t $input)" >&2
        echo "  minimize:  (cd $ROOT && RUSTC_BOOTSTRAP=1 cargo fuzz tmin --fuzz-dir fuzz -O $t $input)" >&2
    else
        echo "FAILED $t (exit $rc) without a crash input; log above" >&2
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    die "fuzz targets failed: ${failed[*]}"
fi
say "every fuzz target ran ${seconds} s without a crash: ${targets[*]}"

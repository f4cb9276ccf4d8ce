#!/usr/bin/env bash
# HTTP API source benchmark (bench/README.md, "HTTP API poll"):
#   api->kafka  records/s of one full poll by ingest's HTTP source (pages fetched, parsed,
#               hashed, published and acknowledged by the broker, state journalled) against
#               fetching the same pages with curl (one process, one kept-alive connection,
#               bodies to /dev/null), in the same run, from the same bench-api server.
# Alone: bash bench/http.sh
#
# Environment: BENCH_HTTP_RECORDS (100000), BENCH_HTTP_PER_PAGE (1000), BENCH_HTTP_CURL_RUNS
#   (3, the median counts), BENCH_BROKERS (127.0.0.1:9092), BENCH_KEEP=1 (keep topics and
#   folder), BENCH_BUILD=1 (rebuild ingest too), BENCH_HTTP_OUT (results folder).
# Exit status: 0 when the benchmark ran, 1 when it could not.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${ETL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/etl-platform}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
BIN="$CARGO_TARGET_DIR/release"
RECORDS="${BENCH_HTTP_RECORDS:-100000}"
PER_PAGE="${BENCH_HTTP_PER_PAGE:-1000}"
CURL_RUNS="${BENCH_HTTP_CURL_RUNS:-3}"
BROKERS="${BENCH_BROKERS:-127.0.0.1:9092}"
# Only the config file written below counts.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^ETL_' || true)
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

ID="benchhttp$(date +%s)_$$"       # topic prefix
WORK="$(mktemp -d "${TMPDIR:-/tmp}/etl-bench-http.XXXXXX")"
OUT="${BENCH_HTTP_OUT:-$CACHE/bench/$ID}"
mkdir -p "$OUT" "$WORK/checkpoints" "$WORK/incoming"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench http: error: %s\n' "$*" >&2; exit 1; }
now_us() { date +%s%6N; }

PIDS=()
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        say "kept: topics $ID.*, folder $WORK"
    else
        "$BIN/bench-util" delete-topics --brokers "$BROKERS" "$ID." 2>/dev/null || true
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    die "no free port found"
}

# ---------------------------------------------------------------- preparation
command -v curl >/dev/null || die "curl is not installed"
command -v jq >/dev/null || die "jq is not installed"
if [ "${BENCH_HTTP_SKIP_BUILD:-0}" != 1 ]; then
    say "building the bench binaries (cargo build --release -p bench)"
    cargo build --release -q -p bench
fi
if [ "${BENCH_BUILD:-0}" = 1 ] || [ ! -x "$BIN/ingest" ]; then
    say "building ingest"
    cargo build --release -q -p ingest
fi
(exec 3<>"/dev/tcp/${BROKERS%:*}/${BROKERS##*:}") 2>/dev/null || die "the broker does not answer at $BROKERS"

"$BIN/bench-api" --records "$RECORDS" --per-page "$PER_PAGE" >"$WORK/api.addr" 2>"$WORK/api.log" &
PIDS+=("$!")
for _ in $(seq 1 300); do [ -s "$WORK/api.addr" ] && break; sleep 0.1; done
API="http://$(head -n1 "$WORK/api.addr")"
curl -sf "$API/health" >/dev/null || { cat "$WORK/api.log" >&2; die "bench-api did not start"; }
PAGES=$(( (RECORDS + PER_PAGE - 1) / PER_PAGE ))
say "http run $ID: $RECORDS records in $PAGES pages of $PER_PAGE (+1 empty page), served by $API; results in $OUT"

# ---------------------------------------------------------------- baseline: curl
# The agent reads pages 1..PAGES and then the empty page PAGES+1 that ends the poll: so does
# curl, in one process over one connection.
ARGS=()
for p in $(seq 1 $((PAGES + 1))); do ARGS+=(-o /dev/null "$API/items?page=$p&per_page=$PER_PAGE"); done
runs=()
for r in $(seq 1 "$CURL_RUNS"); do
    t0=$(now_us)
    curl -sf "${ARGS[@]}"
    t1=$(now_us)
    runs+=("$((t1 - t0))")
    say "baseline curl run $r: $(( (t1 - t0) / 1000 )) ms"
done
BYTES=$(curl -sf "$API/stats" | jq -r ".bytes / $CURL_RUNS | floor")
median_us=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(( (CURL_RUNS + 1) / 2 ))p")
jq -cn --argjson n "$RECORDS" --argjson us "$median_us" --argjson runs "[$(IFS=,; echo "${runs[*]}")]" \
    --argjson bytes "$BYTES" '{records: $n, seconds: ($us / 1e6), records_per_s: ($n / ($us / 1e6)), runs_us: $runs, bytes_per_run: $bytes}' \
    | tee "$OUT/http_curl.json" >&2

# ---------------------------------------------------------------- ours: ingest
INGEST_PORT=$(free_port)
cat >"$WORK/etl.toml" <<EOF
[kafka]
brokers = "$BROKERS"
topic_prefix = "$ID"
partitions = 3

[ingest]
metrics_addr = "127.0.0.1:$INGEST_PORT"
checkpoint_dir = "$WORK/checkpoints"

[ingest.http]
timeout_ms = 30000

[[ingest.http.endpoints]]
name = "items"
url = "$API/items"
records = "items"
key = ["id"]
pagination = { type = "page", param = "page", size_param = "per_page", size = $PER_PAGE }
conditional = false
rate_limit_per_s = 0
poll_interval_ms = 3600000
EOF
curl -sf "$API/reset" >/dev/null
"$BIN/ingest" --config "$WORK/etl.toml" run >"$WORK/ingest.log" 2>&1 &
INGEST_PID=$!
PIDS+=("$INGEST_PID")
first=0
for _ in $(seq 1 600); do
    first=$(curl -sf "$API/stats" | jq -r '.first_request_us')
    [ "$first" != 0 ] && break
    kill -0 "$INGEST_PID" 2>/dev/null || { tail -n 30 "$WORK/ingest.log" >&2; die "ingest exited"; }
    sleep 0.05
done
[ "$first" != 0 ] || { tail -n 30 "$WORK/ingest.log" >&2; die "ingest sent no request in 30 s"; }
"$BIN/bench-util" wait-metric --target "$RECORDS" --t0-micros "$first" --poll-ms 20 \
    --watch "http://127.0.0.1:$INGEST_PORT/metrics|ingest_rows_published_total{source=\"api\",entity=\"items\"}" \
    >"$WORK/ingest_wait.json" || { tail -n 30 "$WORK/ingest.log" >&2; die "ingest did not publish $RECORDS records"; }
cat "$WORK/ingest_wait.json" >&2
secs=$(jq -r '.. | objects | select(has("seconds")) | .seconds' "$WORK/ingest_wait.json" | head -n1)
# CPU seconds ingest used (user + system, start-up included): CPU-bound or waiting?
read -r -a st <"/proc/$INGEST_PID/stat"
cpu=$(jq -rn --argjson u "${st[13]}" --argjson s "${st[14]}" --argjson hz "$(getconf CLK_TCK)" '($u + $s) / $hz')
jq -cn --argjson n "$RECORDS" --argjson s "$secs" --argjson bytes "$BYTES" --argjson cpu "$cpu" \
    '{records: $n, seconds: $s, records_per_s: ($n / $s), page_bytes: $bytes, ingest_cpu_seconds: $cpu}' | tee "$OUT/http_ingest.json" >&2

ours=$(jq -r '.records_per_s' "$OUT/http_ingest.json")
base=$(jq -r '.records_per_s' "$OUT/http_curl.json")
ratio=$(jq -rn --argjson a "$ours" --argjson b "$base" '$a / $b * 100 | round / 100')
line=$(printf 'api->kafka: ours %.0f records/s (fetch, parse, hash, publish, broker ack, state journal), baseline curl of the same %s pages %.0f records/s, ratio %s' \
    "$ours" "$((PAGES + 1))" "$base" "$ratio")
echo "$line"
jq -cn --arg line "$line" --argjson ours "$(cat "$OUT/http_ingest.json")" --argjson base "$(cat "$OUT/http_curl.json")" --argjson ratio "$ratio" \
    '{summary: $line, ours: $ours, baseline: $base, ratio: $ratio}' >"$OUT/http.json"
echo "http results: $OUT/http.json"

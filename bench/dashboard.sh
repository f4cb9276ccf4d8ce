#!/usr/bin/env bash
# Dashboard benchmark (not a test): every page and three API endpoints under 50 concurrent
# signed-in clients, against a static file of the same server in the same run.
#
#   1. the warehouse: BENCH_DASHBOARD_DB (an existing warehouse database, e.g. one kept by
#      `BENCH_KEEP=1 bash bench/gold.sh`), or else bench/gold.sh is run with
#      BENCH_GOLD_ROWS=$BENCH_DASHBOARD_ROWS (10,000,000) sales lines, which go through the
#      whole pipeline (CSV folder -> ingest -> Kafka -> transform -> bronze, silver, gold) and
#      the database is kept;
#   2. the dashboard binary on a free loopback port over that database, production-like
#      (release build, its own secret, a user made for the run), rate limit raised;
#   3. wrk (Debian) with 50 connections for BENCH_DASHBOARD_SECS (30) seconds per target,
#      with the session cookie (pages) or the bearer token (API): p50, p99, requests/s and
#      the ratio of each p99 and rate to the static file's; `Accept-Encoding: gzip` as a
#      browser sends it.
# Goal: p99 < 50 ms on every page and endpoint. Results: $ETL_CACHE_DIR/bench/<id>/dashboard.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${ETL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/etl-platform}"
TARGET="${CARGO_TARGET_DIR:-$CACHE/target}"
BIN="$TARGET/release"
SITE="${LEPTOS_SITE_ROOT:-$TARGET/site}"
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
SECS="${BENCH_DASHBOARD_SECS:-30}"
CONNS="${BENCH_DASHBOARD_CONNECTIONS:-50}"
ROWS="${BENCH_DASHBOARD_ROWS:-10000000}"
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^ETL_' || true)

ID="benchdash$(date +%s)_$$"
OUT="$CACHE/bench/$ID"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/etl-bench-dashboard.XXXXXX")"
mkdir -p "$OUT"
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench dashboard: error: %s\n' "$*" >&2; exit 1; }

SERVER=""
cleanup() {
    local rc=$?
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

command -v wrk >/dev/null || {
    say "installing wrk (Debian)"
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk </dev/null >/dev/null; else sudo -n apt-get install -y -qq wrk </dev/null >/dev/null; fi
} || die "wrk is missing (apt-get install wrk)"
[ -x "$BIN/dashboard" ] || die "$BIN/dashboard is missing: ./dev build"
[ -f "$SITE/pkg/dashboard.js" ] || die "no client bundle in $SITE (dashboard/build.sh)"

# ---------------------------------------------------------------- 1. warehouse
DB="${BENCH_DASHBOARD_DB:-}"
if [ -z "$DB" ]; then
    say "1. loading $ROWS sales lines through the pipeline (bench/gold.sh, database kept)"
    BENCH_KEEP=1 BENCH_GOLD_SPARK=0 BENCH_GOLD_ROWS="$ROWS" bash bench/gold.sh 2>&1 | tee "$OUT/gold.log" >&2
    DB="$(grep -o 'kept: database [a-z0-9_]*' "$OUT/gold.log" | tail -n 1 | awk '{print $3}')"
    [ -n "$DB" ] || die "bench/gold.sh did not keep a database (see $OUT/gold.log)"
fi
URL="$PG/$DB"
LINES="$(psql "$URL" -qAtX -c 'SELECT count(*) FROM gold.fact_sales')" || die "no warehouse at $URL"
say "warehouse $DB: $LINES sale lines in gold.fact_sales"

# ---------------------------------------------------------------- 2. server
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PASSWORD="bench-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export ETL_WAREHOUSE__URL="$URL" ETL_DASHBOARD__ADDR="127.0.0.1:$PORT" ETL_DASHBOARD__SECRET="$SECRET" \
    ETL_DASHBOARD__RATE_PER_SECOND=1000000 ETL_DASHBOARD__RATE_BURST=1000000 LEPTOS_SITE_ROOT="$SITE"
printf '%s\n' "$PASSWORD" | "$BIN/dashboard" --config config/etl.toml user remove "$ID" >/dev/null 2>&1 || true
printf '%s\n' "$PASSWORD" | "$BIN/dashboard" --config config/etl.toml user add "$ID" --role analyst >/dev/null
RUST_LOG=warn "$BIN/dashboard" --config config/etl.toml >"$OUT/dashboard.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -fsS "$BASE/health" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$BASE/health" >/dev/null || die "the dashboard did not start (see $OUT/dashboard.log)"
curl -sS -o /dev/null -c "$WORK/jar" --data-urlencode "username=$ID" --data-urlencode "password=$PASSWORD" "$BASE/login"
COOKIE="etl_session=$(awk '$6 == "etl_session" {print $7}' "$WORK/jar")"
[ "$COOKIE" != "etl_session=" ] || die "login failed"
TOKEN="$(curl -fsS "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"$ID\",\"password\":\"$PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"

# ---------------------------------------------------------------- 3. load
TARGETS=(
    "static|/style.css|none"
    "overview|/|cookie"
    "sales|/sales?grain=month|cookie"
    "products|/products|cookie"
    "customers|/customers|cookie"
    "employees|/employees|cookie"
    "live|/live|cookie"
    "pipeline|/pipeline|cookie"
    "lines|/lines?preset=30d|cookie"
    "api sales-by-period|/api/v1/sales-by-period?grain=month&limit=100|bearer"
    "api country-sales|/api/v1/country-sales?grain=year&sort=-revenue|bearer"
    "api sales-lines|/api/v1/sales-lines?limit=100|bearer"
)
# Warm-up: one request each (first reads fill the cache; every status must be 200).
for t in "${TARGETS[@]}"; do
    IFS='|' read -r name path auth <<<"$t"
    h=(); [ "$auth" = cookie ] && h=(-H "Cookie: $COOKIE"); [ "$auth" = bearer ] && h=(-H "Authorization: Bearer $TOKEN")
    code="$(curl -sS -o /dev/null -w '%{http_code}' "${h[@]}" "$BASE$path")"
    [ "$code" = 200 ] || die "$name ($path) answered $code"
done

to_ms() { # wrk latency ("812.00us", "12.30ms", "1.02s") -> ms
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
echo '[' >"$OUT/dashboard.json"
first=1
printf '\n%-22s %9s %9s %10s %12s %12s\n' target p50_ms p99_ms req_per_s p99_vs_static rate_vs_static
for t in "${TARGETS[@]}"; do
    IFS='|' read -r name path auth <<<"$t"
    h=(); [ "$auth" = cookie ] && h=(-H "Cookie: $COOKIE"); [ "$auth" = bearer ] && h=(-H "Authorization: Bearer $TOKEN")
    # As a browser does: gzip accepted (pages and static files are kept compressed).
    wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -H "Accept-Encoding: gzip" "${h[@]}" "$BASE$path" >"$WORK/wrk.txt" 2>&1 || die "wrk failed on $path"
    cp "$WORK/wrk.txt" "$OUT/wrk-${name// /_}.txt"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' "$WORK/wrk.txt")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")")"
    rps="$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.txt")"
    non2xx="$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.txt")"
    [ -z "$non2xx" ] || die "$name: $non2xx answers were not 2xx (see $OUT/wrk-${name// /_}.txt)"
    if [ "$name" = static ]; then S_P99="$p99" S_RPS="$rps"; fi
    r99="$(awk -v a="$p99" -v b="$S_P99" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
    rr="$(awk -v a="$rps" -v b="$S_RPS" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
    printf '%-22s %9s %9s %10s %12s %12s\n' "$name" "$p50" "$p99" "$rps" "$r99" "$rr"
    [ "$first" = 1 ] || echo ',' >>"$OUT/dashboard.json"
    first=0
    printf '{"target": "%s", "path": "%s", "p50_ms": %s, "p99_ms": %s, "requests_per_s": %s, "p99_vs_static": %s, "rate_vs_static": %s, "goal_p99_under_50ms": %s}' \
        "$name" "$path" "$p50" "$p99" "$rps" "$r99" "$rr" "$(awk -v a="$p99" 'BEGIN { print (a < 50) ? "true" : "false" }')" >>"$OUT/dashboard.json"
done
echo ']' >>"$OUT/dashboard.json"
printf '\n%s sale lines, %s connections, %s s per target; results in %s/dashboard.json\n' "$LINES" "$CONNS" "$SECS" "$OUT"

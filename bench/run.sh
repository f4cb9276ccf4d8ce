#!/usr/bin/env bash
# Benchmarks of the pipeline, each against a baseline measured in the same run:
#   1. csv->kafka     ingest vs. bench-produce (lines as-is, same producer settings)
#   2. kafka->bronze  transform vs. psql \copy of the same bronze rows
#   3. latency        CSV append -> row in gold.fact_sales, vs. a minimal tail->kafka->INSERT
#   4./5. binlog      bench/mysql.sh: binlog->kafka catch-up vs. decode-only, and binlog lag
#   6./7. sources     bench/http.sh (API poll vs curl of the same pages), bench/blob.sh (blob ingest vs curl GET)
# See bench/README.md. Every run uses its own topic prefix, consumer group, scratch database,
# metrics ports and temporary folder, so it never touches a running demo or another run.
#
# Environment: BENCH_ROWS (200000), BENCH_LATENCY_RATE (5000), BENCH_LATENCY_SECS (20),
#   BENCH_KEEP=1 (keep the database, topics and temp folder), BENCH_BUILD=1 (rebuild ingest
#   and transform too), BENCH_PG (postgres://postgres@127.0.0.1:5432), BENCH_BROKERS,
#   BENCH_MYSQL=0 (skip bench/mysql.sh; its own settings are described there).
#   BENCH_SOURCES=0 (skip bench/http.sh and bench/blob.sh: API poll vs curl, blob ingest vs curl).
# Exit status: 0 when every benchmark ran (goals met or not), 1 when one could not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${ETL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/etl-platform}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
BIN="$CARGO_TARGET_DIR/release"
ROWS="${BENCH_ROWS:-200000}"
LAT_RATE="${BENCH_LATENCY_RATE:-5000}"
LAT_SECS="${BENCH_LATENCY_SECS:-20}"
BROKERS="${BENCH_BROKERS:-127.0.0.1:9092}"
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
CONFIG="${ETL_CONFIG:-config/etl.toml}"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

ID="bench$(date +%s)_$$"           # topic prefix, group, database, result folder
DB="$ID"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/etl-bench.XXXXXX")"
OUT="$CACHE/bench/$ID"
mkdir -p "$OUT" "$WORK/incoming" "$WORK/stage" "$WORK/checkpoints"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
now_us() { date +%s%6N; }
psql_db() { psql "$PG/$DB" -v ON_ERROR_STOP=1 -qAtX "$@"; }

PIDS=()
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        say "kept: database $DB, topics $ID.* and ${ID}_base.*, folder $WORK"
    else
        dropdb --if-exists -h 127.0.0.1 -U postgres "$DB" 2>/dev/null || true
        "$BIN/bench-util" delete-topics --brokers "$BROKERS" "$ID." "${ID}_base." 2>/dev/null || true
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback TCP port (nothing answers on it).
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    die "no free port found"
}

# Waits until a log file contains a pattern (bounded), or the process died.
wait_log() { # pid file pattern what
    for _ in $(seq 1 600); do
        grep -q "$3" "$2" 2>/dev/null && return 0
        kill -0 "$1" 2>/dev/null || { tail -n 30 "$2" >&2; die "$4 exited"; }
        sleep 0.1
    done
    tail -n 30 "$2" >&2
    die "$4 not ready after 60 s"
}

# ---------------------------------------------------------------- preparation
say "building the bench binaries (cargo build --release -p bench)"
cargo build --release -q -p bench
if [ "${BENCH_BUILD:-0}" = 1 ] || [ ! -x "$BIN/ingest" ] || [ ! -x "$BIN/transform" ]; then
    say "building ingest and transform"
    cargo build --release -q -p ingest -p transform
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 || ! (exec 3<>"/dev/tcp/${BROKERS%:*}/${BROKERS##*:}") 2>/dev/null; then
    say "PostgreSQL or the broker is down: ./dev stack"
    "$ROOT/dev" stack >&2 || die "cannot start the stack"
fi

INGEST_PORT=$(free_port)
TRANSFORM_PORT=$(free_port)
while [ "$TRANSFORM_PORT" = "$INGEST_PORT" ]; do TRANSFORM_PORT=$(free_port); done
export ETL_KAFKA__BROKERS="$BROKERS"
export ETL_KAFKA__TOPIC_PREFIX="$ID"
export ETL_WAREHOUSE__URL="$PG/$DB"
export ETL_INGEST__CSV__WATCH_DIR="$WORK/incoming"
export ETL_INGEST__CHECKPOINT_DIR="$WORK/checkpoints"
export ETL_INGEST__METRICS_ADDR="127.0.0.1:$INGEST_PORT"
export ETL_TRANSFORM__METRICS_ADDR="127.0.0.1:$TRANSFORM_PORT"
export ETL_TRANSFORM__GROUP_ID="$ID-transform"
export NO_COLOR=1 RUST_LOG="${BENCH_RUST_LOG:-info,rdkafka=warn}"

cat >"$OUT/params.json" <<EOF
{"id": "$ID", "rows": $ROWS, "latency_rate": $LAT_RATE, "latency_seconds": $LAT_SECS,
 "started": "$(date -u +%FT%TZ)", "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "host": "$(hostname)", "cpus": $(nproc), "brokers": "$BROKERS", "database": "$DB"}
EOF
say "run $ID: $ROWS rows, latency at $LAT_RATE rows/s for $LAT_SECS s; results in $OUT"

CSV="$WORK/stage/sales_bench.csv"
"$BIN/bench-util" gen-sales --rows "$ROWS" --out "$CSV"
say "generated $CSV ($(du -h "$CSV" | cut -f1))"

# ---------------------------------------------------------------- 1. CSV -> Kafka
say "1. csv->kafka baseline: bench-produce"
"$BIN/bench-produce" --brokers "$BROKERS" --topic "${ID}_base.lines" --skip-header "$CSV" | tee "$OUT/produce.json" >&2

say "1. csv->kafka ours: ingest"
createdb -h 127.0.0.1 -U postgres "$DB"
"$BIN/ingest" --config "$CONFIG" run >"$WORK/ingest.log" 2>&1 &
INGEST_PID=$!
PIDS+=("$INGEST_PID")
wait_log "$INGEST_PID" "$WORK/ingest.log" "ingest running" ingest
wait_log "$INGEST_PID" "$WORK/ingest.log" "csv source started" ingest
"$BIN/bench-util" wait-metric --target "$ROWS" \
    --rename "$CSV" "$WORK/incoming/sales_bench.csv" \
    --watch "http://127.0.0.1:$INGEST_PORT/metrics|ingest_rows_published_total{entity=\"sales\"}" \
    | tee "$OUT/ingest.json" >&2

# ---------------------------------------------------------------- 2. Kafka -> bronze
say "2. kafka->bronze: preparing the baseline's rows from topic $ID.csv.sales"
"$BIN/bench-util" dump-bronze --brokers "$BROKERS" --topic "$ID.csv.sales" --rows "$ROWS" \
    --out "$WORK/bronze.csv" --payloads-out "$WORK/envelopes.jsonl" | tee "$OUT/dump.json" >&2
say "1. csv->kafka diagnostic: bench-produce of ingest's envelopes (same bytes as ingest)"
"$BIN/bench-produce" --brokers "$BROKERS" --topic "${ID}_base.envelopes" "$WORK/envelopes.jsonl" \
    | tee "$OUT/produce_envelopes.json" >&2
"$BIN/transform" --config "$CONFIG" migrate >"$WORK/migrate.log" 2>&1 || { tail -n 30 "$WORK/migrate.log" >&2; die "transform migrate failed"; }
psql_db <<'SQL'
CREATE SCHEMA bench_baseline;
-- Shaped like bronze.events (migrations/0002_bronze.sql): same columns, keys and index.
CREATE TABLE bench_baseline.events (
    event_id        bigserial   PRIMARY KEY,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    event_key       jsonb,
    op              char(1)     NOT NULL CHECK (op IN ('c', 'u', 'd', 'r')),
    source_key      text        NOT NULL,
    source          jsonb       NOT NULL,
    payload         jsonb       NOT NULL,
    event_ts        timestamptz,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_source_key_uq UNIQUE (topic, source_key)
);
CREATE INDEX events_ingested_at_idx ON bench_baseline.events (ingested_at);
CREATE TABLE bench_baseline.latency (sale_id text PRIMARY KEY);
CHECKPOINT;
SQL
say "2. kafka->bronze baseline: psql \\copy"
t0=$(now_us)
psql_db -c "\\copy bench_baseline.events (topic, kafka_partition, kafka_offset, event_key, op, source_key, source, payload, event_ts) FROM '$WORK/bronze.csv' WITH (FORMAT csv)" >/dev/null
t1=$(now_us)
n=$(psql_db -c "SELECT count(*) FROM bench_baseline.events")
[ "$n" = "$ROWS" ] || die "baseline copy loaded $n rows, expected $ROWS"
jq -cn --argjson n "$n" --argjson us "$((t1 - t0))" \
    '{records: $n, seconds: ($us / 1e6), rows_per_s: ($n / ($us / 1e6))}' | tee "$OUT/copy.json" >&2
psql_db -c "TRUNCATE bench_baseline.events" -c "CHECKPOINT"

say "2. kafka->bronze ours: transform (fresh database, new consumer group)"
t0=$(now_us)
"$BIN/transform" --config "$CONFIG" run >"$WORK/transform.log" 2>&1 &
TRANSFORM_PID=$!
PIDS+=("$TRANSFORM_PID")
"$BIN/bench-util" wait-metric --target "$ROWS" --t0-micros "$t0" \
    --watch "http://127.0.0.1:$TRANSFORM_PORT/metrics|transform_bronze_inserted_total" \
    --watch "http://127.0.0.1:$TRANSFORM_PORT/metrics|transform_silver_upserts_total{model=\"sales\"}" \
    | tee "$OUT/transform.json" >&2
bronze=$(psql_db -c "SELECT count(*) FROM bronze.events")
silver=$(psql_db -c "SELECT count(*) FROM silver.sales")
[ "$bronze" = "$ROWS" ] && [ "$silver" = "$ROWS" ] || die "after the load: bronze.events $bronze rows, silver.sales $silver, expected $ROWS"

# ---------------------------------------------------------------- 3. Latency
say "3. latency ours: append to $WORK/incoming/sales_live.csv at $LAT_RATE rows/s for $LAT_SECS s, poll gold.fact_sales"
"$BIN/bench-latency" --file "$WORK/incoming/sales_live.csv" --pg-url "$PG/$DB" \
    --rate "$LAT_RATE" --seconds "$LAT_SECS" --visible-table gold.fact_sales --id-prefix L \
    | tee "$OUT/latency.json" >&2
say "3. latency baseline: tail -> kafka -> INSERT, same rate"
"$BIN/bench-latency" --file "$WORK/latency_base.csv" --pg-url "$PG/$DB" \
    --rate "$LAT_RATE" --seconds "$LAT_SECS" --visible-table bench_baseline.latency --id-prefix B \
    --baseline --brokers "$BROKERS" --topic "${ID}_base.latency" \
    | tee "$OUT/latency_baseline.json" >&2

# ---------------------------------------------------------------- report
echo
"$BIN/bench-util" report --dir "$OUT" --out "$OUT/latest.json"
mkdir -p "$CACHE/bench"
cp "$OUT/latest.json" "$CACHE/bench/latest.json"
echo "results: $OUT/latest.json (also $CACHE/bench/latest.json)"

# ---------------------------------------------------------------- 4./5. MySQL binlog
if [ "${BENCH_MYSQL:-1}" != 0 ]; then
    # The CSV pipeline is done: stop it, so that the binlog benchmarks have the cores.
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
    echo
    BENCH_MYSQL_OUT="$OUT" BENCH_MYSQL_SKIP_BUILD=1 bash "$ROOT/bench/mysql.sh" \
        || die "the MySQL binlog benchmarks could not run (BENCH_MYSQL=0 skips them)"
fi

# ---------------------------------------------------------------- 6./7. API and Blob sources
if [ "${BENCH_SOURCES:-1}" != 0 ]; then
    echo
    BENCH_HTTP_OUT="$OUT" bash "$ROOT/bench/http.sh" \
        || die "the HTTP API benchmark could not run (BENCH_SOURCES=0 skips it)"
    echo
    BENCH_BLOB_OUT="$OUT" bash "$ROOT/bench/blob.sh" \
        || die "the Azure Blob benchmark could not run (BENCH_SOURCES=0 skips it)"
fi

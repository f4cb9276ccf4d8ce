#!/usr/bin/env bash
# Gold benchmarks (see bench/README.md, "Gold: backfill, verify, warehouse size"), each
# against a baseline measured in the same run:
#   1. backfill   sales CSV dropped into ingest's folder -> every gold mart fresh, vs psql \copy
#                 of the same file and PySpark local[2] computing the same marts to parquet;
#                 transform's peak RSS
#   2. (kafka -> bronze + silver + gold sustained: bench/run.sh, benchmark 2)
#   3. verify     `transform verify` over the backfilled warehouse vs DuckDB computing the
#                 same marts from the same CSV files
#   4. size       warehouse bytes per source byte, with bronze's, silver's and gold's shares
# While the backfill runs, pg_stat_activity is sampled (statements running, wait events) and
# pg_stat_user_tables is diffed: the profile is printed after the results.
#
# Isolation as bench/run.sh: its own topic prefix, consumer group, scratch databases,
# loopback metrics ports and temporary folder; the caller's ETL_* variables are ignored.
#
# Environment: BENCH_GOLD_ROWS (10000000), BENCH_GOLD_SPARK=0 (skip PySpark),
#   BENCH_GOLD_SHUFFLE=1 (sales lines in random order instead of date order),
#   BENCH_GOLD_JOBS=1 (keep transform's scheduled analytics jobs on during the backfill),
#   BENCH_GOLD_TIMEOUT (seconds for the backfill, default 300 + rows / 5000),
#   BENCH_KEEP=1, BENCH_PG, BENCH_BROKERS, BENCH_DUCKDB_PYTHON, BENCH_SPARK_VENV.
# Exit status: 0 when every benchmark ran (goals met or not), 1 when one could not run or a
# cross-check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${ETL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/etl-platform}"
BIN="${CARGO_TARGET_DIR:-$CACHE/target}/release"
CONFIG="$ROOT/config/etl.toml"
# Only the overrides below count (a caller's ETL_* would point the run elsewhere).
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^ETL_' || true)

ROWS="${BENCH_GOLD_ROWS:-10000000}"
BROKERS="${BENCH_BROKERS:-127.0.0.1:9092}"
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
PY="${BENCH_DUCKDB_PYTHON:-$CACHE/venv/bin/python}"
SPARK_VENV="${BENCH_SPARK_VENV:-$CACHE/pyspark-venv}"
SPARK="${BENCH_GOLD_SPARK:-1}"
TIMEOUT="${BENCH_GOLD_TIMEOUT:-$((300 + ROWS / 5000))}"

ID="benchgold$(date +%s)_$$"       # topic prefix, group, database, result folder
DB="$ID"
COPYDB="${ID}_copy"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/etl-bench-gold.XXXXXX")"
OUT="$CACHE/bench/$ID"
DATA="$WORK/stage"
IN="$WORK/incoming"
mkdir -p "$OUT" "$DATA" "$IN" "$WORK/checkpoints" "$WORK/spark-tmp"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench gold: error: %s\n' "$*" >&2; exit 1; }
now_us() { date +%s%6N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'; }
psql_db() { psql "$PG/$DB" -v ON_ERROR_STOP=1 -qAtX "$@"; }

PIDS=()
stop_pid() {
    local p=$1
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        say "kept: database $DB, topics $ID.*, folder $WORK"
    else
        dropdb --if-exists -h 127.0.0.1 -U postgres "$DB" 2>/dev/null \
            || say "warning: could not drop database $DB (other sessions connected to it?); drop it by hand"
        dropdb --if-exists -h 127.0.0.1 -U postgres "$COPYDB" 2>/dev/null || true
        "$BIN/bench-util" delete-topics --brokers "$BROKERS" "$ID." >/dev/null 2>&1 || true
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

wait_log() { # pid file pattern what
    for _ in $(seq 1 600); do
        grep -q "$3" "$2" 2>/dev/null && return 0
        kill -0 "$1" 2>/dev/null || { tail -n 30 "$2" >&2; die "$4 exited"; }
        sleep 0.1
    done
    tail -n 30 "$2" >&2
    die "$4 not ready after 60 s"
}

# Value of a Prometheus counter (first sample matching the selector's name and labels).
metric() { # port name label-substring
    { curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } \
        | awk -v n="$2" -v l="$3" 'index($1, n) == 1 && index($1, l) { print $2; exit }'
}

vm_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- preparation
for b in ingest transform bench-util; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing: cargo build --release -p ingest -p transform -p bench"
done
"$PY" -c 'import duckdb' 2>/dev/null || die "$PY has no duckdb (./dev stack installs it into $CACHE/venv)"
if [ "$SPARK" != 0 ]; then
    if ! "$SPARK_VENV/bin/python" -c 'import pyspark' 2>/dev/null; then
        say "installing PyPI pyspark into $SPARK_VENV"
        python3 -m venv "$SPARK_VENV"
        "$SPARK_VENV/bin/pip" install -q --disable-pip-version-check pyspark >&2
    fi
    command -v java >/dev/null || die "PySpark needs java (17) on the PATH; BENCH_GOLD_SPARK=0 skips it"
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
export ETL_INGEST__CSV__WATCH_DIR="$IN"
export ETL_INGEST__CHECKPOINT_DIR="$WORK/checkpoints"
export ETL_INGEST__METRICS_ADDR="127.0.0.1:$INGEST_PORT"
export ETL_TRANSFORM__METRICS_ADDR="127.0.0.1:$TRANSFORM_PORT"
export ETL_TRANSFORM__GROUP_ID="$ID-transform"
# Only the CSV source: no blob container, no API endpoints (the demo's are in etl.toml).
export ETL_INGEST__BLOB__ENABLED=false
export ETL_INGEST__HTTP__ENDPOINTS='[]'
if [ "${BENCH_GOLD_JOBS:-0}" != 1 ]; then
    # The scheduled analytics jobs (a verify among them 5 s after start) would compete
    # with the load on the same two cores: off, unless asked for.
    for j in rfm cohorts forecast anomalies live_anomalies verify; do
        J=$(echo "$j" | tr a-z A-Z)
        export "ETL_TRANSFORM__ANALYTICS__JOBS__${J}__EVERY_S=3600"
        export "ETL_TRANSFORM__ANALYTICS__JOBS__${J}__ENABLED=false"
    done
fi
export NO_COLOR=1 RUST_LOG="${BENCH_RUST_LOG:-info,rdkafka=warn,transform=debug}"

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Which build is measured: ingest and transform are copied first, so that a build finishing
# in the shared release folder during the run does not change them half-way.
mkdir -p "$WORK/bin"
cp "$BIN/ingest" "$BIN/transform" "$WORK/bin/"
TRANSFORM_BUILD="$(date -u -r "$BIN/transform" +%FT%TZ) sha256:$(sha256sum "$WORK/bin/transform" | cut -c1-12)"
cat >"$OUT/params.json" <<EOF
{"id": "$ID", "rows": $ROWS, "shuffled": ${BENCH_GOLD_SHUFFLE:-0}, "jobs": ${BENCH_GOLD_JOBS:-0},
 "started": "$(date -u +%FT%TZ)", "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "host": "$(hostname)", "cpus": $(nproc), "loadavg_at_start": "$LOAD_AT_START",
 "brokers": "$BROKERS", "database": "$DB", "transform_binary": "$TRANSFORM_BUILD"}
EOF
say "run $ID: $ROWS sales lines; results in $OUT (load average at start: $LOAD_AT_START; transform built $TRANSFORM_BUILD)"

# ---------------------------------------------------------------- data
say "generating the CSV files (DuckDB)"
SHUF=(); [ "${BENCH_GOLD_SHUFFLE:-0}" = 1 ] && SHUF=(--shuffle)
"$PY" "$ROOT/bench/gold_duckdb.py" gen --rows "$ROWS" --dir "$DATA" "${SHUF[@]}" | tee "$OUT/gen.json" >&2
SALES_BYTES=$(stat -c %s "$DATA/sales_gold.csv")
CSV_BYTES=$(cat "$DATA"/*.csv | wc -c)
say "sales_gold.csv: $(du -h "$DATA/sales_gold.csv" | cut -f1); all CSV files $CSV_BYTES bytes"

# ---------------------------------------------------------------- 1. baseline: psql \copy
say "1. backfill baseline: psql \\copy of sales_gold.csv into an unindexed table ($COPYDB)"
createdb -h 127.0.0.1 -U postgres "$COPYDB"
psql "$PG/$COPYDB" -v ON_ERROR_STOP=1 -qAtX -c "CREATE TABLE sales (sale_id text, order_id text, sale_date date,
    customer_id text, product_id text, employee_id text, quantity numeric, unit_price numeric(12,2),
    amount numeric(14,2))" -c "CHECKPOINT"
t0=$(now_us)
psql "$PG/$COPYDB" -v ON_ERROR_STOP=1 -qAtX -c "\\copy sales FROM '$DATA/sales_gold.csv' WITH (FORMAT csv, HEADER true)" >/dev/null
t1=$(now_us)
n=$(psql "$PG/$COPYDB" -qAtX -c "SELECT count(*) FROM sales")
[ "$n" = "$ROWS" ] || die "psql \\copy loaded $n rows, expected $ROWS"
COPY_S=$(secs "$t0" "$t1")
jq -cn --argjson n "$n" --argjson s "$COPY_S" '{rows: $n, seconds: $s, rows_per_s: ($n / $s)}' | tee "$OUT/copy.json" >&2
dropdb -h 127.0.0.1 -U postgres "$COPYDB"

# ---------------------------------------------------------------- 1. ours: the backfill
createdb -h 127.0.0.1 -U postgres "$DB"
EMPTY_DB_BYTES=$(psql_db -c "SELECT pg_database_size(current_database())")
# Statement profile: auto_explain in the scratch database's sessions logs every statement
# slower than BENCH_GOLD_EXPLAIN_MS with its plan (no ANALYZE: no per-node overhead) to the
# server log, where the lines carry "@<database>"; read back after the backfill.
EXPLAIN_MS="${BENCH_GOLD_EXPLAIN_MS:-200}"
PG_LOG="${BENCH_PG_LOG:-$(ls /var/log/postgresql/postgresql-*-main.log 2>/dev/null | head -n 1)}"
PG_LOG_FROM=0
if [ "$EXPLAIN_MS" != 0 ] && [ -r "$PG_LOG" ]; then
    psql_db -c "ALTER DATABASE \"$DB\" SET session_preload_libraries = 'auto_explain'" \
        -c "ALTER DATABASE \"$DB\" SET auto_explain.log_min_duration = '${EXPLAIN_MS}ms'"
else
    EXPLAIN_MS=0
fi
"$WORK/bin/transform" --config "$CONFIG" migrate >"$WORK/migrate.log" 2>&1 \
    || { tail -n 30 "$WORK/migrate.log" >&2; die "transform migrate failed"; }
"$WORK/bin/transform" --config "$CONFIG" run >"$WORK/transform.log" 2>&1 &
TRANSFORM_PID=$!
PIDS+=("$TRANSFORM_PID")
"$WORK/bin/ingest" --config "$CONFIG" run >"$WORK/ingest.log" 2>&1 &
INGEST_PID=$!
PIDS+=("$INGEST_PID")
wait_log "$TRANSFORM_PID" "$WORK/transform.log" "transform running" transform
wait_log "$INGEST_PID" "$WORK/ingest.log" "csv source started" ingest
if grep "http source started" "$WORK/ingest.log" | grep -qv "endpoints=0"; then say "warning: ingest polls HTTP endpoints"; fi

say "1. loading the dimensions (customers, products, employees)"
for f in customers products employees; do mv "$DATA/$f.csv" "$IN/$f.csv"; done
dims_ok=0
for _ in $(seq 1 600); do
    d=$(psql_db -c "SELECT (SELECT count(*) FROM silver.customers) || ' ' || (SELECT count(*) FROM silver.products) || ' ' || (SELECT count(*) FROM silver.employees)")
    [ "$d" = "50000 500 30" ] && { dims_ok=1; break; }
    kill -0 "$TRANSFORM_PID" 2>/dev/null || { tail -n 30 "$WORK/transform.log" >&2; die "transform exited"; }
    sleep 0.5
done
[ "$dims_ok" = 1 ] || die "dimensions not in silver after 300 s (customers products employees: $d)"
psql_db -c "CHECKPOINT"

# Profiling: table counters before, and a sampler of the warehouse's active statements.
TABLE_STATS="SELECT schemaname || '.' || relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0),
    n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd FROM pg_stat_user_tables WHERE schemaname !~ '^pg_temp'"
psql_db -F $'\t' -c "$TABLE_STATS" >"$WORK/tables_before.tsv"
psql "$PG/postgres" -qAtX -F $'\t' >"$WORK/activity.tsv" 2>"$WORK/activity.err" <<<"SELECT extract(epoch FROM clock_timestamp())::numeric(16,3), pid,
    coalesce(wait_event_type, '-') || ':' || coalesce(wait_event, '-'),
    extract(epoch FROM clock_timestamp() - query_start)::numeric(12,3), coalesce(application_name, ''),
    regexp_replace(left(query, 400), '\\s+', ' ', 'g')
  FROM pg_stat_activity WHERE datname = '$DB' AND state = 'active' AND pid <> pg_backend_pid() \\watch 0.25" &
SAMPLER_PID=$!
PIDS+=("$SAMPLER_PID")

say "1. backfill ours: sales_gold.csv -> ingest -> Kafka -> transform -> bronze, silver, gold (timeout $TIMEOUT s)"
LAST_SQL="SELECT coalesce(sum(lines), 0) || ' ' || (SELECT version FROM gold.version) || ' ' ||
    (SELECT (extract(epoch FROM committed_at) * 1e6)::bigint FROM gold.version) FROM gold.sales_by_period WHERE grain = 'all'"
[ "$EXPLAIN_MS" != 0 ] && PG_LOG_FROM=$(stat -c %s "$PG_LOG")
t0=$(now_us)
mv "$DATA/sales_gold.csv" "$IN/sales_gold.csv"
ingest_done_us=""; last_print=$t0; lines=0; version=0; committed=0; done_us=""; stall_lines=-1; stall_since=$t0
: >"$WORK/progress.tsv"
while :; do
    now=$(now_us)
    read -r lines version committed <<<"$(psql_db -c "$LAST_SQL")"
    if [ -z "$ingest_done_us" ]; then
        published=$(metric "$INGEST_PORT" ingest_rows_published_total 'entity="sales"')
        if [ -n "$published" ] && awk -v p="$published" -v n="$ROWS" 'BEGIN { exit !(p >= n) }'; then
            ingest_done_us=$now
        fi
    fi
    printf '%s\t%s\t%s\t%s\n' "$now" "$lines" "${published:-}" "$version" >>"$WORK/progress.tsv"
    if [ "$lines" -ge "$ROWS" ]; then
        # Every mart moves in the batch's transaction; wait for gold.version to stop moving.
        sleep 2
        read -r lines2 version2 committed2 <<<"$(psql_db -c "$LAST_SQL")"
        if [ "$version2" = "$version" ]; then done_us=$committed; break; fi
        continue
    fi
    if [ "$lines" != "$stall_lines" ]; then stall_lines=$lines; stall_since=$now; fi
    if [ $(((now - stall_since) / 1000000)) -ge 600 ]; then
        psql_db -c "SELECT 'quarantined ' || count(*) FROM silver.quarantine" -c "SELECT 'silver.sales ' || count(*) FROM silver.sales" >&2 || true
        psql_db -c "SELECT 'session ' || pid || ' ' || coalesce(application_name, '') || ' ' || state || ' ' || coalesce(wait_event_type, '-') || ' blocked by ' || pg_blocking_pids(pid)::text || ': ' || left(regexp_replace(query, '\s+', ' ', 'g'), 120) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()" >&2 || true
        tail -n 20 "$WORK/transform.log" >&2
        die "gold lines stuck at $lines for 600 s (expected $ROWS)"
    fi
    if [ $(((now - t0) / 1000000)) -ge "$TIMEOUT" ]; then
        tail -n 20 "$WORK/transform.log" >&2
        die "backfill not done after $TIMEOUT s: gold has $lines of $ROWS lines"
    fi
    kill -0 "$TRANSFORM_PID" 2>/dev/null || { tail -n 30 "$WORK/transform.log" >&2; die "transform exited"; }
    kill -0 "$INGEST_PID" 2>/dev/null || { tail -n 30 "$WORK/ingest.log" >&2; die "ingest exited"; }
    if [ $((now - last_print)) -ge 10000000 ]; then
        last_print=$now
        say "  $(secs "$t0" "$now") s: gold lines $lines, ingest published ${published:-?}, gold.version $version, load $(cut -d' ' -f1 /proc/loadavg)"
    fi
    sleep 0.25
done
BACKFILL_S=$(secs "$t0" "$done_us")
INGEST_S=$( [ -n "$ingest_done_us" ] && secs "$t0" "$ingest_done_us" || echo null)
TRANSFORM_HWM_KIB=$(vm_kib "$TRANSFORM_PID" VmHWM)
INGEST_HWM_KIB=$(vm_kib "$INGEST_PID" VmHWM)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
stop_pid "$SAMPLER_PID"
psql_db -F $'\t' -c "$TABLE_STATS" >"$WORK/tables_after.tsv"
if [ "$EXPLAIN_MS" != 0 ]; then
    tail -c +"$((PG_LOG_FROM + 1))" "$PG_LOG" >"$WORK/pg_log.txt" 2>/dev/null || true
    psql_db -c "ALTER DATABASE \"$DB\" RESET ALL"
fi
silver_rows=$(psql_db -c "SELECT count(*) FROM silver.sales")
bronze_rows=$(psql_db -c "SELECT count(*) FROM bronze.events")
quarantined=$(psql_db -c "SELECT count(*) FROM silver.quarantine")
read -r g_rev g_lines g_orders g_customers <<<"$(psql_db -F ' ' -c "SELECT revenue, lines, orders, customers FROM gold.sales_by_period WHERE grain = 'all'")"
jq -cn --argjson rows "$ROWS" --argjson s "$BACKFILL_S" --argjson ingest_s "$INGEST_S" \
    --argjson hwm "$TRANSFORM_HWM_KIB" --argjson ihwm "$INGEST_HWM_KIB" --argjson version "$version" \
    --argjson silver "$silver_rows" --argjson bronze "$bronze_rows" --argjson q "$quarantined" \
    --arg rev "$g_rev" --argjson orders "$g_orders" --argjson customers "$g_customers" --arg load "$LOAD_AFTER" \
    '{rows: $rows, seconds: $s, rows_per_s: ($rows / $s), ingest_published_all_at_s: $ingest_s,
      transform_vmhwm_kib: $hwm, ingest_vmhwm_kib: $ihwm, gold_version: $version, bronze_rows: $bronze,
      silver_rows: $silver, quarantined: $q, gold_all: {revenue: $rev, lines: $rows, orders: $orders, customers: $customers},
      loadavg_after: $load}' | tee "$OUT/backfill.json" >&2
[ "$silver_rows" = "$ROWS" ] && [ "$bronze_rows" -ge "$ROWS" ] || die "after the backfill: silver.sales $silver_rows, bronze.events $bronze_rows, expected $ROWS"

# ---------------------------------------------------------------- 4. warehouse size
say "4. warehouse size"
psql_db -F $'\t' -c "SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname IN ('bronze', 'silver', 'gold', 'pipeline')
    ORDER BY 2 DESC" >"$OUT/relations.tsv"
DB_BYTES=$(psql_db -c "SELECT pg_database_size(current_database())")
size_of() { awk -F'\t' -v s="$1." 'index($1, s) == 1 { t += $2 } END { printf "%d", t }' "$OUT/relations.tsv"; }
BRONZE_BYTES=$(psql_db -c "SELECT pg_total_relation_size('bronze.events')")
SILVER_BYTES=$(size_of silver)
GOLD_BYTES=$(size_of gold)
jq -cn --argjson db "$DB_BYTES" --argjson empty "$EMPTY_DB_BYTES" --argjson csv "$CSV_BYTES" --argjson sales "$SALES_BYTES" \
    --argjson bronze "$BRONZE_BYTES" --argjson silver "$SILVER_BYTES" --argjson gold "$GOLD_BYTES" \
    '{database_bytes: $db, empty_database_bytes: $empty, warehouse_bytes: ($db - $empty), csv_bytes: $csv,
      sales_csv_bytes: $sales, bytes_per_source_byte: (($db - $empty) / $csv),
      bronze_bytes: $bronze, silver_bytes: $silver, gold_bytes: $gold,
      other_bytes: ($db - $empty - $bronze - $silver - $gold),
      bronze_per_source_byte: ($bronze / $csv), silver_per_source_byte: ($silver / $csv),
      gold_per_source_byte: ($gold / $csv)}' | tee "$OUT/size.json" >&2

# Batches as transform logged them (debug "batch committed": records, ms).
sed -n 's/.*batch committed.* records=\([0-9]*\).* ms=\([0-9]*\).*/\1\t\2/p' "$WORK/transform.log" >"$WORK/batches.tsv" || true

# The pipeline is done: stop it, so that verify and the baselines have the cores.
stop_pid "$INGEST_PID"
stop_pid "$TRANSFORM_PID"
cp "$WORK/transform.log" "$WORK/ingest.log" "$WORK/activity.tsv" "$WORK/progress.tsv" "$WORK/batches.tsv" \
    "$WORK/tables_before.tsv" "$WORK/tables_after.tsv" "$OUT/" 2>/dev/null || true

# ---------------------------------------------------------------- 3. transform verify vs DuckDB
say "3. transform verify over the warehouse"
psql_db -c "CHECKPOINT"
t0=$(now_us)
verify_rc=0
"$WORK/bin/transform" --config "$CONFIG" verify >"$OUT/verify.txt" 2>&1 || verify_rc=$?
t1=$(now_us)
VERIFY_S=$(secs "$t0" "$t1")
cat "$OUT/verify.txt" >&2
say "3. verify baseline: DuckDB computing the same marts from the same CSV files"
t0=$(now_us)
"$PY" "$ROOT/bench/gold_duckdb.py" marts --dir "$IN" --out "$WORK/duckdb" >"$OUT/duckdb.json"
t1=$(now_us)
DUCK_S=$(secs "$t0" "$t1")
cat "$OUT/duckdb.json" >&2

# ---------------------------------------------------------------- 1. baseline: PySpark
SPARK_S=null; SPARK_COMPUTE_S=null
if [ "$SPARK" != 0 ]; then
    say "1. backfill baseline: PySpark local[2] computing the same marts to parquet"
    t0=$(now_us)
    "$SPARK_VENV/bin/python" "$ROOT/bench/gold_pyspark.py" --dir "$IN" --out "$WORK/spark" \
        --local-dir "$WORK/spark-tmp" >"$OUT/pyspark.json" 2>"$OUT/pyspark.log" \
        || { tail -n 30 "$OUT/pyspark.log" >&2; die "PySpark failed (BENCH_GOLD_SPARK=0 skips it)"; }
    t1=$(now_us)
    SPARK_S=$(secs "$t0" "$t1")
    SPARK_COMPUTE_S=$(jq -r .compute_seconds "$OUT/pyspark.json")
    cat "$OUT/pyspark.json" >&2
fi

# ---------------------------------------------------------------- report
PG_LOG_SLICE="$WORK/pg_log.txt"
export PG_LOG_SLICE EXPLAIN_MS OUT ROWS COPY_S BACKFILL_S INGEST_S SPARK_S SPARK_COMPUTE_S VERIFY_S DUCK_S verify_rc \
    TRANSFORM_HWM_KIB INGEST_HWM_KIB LOAD_AT_START LOAD_AFTER DB TRANSFORM_BUILD
python3 - <<'PY'
import collections, json, os, re, statistics

out = os.environ["OUT"]
E = os.environ
def j(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
def f(x):
    return None if x in (None, "", "null") else float(x)

rows = int(E["ROWS"]); bf = f(E["BACKFILL_S"]); cp = f(E["COPY_S"]); sp = f(E["SPARK_S"])
spc = f(E["SPARK_COMPUTE_S"]); vs = f(E["VERIFY_S"]); ds = f(E["DUCK_S"]); ing = f(E["INGEST_S"])
hwm = int(E["TRANSFORM_HWM_KIB"] or 0) / 1024; ihwm = int(E["INGEST_HWM_KIB"] or 0) / 1024
size, duck, spark, backfill = j("size.json"), j("duckdb.json"), j("pyspark.json"), j("backfill.json")
ours = rows / bf; base = rows / cp
met = lambda ok: "MET" if ok else "MISSED"
lines = []
spark_txt = "PySpark skipped (BENCH_GOLD_SPARK=0)"
if sp:
    spark_txt = (f"PySpark local[2] same marts to parquet {sp:.1f} s ({spc:.1f} s after the session start), "
                 f"ratio {sp / bf:.2f}x (goal >= 10x) {met(sp / bf >= 10)}")
lines.append(f"gold backfill: ours {rows} lines in {bf:.1f} s = {ours:.0f} rows/s file dropped -> every mart fresh"
             f" (ingest had published every line at {ing:.1f} s) (goal >= 100000 rows/s) {met(ours >= 100000)};"
             f" baseline psql \\copy {base:.0f} rows/s ({cp:.1f} s), ratio {ours / base:.2f}; {spark_txt}")
lines.append(f"gold memory: transform peak RSS (VmHWM) {hwm:.0f} MiB (goal < 1024 MiB) {met(hwm < 1024)}; ingest {ihwm:.0f} MiB")
vtxt = "all marts match" if E["verify_rc"] == "0" else f"exit status {E['verify_rc']} (see verify.txt)"
lines.append(f"gold verify: transform verify {vs:.1f} s ({vtxt}), baseline DuckDB same marts from the CSV files {ds:.1f} s"
             f" ({duck['threads']} threads), ratio {ds / vs:.2f} (DuckDB time / verify time)")
mb = lambda b: b / 1e6
lines.append(f"gold size: warehouse {mb(size['warehouse_bytes']):.0f} MB for {mb(size['csv_bytes']):.0f} MB of CSV"
             f" = {size['bytes_per_source_byte']:.2f} bytes per source byte (bronze {size['bronze_per_source_byte']:.2f},"
             f" silver {size['silver_per_source_byte']:.2f}, gold {size['gold_per_source_byte']:.2f},"
             f" other {size['other_bytes'] / size['csv_bytes']:.2f})")
# Cross-check: the grain 'all' row of gold.sales_by_period against both engines.
ga = backfill["gold_all"]
want = (str(ga["revenue"]), int(ga["lines"]), int(ga["orders"]), int(ga["customers"]))
checks = []
for name, r in (("duckdb", duck), ("pyspark", spark)):
    if r:
        a = r["all"]
        got = (str(a["revenue"]), int(a["lines"]), int(a["orders"]), int(a["customers"]))
        checks.append((name, got == want, got))
ok = all(c[1] for c in checks)
lines.append("gold cross-check (sales_by_period grain all: revenue, lines, orders, customers): warehouse "
             + str(want) + "; " + "; ".join(f"{n} {'same' if k else 'DIFFERENT ' + str(g)}" for n, k, g in checks))
lines.append(f"machine: {os.cpu_count()} cores shared with other work; load average at start {E['LOAD_AT_START']}, after the backfill {E['LOAD_AFTER']}; transform built {E['TRANSFORM_BUILD']}")

# ---- profile
prof = []
samples = collections.Counter(); longest = {}; waits = collections.Counter(); nsamples = 0; ticks = set()
own_pids = set(); foreign = collections.Counter(); lock_samples = 0
def label(q):
    rules = [("COPY stage_bronze", "bronze: COPY stage_bronze"),
             ("INSERT INTO gold_touched_orders", "gold facts: find touched orders"),
             ("INSERT INTO gold_d_lines (sign", "gold facts: re-derive fact_sales/fact_orders + deltas"),
             ("('day'), ('week')", "gold periods: sales_by_period"),
             ("VALUES ('month'), ('year'), ('all')", "gold periods: country_sales"),
             ("VALUES ('month'), ('all')", "gold periods: employee_sales"),
             ("WITH x AS (SELECT DISTINCT grain, p FROM gold_px", "gold periods: growth"),
             ("gold_pm", "gold product_month"), ("gold_tc", "gold customer_ltv"),
             ("gold_dh", "gold distribution"), ("gold.dim_", "gold dims"),
             ("gold.freshness", "gold freshness"), ("gold.version", "gold version"),
             ("INSERT INTO silver.sales", "silver: upsert silver.sales"),
             ("COPY stage_silver", "silver: COPY stage_silver_*"),
             ("INSERT INTO bronze.events", "bronze: INSERT bronze.events from stage"),
             ("customer_history", "silver: customer history")]
    for k, v in rules:
        if k in q:
            return v
    return "other: " + q[:90]
try:
    for line in open(os.path.join(out, "activity.tsv")):
        p = line.rstrip("\n").split("\t")
        if len(p) < 6:
            continue
        ts, pid, wait, dur, app, q = p[:6]
        if app == "psql":
            # Not the pipeline: another session's psql in the scratch database (this
            # script's own polls are excluded by the same rule).
            if not q.startswith("SELECT coalesce(sum(lines), 0)"):
                foreign[(pid, label(q))] += 1
            continue
        own_pids.add(pid)
        if wait.startswith("Lock:"):
            lock_samples += 1
        ticks.add(ts[:-1]); nsamples += 1
        lb = label(q); samples[lb] += 1; waits[(lb, wait)] += 1
        longest[lb] = max(longest.get(lb, 0.0), float(dur or 0))
except FileNotFoundError:
    pass
if nsamples:
    prof.append(f"profile: pg_stat_activity sampled every 0.25 s during the backfill, {nsamples} active-statement samples"
                " (share = samples of that statement / all samples; longest = longest single run seen):")
    for lb, n in samples.most_common(12):
        top_wait = max(((w, c) for (l, w), c in waits.items() if l == lb), key=lambda x: x[1])[0]
        prof.append(f"  {100 * n / nsamples:5.1f} %  longest {longest[lb]:7.2f} s  wait {top_wait:<24} {lb}")
    if lock_samples:
        prof.append(f"  the pipeline's statements waited on a lock in {lock_samples} samples (~{lock_samples * 0.25:.0f} s)")
if foreign:
    prof.append("profile: WARNING other sessions ran statements in the scratch database during the backfill"
                " (samples of 0.25 s by backend pid; they compete with and may block the pipeline):")
    for (pid, lb), n in foreign.most_common(5):
        prof.append(f"  pid {pid}: {n} samples (~{n * 0.25:.0f} s) {lb}")
def stats(name):
    d = {}
    try:
        for line in open(os.path.join(out, name)):
            p = line.rstrip("\n").split("\t")
            if len(p) == 9:
                d[p[0]] = [int(x or 0) for x in p[1:]]
    except FileNotFoundError:
        pass
    return d
b, a = stats("tables_before.tsv"), stats("tables_after.tsv")
diff = []
for t, v in a.items():
    w = b.get(t, [0] * 8)
    dv = [x - y for x, y in zip(v, w)]
    diff.append((t, dv))
if diff:
    prof.append("profile: tables by rows read during the backfill (seq_tup_read + idx_tup_fetch), pg_stat_user_tables:")
    for t, dv in sorted(diff, key=lambda x: -(x[1][1] + x[1][3]))[:10]:
        prof.append(f"  {t:<28} seq scans {dv[0]:>7}  seq rows {dv[1]:>12}  idx scans {dv[2]:>9}  idx rows {dv[3]:>11}"
                    f"  ins {dv[4]:>10}  upd {dv[5]:>10}  del {dv[6]:>9}")
# auto_explain entries: "<ts> [pid] user@db LOG:  duration: N ms  plan:", the query text
# (the whole batch string), then the plan; the first plan line names the statement.
ae = E.get("PG_LOG_SLICE", "")
if E.get("EXPLAIN_MS", "0") != "0" and os.path.exists(ae):
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d")
    head = re.compile(r"^\d{4}-\d\d-\d\d \S+ \S+ \[\d+\] \S*@(\S+) (\w+):\s+(.*)$")
    dur = re.compile(r"duration: ([\d.]+) ms\s+plan:")
    entries = []; cur = None
    keep = open(os.path.join(out, "auto_explain.log"), "w")
    for line in open(ae, errors="replace"):
        if stamp.match(line):
            cur = None
            m = head.match(line)
            pid = re.search(r"\[(\d+)\]", line)
            if m and m.group(1) == E["DB"] and (not own_pids or (pid and pid.group(1) in own_pids)):
                keep.write(line)
                d = dur.search(m.group(3))
                if d:
                    cur = {"ms": float(d.group(1)), "text": [], "node": None}
                    entries.append(cur)
            continue
        if cur is not None:
            keep.write(line)
            if cur["node"] is None and "(cost=" in line:
                cur["node"] = re.sub(r"\s+\(cost=.*", "", line.strip().lstrip("->").strip())
            elif cur["node"] is None:
                cur["text"].append(line.strip())
    agg = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for e in entries:
        q = " ".join(e["text"])
        k = f"{label(q)} | {e['node'] or '?'}"
        a = agg[k]; a[0] += 1; a[1] += e["ms"]; a[2] = max(a[2], e["ms"])
    total = sum(a[1] for a in agg.values())
    prof.append(f"profile: statements slower than {E['EXPLAIN_MS']} ms (auto_explain): {len(entries)} runs, {total / 1000:.1f} s in all"
                f" ({100 * total / 1000 / bf:.0f} % of the backfill's wall time); top by total time (batch | plan's top node):")
    for k, (n, t, mx) in sorted(agg.items(), key=lambda x: -x[1][1])[:15]:
        prof.append(f"  {t / 1000:7.1f} s  {n:5d} runs  max {mx / 1000:6.2f} s  {k}")
try:
    bt = [tuple(map(int, l.split("\t"))) for l in open(os.path.join(out, "batches.tsv")) if l.strip()]
except FileNotFoundError:
    bt = []
if bt:
    ms = [m for _, m in bt]; recs = [r for r, _ in bt]
    k = max(1, len(bt) // 10)
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
    prof.append(f"profile: {len(bt)} batches, {statistics.mean(recs):.0f} records each on average; batch ms p50 {q(ms, .5)}"
                f" p95 {q(ms, .95)} max {max(ms)}; first tenth {statistics.mean(ms[:k]):.0f} ms for {statistics.mean(recs[:k]):.0f} records,"
                f" last tenth {statistics.mean(ms[-k:]):.0f} ms for {statistics.mean(recs[-k:]):.0f} records;"
                f" sum of batch times {sum(ms) / 1000:.1f} s")
print("\n".join(lines + [""] + prof))
res = {"summary": lines, "profile": prof, "backfill": backfill, "copy": j("copy.json"), "pyspark": spark,
       "duckdb": duck, "verify_seconds": vs, "verify_exit": int(E["verify_rc"]), "size": size,
       "params": j("params.json"), "cross_check_ok": ok,
       "ratios": {"backfill_vs_copy": ours / base, "pyspark_time_over_ours": (sp / bf) if sp else None,
                  "duckdb_time_over_verify": ds / vs}}
json.dump(res, open(os.path.join(out, "gold.json"), "w"), indent=1)
open(os.path.join(out, "cross_check_ok"), "w").write("1" if ok else "0")
PY
mkdir -p "$CACHE/bench"
cp "$OUT/gold.json" "$CACHE/bench/gold-latest.json"
echo "results: $OUT/gold.json (also $CACHE/bench/gold-latest.json)"
[ "$(cat "$OUT/cross_check_ok")" = 1 ] || die "the warehouse's totals differ from DuckDB's or PySpark's"
[ "$verify_rc" = 0 ] || die "transform verify found drifted marts (exit status $verify_rc)"

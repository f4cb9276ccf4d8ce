#!/usr/bin/env bash
# Binlog CDC benchmarks (bench/README.md, "MySQL/MariaDB binlog"):
#   4. binlog->kafka  catch-up of N inserted rows by ingest's MySQL source (JSON envelopes,
#                     published and acknowledged) vs. bench-binlog-decode (decode only)
#   5. binlog lag     insert commit -> change event consumed from Kafka, at 5,000 rows/s
# Called at the end of bench/run.sh, or alone: bash bench/mysql.sh
#
# Environment: BENCH_MYSQL_ROWS (200000), BENCH_MYSQL_BATCH (10 rows per INSERT/transaction),
#   BENCH_MYSQL_LAG_RATE (5000), BENCH_MYSQL_LAG_SECS (20),
#   BENCH_MYSQL_URL (mysql://root@127.0.0.1:3307: needs CREATE/DROP DATABASE and REPLICATION
#   SLAVE, BINLOG MONITOR), BENCH_BROKERS, BENCH_KEEP=1, BENCH_BUILD=1 (rebuild ingest too),
#   BENCH_MYSQL_OUT (results folder; run.sh passes its own).
# Exit status: 0 when both benchmarks ran (goals met or not), 1 when one could not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${ETL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/etl-platform}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
BIN="$CARGO_TARGET_DIR/release"
ROWS="${BENCH_MYSQL_ROWS:-200000}"
BATCH="${BENCH_MYSQL_BATCH:-10}"
LAG_RATE="${BENCH_MYSQL_LAG_RATE:-5000}"
LAG_SECS="${BENCH_MYSQL_LAG_SECS:-20}"
MYURL="${BENCH_MYSQL_URL:-mysql://root@127.0.0.1:3307}"
BROKERS="${BENCH_BROKERS:-127.0.0.1:9092}"
# Only the config file written below counts: ETL_* overrides (run.sh exports its own, for
# its CSV pipeline) would redirect the prefix, the checkpoint folder and the metrics port.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^ETL_' || true)
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

ID="benchmy$(date +%s)_$$"         # topic prefix, scratch database
DB="$ID"
TABLE="events"
TOPIC="$ID.mysql.${DB}_$TABLE"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/etl-bench-mysql.XXXXXX")"
OUT="${BENCH_MYSQL_OUT:-$CACHE/bench/$ID}"
mkdir -p "$OUT" "$WORK/checkpoints" "$WORK/incoming"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench mysql: error: %s\n' "$*" >&2; exit 1; }

# mariadb client arguments from the URL (user[:password]@host[:port]).
hostpart="${MYURL#mysql://}"; hostpart="${hostpart%%/*}"
creds="${hostpart%@*}"; hp="${hostpart##*@}"
MY_ARGS=(--protocol=tcp -h "${hp%%:*}" -P "$([ "${hp##*:}" != "$hp" ] && echo "${hp##*:}" || echo 3306)" -u "${creds%%:*}")
[ "${creds#*:}" != "$creds" ] && MY_ARGS+=("-p${creds#*:}")
my() { mariadb "${MY_ARGS[@]}" --batch --skip-column-names "$@"; }
# A server id per tailer (a second tailer with the same id disconnects the first).
server_id() { echo $((100000 + (RANDOM << 15 | RANDOM) % 3000000)); }

PIDS=()
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        say "kept: MySQL database $DB, topics $ID.*, folder $WORK"
    else
        my -e "DROP DATABASE IF EXISTS \`$DB\`" 2>/dev/null || true
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
if [ "${BENCH_MYSQL_SKIP_BUILD:-0}" != 1 ]; then
    say "building the bench binaries (cargo build --release -p bench)"
    cargo build --release -q -p bench
fi
if [ "${BENCH_BUILD:-0}" = 1 ] || [ ! -x "$BIN/ingest" ]; then
    say "building ingest"
    cargo build --release -q -p ingest
fi
my -e "SELECT 1" >/dev/null 2>&1 || die "MySQL/MariaDB does not answer at $MYURL (BENCH_MYSQL_URL)"
(exec 3<>"/dev/tcp/${BROKERS%:*}/${BROKERS##*:}") 2>/dev/null || die "the broker does not answer at $BROKERS"
[ "$(my -e "SELECT @@log_bin")" = 1 ] || die "the binlog is off on $MYURL"

cat >"$OUT/mysql_params.json" <<EOF2
{"id": "$ID", "rows": $ROWS, "rows_per_transaction": $BATCH, "lag_rate": $LAG_RATE,
 "lag_seconds": $LAG_SECS, "started": "$(date -u +%FT%TZ)",
 "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)", "cpus": $(nproc),
 "server": "$(my -e "SELECT VERSION()")", "database": "$DB", "topic": "$TOPIC"}
EOF2
say "mysql run $ID: $ROWS rows ($BATCH per transaction), lag at $LAG_RATE rows/s for $LAG_SECS s; results in $OUT"

# ---------------------------------------------------------------- 4. binlog -> Kafka
my -e "CREATE DATABASE \`$DB\`; CREATE TABLE \`$DB\`.$TABLE (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    batch INT NOT NULL DEFAULT 0,
    seq INT NOT NULL DEFAULT 0,
    ts_us BIGINT NOT NULL DEFAULT 0,
    payload VARCHAR(64) NOT NULL) ENGINE=InnoDB"
read -r START_FILE START_POS _ < <(my -e "SHOW MASTER STATUS")
say "4. inserting $ROWS rows from $START_FILE:$START_POS"
t0=$(date +%s%6N)
awk -v n="$ROWS" -v b="$BATCH" -v t="$TABLE" 'BEGIN {
    for (i = 1; i <= n; i += b) {
        s = "INSERT INTO " t " (payload) VALUES "
        for (j = i; j < i + b && j <= n; j++)
            s = s (j > i ? "," : "") "(\"row " j " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\")"
        print s ";"
    }
}' | my "$DB"
t1=$(date +%s%6N)
read -r END_FILE END_POS _ < <(my -e "SHOW MASTER STATUS")
n=$(my -e "SELECT count(*) FROM \`$DB\`.$TABLE")
[ "$n" = "$ROWS" ] || die "inserted $n rows, expected $ROWS"
jq -cn --argjson n "$n" --argjson us "$((t1 - t0))" --arg sf "$START_FILE" --argjson sp "$START_POS" \
    --arg ef "$END_FILE" --argjson ep "$END_POS" \
    '{rows: $n, seconds: ($us / 1e6), rows_per_s: ($n / ($us / 1e6)), start: {file: $sf, pos: $sp}, end: {file: $ef, pos: $ep}}' \
    | tee "$OUT/mysql_insert.json" >&2

say "4. binlog->kafka baseline: bench-binlog-decode $START_FILE:$START_POS -> $END_FILE:$END_POS"
"$BIN/bench-binlog-decode" --url "$MYURL" --server-id "$(server_id)" \
    --start-file "$START_FILE" --start-pos "$START_POS" --end-file "$END_FILE" --end-pos "$END_POS" \
    | tee "$OUT/mysql_decode.json" >&2

say "4. binlog->kafka ours: ingest from a checkpoint at $START_FILE:$START_POS (catch-up)"
PORT=$(free_port)
cat >"$WORK/etl.toml" <<EOF2
[kafka]
brokers = "$BROKERS"
topic_prefix = "$ID"
partitions = 3

[ingest]
metrics_addr = "127.0.0.1:$PORT"
checkpoint_dir = "$WORK/checkpoints"

[ingest.csv]
watch_dir = "$WORK/incoming"
entities = []

[ingest.mysql]
url = "$MYURL"
server_id = $(server_id)
include = ["$DB.*"]
snapshot_mode = "never"
EOF2
# The source resumes from its checkpoint: a checkpoint at the start position makes it
# replay exactly the inserted rows (format: ingest/src/checkpoint.rs, MysqlCheckpoint).
jq -n --arg f "$START_FILE" --argjson p "$START_POS" \
    '{version: 1, state: {position: {file: $f, pos: $p, gtid: null}, snapshot: null}}' \
    >"$WORK/checkpoints/mysql.json"
t0=$(date +%s%6N)
NO_COLOR=1 RUST_LOG="${BENCH_RUST_LOG:-info,rdkafka=warn}" \
    "$BIN/ingest" --config "$WORK/etl.toml" run >"$WORK/ingest.log" 2>&1 &
INGEST_PID=$!
PIDS+=("$INGEST_PID")
"$BIN/bench-util" wait-metric --target "$ROWS" --t0-micros "$t0" \
    --watch "http://127.0.0.1:$PORT/metrics|ingest_mysql_rows_published_total{phase=\"stream\"}" \
    | tee "$OUT/mysql_ingest.json" >&2 || { tail -n 30 "$WORK/ingest.log" >&2; die "ingest did not publish $ROWS rows"; }
grep -q "binlog stream opened.*pos=$START_POS" "$WORK/ingest.log" \
    || { grep "binlog stream opened" "$WORK/ingest.log" >&2; die "ingest did not start at $START_FILE:$START_POS"; }

# ---------------------------------------------------------------- 5. lag
say "5. binlog lag: $LAG_RATE rows/s for $LAG_SECS s into $DB.$TABLE, consuming $TOPIC"
"$BIN/bench-binlog-live" --url "$MYURL/$DB" --table "$TABLE" --brokers "$BROKERS" \
    --topic "$TOPIC" --rate "$LAG_RATE" --seconds "$LAG_SECS" \
    | tee "$OUT/mysql_lag.json" >&2
curl -fsS "http://127.0.0.1:$PORT/metrics" | grep '^ingest_mysql' >"$OUT/mysql_metrics.txt" || true

# ---------------------------------------------------------------- report
jq -n --slurpfile d "$OUT/mysql_decode.json" --slurpfile i "$OUT/mysql_ingest.json" \
    --slurpfile l "$OUT/mysql_lag.json" --slurpfile p "$OUT/mysql_params.json" \
    --slurpfile w "$OUT/mysql_insert.json" \
    '{params: $p[0], insert: $w[0], decode: $d[0], ingest: $i[0], lag: $l[0]}' >"$OUT/mysql.json"
jq -r --argjson rows "$ROWS" '
    def r: . * 10 | round / 10;
    (.ingest.watches[0]) as $w
    | ($rows / ($w.seconds - $w.first_s)) as $ours
    | ($rows / $w.seconds) as $ours_total
    | .decode as $d
    | .lag.lag_from_commit as $l
    | "binlog->kafka: ours \($ours | round) rows/s (\($ours_total | round) rows/s from the process start), baseline decode-only \($d.rows_per_s | round) rows/s (\($d.events_per_s | round) events/s), ratio \($ours / $d.rows_per_s * 100 | round / 100) (goal >= 50000 rows/s) \(if $ours >= 50000 then "MET" else "MISSED" end)",
      "binlog lag: p50 \($l.p50_ms | r) / p95 \($l.p95_ms | r) / p99 \($l.p99_ms | r) / max \($l.max_ms | r) ms at \(.lag.rate) rows/s (achieved \(.lag.achieved_rows_per_s | round), \(.lag.missing) missing) (goal p99 < 1000 ms) \(if $l.p99_ms < 1000 and .lag.missing == 0 then "MET" else "MISSED" end)"
' "$OUT/mysql.json"
echo "mysql results: $OUT/mysql.json"

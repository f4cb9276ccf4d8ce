#!/usr/bin/env bash
# Azure Blob benchmark (bench/README.md, "Azure Blob"): MB/s of the blob source (ranged GETs
# from Azurite, decode, change events published to Kafka and acknowledged) against a plain
# HTTP GET of the same blobs from Azurite with curl, in the same run; prints the ratio.
#   bash bench/blob.sh
#
# Environment: BENCH_BLOB_MB (200: total size), BENCH_BLOB_SIZE_MB (20: per blob),
#   BENCH_AZURITE (http://127.0.0.1:10000/devstoreaccount1), BENCH_BROKERS (127.0.0.1:9092),
#   BENCH_KEEP=1 (keep container, topics, folder), BENCH_BUILD=1 (rebuild ingest too),
#   BENCH_BLOB_OUT (results folder).
# Exit status: 0 when the benchmark ran, 1 when it could not.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${ETL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/etl-platform}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
BIN="$CARGO_TARGET_DIR/release"
MB="${BENCH_BLOB_MB:-200}"
BLOB_MB="${BENCH_BLOB_SIZE_MB:-20}"
AZURITE="${BENCH_AZURITE:-http://127.0.0.1:10000/devstoreaccount1}"
BROKERS="${BENCH_BROKERS:-127.0.0.1:9092}"
# Only the config file written below counts.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^ETL_' || true)
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

ID="benchblob$(date +%s)$$"        # topic prefix and container name
WORK="$(mktemp -d "${TMPDIR:-/tmp}/etl-bench-blob.XXXXXX")"
OUT="${BENCH_BLOB_OUT:-$CACHE/bench/$ID}"
mkdir -p "$OUT" "$WORK/checkpoints"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench blob: error: %s\n' "$*" >&2; exit 1; }

PIDS=()
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
    if [ "${BENCH_KEEP:-0}" != 1 ]; then
        "$BIN/bench-blob-put" --endpoint "$AZURITE" --container "$ID" --delete 2>/dev/null || true
        "$BIN/bench-util" delete-topics --brokers "$BROKERS" "$ID." >/dev/null 2>&1 || true
        rm -rf "$WORK"
    else
        say "kept: container $ID, topics $ID.*, folder $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

curl -sf -o /dev/null "$AZURITE?comp=list" 2>/dev/null || curl -s -o /dev/null "${AZURITE%/*}/" ||
    die "Azurite does not answer at $AZURITE (./dev stack)"

say "building (cargo build --release -p bench${BENCH_BUILD:+ -p ingest})"
if [ "${BENCH_BUILD:-0}" = 1 ] || [ ! -x "$BIN/ingest" ]; then
    cargo build --release -q -p bench -p ingest >&2
else
    cargo build --release -q -p bench >&2
fi

say "run $ID: uploading $MB MiB of JSON lines in $BLOB_MB MiB blobs to Azurite (public container $ID)"
"$BIN/bench-blob-put" --endpoint "$AZURITE" --container "$ID" --mb "$MB" --blob-mb "$BLOB_MB" >"$OUT/blobs.json"
read -r BYTES RECORDS BLOBS < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["bytes"], d["records"], d["blobs"])' "$OUT/blobs.json")
python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["urls"]))' "$OUT/blobs.json" >"$WORK/urls.txt"
say "$BLOBS blobs, $BYTES bytes, $RECORDS records"

# ------------------------------------------------------------------ baseline: curl
# One curl process GETs every blob in turn over one kept-alive connection, as the agent
# does (sequentially); 3 runs, the median counts.
CURL_ARGS=()
while read -r u; do CURL_ARGS+=(-o /dev/null "$u"); done <"$WORK/urls.txt"
base_times=()
for run in 1 2 3; do
    t0=$(date +%s%N)
    curl -sf "${CURL_ARGS[@]}" || die "curl GET failed"
    t1=$(date +%s%N)
    base_times+=("$(( (t1 - t0) / 1000 ))")
    say "baseline run $run: curl GET of $BLOBS blobs in $(( (t1 - t0) / 1000000 )) ms"
done
BASE_US=$(printf '%s\n' "${base_times[@]}" | sort -n | sed -n 2p)

# ------------------------------------------------------------------ ours: ingest
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CONFIG="$WORK/etl.toml"
cat >"$CONFIG" <<EOF
[kafka]
brokers = "$BROKERS"
topic_prefix = "$ID"
partitions = 3
[ingest]
metrics_addr = "127.0.0.1:$PORT"
checkpoint_dir = "$WORK/checkpoints"
[ingest.blob]
emulator = true
endpoint = "$AZURITE"
poll_interval_ms = 1000
chunk_bytes = 4194304
[[ingest.blob.sources]]
entity = "web_events"
container = "$ID"
key = ["event_id"]
partitioning = "none"
EOF
say "ours: ingest (blob source) reading the same blobs to Kafka"
T0=$(( $(date +%s%N) / 1000 ))
NO_COLOR=1 "$BIN/ingest" --config "$CONFIG" run >"$WORK/ingest.log" 2>&1 &
PIDS+=("$!")
"$BIN/bench-util" wait-metric --target "$BYTES" --t0-micros "$T0" --timeout-s 900 \
    --watch "http://127.0.0.1:$PORT/metrics|ingest_bytes_read_total{source=\"blob\"}" \
    | tee "$OUT/ingest.json" >&2 || { tail -n 30 "$WORK/ingest.log" >&2; die "ingest did not read every byte"; }
OURS_S=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d=d[0] if isinstance(d,list) else d; w=d["watches"][0] if "watches" in d else d; print(w["seconds"])' "$OUT/ingest.json")
ROWS_PUBLISHED=$(curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^ingest_rows_published_total\{.*source="blob"/ {s+=$2} END {print s+0}')
[ "$ROWS_PUBLISHED" -ge "$RECORDS" ] || die "ingest published $ROWS_PUBLISHED records, expected $RECORDS"

python3 - "$BYTES" "$BASE_US" "$OURS_S" "$RECORDS" "$OUT" <<'PY'
import json, sys
bytes_, base_us, ours_s, records, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
mib = bytes_ / 1048576
base = mib / (base_us / 1e6)
ours = mib / ours_s
res = {"bytes": bytes_, "records": records, "ours_mib_s": round(ours, 1), "ours_records_s": round(records / ours_s),
       "ours_s": ours_s, "baseline_curl_mib_s": round(base, 1), "baseline_s": base_us / 1e6, "ratio": round(ours / base, 3)}
json.dump(res, open(f"{out}/blob.json", "w"), indent=1)
print(f"blob->kafka: ours {ours:.1f} MiB/s ({records / ours_s:.0f} records/s, from the process start), "
      f"baseline curl GET {base:.1f} MiB/s, ratio {ours / base:.2f}")
PY
echo "blob results: $OUT/blob.json"

#!/usr/bin/env bash
# Browser test of the dashboard: scratch database with the repository's migrations, the
# release binary on a free port, headless Chromium (system one, /usr/bin/chromium) via
# playwright-core. Run dashboard/build.sh first.
#
#   ETL_TEST_PG_URL   admin URL (default postgres://postgres@127.0.0.1:5432/postgres)
#   CARGO_TARGET_DIR  default $HOME/.cache/etl-platform/target
#   ETL_BIN_DIR       where the dashboard binary is (default $CARGO_TARGET_DIR/release)
#   LEPTOS_SITE_ROOT  client bundle (default $CARGO_TARGET_DIR/site)
#   CHROMIUM          browser (default /usr/bin/chromium)
# Last line: "browser: 1 passed, 0 failed" or "browser: 0 passed, 1 failed".
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo="$(cd "$here/.." && pwd)"
export ETL_CACHE_DIR="${ETL_CACHE_DIR:-$HOME/.cache/etl-platform}"
target="${CARGO_TARGET_DIR:-$ETL_CACHE_DIR/target}"
bin="${ETL_BIN_DIR:-$target/release}/dashboard"
site="${LEPTOS_SITE_ROOT:-$target/site}"
admin="${ETL_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="etl_dashboard_test_$$"
work="$(mktemp -d "${TMPDIR:-/tmp}/dashboard-browser.XXXXXX")"
t0=$SECONDS

# Same server and credentials, other database (keeps ?params).
base="${admin%%\?*}"
query=""
[ "$base" != "$admin" ] && query="?${admin#*\?}"
db_url="${base%/*}/$db$query"

server_pid=""
result=fail
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  psql "$admin" -X -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$result" = pass ]; then
    echo "browser: 1 passed, 0 failed"
  else
    [ -f "$work/dashboard.log" ] && { echo "--- dashboard log (tail)"; tail -n 40 "$work/dashboard.log"; }
    echo "browser: 0 passed, 1 failed"
  fi
}
trap cleanup EXIT
fail() { echo "browser.sh: $*" >&2; exit 1; }
psql_db() { psql "$db_url" -X -q -v ON_ERROR_STOP=1 "$@"; }

for f in "$bin" "$site/pkg/dashboard.js" "$site/pkg/dashboard.wasm"; do
  [ -f "$f" ] || fail "missing $f (run dashboard/build.sh)"
done
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || fail "no browser at ${CHROMIUM:-/usr/bin/chromium} (apt-get install -y --no-install-recommends chromium)"
command -v psql >/dev/null || fail "psql not found"

if [ ! -f "$here/node_modules/playwright-core/package.json" ]; then
  echo "installing playwright-core into dashboard/node_modules (no browser download)"
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci failed"
fi

echo "scratch database $db"
psql "$admin" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" || fail "cannot create $db via $admin"
# The warehouse schema as transform creates it (migrations, then the gold marts it declares);
# gold is computed from silver by `transform rebuild` below, as the stream would.
transform="${ETL_BIN_DIR:-$target/release}/transform"
[ -x "$transform" ] || fail "transform binary not found at $transform (./dev build)"
ETL_WAREHOUSE__URL="$db_url" "$transform" --config "$repo/config/etl.toml" migrate >/dev/null 2>&1 \
  || fail "transform migrate failed on $db"

# A user to sign in with (the password arrives on stdin, as an operator would give it).
login_user="browser-test"
login_password="browser-test-$$-password"
printf '%s\n' "$login_password" | ETL_WAREHOUSE__URL="$db_url" "$bin" --config "$repo/config/etl.toml" user add "$login_user" --role admin >/dev/null \
  || fail "dashboard user add failed"

port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
url="http://127.0.0.1:$port"
ETL_MODE=development \
ETL_WAREHOUSE__URL="$db_url" \
ETL_DASHBOARD__ADDR="127.0.0.1:$port" \
ETL_DASHBOARD__REFRESH_MS=500 \
LEPTOS_SITE_ROOT="$site" \
RUST_LOG="${RUST_LOG:-info}" \
  "$bin" --config "$repo/config/etl.toml" >"$work/dashboard.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 100); do
  curl -fsS "$url/health" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || fail "dashboard exited at start"
  sleep 0.2
done
health="$(curl -sS "$url/health")"
grep -q '"status":"ok","warehouse":"ok"' <<<"$health" || fail "/health answered $health"
echo "dashboard up on $url after $((SECONDS - t0)) s"

# Without a session a page redirects to the login form and a server function answers 401.
code="$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "$url/")"
[ "$code" = "303 $url/login?next=/" ] || fail "GET / without a session: $code"
# Empty warehouse: a friendly waiting state, not an error (signed in with a cookie).
jar="$work/cookies"
code="$(curl -sS -o /dev/null -w '%{http_code}' -c "$jar" --data-urlencode "username=$login_user" \
  --data-urlencode "password=$login_password" --data-urlencode "next=/" "$url/login")"
[ "$code" = 303 ] || fail "POST /login: HTTP $code"
grep -q 'etl_session' "$jar" || fail "POST /login set no session cookie"
page="$(curl -sS -b "$jar" -w '\n%{http_code}' "$url/")"
[ "${page##*$'\n'}" = 200 ] || fail "GET / on an empty warehouse: HTTP ${page##*$'\n'}"
grep -q 'Waiting for data' <<<"$page" || fail "GET / on an empty warehouse does not say 'Waiting for data'"
echo "login redirect, cookie and empty warehouse: ok"

psql_db <<'SQL' || fail "cannot insert test rows"
INSERT INTO silver.customers (customer_id, full_name, country, _bronze_event_id, _source) VALUES
  ('C1', 'Ada Lovelace', 'France', 1, '{}'),
  ('C2', 'Alan Turing', 'Germany', 2, '{}'),
  ('C3', 'Grace Hopper', 'Spain', 3, '{}');
INSERT INTO silver.products (product_id, product_name, category, unit_price, _bronze_event_id, _source) VALUES
  ('P1', 'Lamp', 'Home', 100.00, 4, '{}'), ('P2', 'Desk', 'Office', 250.00, 5, '{}'), ('P3', 'Mug', 'Home', 49.50, 6, '{}');
INSERT INTO silver.employees (employee_id, full_name, title, country, _bronze_event_id, _source) VALUES
  ('E1', 'Marie Curie', 'Sales', 'France', 7, '{}');
INSERT INTO silver.sales (sale_id, order_id, sale_date, customer_id, product_id, employee_id, quantity, unit_price, amount, _bronze_event_id, _source) VALUES
  ('S1', 'S1', current_date - 20, 'C1', 'P1', 'E1', 1, 100.00, 100.00, 10, '{}'),
  ('S2', 'S2', current_date - 12, 'C2', 'P1', 'E1', 2, 125.25, 250.50, 11, '{}'),
  ('S3', 'S3', current_date - 5,  'C3', 'P2', NULL, 4, 250.00, 1000.00, 12, '{}'),
  ('S4', 'S4', current_date - 1,  'C1', 'P3', 'E1', 1, 49.50, 49.50, 13, '{}');
SQL
rebuild_gold="ETL_WAREHOUSE__URL='$db_url' '$transform' --config '$repo/config/etl.toml' rebuild >/dev/null"
sh -c "$rebuild_gold" || fail "transform rebuild failed"

# The page must show 1,400.00, then 2,634.56 once S5 arrives, without a reload.
code="$(curl -sS -o /dev/null -w '%{http_code}' "$url/metrics")"
[ "$code" = 200 ] || fail "/metrics: HTTP $code"

DASHBOARD_URL="$url/" \
TEST_DB_URL="$db_url" \
EXPECT_REVENUE="1,400.00" \
NEW_SALES_SQL="INSERT INTO silver.sales (sale_id, order_id, sale_date, customer_id, product_id, quantity, unit_price, amount, _bronze_event_id, _source) VALUES ('S5', 'S5', current_date, 'C2', 'P2', 1, 1234.56, 1234.56, 14, '{}')" \
NEW_SALES_CMD="$rebuild_gold" \
EXPECT_REVENUE_AFTER="2,634.56" \
SCREENSHOT_DIR="$work" \
LOGIN_USER="$login_user" \
LOGIN_PASSWORD="$login_password" \
  node "$here/tests/browser.mjs" || fail "browser checks failed"

metrics="$(curl -sS "$url/metrics")"
grep -q '^dashboard_server_fn_calls_total{' <<<"$metrics" || fail "/metrics has no dashboard_server_fn_calls_total"
grep -q '^dashboard_page_renders_total{' <<<"$metrics" || fail "/metrics has no dashboard_page_renders_total"

echo "screenshots: $(cd "$work" && ls ./*.png | tr '\n' ' ')(in $work)"
echo "browser test took $((SECONDS - t0)) s"
result=pass

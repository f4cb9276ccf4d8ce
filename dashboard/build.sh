#!/usr/bin/env bash
# Builds the dashboard: the wasm client (hydrate) into $CARGO_TARGET_DIR/site and the
# server binary $CARGO_TARGET_DIR/release/dashboard. Idempotent; installs what is missing.
#
#   ETL_CACHE_DIR     default $HOME/.cache/etl-platform (tools go to $ETL_CACHE_DIR/tools)
#   CARGO_TARGET_DIR  default $ETL_CACHE_DIR/target
#   DASHBOARD_SKIP_SERVER=1  build the client only
#
# No cargo-leptos: plain cargo + wasm-bindgen. LEPTOS_OUTPUT_NAME/LEPTOS_SITE_PKG_DIR are
# compile-time settings and come from .cargo/config.toml (so every build agrees).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

export ETL_CACHE_DIR="${ETL_CACHE_DIR:-$HOME/.cache/etl-platform}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ETL_CACHE_DIR/target}"
tools="$ETL_CACHE_DIR/tools"
site="$CARGO_TARGET_DIR/site"
name="dashboard"   # must match LEPTOS_OUTPUT_NAME in .cargo/config.toml
export PATH="$tools/bin:$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }
t0=$SECONDS

# 1. wasm target
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  step "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# 2. wasm-bindgen CLI: exactly the version of the wasm-bindgen crate in Cargo.lock
if [ ! -f Cargo.lock ] || ! grep -q '^name = "wasm-bindgen"$' Cargo.lock; then
  step "cargo generate-lockfile (no wasm-bindgen in Cargo.lock yet)"
  cargo metadata --format-version 1 >/dev/null
fi
wb_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$wb_version" ]; then
  echo "build.sh: cannot find the wasm-bindgen version in Cargo.lock" >&2
  exit 1
fi
if [ "$("$tools/bin/wasm-bindgen" --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  step "cargo install wasm-bindgen-cli $wb_version into $tools (about 2 min)"
  cargo install wasm-bindgen-cli --version "$wb_version" --debug --root "$tools" --force
fi

# 3. client: wasm (hydrate) + JS glue
step "wasm client (hydrate, wasm-release)"
t=$SECONDS
cargo build -p dashboard --lib --target wasm32-unknown-unknown --no-default-features --features hydrate --profile wasm-release
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/$name.wasm"
mkdir -p "$site/pkg"
"$tools/bin/wasm-bindgen" --target web --no-typescript --out-dir "$site/pkg" --out-name "$name" "$wasm"
# Leptos links /pkg/<name>.wasm when LEPTOS_OUTPUT_NAME is set at compile time.
mv -f "$site/pkg/${name}_bg.wasm" "$site/pkg/$name.wasm"
# The server (tower-http ServeDir, precompressed_gzip) sends these to browsers that accept gzip.
gzip -9 -k -f "$site/pkg/$name.wasm" "$site/pkg/$name.js"
echo "client built in $((SECONDS - t)) s"

# 4. static assets
if compgen -G "$here/public/*" >/dev/null; then
  cp -R "$here"/public/. "$site"/
  # Served precompressed to browsers that accept gzip (ssr/server.rs, static_files).
  for f in "$here"/public/*; do [ -f "$f" ] && gzip -9 -k -f "$site/$(basename "$f")"; done
fi

# 5. server
if [ "${DASHBOARD_SKIP_SERVER:-0}" != 1 ]; then
  step "server (ssr, release)"
  t=$SECONDS
  cargo build -p dashboard --release --bin dashboard
  echo "server built in $((SECONDS - t)) s"
fi

step "done in $((SECONDS - t0)) s"
echo "site root : $site  (serve with LEPTOS_SITE_ROOT=$site)"
echo "client    : $site/pkg/$name.js, $site/pkg/$name.wasm ($(du -k "$site/pkg/$name.wasm" | cut -f1) KiB, gzip $(du -k "$site/pkg/$name.wasm.gz" | cut -f1) KiB)"
if [ "${DASHBOARD_SKIP_SERVER:-0}" != 1 ]; then
  echo "server    : $CARGO_TARGET_DIR/release/dashboard"
  echo "run       : LEPTOS_SITE_ROOT=$site $CARGO_TARGET_DIR/release/dashboard --config config/etl.toml"
fi

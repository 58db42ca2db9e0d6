#!/usr/bin/env bash
# Build the npm package into pkg/: wasm (size-tuned profile) -> wasm-bindgen -> wasm-opt ->
# the JS wrapper and types from pkg-template/. Installs what it needs (the wasm32 target,
# wasm-bindgen-cli at the version pinned in Cargo.lock, npm's binaryen).
# Usage: npm run build
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/webclip/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if command -v rustup >/dev/null && ! rustup target list --installed | grep -q wasm32-unknown-unknown; then
  echo "== installing the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qF "$bindgen_version"; then
  echo "== installing wasm-bindgen-cli $bindgen_version (matches Cargo.lock)"
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

if [ ! -x node_modules/.bin/wasm-opt ]; then
  echo "== installing npm packages"
  npm install --no-audit --no-fund
fi

echo "== cargo build (wasm32, profile wasm-release)"
cargo build --lib --target wasm32-unknown-unknown --profile wasm-release

rm -rf pkg
mkdir -p pkg
wasm-bindgen --target web --out-dir pkg --out-name webclip_wasm \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/webclip.wasm"

# wasm-opt takes minutes on a module this size: reuse its output while the input is unchanged.
opt_flags="-O3 --strip-debug --strip-producers --enable-simd --enable-bulk-memory
  --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals
  --enable-reference-types --enable-multivalue"
key=$( (cat pkg/webclip_wasm_bg.wasm; echo "$opt_flags"; node_modules/.bin/wasm-opt --version) | sha256sum | cut -c1-32)
cached="$CARGO_TARGET_DIR/wasm-opt-cache/$key.wasm"
if [ -f "$cached" ]; then
  echo "== wasm-opt (cached)"
else
  echo "== wasm-opt"
  mkdir -p "$(dirname "$cached")"
  # shellcheck disable=SC2086
  node_modules/.bin/wasm-opt $opt_flags pkg/webclip_wasm_bg.wasm -o "$cached.tmp"
  mv "$cached.tmp" "$cached"
  find "$(dirname "$cached")" -name '*.wasm' ! -name "$key.wasm" -delete
fi
cp "$cached" pkg/webclip_wasm_bg.wasm

cp pkg-template/index.js pkg-template/index.d.ts pkg-template/package.json pkg-template/README.md pkg/
rm -f pkg/.gitignore

raw=$(stat -c %s pkg/webclip_wasm_bg.wasm)
gz=$(gzip -9 -c pkg/webclip_wasm_bg.wasm | wc -c)
echo "== pkg/ built: webclip_wasm_bg.wasm $((raw / 1024)) KiB raw, $((gz / 1024)) KiB gzipped"

# The demo page serves the package from www/pkg/ (a copy: www/ stays deployable as static files).
rm -rf www/pkg && cp -r pkg www/pkg

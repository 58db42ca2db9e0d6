#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs every test.
# Usage: npm test   (or: bash scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# One shared build directory, outside the clone, so repeated runs (and CI) build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/webclip/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Mesa's lavapipe gives wgpu a Vulkan adapter on machines without a GPU, so the wgpu backend is
# tested too. Skipped (and the wgpu parity test says so) where apt-get is unavailable.
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "== installing Mesa's Vulkan drivers (lavapipe) for the wgpu tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

# wgpu's Vulkan loader complains without a runtime dir; give it one.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/webclip-runtime-$(id -u)}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"

# Debian's Chromium for the browser tests (never a downloaded browser).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "== installing Debian's chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/binaryen ]; then
  echo "== npm install"
  npm install --no-audit --no-fund
fi

echo "== cargo test (release: burn is slow unoptimized)"
cargo test --release --all-targets

echo "== npm package (wasm) build"
bash scripts/build-wasm.sh

echo "== node --test (the package in Node and in headless Chromium)"
node --test --test-concurrency=1 tests/js/

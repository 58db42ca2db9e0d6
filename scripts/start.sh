#!/usr/bin/env bash
# `npm start`: build the npm package (incremental; installs the toolchain on a fresh machine),
# then serve the demo in www/ on http://127.0.0.1:8080 (change with `npm start -- --port N`
# or PORT=N).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-wasm.sh
exec node scripts/serve.mjs www "$@"

#!/usr/bin/env bash
# Reproduce the demo's bundled model (www/models/default/) and sample images (www/samples/)
# with webclip's own trainer and scene generator. Deterministic on the CPU backend: the same
# command gives the same weights on the same machine type.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/webclip/target}"
cargo build --release --bin webclip
webclip="$CARGO_TARGET_DIR/release/webclip"

"$webclip" train --out www/models/default --steps 6000 --lr 1.5e-3 --seed 0 \
  --eval-every 1000 --eval-images 480 > www/models/default/training.json
"$webclip" synth --out www/samples --count 12 --size 128 --seed 11 --held-out

#!/usr/bin/env python3
"""Training throughput of webclip against PyTorch on the same CLIP architecture and batch, in the
same session, printed as a ratio (webclip time per step / PyTorch time per step; below 1.0 is
faster).

One step = forward through both towers, the symmetric contrastive loss, backward, global-norm
clipping and AdamW, on random images and 9-token captions (what open_clip's training loop does
per batch, without data loading).

Usage:
    python3 scripts/bench_train.py [--config www/models/default/config.json] [--batch 64]
                                   [--threads 2] [--runs 20] [--webclip PATH] [--json FILE]
--json FILE also writes the result for `npm run bench` (scripts/bench.mjs): a JSON list of one
{"case", "webclip_ms", "reference", "reference_ms", "ratio", "goal"} row (an "error" instead
of the times that failed).
Needs: pip install torch transformers
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # otherwise torch spins and skews timings

import torch  # noqa: E402
from bench_reference import measure, median_ms  # noqa: E402  (same directory)
from transformers import CLIPConfig, CLIPModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def torch_step_ms(config: CLIPConfig, batch: int, runs: int) -> float:
    torch.manual_seed(0)
    model = CLIPModel(config).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.2},
                                   {"params": other, "weight_decay": 0.0}],
                                  lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    v, t = config.vision_config, config.text_config
    pixels = torch.randn(batch, 3, v.image_size, v.image_size)
    ids = torch.randint(2, t.vocab_size - 2, (batch, 9))
    ids[:, 0], ids[:, -1] = t.bos_token_id, t.eos_token_id

    def step():
        loss = model(input_ids=ids, pixel_values=pixels, return_loss=True).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    return median_ms(step, runs, warmup=3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "www/models/default/config.json"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--webclip", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/webclip/target")), "release/webclip"))
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON (for scripts/bench.mjs)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = CLIPConfig.from_json_file(args.config)

    def webclip_step_ms():
        ours = subprocess.run(
            [args.webclip, "bench", "--config", args.config, "--train-batch", str(args.batch), "--runs", str(args.runs)],
            check=True, capture_output=True, text=True, env={**os.environ, "RAYON_NUM_THREADS": str(args.threads)},
        )
        return json.loads(ours.stdout)["cases"][0]["median_ms"]

    webclip_ms, webclip_error = measure("webclip bench", webclip_step_ms)
    torch_ms, torch_error = measure("PyTorch", lambda: torch_step_ms(config, args.batch, args.runs))
    torch_name = f"PyTorch {torch.__version__.split('+')[0]}"
    print(f"architecture: {args.config}; batch {args.batch}; {args.threads} threads; median of {args.runs} steps")
    print(f"{'':24}{'ms/step':>10}{'pairs/s':>10}")
    for name, ms in [("webclip (burn CPU)", webclip_ms), (torch_name, torch_ms)]:
        print(f"{name:24}{ms:10.1f}{1000 * args.batch / ms:10.0f}" if ms else f"{name:24}{'failed':>10}")
    ratio = webclip_ms / torch_ms if webclip_ms and torch_ms else None
    if ratio:
        print(f"ratio webclip / PyTorch (time per step): {ratio:.2f}x")
    if args.json:
        default = Path(args.config).resolve() == (ROOT / "www/models/default/config.json").resolve()
        row = {"case": f"training step, {'default model' if default else Path(args.config).name}, batch {args.batch}",
               "webclip_ms": webclip_ms, "reference": torch_name, "reference_ms": torch_ms, "ratio": ratio,
               "goal": 1.0, "note": f"{args.threads} threads, median of {args.runs} steps"}
        errors = [e for e in (webclip_error and f"webclip: {webclip_error}", torch_error) if e]
        if errors:
            row["error"] = "; ".join(errors)
        Path(args.json).write_text(json.dumps([row], indent=1) + "\n")
    if webclip_error or torch_error:
        sys.exit(1)


if __name__ == "__main__":
    main()

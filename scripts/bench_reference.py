#!/usr/bin/env python3
"""Inference latency of webclip against PyTorch and ONNX Runtime on the same CLIP architecture,
in the same session, printed as ratios (webclip time / reference time; below 1.0 is faster).

Usage:
    python3 scripts/bench_reference.py [--webclip PATH] [--threads 2] [--runs 10] [--rounds 3]
                                       [--config config.json] [--json FILE]
    python3 scripts/bench_reference.py --write-config FILE   (the ViT-B/32 config.json, then exit)

The default architecture is openai/clip-vit-base-patch32's (random weights: latency does not
depend on the values). Cases: image batch 1 and 8 (224x224), text batch 1 and 8 of 12 tokens.
The three sides take turns: --rounds rounds, each timing every case --runs times on each side (the
side that starts rotates), and each figure is the median of its rounds' medians, so that a change
in this shared machine's load during the run reaches every side alike.
--json FILE also writes the rows for `npm run bench` (scripts/bench.mjs): a JSON list of
{"case", "webclip_ms", "reference", "reference_ms", "ratio", "goal"} (goal: 1.0 against ONNX
Runtime, none against PyTorch); a side that fails gives rows with an "error" instead.
Needs: pip install torch transformers onnx onnxruntime
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # otherwise torch spins and skews timings

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import CLIPConfig, CLIPModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def base_patch32_config():
    return CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                         num_attention_heads=8, num_hidden_layers=12, max_position_embeddings=77,
                         hidden_act="quick_gelu", eos_token_id=2),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                           num_hidden_layers=12, image_size=224, patch_size=32,
                           hidden_act="quick_gelu"),
        projection_dim=512,
    )


class Tower(torch.nn.Module):
    """One tower of a CLIPModel with its projection, as a module ONNX can export."""

    def __init__(self, model, kind):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x):
        if self.kind == "image":
            return self.model.get_image_features(pixel_values=x)
        return self.model.get_text_features(input_ids=x)


def median_ms(fn, runs, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def inputs(config, batch, kind):
    if kind == "image":
        v = config.vision_config
        return torch.randn(batch, 3, v.image_size, v.image_size)
    ids = [49406] + [320 + 7 * i for i in range(10)] + [49407]
    return torch.tensor([ids] * batch)


def webclip_cases(binary, config_path, threads, runs):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    args = [binary, "bench", "--runs", str(runs)]
    if config_path:
        args += ["--config", config_path]
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout
    return {(c["name"], c["batch"]): c["median_ms"] for c in json.loads(out)["cases"]}


def error_text(e):
    if isinstance(e, subprocess.CalledProcessError):
        tail = (e.stderr or "").strip().splitlines()[-1:] or [f"exit status {e.returncode}"]
        return f"{Path(e.cmd[0]).name} {e.cmd[1]}: {tail[0]}"
    return f"{type(e).__name__}: {e}"


def torch_cases(model, config, cases):
    """A function timing every case on PyTorch: runs -> {(kind, batch): median ms}."""
    calls = {}
    for kind, batch in cases:
        x = inputs(config, batch, kind)
        if kind == "image":
            calls[(kind, batch)] = lambda x=x: model.get_image_features(pixel_values=x)
        else:
            calls[(kind, batch)] = lambda x=x: model.get_text_features(input_ids=x)

    def run(runs):
        with torch.no_grad():
            return {case: median_ms(call, runs) for case, call in calls.items()}
    return run


def ort_cases(model, config, cases, threads, tmp):
    """The towers exported to ONNX in `tmp`, and a function timing every case on ONNX Runtime."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sessions = {}
    for kind in sorted({kind for kind, _ in cases}):
        path = os.path.join(tmp, f"{kind}.onnx")
        with torch.no_grad():
            torch.onnx.export(Tower(model, kind), (inputs(config, 1, kind),), path, dynamo=False,
                              opset_version=17, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}})
        sessions[kind] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feeds = {(kind, batch): {"x": inputs(config, batch, kind).numpy()} for kind, batch in cases}

    def run(runs):
        return {(kind, batch): median_ms(lambda: sessions[kind].run(None, feed), runs)
                for (kind, batch), feed in feeds.items()}
    return run, f"ONNX Runtime {ort.__version__}"


def interleaved(sides, rounds, runs):
    """Time every side (name -> function of runs, or None where it could not be set up) in turns:
    `rounds` rounds, the first side rotating. Returns name -> ({case: median of the rounds'
    medians}, error text or None); a side that fails once is left out of later rounds."""
    samples = {name: [] for name in sides}
    errors = {name: None for name in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if sides[name] is None or errors[name]:
                continue
            result, errors[name] = measure(name, lambda: sides[name](runs))
            if result:
                samples[name].append(result)
    return {name: ({case: statistics.median(s[case] for s in samples[name]) for case in samples[name][0]}
                   if samples[name] and not errors[name] else {}, errors[name])
            for name in names}


def measure(label, fn):
    """fn() or, when it fails, the error as text (reported on stderr and in the rows)."""
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001  (any failure becomes an error row, not an abort)
        print(f"{label} failed: {error_text(e)}", file=sys.stderr)
        return None, error_text(e)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/webclip/target"))
    parser.add_argument("--webclip", default=str(Path(target) / "release/webclip"))
    parser.add_argument("--config", help="a CLIP config.json (default: ViT-B/32)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each case per round")
    parser.add_argument("--rounds", type=int, default=3, help="turns each side takes (see above)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON (for scripts/bench.mjs)")
    parser.add_argument("--write-config", metavar="FILE", help="write the ViT-B/32 config.json and exit")
    args = parser.parse_args()

    if args.write_config:
        base_patch32_config().to_json_file(args.write_config)
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = CLIPConfig.from_json_file(args.config) if args.config else base_patch32_config()
    model = CLIPModel(config).eval()
    shape = Path(args.config).name if args.config else "ViT-B/32"

    cases = [("image", 1), ("image", 8), ("text", 1), ("text", 8)]
    with tempfile.TemporaryDirectory() as tmp:
        ort_setup, ort_error = measure("ONNX Runtime", lambda: ort_cases(model, config, cases, args.threads, tmp))
        ort_run, ort_name = ort_setup or (None, "ONNX Runtime")
        sides = {
            "PyTorch": torch_cases(model, config, cases),
            "ONNX Runtime": ort_run,
            "webclip bench": lambda runs: webclip_cases(args.webclip, args.config, args.threads, runs),
        }
        results = interleaved(sides, args.rounds, args.runs)
    (torch_ms, torch_error), (ort_ms, run_error), (ours, ours_error) = (
        results[name] for name in ("PyTorch", "ONNX Runtime", "webclip bench"))
    ort_error = ort_error or run_error

    print(f"threads={args.threads} rounds={args.rounds} runs={args.runs} (medians, ms; ratio = webclip / reference)")
    print(f"{'case':<10} {'webclip':>9} {'pytorch':>9} {'onnxrt':>9} {'vs torch':>9} {'vs ort':>9}")
    num = lambda v: f"{v:9.1f}" if v else f"{'-':>9}"  # noqa: E731
    ratio = lambda a, b: f"{a / b:8.2f}x" if a and b else f"{'-':>9}"  # noqa: E731
    rows = []
    for kind, batch in cases:
        w, t, o = ours.get((kind, batch)), torch_ms.get((kind, batch)), ort_ms.get((kind, batch))
        print(f"{kind + ' b' + str(batch):<10} {num(w)} {num(t)} {num(o)} {ratio(w, t)} {ratio(w, o)}")
        what = "text (12 tokens)" if kind == "text" else "image"
        for reference, ms, error, goal in [(ort_name, o, ort_error, 1.0),
                                           (f"PyTorch {torch.__version__.split('+')[0]}", t, torch_error, None)]:
            row = {"case": f"native CPU, {shape}, {what}, batch {batch}", "webclip_ms": w, "reference": reference,
                   "reference_ms": ms, "ratio": w / ms if w and ms else None, "goal": goal,
                   "note": f"{args.threads} threads, median of {args.rounds} interleaved rounds' medians of {args.runs}"}
            if ours_error or error:
                row["error"] = "; ".join(e for e in (ours_error and f"webclip: {ours_error}", error) if e)
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if ours_error or torch_error or ort_error:
        sys.exit(1)


if __name__ == "__main__":
    main()

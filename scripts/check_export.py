#!/usr/bin/env python3
"""Check that a model directory written by `webclip train` (CLIP, or SigLIP with
`--loss sigmoid`) loads in Python `transformers` and gives the same embeddings as webclip.

Usage: python3 scripts/check_export.py DIR [--webclip PATH]
Compares text embeddings (ids from webclip's tokenizer) and image embeddings (pixels from
webclip's preprocessing) of a few captions and a rendered PNG; exits non-zero on a mismatch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoModel

TEXTS = ["a small red circle on the left", "a big blue cross at the top", "a purple square"]


def run(binary, *args):
    return json.loads(subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/webclip/target"))
    parser.add_argument("--webclip", default=str(Path(target) / "release/webclip"))
    args = parser.parse_args()

    model = AutoModel.from_pretrained(args.dir).eval()
    print(f"loaded as {type(model).__name__}")
    with tempfile.TemporaryDirectory() as tmp:
        image_path = os.path.join(tmp, "image.png")
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(image_path)
        text_args = [a for t in TEXTS for a in ("--text", t)]
        ours = run(args.webclip, "embed", "--model", args.dir, "--image", image_path, *text_args)
        ids = run(args.webclip, "tokenize", "--model", args.dir, *text_args)["input_ids"]
        pixels = run(args.webclip, "preprocess", "--model", args.dir, "--image", image_path)

    with torch.no_grad():
        texts = [model.get_text_features(input_ids=torch.tensor([i])) for i in ids]
        texts = torch.cat([t if torch.is_tensor(t) else t.pooler_output for t in texts])
        texts = texts / texts.norm(dim=-1, keepdim=True)
        pv = torch.tensor(pixels["pixel_values"], dtype=torch.float32).reshape(pixels["shape"])
        image = model.get_image_features(pixel_values=pv)
        image = image if torch.is_tensor(image) else image.pooler_output
        image = image / image.norm(dim=-1, keepdim=True)

    text_diff = np.abs(texts.numpy() - np.array(ours["text_embeds"])).max()
    image_diff = np.abs(image.numpy() - np.array(ours["image_embeds"])).max()
    print(f"transformers vs webclip: text max abs diff {text_diff:.2e}, image max abs diff {image_diff:.2e}")
    if max(text_diff, image_diff) > 1e-4:
        sys.exit("mismatch above 1e-4")


if __name__ == "__main__":
    main()

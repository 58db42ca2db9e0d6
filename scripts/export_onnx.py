#!/usr/bin/env python3
"""Export a Hugging Face CLIP directory to the ONNX layout transformers.js loads
(`onnx/vision_model.onnx`: pixel_values -> image_embeds, `onnx/text_model.onnx`: input_ids,
attention_mask -> text_embeds, plus a `tokenizer_config.json`), for scripts/bench_browser.mjs.

Usage: python3 scripts/export_onnx.py MODEL_DIR     (writes into MODEL_DIR)
Needs: pip install torch transformers onnx
"""
import json
import sys
from pathlib import Path

import torch
from transformers import CLIPModel


class Tower(torch.nn.Module):
    def __init__(self, model, kind):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, *inputs):
        if self.kind == "image":
            out = self.model.get_image_features(pixel_values=inputs[0])
        else:
            out = self.model.get_text_features(input_ids=inputs[0], attention_mask=inputs[1])
        return getattr(out, "pooler_output", out)


def main():
    d = Path(sys.argv[1])
    model = CLIPModel.from_pretrained(d, attn_implementation="eager").eval()
    (d / "onnx").mkdir(exist_ok=True)
    size = model.config.vision_config.image_size
    torch.onnx.export(Tower(model, "image"), (torch.randn(1, 3, size, size),), d / "onnx/vision_model.onnx",
                      dynamo=False, opset_version=17, input_names=["pixel_values"], output_names=["image_embeds"],
                      dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
    t = model.config.text_config
    ids = torch.tensor([[t.bos_token_id, 5, 6, 7, t.eos_token_id]])
    torch.onnx.export(Tower(model, "text"), (ids, torch.ones_like(ids)), d / "onnx/text_model.onnx",
                      dynamo=False, opset_version=17, input_names=["input_ids", "attention_mask"],
                      output_names=["text_embeds"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                    "text_embeds": {0: "batch"}})
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": t.max_position_embeddings,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"}))
    print(f"wrote {d}/onnx/vision_model.onnx, text_model.onnx, tokenizer_config.json")


if __name__ == "__main__":
    main()

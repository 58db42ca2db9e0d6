#!/usr/bin/env python3
"""Generate the reference fixtures that webclip's Rust tests compare against.

Run from the repository root (no network needed, nothing is downloaded):

    python3 scripts/make_fixtures.py

Everything lives under ``tests/fixtures/``.  The directories this script owns
(``tokenizer/``, ``models/``, ``images/``, ``preprocess/``, ``loss/``) and ``README.md``
are deleted and regenerated on every run; anything else under tests/fixtures/ is
left alone.

What it produces (see the README it writes for the file-by-file description):

A. ``tokenizer/``  the real CLIP BPE tokenizer (built from the BPE vocabulary that
   ships inside the ``open_clip`` package) as a Hugging Face ``tokenizer.json``,
   plus ``cases.json``: token ids from open_clip's SimpleTokenizer and from the
   HF fast tokenizer for ~45 tricky strings.
B. ``models/<name>/``  tiny randomly initialised HF ``CLIPModel`` checkpoints
   (safetensors, fp32 / fp16 / bf16) with ``config.json``,
   ``preprocessor_config.json`` and a relative symlink to the shared tokenizer.
C. ``models/<name>/reference.json``  text/image embeddings and logits computed by
   transformers in fp32.
D. ``images/*.png`` small synthetic PNGs and ``preprocess/`` the OpenAI CLIP
   (PIL-based) preprocessing of them as raw little-endian float32 tensors.
F. ``loss/cases.json``  open_clip's contrastive loss (``open_clip.loss.ClipLoss``) and
   its gradients w.r.t. the normalised features and the raw logit scale, in float64.

Everything is deterministic: fixed seeds, single-threaded torch, and images
generated from numpy's seeded PCG64 generator.
"""

from __future__ import annotations

import os

# Be nice to the 2-core machine (and to concurrently running builds) and keep
# float reductions in a fixed order: one thread, passive OpenMP waiting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gzip
import json
import math
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import open_clip
import transformers
from open_clip.tokenizer import SimpleTokenizer, bytes_to_unicode, default_bpe
from safetensors import safe_open
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "tests" / "fixtures"
TOK_DIR = FIX / "tokenizer"
MODELS_DIR = FIX / "models"
IMG_DIR = FIX / "images"
PRE_DIR = FIX / "preprocess"
LOSS_DIR = FIX / "loss"
OWNED = [TOK_DIR, MODELS_DIR, IMG_DIR, PRE_DIR, LOSS_DIR, FIX / "README.md"]

CONTEXT_LENGTH = 77
SOT, EOT = 49406, 49407
VOCAB_SIZE = 49408

# OpenAI CLIP normalisation constants (identical to open_clip.constants.OPENAI_DATASET_*).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
assert tuple(open_clip.constants.OPENAI_DATASET_MEAN) == OPENAI_MEAN
assert tuple(open_clip.constants.OPENAI_DATASET_STD) == OPENAI_STD


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def rnd(x: float) -> float:
    """Round a float for JSON: 7 significant digits for |x| < 1, 7 decimals for |x| >= 1.

    So every value keeps an absolute precision of at least 1e-7 (5e-8 rounding error),
    and values below 1 keep 7 significant digits.
    """
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    if x == 0.0:
        return 0.0
    if abs(x) < 1.0:
        return float(f"{x:.7g}")
    return round(x, 7)


def rnd_list(a) -> list:
    """Recursively round a tensor/array/list of floats (keeps nesting)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().tolist()
    elif isinstance(a, np.ndarray):
        a = a.astype(np.float64).tolist()
    if isinstance(a, list):
        return [rnd_list(v) for v in a]
    return rnd(a)


def write_json(path: Path, obj, indent=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def versions() -> dict:
    import ftfy
    import PIL
    import safetensors
    import tokenizers
    import torchvision

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "open_clip_torch": open_clip.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "ftfy": ftfy.__version__,
    }


# --------------------------------------------------------------------------------------
# A. tokenizer
# --------------------------------------------------------------------------------------


def build_tokenizer() -> CLIPTokenizer:
    """Build the CLIP tokenizer from open_clip's bundled BPE file.

    Mirrors how the HF CLIP checkpoints' vocab.json / merges.txt were made:
      vocab = 256 byte-level chars, the same 256 + "</w>", one entry per merge
      (the first 48894 merges, exactly as open_clip/OpenAI use), then
      "<|startoftext|>" (49406) and "<|endoftext|>" (49407)   -> 49408 entries.
    merges.txt = "#version: 0.2" header + those 48894 merges.
    CLIPTokenizer.from_pretrained(dir) then builds the fast (Rust) tokenizer and
    save_pretrained writes tokenizer.json.

    (In transformers 5, CLIPTokenizerFast(vocab_file=..., merges_file=...) silently
    builds a 2-token tokenizer, so we go through from_pretrained and check the size.)
    """
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]  # same slice as open_clip.SimpleTokenizer
    assert len(merges) == 48894
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == VOCAB_SIZE and len(set(vocab)) == VOCAB_SIZE

    build_dir = FIX / ".tokenizer_build"  # temporary, removed below
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True)
    write_json(build_dir / "vocab.json", {t: i for i, t in enumerate(vocab)})
    (build_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")

    tok = CLIPTokenizer.from_pretrained(str(build_dir))
    assert len(tok) == VOCAB_SIZE, f"broken tokenizer build: {len(tok)} tokens"
    assert tok.bos_token_id == SOT and tok.eos_token_id == EOT and tok.pad_token_id == EOT
    TOK_DIR.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(TOK_DIR))
    shutil.rmtree(build_dir)
    # Only tokenizer.json (+ tokenizer_config.json so AutoTokenizer works on the dir) are kept.
    for p in TOK_DIR.iterdir():
        if p.name not in ("tokenizer.json", "tokenizer_config.json"):
            p.unlink()

    # Re-save tokenizer.json compactly (no pretty-printing): ~40% smaller, same content.
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))
    raw.save(str(TOK_DIR / "tokenizer.json"), pretty=False)
    raw = Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))
    assert raw.get_vocab_size() == VOCAB_SIZE, raw.get_vocab_size()

    # The vocabulary must be open_clip's, token for token (only the special-token
    # spellings differ: open_clip calls them <start_of_text>/<end_of_text>).
    st = SimpleTokenizer()
    hv = raw.get_vocab()
    for t, i in st.encoder.items():
        if t == "<start_of_text>":
            assert i == SOT
        elif t == "<end_of_text>":
            assert i == EOT
        else:
            assert hv[t] == i, t

    tok = CLIPTokenizer.from_pretrained(str(TOK_DIR))
    assert len(tok) == VOCAB_SIZE
    return tok


LONG_TEXT = (
    "a very long caption that keeps going: " + " ".join(
        f"the {w} number {i} sits next to a {c} box," for i, (w, c) in enumerate(
            zip(["cat", "dog", "bird", "fish", "horse", "cow", "sheep", "goat", "frog", "mouse", "owl", "bear"],
                ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "grey", "pink", "brown", "teal"])
        )
    ) + " and then it finally ends."
)

TOKENIZER_TEXTS = [
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "Hello, world! How are you?",
    "wow!?",  # "!" alone is token id 0: stripping open_clip's zero padding must not eat it
    "!!!",
    "The year 2024 had 366 days; pi is 3.14159.",
    "1234567890",
    "multiple   spaces\tand\ttabs\nand\nnewlines\r\nand CRLF",
    "   leading and trailing spaces   ",
    "   ",
    "",
    "x",
    "café",
    "naïve résumé",
    "CAFÉ NAÏVE Ångström",
    "cafe\u0301 (decomposed e + combining acute)",
    "ß straße",
    "İstanbul",
    "Ελληνικά Кириллица",
    "東京タワーの写真",
    "中文测试",
    "한국어 텍스트",
    "a cat 🐱 and a dog 🐶",
    "👩\u200d👩\u200d👧 family",
    "flag 🇯🇵",
    "zero\u200bwidth space",
    "it's a dog's life, we'll see what they're doing",
    "I'M HERE, YOU'RE THERE, THEY'VE GONE, SHE'D KNOW",
    "Tom & Jerry &amp; friends",
    "&lt;b&gt;bold&lt;/b&gt;",
    "&quot;quoted&quot; and &#39;single&#39;",
    "double escaped &amp;amp; here",
    "\u2018single curly\u2019 and \u201cdouble curly\u201d",
    "\ufb01sh \ufb02ower",
    "ＡＢＣ１２３ full width",
    "non\u00a0breaking\u00a0space",
    "caf\u00c3\u00a9 mojibake",
    "text with <|endoftext|> inside",
    "<|startoftext|>hello",
    "<end_of_text> is open_clip's own special token",
    "en\u2013dash \u2014 em-dash \u2026 ellipsis",
    "snake_case kebab-case CamelCase",
    "email@example.com https://example.org/path?q=1&r=2",
    "tab\x0bvertical\x0cformfeed and a bell\x07",
    LONG_TEXT,
    "supercalifragilisticexpialidocious " * 12,
]


def open_clip_ids(st: SimpleTokenizer, text: str) -> list[int]:
    """open_clip ids with context length 77, trailing zero padding stripped.

    Computed from SimpleTokenizer.encode (the length is known there, so a real
    token id 0 = "!" is never mistaken for padding) and cross-checked against
    open_clip.tokenize's padded row.
    """
    ids = [SOT] + st.encode(text) + [EOT]
    if len(ids) > CONTEXT_LENGTH:
        ids = ids[:CONTEXT_LENGTH]
        ids[-1] = EOT
    row = open_clip.tokenize([text], context_length=CONTEXT_LENGTH)[0].tolist()
    assert row[: len(ids)] == ids and all(v == 0 for v in row[len(ids):]), text
    return ids


def hf_ids(tok: CLIPTokenizer, text: str) -> list[int]:
    return tok(text, truncation=True, max_length=CONTEXT_LENGTH)["input_ids"]


def make_tokenizer_cases(tok: CLIPTokenizer):
    from tokenizers import Tokenizer

    st = SimpleTokenizer()
    # The Rust side uses the `tokenizers` crate on tokenizer.json directly: check that the
    # raw Tokenizer with truncation(77) gives the same ids as the transformers wrapper.
    raw = Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))
    raw.enable_truncation(CONTEXT_LENGTH)

    cases, n_diff = [], 0
    for text in TOKENIZER_TEXTS:
        oc = open_clip_ids(st, text)
        hf = hf_ids(tok, text)
        assert raw.encode(text).ids == hf, text
        assert hf[0] == SOT and hf[-1] == EOT and len(hf) <= CONTEXT_LENGTH
        assert oc[0] == SOT and oc[-1] == EOT and len(oc) <= CONTEXT_LENGTH
        n_diff += oc != hf
        cases.append({"text": text, "open_clip_ids": oc, "hf_ids": hf})
    assert any(len(c["hf_ids"]) == CONTEXT_LENGTH for c in cases)
    write_json(
        TOK_DIR / "cases.json",
        {
            "note": (
                "open_clip_ids: open_clip.tokenize(text, context_length=77) (ftfy.fix_text + double "
                "html.unescape + whitespace collapse + lower-case, then BPE) with the trailing zero "
                "padding stripped; starts with 49406, ends with 49407, truncated rows are exactly 77 "
                "long with 49407 forced last. hf_ids: the HF fast tokenizer from tokenizer.json, "
                "tokenizer(text, truncation=True, max_length=77)['input_ids'] (truncated too, "
                "49407 kept last); identical to tokenizers.Tokenizer.from_file('tokenizer.json') "
                "with enable_truncation(77). The HF tokenizer does NFC + whitespace collapse + "
                "lower-case only (no ftfy, no html unescaping) and treats literal '<|startoftext|>' "
                "/'<|endoftext|>' in the text as special tokens; open_clip's special tokens are "
                "spelled '<start_of_text>'/'<end_of_text>'. So the two lists differ for some cases "
                f"({n_diff} of {len(cases)} here)."
            ),
            "context_length": CONTEXT_LENGTH,
            "cases": cases,
        },
        indent=1,
    )
    return cases


# --------------------------------------------------------------------------------------
# D. images + preprocessing
# --------------------------------------------------------------------------------------


def _grid(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return y / max(h - 1, 1), x / max(w - 1, 1)


def _rgb_scene(rng, h, w):
    """Random gradients + a disc + a rectangle + noise: lots of edges so resizing is
    non-trivial, and (because layout/colours are drawn from rng) distinct images."""
    yy, xx = _grid(h, w)
    fx, fy, ph = rng.uniform(2.0, 9.0, 3), rng.uniform(2.0, 9.0, 3), rng.uniform(0, 6.3, 3)
    img = np.stack([127 + 120 * np.sin(fx[c] * xx + fy[c] * yy + ph[c]) for c in range(3)], -1)
    cx, cy, rr = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.3)
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < rr ** 2] = rng.integers(0, 256, 3)
    x0, y0 = rng.uniform(0.0, 0.6), rng.uniform(0.0, 0.6)
    img[(xx > x0) & (xx < x0 + 0.3) & (yy > y0) & (yy < y0 + 0.3)] = rng.integers(0, 256, 3)
    img += rng.normal(0, 18, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_images() -> list[dict]:
    """Create the synthetic PNGs; returns [{name, mode, width, height, note}]."""
    IMG_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240601)
    out = []

    def save(name, im, note):
        im.save(IMG_DIR / name, format="PNG")
        back = Image.open(IMG_DIR / name)
        assert back.mode == im.mode and back.size == im.size, (name, back.mode, im.mode)
        out.append({"name": name, "mode": im.mode, "width": im.width, "height": im.height, "note": note})

    save("landscape.png", Image.fromarray(_rgb_scene(rng, 37, 61), "RGB"),
         "RGB 61x37; at 48 (tiny-gelu reference) the center-crop offset is round(31/2)=16 "
         "(Python rounds half to even; floor would give 15)")
    save("portrait.png", Image.fromarray(_rgb_scene(rng, 75, 40), "RGB"), "RGB 40x75")

    yy, xx = _grid(50, 50)
    grey = 255 * np.sqrt((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.71 + rng.normal(0, 12, (50, 50))
    grey[20:30, 5:45] = 255 - grey[20:30, 5:45]
    save("grey.png", Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L"), "greyscale L 50x50")

    rgb = _rgb_scene(rng, 51, 59)
    yy, xx = _grid(51, 59)
    alpha = np.clip(np.rint(255 * xx), 0, 255).astype(np.uint8)
    alpha[:10, :] = 0  # fully transparent rows whose RGB is still non-zero
    alpha[-8:, :] = 255
    save("rgba.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
         "RGBA 59x51 with varied alpha (0..255, colour kept under alpha 0); convert('RGB') drops alpha "
         "(no compositing); crop offset at 32: round(5/2)=2, at 48: round(7/2)=4 (half to even)")

    pal_idx = (rng.integers(0, 4, (32, 39)) + (np.arange(39)[None, :] // 5) * 4) % 16
    pal = Image.fromarray(pal_idx.astype(np.uint8), "P")
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    pal.putpalette(palette.flatten().tolist())
    save("palette.png", pal,
         "palette P 39x32, 16 colours; at 32 no resize happens (shortest side already 32) and the "
         "crop offset is round(7/2)=4 (half to even)")

    save("tiny.png", Image.fromarray(_rgb_scene(rng, 5, 7), "RGB"), "RGB 7x5, needs upscaling")
    save("large.png", Image.fromarray(_rgb_scene(rng, 200, 300), "RGB"),
         "RGB 300x200, needs antialiased downscaling")

    yy, xx = _grid(40, 64)
    g16 = 65535 * (0.5 * xx + 0.5 * yy) + rng.normal(0, 2000, (40, 64))
    g16 = np.clip(np.rint(g16), 0, 65535).astype(np.uint16)
    save("grey16.png", Image.fromarray(g16),
         "16-bit greyscale (PIL mode I;16) 64x40; crop offset at 32: round(19/2)=10")
    return out


def to_rgb8(img: Image.Image) -> Image.Image:
    """Decode step of the reference transform: any PIL image -> 8-bit RGB.

    PIL's own convert('RGB') is used for every mode except 16-bit greyscale: Pillow
    converts I;16 by *clipping* values to 0..255 (so almost everything becomes white),
    which no other decoder does. For I;16 we instead scale to 8 bits with
    round(v / 257) = (v + 128) // 257 -- exactly what the Rust `image` crate's
    to_rgb8() (and browsers) do -- and then replicate the grey value to RGB.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.uint32)
        a8 = ((a + 128) // 257).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    return img.convert("RGB")


def reference_transform(size: int):
    """OpenAI/open_clip eval transform on PIL images (resize shortest side, bicubic,
    antialiased; center crop; to tensor; normalize). This is open_clip's own
    image_transform; since we convert to RGB *before* it, its MaybeConvertMode is a no-op."""
    return open_clip.image_transform(size, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD)


def torchvision_transform(size: int):
    """The same pipeline spelled out with torchvision (used to cross-check)."""
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(OPENAI_MEAN, OPENAI_STD),
    ])


def preprocess(path: Path, size: int) -> torch.Tensor:
    img = Image.open(path)
    img.load()
    rgb = to_rgb8(img)
    x = reference_transform(size)(rgb)
    y = torchvision_transform(size)(rgb)
    assert torch.equal(x, y), path
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    return x


def open_clip_native_diff(path: Path, size: int, ref: torch.Tensor) -> float:
    """Max |diff| between our reference and open_clip's transform applied to the
    *undecoded* image (open_clip/OpenAI resize+crop first and convert('RGB') last).
    Zero for RGB and L images; non-zero for RGBA (PIL premultiplies alpha while
    resizing), P (PIL resizes palette images with NEAREST) and I;16."""
    img = Image.open(path)
    img.load()
    try:
        y = reference_transform(size)(img)
    except Exception:  # pragma: no cover - e.g. a mode PIL cannot resize
        return float("nan")
    return float((y - ref).abs().max())


def make_preprocess_cases(images: list[dict]) -> dict:
    PRE_DIR.mkdir(parents=True, exist_ok=True)
    jobs = [(im["name"], 32) for im in images] + [("large.png", 224), ("landscape.png", 224)]
    cases = []
    for name, size in jobs:
        x = preprocess(IMG_DIR / name, size)
        fname = f"{Path(name).stem}_{size}.f32"
        x.numpy().astype("<f4", copy=False).tofile(PRE_DIR / fname)
        # Geometry, for debugging a port: the resized size and the crop offset.
        w0, h0 = Image.open(IMG_DIR / name).size
        short, long = min(w0, h0), max(w0, h0)
        new_long = int(size * long / short)
        rw, rh = (size, new_long) if w0 <= h0 else (new_long, size)
        top, left = int(round((rh - size) / 2.0)), int(round((rw - size) / 2.0))
        cases.append({
            "image": name,
            "size": size,
            "shape": [3, size, size],
            "file": fname,
            "resized_wh": [rw, rh],
            "crop_top_left": [top, left],
            "crop_differs_from_floor": [top, left] != [(rh - size) // 2, (rw - size) // 2],
            "open_clip_native_order_max_diff": rnd(open_clip_native_diff(IMG_DIR / name, size, x)),
        })
    meta = {
        "note": (
            "Each .f32 file: raw little-endian float32, C order, shape [3,S,S] (CHW, RGB). "
            "Reference transform: decode to 8-bit RGB (PIL convert('RGB'); 16-bit grey scaled by "
            "round(v/257), not PIL's clipping), torchvision Resize(S, BICUBIC) on the PIL image "
            "(PIL bicubic a=-0.5 with antialias; shortest side -> S, long side int(S*long/short)), "
            "CenterCrop(S) (offset int(round((L-S)/2)), Python round = half to even; HF's "
            "CLIPImageProcessor uses floor instead, see crop_differs_from_floor), ToTensor "
            "(/255), Normalize(mean, std) in float32. resized_wh / crop_top_left: the intermediate "
            "geometry. open_clip_native_order_max_diff: how far "
            "open_clip's transform on the undecoded image (convert('RGB') after resize+crop) is "
            "from this reference; informational only."
        ),
        "mean": list(OPENAI_MEAN),
        "std": list(OPENAI_STD),
        "images": images,
        "cases": cases,
    }
    write_json(PRE_DIR / "cases.json", meta, indent=1)
    return meta


# --------------------------------------------------------------------------------------
# B/C. models + reference outputs
# --------------------------------------------------------------------------------------

MODEL_TEXTS = [
    "a photo of a cat",
    "A DOG!",
    "a small red triangle on the left of a big blue square",
    "",
    "x",
    LONG_TEXT,
]
MODEL_IMAGES = ["landscape.png", "portrait.png", "rgba.png", "large.png", "grey16.png"]


def config_tiny_quickgelu() -> CLIPConfig:
    return CLIPConfig(
        text_config=dict(
            vocab_size=VOCAB_SIZE, hidden_size=16, num_attention_heads=2, num_hidden_layers=2,
            intermediate_size=64, max_position_embeddings=77, hidden_act="quick_gelu",
            layer_norm_eps=1e-5, eos_token_id=2,  # old OpenAI exports: pool at argmax(input_ids)
            projection_dim=16,
        ),
        vision_config=dict(
            image_size=32, patch_size=8, hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
            intermediate_size=64, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=16,
        ),
        projection_dim=16,
        logit_scale_init_value=2.9,
    )


def config_tiny_gelu() -> CLIPConfig:
    return CLIPConfig(
        text_config=dict(
            vocab_size=VOCAB_SIZE, hidden_size=24, num_attention_heads=3, num_hidden_layers=3,
            intermediate_size=48, max_position_embeddings=77, hidden_act="gelu_new",  # tanh approx
            layer_norm_eps=1e-6, bos_token_id=SOT, eos_token_id=EOT, pad_token_id=EOT,  # first-eos pooling
            projection_dim=12,
        ),
        vision_config=dict(
            image_size=48, patch_size=16, hidden_size=24, num_attention_heads=2, num_hidden_layers=2,
            intermediate_size=96, hidden_act="gelu",  # exact erf GELU
            layer_norm_eps=1e-6, projection_dim=12,
        ),
        projection_dim=12,
        logit_scale_init_value=2.9,
    )


def init_weights(model: CLIPModel, seed: int) -> None:
    """Deterministically re-initialise every parameter with non-degenerate scales.

    HF's default init (std 0.02) on such tiny models gives near-identical
    embeddings for all inputs; we want a weight-loading bug to show up clearly.
      * LayerNorm: weight = 1 + 0.1*N(0,1), bias = 0.1*N(0,1)  (so a mis-loaded LN shows)
      * Linear weights: N(0, 4/fan_in), patch conv: N(0, 9/fan_in), biases 0.1*N(0,1)
        (the extra gain makes attention non-uniform so pooled outputs depend on the input)
      * token / position / class embeddings: N(0, 0.5^2)
      * logit_scale = 2.9 (HF default is 2.6592)
    """
    g = torch.Generator().manual_seed(seed)
    ln_params = set()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, torch.nn.LayerNorm):
            ln_params.add(f"{mod_name}.weight")
            ln_params.add(f"{mod_name}.bias")
    with torch.no_grad():
        for name, p in model.named_parameters():  # fixed (registration) order
            n = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name == "logit_scale":
                p.fill_(2.9)
            elif name in ln_params:
                p.copy_(1.0 + 0.1 * n if name.endswith("weight") else 0.1 * n)
            elif name.endswith("bias"):
                p.copy_(0.1 * n)
            elif "embedding" in name and p.dim() != 4:  # token/position/class embeddings
                p.copy_(0.5 * n)
            else:  # Linear [out, in] or patch conv [out, in, kh, kw]
                fan_in = int(np.prod(p.shape[1:]))
                gain = 3.0 if p.dim() == 4 else 2.0
                p.copy_(gain * n / math.sqrt(fan_in))
    assert model.logit_scale.item() == np.float32(2.9)


def write_preprocessor_config(d: Path, size: int) -> None:
    write_json(d / "preprocessor_config.json", {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": size},
        "resample": 3,  # PIL.Image.BICUBIC
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(OPENAI_MEAN),
        "image_std": list(OPENAI_STD),
        "do_convert_rgb": True,
    }, indent=2)


def save_model(model: CLIPModel, name: str, size: int, dtype: torch.dtype) -> Path:
    d = MODELS_DIR / name
    d.mkdir(parents=True, exist_ok=True)
    m = model.to(dtype)
    m.save_pretrained(str(d), safe_serialization=True)
    write_preprocessor_config(d, size)
    link = d / "tokenizer.json"
    if link.exists() or link.is_symlink():
        link.unlink()
    os.symlink("../../tokenizer/tokenizer.json", link)
    assert link.resolve() == (TOK_DIR / "tokenizer.json").resolve()

    # Check the on-disk dtypes.
    want = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[dtype]
    files = sorted(d.glob("*.safetensors"))
    assert [f.name for f in files] == ["model.safetensors"], files
    with safe_open(str(files[0]), framework="pt") as f:
        dts = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dts == {want}, (name, dts)
    files[0].chmod(0o644)  # safetensors writes 0600
    return d


def load_fp32(d: Path) -> CLIPModel:
    """Load a checkpoint upcast to fp32 (that is what the Rust side does too)."""
    try:
        m = CLIPModel.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager")
    except TypeError:  # older transformers
        m = CLIPModel.from_pretrained(str(d), torch_dtype=torch.float32, attn_implementation="eager")
    m.eval()
    assert all(p.dtype == torch.float32 for p in m.parameters())
    return m


def normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def model_pixel_values(d: Path) -> torch.Tensor:
    """MODEL_IMAGES as the model directory's own processor (transformers' CLIPImageProcessor
    with its PIL backend, from its preprocessor_config.json) prepares them: the reference for a
    Hugging Face directory. 16-bit PNGs are reduced to 8 bits first (to_rgb8), as every decoder
    but PIL does."""
    from transformers import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil.from_pretrained(str(d))
    images = [to_rgb8(Image.open(IMG_DIR / n)) for n in MODEL_IMAGES]
    return torch.from_numpy(processor(images=images, return_tensors="np")["pixel_values"]).float()


def refresh_image_references() -> None:
    """Recompute only the image side of each model's reference.json (pixel values through the
    model's processor, image embeddings, logits), keeping everything else."""
    for d in sorted(MODELS_DIR.iterdir()):
        path = d / "reference.json"
        if not path.exists():
            continue
        ref = json.loads(path.read_text())
        model = load_fp32(d)
        with torch.no_grad():
            pixel_values = model_pixel_values(d)
            image_embeds = normalize(model.get_image_features(pixel_values=pixel_values).pooler_output)
            text_embeds = torch.tensor(ref["text_embeds"])
            logits = model.logit_scale.detach().float().exp() * image_embeds @ text_embeds.T
        isim = image_embeds @ image_embeds.T
        offi = ~torch.eye(len(MODEL_IMAGES), dtype=torch.bool)
        ref.update({
            "pixel_shape": list(pixel_values.shape),
            "pixel_values": rnd_list(pixel_values.flatten()),
            "image_embeds": rnd_list(image_embeds),
            "logits_per_image": rnd_list(logits),
        })
        ref["max_offdiag_cosine"]["image"] = rnd(float(isim[offi].max()))
        write_json(path, ref)
        print(f"  {d.name}: image references from its processor")


def compute_reference(d: Path, tok: CLIPTokenizer, size: int, dtype_name: str) -> dict:
    model = load_fp32(d)
    cfg = model.config
    st = SimpleTokenizer()

    ids = [hf_ids(tok, t) for t in MODEL_TEXTS]
    for t, i in zip(MODEL_TEXTS, ids):
        assert i == open_clip_ids(st, t), t  # plain texts: both tokenizers agree
        assert i[-1] == EOT
    assert len(ids[-1]) == CONTEXT_LENGTH  # the long text really is truncated

    with torch.no_grad():
        # one text at a time, unpadded
        single = torch.cat([
            model.get_text_features(input_ids=torch.tensor([i])).pooler_output for i in ids
        ])
        text_embeds = normalize(single)

        # one padded batch (HF style: pad with 49407 + attention_mask)
        batch = tok(MODEL_TEXTS, truncation=True, max_length=CONTEXT_LENGTH, padding=True, return_tensors="pt")
        batched = normalize(model.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output)
        padding_max_diff = float((batched - text_embeds).abs().max())
        assert padding_max_diff < 1e-5, padding_max_diff

        # open_clip style: pad with 0 to 77, no attention mask (the causal mask alone
        # keeps the padding from influencing the end-token position)
        oc = open_clip.tokenize(MODEL_TEXTS, context_length=CONTEXT_LENGTH)
        oc_embeds = normalize(model.get_text_features(input_ids=oc).pooler_output)
        oc_padding_max_diff = float((oc_embeds - text_embeds).abs().max())
        assert oc_padding_max_diff < 1e-5, oc_padding_max_diff

        pixel_values = model_pixel_values(d)
        image_embeds = normalize(model.get_image_features(pixel_values=pixel_values).pooler_output)

        logit_scale = model.logit_scale.detach().float()
        logits_per_image = logit_scale.exp() * image_embeds @ text_embeds.T

        # cross-check against the full forward pass
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    pixel_values=pixel_values)
        assert torch.allclose(out.logits_per_image, logits_per_image, atol=1e-4)

    # Outputs must not be degenerate: different inputs -> clearly different embeddings.
    tsim = text_embeds @ text_embeds.T
    isim = image_embeds @ image_embeds.T
    off = ~torch.eye(len(MODEL_TEXTS), dtype=torch.bool)
    offi = ~torch.eye(len(MODEL_IMAGES), dtype=torch.bool)
    max_tsim, max_isim = float(tsim[off].max()), float(isim[offi].max())
    assert max_tsim < 0.98 and max_isim < 0.98, (max_tsim, max_isim)

    tc, vc = cfg.text_config, cfg.vision_config
    return {
        "model": d.name,
        "dtype_on_disk": dtype_name,
        "note": "computed in fp32 (checkpoint upcast to fp32 on load), eager attention, torch.no_grad()",
        "config_summary": {
            "text_hidden_act": tc.hidden_act,
            "vision_hidden_act": vc.hidden_act,
            "eos_token_id": tc.eos_token_id,
            "pooling": "argmax(input_ids)" if tc.eos_token_id == 2 else f"first position of {tc.eos_token_id}",
            "text_layer_norm_eps": tc.layer_norm_eps,
            "vision_layer_norm_eps": vc.layer_norm_eps,
            "image_size": vc.image_size,
            "patch_size": vc.patch_size,
            "projection_dim": cfg.projection_dim,
        },
        "texts": MODEL_TEXTS,
        "input_ids": ids,
        "text_embeds": rnd_list(text_embeds),
        "padding_max_diff": padding_max_diff,
        "open_clip_padding_max_diff": oc_padding_max_diff,
        "images": MODEL_IMAGES,
        "pixel_shape": list(pixel_values.shape),
        "pixel_values": rnd_list(pixel_values.flatten()),
        "image_embeds": rnd_list(image_embeds),
        "logit_scale": float(logit_scale),
        "logits_per_image": rnd_list(logits_per_image),
        "max_offdiag_cosine": {"text": rnd(max_tsim), "image": rnd(max_isim)},
    }


def make_models(tok: CLIPTokenizer) -> dict:
    specs = [
        # name, config factory, seed, preprocessor size
        ("tiny-quickgelu", config_tiny_quickgelu, 1234, 32),
        ("tiny-gelu", config_tiny_gelu, 5678, 48),
    ]
    summary = {}
    for base, make_cfg, seed, size in specs:
        torch.manual_seed(seed)
        cfg = make_cfg()
        model = CLIPModel(cfg)
        init_weights(model, seed)
        model.eval()
        variants = [(base, torch.float32, "float32")]
        variants.append((base + "-fp16", torch.float16, "float16") if base == "tiny-gelu"
                        else (base + "-bf16", torch.bfloat16, "bfloat16"))
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for name, dtype, dname in variants:
            model.to(torch.float32)
            model.load_state_dict(state)
            d = save_model(model, name, size, dtype)
            ref = compute_reference(d, tok, size, dname)
            write_json(d / "reference.json", ref)
            summary[name] = ref
            print(f"  {name}: padding_max_diff={ref['padding_max_diff']:.2e} "
                  f"oc_padding={ref['open_clip_padding_max_diff']:.2e} "
                  f"max cos text/image={ref['max_offdiag_cosine']}")
    # fp16/bf16 references should be close to (but not equal to) the fp32 ones
    for a, b in [("tiny-gelu", "tiny-gelu-fp16"), ("tiny-quickgelu", "tiny-quickgelu-bf16")]:
        da = np.array(summary[a]["text_embeds"]) - np.array(summary[b]["text_embeds"])
        print(f"  {a} vs {b}: max |text_embeds diff| = {np.abs(da).max():.3e}")
    return summary


# --------------------------------------------------------------------------------------
# G. whole-model gradients: transformers' CLIP loss backpropagated to every parameter
# --------------------------------------------------------------------------------------


def make_model_gradients(name: str) -> dict:
    """Loss (`CLIPModel(return_loss=True)`, the symmetric cross-entropy) on the reference's
    first 5 texts and 5 images, and the gradient of every parameter, in fp32 (float64 would
    hide nothing here: the tolerance is set by fp32 anyway). The token embedding's gradient is
    stored only for the rows the texts use (all others are zero)."""
    d = MODELS_DIR / name
    ref = json.loads((d / "reference.json").read_text())
    model = load_fp32(d)
    model.train(False)
    n = len(ref["images"])
    ids = ref["input_ids"][:n]
    width = max(len(i) for i in ids)
    pad = model.config.text_config.pad_token_id
    input_ids = torch.tensor([i + [pad] * (width - len(i)) for i in ids])
    attention_mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    pixel_values = torch.tensor(ref["pixel_values"], dtype=torch.float32).reshape(ref["pixel_shape"])
    out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                return_loss=True)
    out.loss.backward()
    used = sorted({t for i in ids for t in i})
    grads = {}
    for pname, param in model.named_parameters():
        g = param.grad
        if g is None:
            continue
        if pname == "text_model.embeddings.token_embedding.weight":
            grads[pname] = {"rows": used, "values": rnd_list(g[used].flatten())}
        else:
            grads[pname] = {"shape": list(g.shape), "values": rnd_list(g.flatten())}
    return {
        "model": name,
        "note": "CLIPModel(return_loss=True) in fp32, eager attention; texts padded with pad_token_id "
                "and masked; gradients of every parameter (token embedding: used rows only)",
        "texts": n,
        "loss": float(out.loss),
        "gradients": grads,
    }


# --------------------------------------------------------------------------------------
# F. contrastive loss (open_clip.loss.ClipLoss) + gradients, float64
# --------------------------------------------------------------------------------------


def rnd10(x: float) -> float:
    """Round to 10 significant digits (the loss fixtures' precision)."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    return float(f"{x:.10g}") if x != 0.0 else 0.0


def rnd10_list(a) -> list:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().tolist()
    elif isinstance(a, np.ndarray):
        a = a.astype(np.float64).tolist()
    if isinstance(a, list):
        return [rnd10_list(v) for v in a]
    return rnd10(a)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _loss_case_inputs(rng: np.random.Generator, n: int, d: int, kind: str):
    """(image_features, text_features) as float64 arrays, L2-normalised rows.

    "paired": text row i = normalize(image row i + noise) (noise norm ~1.5, cosine ~0.55),
    so matching pairs tend to be the most similar ones but the loss is far from saturated
    (a partially trained-looking batch).
    "random": independent random directions (an untrained batch: large loss).
    "near_identical": every row = one shared direction + 1e-3 noise (hard negatives:
    all logits almost equal, loss close to ln(n)).
    """
    if kind == "paired":
        img = _unit_rows(rng.standard_normal((n, d)))
        txt = _unit_rows(img + 1.5 * rng.standard_normal((n, d)) / math.sqrt(d))
    elif kind == "random":
        img = _unit_rows(rng.standard_normal((n, d)))
        txt = _unit_rows(rng.standard_normal((n, d)))
    elif kind == "near_identical":
        base = rng.standard_normal(d)
        img = _unit_rows(base[None, :] + 1e-3 * rng.standard_normal((n, d)))
        txt = _unit_rows(base[None, :] + 1e-3 * rng.standard_normal((n, d)))
    else:
        raise ValueError(kind)
    return img, txt


def _rounded_loss_inputs(n: int, d: int, kind: str, seed: int):
    """A case's features, rounded as the JSON stores them: the rounded values ARE the inputs,
    so everything computed from them is computed from exactly the numbers in the file."""
    img_np, txt_np = _loss_case_inputs(np.random.default_rng(seed), n, d, kind)
    return (torch.tensor(rnd10_list(img_np), dtype=torch.float64),
            torch.tensor(rnd10_list(txt_np), dtype=torch.float64))


LOSS_CASES = [
    # name, batch, dim, kind, raw logit_scale s (ClipLoss gets exp(s)), seed
    ("batch1_dim4", 1, 4, "paired", math.log(1 / 0.07), 101),
    ("batch2_dim3_s0", 2, 3, "paired", 0.0, 102),
    ("batch4_dim8_s2.9", 4, 8, "paired", 2.9, 103),
    ("batch8_dim16_init", 8, 16, "paired", math.log(1 / 0.07), 104),
    ("batch8_dim16_clamp100", 8, 16, "paired", math.log(100.0), 105),
    ("batch6_dim8_near_identical", 6, 8, "near_identical", math.log(100.0), 106),
    ("batch32_dim12_random", 32, 12, "random", math.log(1 / 0.07), 107),
]


def _manual_clip_loss(img: torch.Tensor, txt: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE written out by hand: (CE(L, arange) + CE(L^T, arange)) / 2."""
    logits = s.exp() * img @ txt.T
    diag = logits.diagonal()  # the target logits (labels = arange(n))
    ce_rows = (torch.logsumexp(logits, dim=1) - diag).mean()  # CE(L, arange)
    ce_cols = (torch.logsumexp(logits, dim=0) - diag).mean()  # CE(L.T, arange)
    return (ce_rows + ce_cols) / 2


def _loss_case(name: str, img_in, txt_in, s_in: float, loss, grads, bias=None) -> dict:
    """One case of cases.json / siglip_cases.json: the exact inputs, the loss and its gradients
    (image features, text features, logit scale), plus SigLIP's (logit_bias, its gradient)."""
    n, d = img_in.shape
    case = {
        "name": name,
        "batch": int(n),
        "dim": int(d),
        "image_features": rnd10_list(img_in),
        "text_features": rnd10_list(txt_in),
        "logit_scale": s_in,
    }
    if bias is not None:
        case["logit_bias"] = bias[0]
    g_img, g_txt, g_s = grads
    case.update({
        "loss": rnd10(loss),
        "grad_image_features": rnd10_list(g_img),
        "grad_text_features": rnd10_list(g_txt),
        "grad_logit_scale": rnd10(g_s),
    })
    if bias is not None:
        case["grad_logit_bias"] = rnd10(bias[1])
    return case


def _analytic_grads(img: torch.Tensor, txt: torch.Tensor, s: torch.Tensor):
    """Closed-form gradients of the symmetric InfoNCE, to cross-check autograd.
    G = dloss/dlogits = (softmax_rows(L) - I + softmax_cols(L) - I) / (2n)."""
    n = img.shape[0]
    scale = s.exp()
    logits = scale * img @ txt.T
    eye = torch.eye(n, dtype=img.dtype)
    g = (torch.softmax(logits, dim=1) - eye + torch.softmax(logits, dim=0) - eye) / (2 * n)
    return scale * g @ txt, scale * g.T @ img, (g * logits).sum()


def make_loss_cases() -> dict:
    from open_clip.loss import ClipLoss

    cases = []
    for name, n, d, kind, s_raw, seed in LOSS_CASES:
        img_in, txt_in = _rounded_loss_inputs(n, d, kind, seed)
        s_in = rnd10(s_raw)
        for x in (img_in, txt_in):
            assert x.shape == (n, d)
            assert float((x.norm(dim=-1) - 1).abs().max()) < 1e-9

        img = img_in.clone().requires_grad_(True)
        txt = txt_in.clone().requires_grad_(True)
        s = torch.tensor(s_in, dtype=torch.float64, requires_grad=True)
        loss = ClipLoss()(img, txt, s.exp())  # single process: world_size=1, no local loss
        assert loss.dtype == torch.float64
        loss.backward()
        g_img, g_txt, g_s = img.grad.clone(), txt.grad.clone(), s.grad.clone()

        # Cross-checks: hand-written loss (value + autograd) and closed-form gradients.
        img2, txt2 = img_in.clone().requires_grad_(True), txt_in.clone().requires_grad_(True)
        s2 = torch.tensor(s_in, dtype=torch.float64, requires_grad=True)
        manual = _manual_clip_loss(img2, txt2, s2)
        assert abs(float(manual) - float(loss)) < 1e-12, (name, float(manual), float(loss))
        manual.backward()
        with torch.no_grad():
            a_img, a_txt, a_s = _analytic_grads(img_in, txt_in, torch.tensor(s_in, dtype=torch.float64))
        for ref, other in ((g_img, img2.grad), (g_txt, txt2.grad), (g_s, s2.grad),
                           (g_img, a_img), (g_txt, a_txt), (g_s, a_s)):
            assert float((ref - other).abs().max()) < 1e-12, name
        if n == 1:  # a single pair: both softmaxes are exactly 1, loss and gradients 0
            assert float(loss) == 0.0 and not g_img.any() and not g_txt.any() and float(g_s) == 0.0
        else:
            assert float(loss) > 0.0 and g_img.abs().max() > 1e-6 and abs(float(g_s)) > 1e-9, name

        cases.append(_loss_case(name, img_in, txt_in, s_in, loss, (g_img, g_txt, g_s)))
        print(f"  {name}: loss={float(loss):.10g} dloss/ds={float(g_s):.10g}")

    meta = {
        "note": (
            "Reference values of open_clip's contrastive loss, open_clip.loss.ClipLoss() "
            f"(open_clip_torch {open_clip.__version__}; single process: world_size=1, no "
            "local_loss / gather), computed in float64. loss = (CE(logits, arange(n)) + "
            "CE(logits.T, arange(n))) / 2 with logits = exp(logit_scale) * image_features @ "
            "text_features.T (image rows vs text columns; mean-reduced cross entropy); asserted "
            "equal to this formula written out by hand to 1e-12. logit_scale is the raw "
            "log-parameter s (ClipLoss receives exp(s)); 2.659260037 = ln(1/0.07) (CLIP's init), "
            "4.605170186 = ln(100) (open_clip's clamp; exp of the rounded value is 100 to ~1e-9 "
            "relative). image_features / text_features [batch, dim] are L2-normalised rows "
            "(to ~1e-10, after rounding) and are the exact inputs: grad_image_features / "
            "grad_text_features are d(loss)/d(those matrices) as leaf tensors (no "
            "re-normalisation inside the loss), grad_logit_scale = d(loss)/ds. Gradients from "
            "torch autograd, cross-checked against autograd of the hand-written loss and the "
            "closed form G = (softmax_rows(L) - I + softmax_cols(L) - I) / (2n), dimg = "
            "exp(s) G @ txt, dtxt = exp(s) G.T @ img, ds = sum(G * L) (all to 1e-12). Every "
            "float (inputs included) is rounded to 10 significant digits, and all outputs are "
            "computed from the rounded inputs. batch 1: loss and gradients are exactly 0."
        ),
        "cases": cases,
    }
    write_json(LOSS_DIR / "cases.json", meta, indent=1)
    return meta


SIGLIP_LOSS_CASES = [
    # name, batch, dim, kind, raw logit_scale s (SigLipLoss gets exp(s)), logit_bias b, seed
    ("siglip_batch1_dim4_init", 1, 4, "paired", math.log(10.0), -10.0, 201),
    ("siglip_batch4_dim8", 4, 8, "paired", 2.3, -2.5, 202),
    ("siglip_batch8_dim16_init", 8, 16, "paired", math.log(10.0), -10.0, 203),
    ("siglip_batch6_dim8_near_identical", 6, 8, "near_identical", math.log(100.0), -5.0, 204),
    ("siglip_batch32_dim12_random", 32, 12, "random", 1.0, 0.5, 205),
]


def make_siglip_loss_cases() -> dict:
    """open_clip's sigmoid loss (SigLipLoss, single process) and its gradients, as loss/cases.json
    for the contrastive loss."""
    from open_clip.loss import SigLipLoss

    cases = []
    for name, n, d, kind, s_raw, b_raw, seed in SIGLIP_LOSS_CASES:
        img_in, txt_in = _rounded_loss_inputs(n, d, kind, seed)
        s_in, b_in = rnd10(s_raw), rnd10(b_raw)
        img = img_in.clone().requires_grad_(True)
        txt = txt_in.clone().requires_grad_(True)
        s = torch.tensor(s_in, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(b_in, dtype=torch.float64, requires_grad=True)
        loss = SigLipLoss()(img, txt, s.exp(), b)
        loss.backward()
        # Cross-check: -sum(logsigmoid(labels * logits)) / n, labels +1 on the diagonal, -1 off it.
        with torch.no_grad():
            logits = math.exp(s_in) * img_in @ txt_in.T + b_in
            labels = 2 * torch.eye(n, dtype=torch.float64) - 1
            manual = -torch.nn.functional.logsigmoid(labels * logits).sum() / n
        assert abs(float(manual) - float(loss)) < 1e-12, (name, float(manual), float(loss))
        cases.append(_loss_case(name, img_in, txt_in, s_in, loss, (img.grad, txt.grad, s.grad),
                                bias=(b_in, b.grad)))
        print(f"  {name}: loss={float(loss):.10g} dloss/ds={float(s.grad):.10g} dloss/db={float(b.grad):.10g}")
    meta = {
        "note": (
            f"Reference values of open_clip's sigmoid loss, open_clip.loss.SigLipLoss() (open_clip_torch "
            f"{open_clip.__version__}; single process), in float64: loss = -sum(logsigmoid(labels * "
            "logits)) / n with logits = exp(logit_scale) * image_features @ text_features.T + "
            "logit_bias and labels +1 on the diagonal, -1 elsewhere (asserted equal to this "
            "formula to 1e-12). Inputs and rounding as in cases.json; grad_logit_bias = "
            "d(loss)/d(logit_bias)."
        ),
        "cases": cases,
    }
    write_json(LOSS_DIR / "siglip_cases.json", meta, indent=1)
    return meta


# --------------------------------------------------------------------------------------
# E. README
# --------------------------------------------------------------------------------------

README = """# webclip test fixtures

Generated by `scripts/make_fixtures.py` (run `python3 scripts/make_fixtures.py` from the repo
root; it is deterministic, fully offline, and wipes/regenerates `tokenizer/`, `models/`,
`images/`, `preprocess/` and this README). Python packages: `scripts/requirements.txt`.

Versions used for this generation:

{versions}

## tokenizer/

* `tokenizer.json` - the real OpenAI CLIP BPE tokenizer (49408 tokens; 49406 `<|startoftext|>`,
  49407 `<|endoftext|>`, also used as pad/unk) in Hugging Face `tokenizers` format, built from the
  BPE file shipped inside open_clip (`bpe_simple_vocab_16e6.txt.gz`) via vocab.json + merges.txt and
  `CLIPTokenizer.from_pretrained`. Saved compact (not pretty-printed). No truncation/padding is
  configured in the file: callers truncate to 77 themselves.
* `tokenizer_config.json` - lets `AutoTokenizer.from_pretrained("tests/fixtures/tokenizer")` work.
* `cases.json` - `{{"note", "context_length": 77, "cases": [{{"text", "open_clip_ids", "hf_ids"}}]}}`.
  `open_clip_ids`: `open_clip.tokenize(text)` with the trailing zero padding stripped (starts 49406,
  ends 49407, at most 77 long; truncated ones are exactly 77 with 49407 last). `hf_ids`:
  `tokenizer(text, truncation=True, max_length=77)["input_ids"]` = `tokenizers` crate with
  truncation(77). They differ where open_clip's ftfy/html-unescape cleaning changes the text
  (curly quotes, ligatures, full-width, HTML entities, mojibake) and on literal special tokens.

## images/

Synthetic PNGs (seeded numpy noise + gradients/shapes): {images}.

## preprocess/

* `cases.json` - `{{"note", "mean", "std", "images": [{{name, mode, width, height, note}}],
  "cases": [{{"image", "size", "shape": [3,S,S], "file", "resized_wh", "crop_top_left",
  "crop_differs_from_floor", "open_clip_native_order_max_diff"}}]}}`.
  `open_clip_native_order_max_diff` is informational: open_clip/OpenAI convert to RGB *after*
  resize+crop, which differs from this reference for RGBA (PIL premultiplies alpha when resizing)
  and I;16 (Pillow clips to 255).
* `<image>_<S>.f32` - raw little-endian float32, C order, shape [3,S,S]: the OpenAI CLIP reference
  transform of `images/<image>.png`: decode to 8-bit RGB (`PIL convert("RGB")`, which drops alpha
  without compositing; 16-bit greyscale is scaled with round(v/257) instead of Pillow's clipping),
  torchvision `Resize(S, BICUBIC)` on the PIL image (PIL bicubic, a=-0.5, antialiased, shortest side
  -> S, long side `int(S*long/short)`; no-op if the shortest side already is S), `CenterCrop(S)`
  (offset `int(round((L-S)/2))`, Python's round-half-to-even; note HF's CLIPImageProcessor floors
  instead, which shifts the crop by one pixel for e.g. `palette_32`, and for `landscape`/`rgba` at
  48 in the tiny-gelu references: up to 2.6 after normalisation), `ToTensor()` (/255),
  `Normalize(mean, std)` in float32. This equals `open_clip.image_transform(S, is_train=False)` on
  the RGB image and is asserted equal to plain torchvision.
  Every image at S=32, plus `large.png` and `landscape.png` at S=224.
* `transformers_cases.json` + `<image>_<S>_transformers.f32` - transformers' `CLIPImageProcessor`
  (its PIL backend, `CLIPImageProcessorPil`; the reference for Hugging Face directories) on
  images whose crop margin is odd: its crop offset is floored (its default torchvision backend
  floors too, with a resize up to one 8-bit level from PIL's). One of them, `images/tall.png`
  (a 60x200 strip of `large.png`, written by this step), shrinks its height by more than twice
  as many pixels as its width, so Pillow 13 resizes it vertical pass first (horizontal first
  would be off by up to 4 levels). `python3 scripts/make_fixtures.py transformers-preprocess`
  regenerates only these.

## models/<name>/

Tiny random-init Hugging Face `CLIPModel` checkpoints (not trained; LayerNorm weights/biases are
perturbed away from 1/0, linear weights use std 2/sqrt(fan_in), the patch conv 3/sqrt(fan_in), embeddings 0.5,
`logit_scale` = 2.9):

| name | dtype on disk | text act / vision act | text eos (pooling) | LN eps | text h/heads/layers/ffn | vision img/patch/h/heads/layers/ffn | proj |
|---|---|---|---|---|---|---|---|
| tiny-quickgelu | F32 | quick_gelu / quick_gelu | 2 (argmax of ids) | 1e-5 | 16/2/2/64 | 32/8/32/4/2/64 | 16 |
| tiny-quickgelu-bf16 | BF16 | same weights as tiny-quickgelu, rounded to bf16 | | | | | |
| tiny-gelu | F32 | gelu_new (tanh) / gelu (erf) | 49407 (first eos) | 1e-6 | 24/3/3/48 | 48/16/24/2/2/96 | 12 |
| tiny-gelu-fp16 | F16 | same weights as tiny-gelu, rounded to fp16 | | | | | |

Each directory holds `config.json`, `model.safetensors`, `preprocessor_config.json`
(CLIPImageProcessor-style, shortest_edge = crop = image size, OpenAI mean/std, resample 3 = bicubic),
`tokenizer.json` (relative symlink to `../../tokenizer/tokenizer.json`) and `reference.json`:

* `texts`, `input_ids` (ragged, unpadded, truncated to 77 with 49407 last; equal to open_clip's ids)
* `text_embeds` - L2-normalised `get_text_features`, one text at a time, unpadded
* `padding_max_diff` - max |diff| vs. one HF-padded batch with attention_mask (asserted < 1e-5);
  `open_clip_padding_max_diff` - same vs. zero-padding to 77 without a mask
* `images` (names in `images/`), `pixel_shape` [N,3,S,S], `pixel_values` (flat, C order; the
  directory's own `CLIPImageProcessor` (PIL backend), from its `preprocessor_config.json`, on
  the 8-bit RGB images), `image_embeds` (L2-normalised, from exactly those pixel values);
  `python3 scripts/make_fixtures.py model-images` recomputes only this image side
* `logit_scale` (raw parameter, before exp) and `logits_per_image` = exp(logit_scale) *
  image_embeds @ text_embeds.T  ([N_images, N_texts])
* `config_summary`, `dtype_on_disk`, `max_offdiag_cosine` (sanity: inputs are distinguishable)

All reference numbers are computed in fp32 (`from_pretrained(dir, dtype=float32)`, so the fp16/bf16
checkpoints are upcast exactly as the Rust loader does), eager attention, one thread. Floats are
rounded to 7 significant digits (|x| < 1) or 7 decimals (|x| >= 1).

## models/tiny-open-clip*, models/tiny-siglip*, models/tiny-siglip2

* `tiny-open-clip` (+ `-fp16`): open_clip's hub layout (`open_clip_config.json`,
  `open_clip_model.safetensors`, `tokenizer.json`); `reference.json` from
  `open_clip.create_model_from_pretrained('local-dir:...')`, its tokenizer and its transform
  (ImageNet mean/std, torchvision's crop rounding) on the image files.
* `tiny-siglip` (+ `-fp16`, which shares its tokenizer files through symlinks): transformers'
  `SiglipModel` (`config.json` with SigLIP's defaults, `logit_scale` 2.3, `logit_bias` -2.5),
  `spiece.model` (a unigram SentencePiece model trained on captions, laid out like SigLIP's:
  `<pad>` 0, `</s>` 1, `<unk>` 2), the `tokenizer.json` converted from it (SiglipTokenizer's
  clean-up as normalizers, `</s>` appended; its ids asserted equal to `SiglipTokenizer`'s) and a
  `tokenizer_config.json` whose `pad_token` is `</s>`. `preprocessor_config.json`:
  `SiglipImageProcessor`, an exact 32x32 resize, bicubic (fp32) or bilinear (fp16), mean/std 0.5.
  `reference.json`: `input_ids` padded to the 16-token context (`padding="max_length"`), text
  embeddings without an attention mask (as SigLIP was trained; `masked_text_max_diff` shows what a
  mask would change), `pixel_values` from `SiglipImageProcessorPil` on the image files (asserted
  equal to PIL's resize, whose pass order since Pillow 13 depends on the shape), image embeddings,
  `logit_scale`, `logit_bias`, `logits_per_image` and `probs_per_image` (sigmoid).
* `tiny-siglip2`: SigLIP 2 at a fixed resolution as transformers 5 has it: `SiglipModel` with
  the tokenizer `Siglip2Tokenizer` writes (`tokenizer.json`: a Gemma-style byte-fallback BPE
  trained on captions, with its lower case; `tokenizer_config.json` naming the class, whose
  padding goes on the left), a bilinear 36x36 resize into patches of 8 (the last 4 pixels left
  out, as SigLIP so400m's 384 in patches of 14); `reference.json` as for `tiny-siglip`, its
  ids from `Siglip2Tokenizer.from_pretrained(dir)` with `padding="max_length"`.

## loss/

* `cases.json` - `{{"note", "cases": [{{"name", "batch", "dim", "image_features", "text_features",
  "logit_scale", "loss", "grad_image_features", "grad_text_features", "grad_logit_scale"}}]}}`:
  reference values of open_clip's contrastive loss `open_clip.loss.ClipLoss()` (single process, no
  local-loss/gather options), computed in float64. `loss = (CE(L, arange(n)) + CE(L.T, arange(n))) / 2`
  with `L = exp(logit_scale) * image_features @ text_features.T` (mean-reduced cross entropy;
  asserted equal to the hand-written formula to 1e-12). `logit_scale` is the raw log-parameter `s`
  (ClipLoss receives `exp(s)`). `image_features` / `text_features` are `[batch, dim]`, rows already
  L2-normalised; the `grad_*` entries are d(loss)/d(those matrices as given, no re-normalisation)
  and d(loss)/ds, from torch autograd (cross-checked against the closed form to 1e-12).
  Every float, inputs included, is rounded to 10 significant digits, and the outputs are computed
  from the rounded inputs. Cases: {loss_cases}.
* `siglip_cases.json` - the same for open_clip's sigmoid loss `open_clip.loss.SigLipLoss()`:
  `loss = -sum(logsigmoid(labels * logits)) / n`, `logits = exp(logit_scale) * image_features @
  text_features.T + logit_bias`, labels +1 on the diagonal and -1 elsewhere, with
  `grad_logit_bias` besides; 5 cases (the paper's initial scale 10 and bias -10, hard negatives,
  an untrained batch of 32).
"""


def write_readme(images: list[dict], loss: dict) -> None:
    v = versions()
    vs = "\n".join(f"- {k} {val}" for k, val in v.items())
    ims = ", ".join(f"`{i['name']}` ({i['note']})" for i in images)
    lcs = "; ".join(
        f"`{name}` ({kind.replace('_', '-')}, batch {n}, dim {d}, s = {rnd10(s):.10g})"
        for name, n, d, kind, s, _ in LOSS_CASES
    )
    assert [c["name"] for c in loss["cases"]] == [c[0] for c in LOSS_CASES]
    (FIX / "README.md").write_text(README.format(versions=vs, images=ims, loss_cases=lcs), encoding="utf-8")


# --------------------------------------------------------------------------------------


def make_gradients() -> None:
    print("G. whole-model gradients")
    for name in ["tiny-quickgelu", "tiny-gelu"]:
        g = make_model_gradients(name)
        write_json(MODELS_DIR / name / "gradients.json", g)
        print(f"  {name}: loss {g['loss']:.6f}, {len(g['gradients'])} parameters")


# Cases whose crop margin is odd, so that transformers' floored offset and torchvision's
# rounded one differ by a pixel (one per axis, and one at the demo's size).
HF_PREPROCESS_JOBS = [("palette.png", 32), ("large.png", 31), ("portrait.png", 27), ("tall.png", 27)]
# tall.png: a 60x200 strip of large.png. Resized to 27x90, its height shrinks by more than twice
# as many pixels as its width, so Pillow (since 13) runs the vertical pass first.
TALL_STRIP = (100, 0, 160, 200)


def make_hf_preprocess_cases() -> None:
    """H. transformers' CLIPImageProcessor (the reference for Hugging Face directories; its PIL
    backend, whose resize is PIL's) on images whose crop margin is odd: it floors the crop
    offset where torchvision rounds. (Its default torchvision backend floors too, and its resize
    differs from PIL's by up to one 8-bit level.)"""
    from transformers import CLIPImageProcessorPil

    Image.open(IMG_DIR / "large.png").crop(TALL_STRIP).save(IMG_DIR / "tall.png")
    cases = []
    for name, size in HF_PREPROCESS_JOBS:
        processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        rgb = to_rgb8(Image.open(IMG_DIR / name))
        x = processor(images=rgb, return_tensors="np")["pixel_values"][0].astype("<f4")
        fname = f"{Path(name).stem}_{size}_transformers.f32"
        x.tofile(PRE_DIR / fname)
        w0, h0 = rgb.size
        new_long = int(size * max(w0, h0) / min(w0, h0))
        rw, rh = (size, new_long) if w0 <= h0 else (new_long, size)
        cases.append({
            "image": name,
            "size": size,
            "file": fname,
            "resized_wh": [rw, rh],
            "crop_top_left_floor": [(rh - size) // 2, (rw - size) // 2],
            "crop_top_left_torchvision": [int(round((rh - size) / 2.0)), int(round((rw - size) / 2.0))],
        })
    write_json(PRE_DIR / "transformers_cases.json", {
        "note": (
            "transformers CLIPImageProcessorPil (the PIL backend of CLIPImageProcessor) with "
            "shortest_edge = crop = size; raw little-endian float32 [3,S,S]. Its crop offset is "
            "floored (the torchvision backend floors too)."
        ),
        "transformers": transformers.__version__,
        "cases": cases,
    }, indent=1)
    print(f"  {len(cases)} transformers preprocessing cases")


# --------------------------------------------------------------------------------------
# I. open_clip's hub layout: open_clip_config.json + open_clip_model.safetensors
# --------------------------------------------------------------------------------------

OPEN_CLIP_MODEL_CFG = dict(
    embed_dim=12,
    quick_gelu=False,  # exact GELU, open_clip's default
    vision_cfg=dict(image_size=32, layers=2, width=32, patch_size=8, head_width=8, mlp_ratio=2.0),
    text_cfg=dict(context_length=CONTEXT_LENGTH, vocab_size=VOCAB_SIZE, width=16, heads=2, layers=2,
                  mlp_ratio=3.0),
)
# Not OpenAI's constants, so that a reader ignoring preprocess_cfg shows.
OPEN_CLIP_PREPROCESS_CFG = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                                interpolation="bicubic", resize_mode="shortest")
# Images whose crop margin at 32 px is odd (torchvision rounds the offset, transformers floors).
OPEN_CLIP_IMAGES = ["palette.png", "landscape.png", "portrait.png", "rgba.png"]


def init_open_clip_weights(model: torch.nn.Module, seed: int) -> None:
    """As init_weights, for open_clip's parameter names: LayerNorms perturbed, linear and conv
    weights with gain, embeddings N(0, 0.5^2), projections N(0, 1/fan_in), logit_scale 2.7."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name == "logit_scale":
                p.fill_(2.7)
            elif ".ln_" in "." + name:  # ln_pre, ln_1, ln_2, ln_post, ln_final
                p.copy_(1.0 + 0.1 * n if name.endswith("weight") else 0.1 * n)
            elif name.endswith("bias"):
                p.copy_(0.1 * n)
            elif name.endswith("embedding") or "token_embedding" in name:
                p.copy_(0.5 * n)
            elif name in ("visual.proj", "text_projection"):  # [in, out]
                p.copy_(n / math.sqrt(p.shape[0]))
            else:  # [out, in] linear / in_proj, or the patch conv
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_((3.0 if p.dim() == 4 else 2.0) * n / math.sqrt(fan_in))


def make_open_clip_models() -> None:
    print("I. open_clip models")
    from safetensors.torch import save_file

    torch.manual_seed(4321)
    model = open_clip.CLIP(**OPEN_CLIP_MODEL_CFG)
    init_open_clip_weights(model, 4321)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, dtype in [("tiny-open-clip", torch.float32), ("tiny-open-clip-fp16", torch.float16)]:
        d = MODELS_DIR / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        write_json(d / "open_clip_config.json",
                   {"model_cfg": OPEN_CLIP_MODEL_CFG, "preprocess_cfg": OPEN_CLIP_PREPROCESS_CFG}, indent=2)
        tensors = {k: v.to(dtype).contiguous() for k, v in state.items()}
        save_file(tensors, str(d / "open_clip_model.safetensors"))
        (d / "open_clip_model.safetensors").chmod(0o644)
        os.symlink("../../tokenizer/tokenizer.json", d / "tokenizer.json")

        # The reference: open_clip itself loading the directory as a hub model.
        ref_model, preprocess = open_clip.create_model_from_pretrained(f"local-dir:{d}", device="cpu")
        ref_model = ref_model.float().eval()
        tokenizer = open_clip.get_tokenizer(f"local-dir:{d}")
        tokens = tokenizer(MODEL_TEXTS)
        ids = [[int(t) for t in row[: int(row.argmax()) + 1]] for row in tokens]
        images = [to_rgb8(Image.open(IMG_DIR / n)) for n in OPEN_CLIP_IMAGES]
        pixel_values = torch.stack([preprocess(im) for im in images])
        with torch.no_grad():
            text_embeds = ref_model.encode_text(tokens, normalize=True)
            image_embeds = ref_model.encode_image(pixel_values, normalize=True)
            logit_scale = ref_model.logit_scale.detach().float()
            logits = logit_scale.exp() * image_embeds @ text_embeds.T
        tsim, isim = text_embeds @ text_embeds.T, image_embeds @ image_embeds.T
        off_t = ~torch.eye(len(MODEL_TEXTS), dtype=torch.bool)
        off_i = ~torch.eye(len(images), dtype=torch.bool)
        assert float(tsim[off_t].max()) < 0.98 and float(isim[off_i].max()) < 0.98
        write_json(d / "reference.json", {
            "model": name,
            "dtype_on_disk": str(dtype).replace("torch.", ""),
            "note": "open_clip.create_model_from_pretrained('local-dir:...') and its tokenizer and "
                    "preprocess, fp32, torch.no_grad()",
            "texts": MODEL_TEXTS,
            "input_ids": ids,
            "text_embeds": rnd_list(text_embeds),
            "images": OPEN_CLIP_IMAGES,
            "pixel_shape": list(pixel_values.shape),
            "pixel_values": rnd_list(pixel_values.flatten()),
            "image_embeds": rnd_list(image_embeds),
            "logit_scale": float(logit_scale),
            "logits_per_image": rnd_list(logits),
        })
        print(f"  {name}: {len(state)} tensors, max cos text {float(tsim[off_t].max()):.3f}, "
              f"image {float(isim[off_i].max()):.3f}")

# --------------------------------------------------------------------------------------
# J. SigLIP: transformers' SiglipModel, a SentencePiece unigram tokenizer, SiglipImageProcessor
# --------------------------------------------------------------------------------------

SIGLIP_CONTEXT = 16
# Punctuation, case and runs of spaces, which SigLIP's tokenizer removes or folds, and characters
# SentencePiece's nmt_nfkc map rewrites (full width, ligatures, no-break spaces).
SIGLIP_TEXTS = MODEL_TEXTS + [
    "Hello,   World... (a RED circle!)", "a photo of a photo of a cat",
    "Ｆｕｌｌｗｉｄｔｈ ＣＡＴ", "café\u00a0naïve\tdog\n", "!!!", "a ▁photo▁ of  a ﬁne cat ½",
]
# Images of several aspect ratios: SigLIP resizes to the exact size, without a crop.
SIGLIP_IMAGES = ["palette.png", "landscape.png", "portrait.png", "rgba.png"]


def siglip_corpus() -> list[str]:
    """Captions to train the tiny SentencePiece vocabulary on."""
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "grey"]
    shapes = ["circle", "square", "triangle", "star", "cross", "ring", "cat", "dog", "photo"]
    places = ["on the left", "on the right", "at the top", "at the bottom", "in the middle"]
    lines = [f"a {size} {c} {s} {p}" for size in ["small", "big", "tiny"] for c in colours
             for s in shapes for p in places]
    return lines + [t.lower() for t in MODEL_TEXTS if t]


def build_siglip_tokenizer(d: Path) -> tuple[Path, int]:
    """spiece.model (a unigram SentencePiece model laid out like SigLIP's: <pad> 0, </s> 1,
    <unk> 2, nmt_nfkc normalization) and the tokenizer.json a conversion of it gives, with the
    clean-up of transformers' SiglipTokenizer (lower case, ASCII punctuation removed, runs of
    whitespace folded) as normalizers and `</s>` appended."""
    import io
    import sentencepiece as spm
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from sentencepiece import sentencepiece_model_pb2

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(siglip_corpus()), model_writer=model, vocab_size=160,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0, normalization_rule_name="nmt_nfkc", hard_vocab_limit=False,
        num_threads=1, minloglevel=2)
    spiece = d / "spiece.model"
    spiece.write_bytes(model.getvalue())
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    vocab = [(p.piece, p.score) for p in proto.pieces]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    punctuation = "".join("\\" + c for c in __import__("string").punctuation)
    tok.normalizer = normalizers.Sequence([
        normalizers.Lowercase(),
        normalizers.Replace(Regex(f"[{punctuation}]"), ""),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(),
        normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
        # SentencePiece's remove_extra_whitespaces, after the map.
        normalizers.Replace(Regex(" {2,}"), " "),
        normalizers.Strip(),
    ])
    tok.normalizer = normalizers.Sequence([normalizers.Replace("▁", " "), tok.normalizer])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.save(str(d / "tokenizer.json"))
    # SigLIP pads with </s> (not <pad>): only tokenizer_config.json says so.
    write_json(d / "tokenizer_config.json", {
        "tokenizer_class": "SiglipTokenizer", "model_max_length": SIGLIP_CONTEXT,
        "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>", "do_lower_case": True,
    }, indent=2)
    return spiece, len(vocab)


def init_siglip_weights(model: torch.nn.Module, seed: int) -> None:
    """As init_weights (LayerNorms perturbed, gains on linear and conv weights), with a
    non-default logit_scale and logit_bias."""
    g = torch.Generator().manual_seed(seed)
    ln_params = {f"{n}.{w}" for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)
                 for w in ("weight", "bias")}
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name == "logit_scale":
                p.fill_(2.3)
            elif name == "logit_bias":
                p.fill_(-2.5)
            elif name in ln_params:
                p.copy_(1.0 + 0.1 * n if name.endswith("weight") else 0.1 * n)
            elif name.endswith("bias"):
                p.copy_(0.1 * n)
            elif "embedding" in name and p.dim() != 4 or name.endswith("probe"):
                p.copy_(0.5 * n)
            else:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_((3.0 if p.dim() == 4 else 2.0) * n / math.sqrt(fan_in))


def siglip_reference(d: Path, ids: list, attention_mask: list, resample: int, note: str):
    """The reference of a SigLIP directory: SiglipImageProcessorPil's pixels of SIGLIP_IMAGES
    (asserted equal to PIL's resize), SiglipModel's embeddings of `ids` without an attention
    mask (as SigLIP was trained and its ONNX exports run; the last position pooled), logits and
    sigmoid probabilities."""
    from transformers import SiglipImageProcessorPil, SiglipModel

    processor = SiglipImageProcessorPil.from_pretrained(str(d))
    images = [to_rgb8(Image.open(IMG_DIR / n)) for n in SIGLIP_IMAGES]
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"].float()
    # The processor is PIL's resize to the exact size, then (x / 255 - 0.5) / 0.5.
    side = pixel_values.shape[-1]
    direct = torch.stack([
        torch.from_numpy(np.asarray(im.resize((side, side), resample), dtype=np.float32) / 255.0)
        .permute(2, 0, 1) for im in images])
    assert float(((direct - 0.5) / 0.5 - pixel_values).abs().max()) < 1e-5

    ref = SiglipModel.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager").eval()
    pooled = lambda out: out.pooler_output if hasattr(out, "pooler_output") else out
    with torch.no_grad():
        input_ids = torch.tensor(ids)
        text_embeds = normalize(pooled(ref.get_text_features(input_ids=input_ids)))
        masked = normalize(pooled(ref.get_text_features(
            input_ids=input_ids, attention_mask=torch.tensor(attention_mask))))
        image_embeds = normalize(pooled(ref.get_image_features(pixel_values=pixel_values)))
        logits = ref(input_ids=input_ids, pixel_values=pixel_values).logits_per_image
        manual = image_embeds @ text_embeds.T * ref.logit_scale.exp() + ref.logit_bias
        assert torch.allclose(logits, manual, atol=1e-4)
    tsim, isim = text_embeds @ text_embeds.T, image_embeds @ image_embeds.T
    off_t = ~torch.eye(len(ids), dtype=torch.bool)
    off_i = ~torch.eye(len(images), dtype=torch.bool)
    assert float(isim[off_i].max()) < 0.98
    mask_diff = float((masked - text_embeds).abs().max())
    return {
        "note": note,
        "texts": SIGLIP_TEXTS,
        "input_ids": ids,
        "text_embeds": rnd_list(text_embeds),
        "masked_text_max_diff": mask_diff,
        "images": SIGLIP_IMAGES,
        "resample": resample,
        "pixel_shape": list(pixel_values.shape),
        "pixel_values": rnd_list(pixel_values.flatten()),
        "image_embeds": rnd_list(image_embeds),
        "logit_scale": float(ref.logit_scale),
        "logit_bias": float(ref.logit_bias),
        "logits_per_image": rnd_list(logits),
        "probs_per_image": rnd_list(torch.sigmoid(logits)),
    }, (f"max cos text {float(tsim[off_t].max()):.3f}, image {float(isim[off_i].max()):.3f}, "
        f"a mask would change text by {mask_diff:.3f}")


def make_siglip2_model() -> None:
    """tiny-siglip2: SigLIP 2 at a fixed resolution as transformers 5 has it: SiglipModel with
    a Gemma-style tokenizer (Siglip2Tokenizer: byte-fallback BPE, lower case, <bos>/<eos>,
    padding on the left), a bilinear resize, a patch grid that does not tile the image."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import SiglipConfig, SiglipModel
    from transformers.models.siglip2.tokenization_siglip2 import Siglip2Tokenizer

    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous")
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                  special_tokens=special + [f"<0x{i:02X}>" for i in range(256)])
    bpe.train_from_iterator(siglip_corpus(), trainer)
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    d = MODELS_DIR / "tiny-siglip2"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    Siglip2Tokenizer(vocab=model_json["vocab"], merges=merges).save_pretrained(str(d))
    tokenizer = Siglip2Tokenizer.from_pretrained(str(d))
    assert tokenizer.padding_side == "left"
    batch = tokenizer(SIGLIP_TEXTS, padding="max_length", max_length=SIGLIP_CONTEXT, truncation=True)
    ids = batch["input_ids"]
    assert all(len(i) == SIGLIP_CONTEXT for i in ids) and ids[1][0] == 0, ids[1]

    config = SiglipConfig(
        text_config=dict(vocab_size=len(model_json["vocab"]), hidden_size=32, intermediate_size=64,
                         num_attention_heads=4, num_hidden_layers=2,
                         max_position_embeddings=SIGLIP_CONTEXT, pad_token_id=0),
        # 36 pixels in patches of 8: the convolution leaves the last 4 out (as 384 in 14s does
        # for SigLIP so400m).
        vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                           num_hidden_layers=2, image_size=36, patch_size=8),
    )
    torch.manual_seed(1357)
    model = SiglipModel(config)
    init_siglip_weights(model, 1357)
    model.eval().save_pretrained(str(d), safe_serialization=True)
    (d / "model.safetensors").chmod(0o644)
    write_json(d / "preprocessor_config.json", {
        "image_processor_type": "SiglipImageProcessor", "do_resize": True,
        "size": {"height": 36, "width": 36}, "resample": 2, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }, indent=2)
    reference, summary = siglip_reference(d, ids, batch["attention_mask"], 2, note=(
        "transformers' SiglipModel in fp32 (eager), input_ids from Siglip2Tokenizer "
        "(padding='max_length', on the left) without an attention mask, pixels from "
        "SiglipImageProcessorPil"))
    write_json(d / "reference.json", {"model": "tiny-siglip2", "dtype_on_disk": "float32", **reference})
    print(f"  tiny-siglip2: vocab {len(model_json['vocab'])}; {summary}")


def make_siglip_models() -> None:
    print("J. SigLIP models")
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipModel, SiglipTokenizer

    work = MODELS_DIR / ".siglip-tokenizer"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    spiece, vocab_size = build_siglip_tokenizer(work)
    config = SiglipConfig(
        # Other fields keep SiglipConfig's defaults (gelu_pytorch_tanh, eps 1e-6, and start /
        # end ids outside this vocabulary, which SigLIP never reads).
        text_config=dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_attention_heads=4, num_hidden_layers=2,
                         max_position_embeddings=SIGLIP_CONTEXT),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                           num_hidden_layers=2, image_size=32, patch_size=8),
    )
    torch.manual_seed(2468)
    model = SiglipModel(config)
    init_siglip_weights(model, 2468)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # fp32 with a bicubic resize (SigLIP's), fp16 with a bilinear one (SigLIP 2's).
    for name, dtype, resample in [("tiny-siglip", torch.float32, 3), ("tiny-siglip-fp16", torch.float16, 2)]:
        d = MODELS_DIR / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        model.to(torch.float32)
        model.load_state_dict(state)
        model.to(dtype).save_pretrained(str(d), safe_serialization=True)
        (d / "model.safetensors").chmod(0o644)
        for f in ["tokenizer.json", "tokenizer_config.json", "spiece.model"]:
            if name == "tiny-siglip":
                shutil.copy(work / f, d / f)
            else:  # the twin shares the files
                os.symlink(f"../tiny-siglip/{f}", d / f)
        write_json(d / "preprocessor_config.json", {
            "image_processor_type": "SiglipImageProcessor", "do_resize": True,
            "size": {"height": 32, "width": 32}, "resample": resample, "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }, indent=2)

        fast = PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"), eos_token="</s>",
                                       pad_token="</s>", unk_token="<unk>")
        batch = fast(SIGLIP_TEXTS, padding="max_length", max_length=SIGLIP_CONTEXT, truncation=True)
        ids = batch["input_ids"]
        slow = SiglipTokenizer(vocab_file=str(spiece), model_max_length=SIGLIP_CONTEXT)
        slow_ids = slow(SIGLIP_TEXTS, padding="max_length", max_length=SIGLIP_CONTEXT,
                        truncation=True)["input_ids"]
        differ = [t for t, a, b in zip(SIGLIP_TEXTS, ids, slow_ids) if a != b]
        # tokenizer_config.json's add_bos_token / add_eos_token (SigLIP 2's Gemma tokenizer
        # carries them): transformers rebuilds the post-processor from the flags.
        flags = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<unk>",
                 "pad_token": "<pad>"}
        flagged = PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"), eos_token="</s>",
                                          unk_token="<unk>", **flags)
        flagged_ids = flagged(SIGLIP_TEXTS, padding="max_length", max_length=SIGLIP_CONTEXT,
                              truncation=True)["input_ids"]
        assert flagged_ids[0][0] == 2 and 1 not in flagged_ids[0], flagged_ids[0]
        assert all(len(i) == SIGLIP_CONTEXT for i in ids) and ids[0][-1] == 1

        reference, summary = siglip_reference(d, ids, batch["attention_mask"], resample, note=(
            "transformers' SiglipModel in fp32 (eager), input_ids from the tokenizer.json "
            "(PreTrainedTokenizerFast, padding='max_length'; spiece_input_ids: SiglipTokenizer's "
            "on spiece.model) without an attention mask, pixels from SiglipImageProcessorPil"))
        write_json(d / "reference.json", {
            "model": name,
            "dtype_on_disk": str(dtype).replace("torch.", ""),
            **reference,
            "spiece_input_ids": slow_ids,
            "flagged_tokenizer_config": flags,
            "flagged_input_ids": flagged_ids,
        })
        print(f"  {name}: vocab {vocab_size}, tokenizer.json != SiglipTokenizer on {differ}; {summary}")
    shutil.rmtree(work)


def main() -> None:
    if sys.argv[1:] == ["gradients"]:  # regenerate only G (the models must exist)
        make_gradients()
        return
    if sys.argv[1:] == ["open-clip"]:  # regenerate only I (the tokenizer and images must exist)
        make_open_clip_models()
        return
    if sys.argv[1:] == ["siglip"]:  # regenerate only J and the sigmoid loss (the images must exist)
        make_siglip_models()
        make_siglip2_model()
        make_siglip_loss_cases()
        return
    if sys.argv[1:] == ["transformers-preprocess"]:  # regenerate only H (the images must exist)
        make_hf_preprocess_cases()
        return
    if sys.argv[1:] == ["model-images"]:  # only the image side of the model references
        refresh_image_references()
        return
    FIX.mkdir(parents=True, exist_ok=True)
    for p in OWNED:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()

    print("A. tokenizer")
    tok = build_tokenizer()
    cases = make_tokenizer_cases(tok)
    diff = [c["text"] for c in cases if c["open_clip_ids"] != c["hf_ids"]]
    print(f"  {len(cases)} cases, open_clip != hf for {len(diff)}: {diff}")

    print("D. images + preprocessing")
    images = make_images()
    pre = make_preprocess_cases(images)
    for c in pre["cases"]:
        print(f"  {c['file']}: open_clip native-order diff {c['open_clip_native_order_max_diff']}")

    print("H. transformers preprocessing")
    make_hf_preprocess_cases()
    print("B/C. models")
    make_models(tok)
    make_open_clip_models()
    make_siglip_models()
    make_siglip2_model()

    print("F. contrastive loss")
    loss = make_loss_cases()
    make_siglip_loss_cases()

    make_gradients()

    write_readme(images, loss)
    total = sum(p.stat().st_size for p in FIX.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"done: {total / 1e6:.2f} MB under {FIX.relative_to(REPO)}")


if __name__ == "__main__":
    main()

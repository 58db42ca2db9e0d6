//! Hostile inputs: extreme and broken configs, preprocessor configs, images, weights and
//! tokenizer input give typed errors, never a panic, a hang or an abort. Named cases first,
//! then property tests that mutate valid files at random (seeded; `WEBCLIP_FUZZ_ITERS` sets the
//! iterations per target, default 150: see the README for a longer run).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use serde_json::{json, Value};
use webclip::image::preprocess;
use webclip::{block_on, Backend, ClipConfig, ClipLoader, ModelFiles, PreprocessConfig, RgbImage};

fn fixture_config() -> Value {
    read_json(model_dir("tiny-gelu").join("config.json"))
}

fn config_error(config: &Value) -> webclip::Error {
    ClipConfig::from_json(&config.to_string()).expect_err(&format!("{config} was accepted"))
}

/// Set `path` (dot-separated) in a JSON object.
fn set(value: &mut Value, path: &str, new: Value) {
    let mut cursor = value;
    let parts: Vec<&str> = path.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        cursor = &mut cursor[*part];
    }
    cursor[parts[parts.len() - 1]] = new;
}

#[test]
fn extreme_config_values_are_config_errors_naming_the_field() {
    let cases = [
        ("text_config.pad_token_id", json!(100000), "pad_token_id"),
        ("text_config.eos_token_id", json!(49408), "eos_token_id"),
        (
            "text_config.bos_token_id",
            json!(4294967296u64),
            "bos_token_id",
        ),
        (
            "text_config.num_hidden_layers",
            json!(1_000_000_000),
            "num_hidden_layers",
        ),
        (
            "vision_config.num_hidden_layers",
            json!(1e9),
            "num_hidden_layers",
        ),
        ("text_config.layer_norm_eps", json!(-1), "layer_norm_eps"),
        ("vision_config.layer_norm_eps", json!(0), "layer_norm_eps"),
        ("text_config.hidden_size", json!(1u64 << 40), "hidden_size"),
        (
            "vision_config.intermediate_size",
            json!(u64::MAX),
            "intermediate_size",
        ),
        ("text_config.vocab_size", json!(0), "vocab_size"),
        ("vision_config.image_size", json!(1u64 << 33), "image_size"),
        ("vision_config.patch_size", json!(0), "patch_size"),
        ("vision_config.num_channels", json!(4), "num_channels"),
        ("projection_dim", json!(-3), "projection_dim"),
        (
            "logit_scale_init_value",
            json!(1e300),
            "logit_scale_init_value",
        ),
        (
            "text_config.max_position_embeddings",
            json!(1),
            "max_position_embeddings",
        ),
    ];
    for (path, value, field) in cases {
        let mut config = fixture_config();
        set(&mut config, path, value.clone());
        let e = config_error(&config);
        assert_eq!(e.code(), "E_CONFIG", "{path} = {value}: {e}");
        assert!(e.to_string().contains(field), "{path} = {value}: {e}");
    }
    // Sizes each within bounds whose product is not.
    let mut config = fixture_config();
    set(&mut config, "text_config.vocab_size", json!(1 << 22));
    set(&mut config, "text_config.hidden_size", json!(1 << 14));
    set(&mut config, "text_config.num_attention_heads", json!(1));
    let e = config_error(&config);
    assert!(e.to_string().contains("parameters"), "{e}");
}

fn preprocessor_error(text: &str) -> webclip::Error {
    PreprocessConfig::from_json(text, 224).expect_err(&format!("{text} was accepted"))
}

#[test]
fn extreme_preprocessor_values_are_config_errors() {
    for (text, field) in [
        (r#"{"size": {"shortest_edge": 0}}"#, "shortest_edge"),
        (r#"{"size": 0}"#, "shortest_edge"),
        (r#"{"crop_size": 18446744073709551615}"#, "crop_size"),
        (r#"{"crop_size": {"height": 0, "width": 224}}"#, "crop_size"),
        (r#"{"crop_size": 300}"#, "crop_size"),
        (r#"{"image_std": [0, 1, 1]}"#, "image_std"),
        (r#"{"image_mean": [1e999, 0, 0]}"#, "JSON"),
        (r#"{"size": {"shortest_edge": 99999999}}"#, "shortest_edge"),
    ] {
        let e = preprocessor_error(text);
        assert_eq!(e.code(), "E_CONFIG", "{text}: {e}");
        assert!(e.to_string().contains(field), "{text}: {e}");
    }
}

/// CRC-32 (IEEE) for PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header claims `width x height` (its pixel data is a single tiny IDAT).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::new(1, 1, vec![1, 2, 3]).unwrap();
    let mut png = image.encode_png().unwrap();
    // The IHDR chunk's data starts at byte 16: width, height; its CRC covers type + data.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn oversized_images_are_refused_before_decoding() {
    for (w, h) in [(1, 10_000_000), (100_000, 100_000), (16385, 1)] {
        let e = RgbImage::decode(&png_claiming(w, h)).unwrap_err();
        assert_eq!(e.code(), "E_IMAGE", "{w}x{h}: {e}");
    }
    // Within the side limit but over a caller's byte limit.
    let limits = webclip::image::ImageLimits {
        max_side: 16384,
        max_bytes: 1 << 20,
    };
    let e = RgbImage::decode_with(&png_claiming(4096, 4096), &limits).unwrap_err();
    assert_eq!(e.code(), "E_IMAGE", "{e}");
    assert!(e.to_string().contains("1048576"), "{e}");
    // RGBA buffers whose size overflows, or that do not match their dimensions.
    for (w, h, len) in [(usize::MAX, 2, 8), (65536, 65536, 16), (2, 2, 15)] {
        let e = RgbImage::from_rgba(w, h, &vec![0; len]).unwrap_err();
        assert!(["E_IMAGE", "E_INPUT"].contains(&e.code()), "{w}x{h}: {e}");
    }
}

#[test]
fn extreme_aspect_ratios_preprocess_in_bounded_memory() {
    // 16384 x 1 resizes to a 3.7-million-pixel-wide image; only the crop is computed.
    let image = RgbImage::new(16384, 1, vec![200; 16384 * 3]).unwrap();
    let (pixels, shape) = preprocess(&image, &PreprocessConfig::openai(224)).unwrap();
    assert_eq!(shape, [3, 224, 224]);
    assert!(pixels.iter().all(|v| v.is_finite()));
    // Without a crop the resized image itself is the output: refused when it is too large.
    let config = PreprocessConfig {
        crop: None,
        ..PreprocessConfig::clip_image_processor(224)
    };
    let e = preprocess(&image, &config).unwrap_err();
    assert_eq!(e.code(), "E_IMAGE", "{e}");
}

/// A seeded xorshift generator for the property tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn iterations() -> usize {
    std::env::var("WEBCLIP_FUZZ_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(150)
}

/// Mutate bytes: flips, overwrites with extreme bytes, truncation, insertion, duplication.
fn mutate_bytes(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len());
        match rng.below(6) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.below(8),
            1 if !out.is_empty() => out[at] = [0, 0xff, 0x7f, 0x80][rng.below(4)],
            2 => out.truncate(at),
            3 => out.insert(at, rng.next() as u8),
            4 if !out.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
            _ => {
                for b in out.iter_mut().skip(at).take(8) {
                    *b = rng.next() as u8;
                }
            }
        }
    }
    out
}

/// Replace random leaves of a JSON value with extreme values.
fn mutate_json(rng: &mut Rng, value: &mut Value) {
    let extremes = [
        json!(0),
        json!(-1),
        json!(1),
        json!(1e9),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e308),
        json!(-1e-308),
        json!(0.5),
        json!("x"),
        json!(null),
        json!([]),
        json!({}),
        json!([1, 2, 3]),
        json!(true),
    ];
    let mut leaves = Vec::new();
    collect_paths(value, String::new(), &mut leaves);
    for _ in 0..1 + rng.below(3) {
        if leaves.is_empty() {
            return;
        }
        let path = &leaves[rng.below(leaves.len())];
        if let Some(slot) = value.pointer_mut(path) {
            *slot = extremes[rng.below(extremes.len())].clone();
        }
    }
}

fn collect_paths(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = format!("{prefix}/{k}");
                out.push(path.clone());
                collect_paths(v, path, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let path = format!("{prefix}/{i}");
                out.push(path.clone());
                collect_paths(v, path, out);
            }
        }
        _ => {}
    }
}

/// Run `f` on an input; a panic fails the test with the input shown.
fn no_panic<T>(what: &str, input: &dyn std::fmt::Debug, f: impl FnOnce() -> webclip::Result<T>) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert!(e.code().starts_with("E_"), "{what}: {e}"),
        Err(_) => panic!("{what} panicked on {input:?}"),
    }
}

struct Model {
    config: String,
    tokenizer: Vec<u8>,
    weights: Vec<u8>,
}

fn tiny_model() -> Model {
    let dir = model_dir("tiny-gelu");
    Model {
        config: std::fs::read_to_string(dir.join("config.json")).unwrap(),
        tokenizer: std::fs::read(dir.join("tokenizer.json")).unwrap(),
        weights: std::fs::read(dir.join("model.safetensors")).unwrap(),
    }
}

/// Load a model from the given files, run one image and one text through it.
fn load_and_run(
    config: &str,
    tokenizer: &[u8],
    preprocessor: Option<&str>,
    weights: &[u8],
) -> webclip::Result<()> {
    load_files_and_run(
        ModelFiles {
            config,
            tokenizer,
            tokenizer_config: None,
            preprocessor,
        },
        weights,
    )
}

/// [`load_and_run`] on any set of files.
fn load_files_and_run(files: ModelFiles<'_>, weights: &[u8]) -> webclip::Result<()> {
    let device = Backend::Cpu.device()?;
    let mut loader = ClipLoader::new(files, &device, None)?;
    for chunk in weights.chunks(4096) {
        loader.push_weights(chunk)?;
    }
    let clip = block_on(loader.finish())?;
    let image = RgbImage::new(5, 3, vec![90; 45])?;
    block_on(clip.embed_images(&[image]))?;
    block_on(clip.embed_texts(&["a photo of a cat"]))?;
    Ok(())
}

#[test]
fn mutated_weights_never_panic() {
    let model = tiny_model();
    let mut rng = Rng(0x5eed_0001);
    // Mutations near the header are the interesting ones: bias the position there.
    let header_len = 8 + u64::from_le_bytes(model.weights[..8].try_into().unwrap()) as usize;
    for i in 0..iterations() {
        let weights = if i % 2 == 0 {
            let head = mutate_bytes(&mut rng, &model.weights[..header_len]);
            [head.as_slice(), &model.weights[header_len..]].concat()
        } else {
            mutate_bytes(&mut rng, &model.weights)
        };
        no_panic("weights", &i, || {
            load_and_run(&model.config, &model.tokenizer, None, &weights)
        });
    }
}

#[test]
fn mutated_configs_never_panic() {
    let model = tiny_model();
    let original: Value = serde_json::from_str(&model.config).unwrap();
    let mut rng = Rng(0x5eed_0002);
    for _ in 0..iterations() {
        let mut config = original.clone();
        mutate_json(&mut rng, &mut config);
        let text = config.to_string();
        no_panic("config.json", &text, || {
            load_and_run(&text, &model.tokenizer, None, &model.weights)
        });
    }
}

#[test]
fn mutated_open_clip_configs_and_weights_never_panic() {
    let dir = model_dir("tiny-open-clip");
    let config = std::fs::read_to_string(dir.join("open_clip_config.json")).unwrap();
    let tokenizer = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let weights = std::fs::read(dir.join("open_clip_model.safetensors")).unwrap();
    load_and_run(&config, &tokenizer, None, &weights).unwrap();
    let original: Value = serde_json::from_str(&config).unwrap();
    let mut rng = Rng(0x5eed_0007);
    for i in 0..iterations() {
        let mut mutated = original.clone();
        mutate_json(&mut rng, &mut mutated);
        let text = mutated.to_string();
        no_panic("open_clip_config.json", &text, || {
            load_and_run(&text, &tokenizer, None, &weights)
        });
        let bytes = mutate_bytes(&mut rng, &weights);
        no_panic("open_clip_model.safetensors", &i, || {
            load_and_run(&config, &tokenizer, None, &bytes)
        });
    }
}

#[test]
fn mutated_preprocessor_configs_never_panic() {
    let model = tiny_model();
    let original: Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir("tiny-gelu").join("preprocessor_config.json"))
            .unwrap_or_else(|_| PreprocessConfig::openai(30).to_json()),
    )
    .unwrap();
    let mut rng = Rng(0x5eed_0003);
    for _ in 0..iterations() {
        let mut config = original.clone();
        mutate_json(&mut rng, &mut config);
        let text = config.to_string();
        no_panic("preprocessor_config.json", &text, || {
            load_and_run(&model.config, &model.tokenizer, Some(&text), &model.weights)
        });
    }
}

#[test]
fn mutated_siglip_files_never_panic() {
    let dir = model_dir("tiny-siglip");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let text = |name: &str| String::from_utf8(read(name)).unwrap();
    let (config, preprocessor) = (text("config.json"), text("preprocessor_config.json"));
    let tokenizer_config = text("tokenizer_config.json");
    let (weights, spiece) = (read("model.safetensors"), read("spiece.model"));
    fn siglip_files<'a>(
        config: &'a str,
        tokenizer: &'a [u8],
        tokenizer_config: &'a str,
        preprocessor: &'a str,
    ) -> ModelFiles<'a> {
        ModelFiles {
            config,
            tokenizer,
            tokenizer_config: Some(tokenizer_config),
            preprocessor: Some(preprocessor),
        }
    }
    load_files_and_run(
        siglip_files(&config, &spiece, &tokenizer_config, &preprocessor),
        &weights,
    )
    .unwrap();
    let (config_json, preprocessor_json): (Value, Value) = (
        serde_json::from_str(&config).unwrap(),
        serde_json::from_str(&preprocessor).unwrap(),
    );
    let alphabet: Vec<char> = "aZ 0!,.\u{a0}\u{3000}ﬁ½Ｆ▁\u{0}\u{feff}é\u{1F600}\u{301}\n\t"
        .chars()
        .collect();
    let mut rng = Rng(0x5eed_0008);
    for i in 0..iterations() {
        let mut mutated = config_json.clone();
        mutate_json(&mut rng, &mut mutated);
        let mutated = mutated.to_string();
        no_panic("siglip config.json", &mutated, || {
            load_files_and_run(
                siglip_files(&mutated, &spiece, &tokenizer_config, &preprocessor),
                &weights,
            )
        });
        let mut mutated = preprocessor_json.clone();
        mutate_json(&mut rng, &mut mutated);
        let mutated = mutated.to_string();
        no_panic("siglip preprocessor_config.json", &mutated, || {
            load_files_and_run(
                siglip_files(&config, &spiece, &tokenizer_config, &mutated),
                &weights,
            )
        });
        let bytes = mutate_bytes(&mut rng, &spiece);
        let texts: Vec<String> = (0..4)
            .map(|_| {
                let len = rng.below(80);
                (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect()
            })
            .collect();
        no_panic("spiece.model", &i, || {
            let tokenizer = webclip::ClipTokenizer::siglip(&bytes, Some(&tokenizer_config), 16)?;
            texts
                .iter()
                .try_for_each(|t| tokenizer.encode(t).map(|_| ()))
        });
    }
}

/// A small JPEG of a gradient.
fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let pixels: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut out)
        .encode(&pixels, width, height, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

#[test]
fn mutated_images_never_panic() {
    let images: Vec<Vec<u8>> = ["landscape.png", "palette.png", "grey16.png", "rgba.png"]
        .iter()
        .filter_map(|name| std::fs::read(fixtures().join("images").join(name)).ok())
        .chain([png_claiming(3, 2), jpeg(40, 24)])
        .collect();
    let mut rng = Rng(0x5eed_0004);
    for i in 0..iterations() {
        let bytes = mutate_bytes(&mut rng, &images[i % images.len()]);
        no_panic("image", &i, || {
            let image = RgbImage::decode(&bytes)?;
            preprocess(&image, &PreprocessConfig::openai(32)).map(|_| ())
        });
    }
}

#[test]
fn mutated_tokenizers_and_texts_never_panic() {
    let model = tiny_model();
    let tokenizer = webclip::ClipTokenizer::from_bytes(&model.tokenizer, 77).unwrap();
    let mut rng = Rng(0x5eed_0005);
    let alphabet: Vec<char> =
        "aZ 0<|>&;#\u{0}\u{feff}\u{202e}é\u{1F600}\u{301}\n\t\\\"'`~\u{fffd}x"
            .chars()
            .collect();
    for _ in 0..iterations() {
        let len = rng.below(400);
        let text: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        no_panic("text", &text, || tokenizer.encode(&text));
        let bytes = mutate_bytes(&mut rng, &model.tokenizer);
        no_panic("tokenizer.json", &bytes.len(), || {
            webclip::ClipTokenizer::from_bytes(&bytes, 77).map(|_| ())
        });
    }
}

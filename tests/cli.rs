//! The command line contract: `embed`, `classify`, `tokenize`, `preprocess`, `synth`, `train`
//! on data directories (with bad lines and images skipped and counted), errors.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn webclip(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_webclip"))
        .args(args)
        .output()
        .expect("run webclip");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.success(), json, stderr)
}

fn model() -> String {
    model_dir("tiny-gelu").display().to_string()
}

fn image(name: &str) -> String {
    fixtures().join("images").join(name).display().to_string()
}

#[test]
fn embed_prints_normalized_embeddings_in_argument_order() {
    let reference = read_json(model_dir("tiny-gelu").join("reference.json"));
    let texts = strings(&reference["texts"]);
    let images = strings(&reference["images"]);
    let model = model();
    let mut args = vec!["embed", "--model", model.as_str()];
    let image_paths: Vec<String> = images.iter().map(|i| image(i)).collect();
    for path in &image_paths {
        args.extend(["--image", path.as_str()]);
    }
    for text in &texts {
        args.extend(["--text", text]);
    }
    let (ok, json, stderr) = webclip(&args);
    assert!(ok, "{stderr}");
    // Texts go through our tokenizer: ids equal the reference's, so embeddings must match.
    assert_embeddings_close(
        "cli text",
        &rows(&json["text_embeds"]),
        &rows(&reference["text_embeds"]),
        1e-4,
    );
    // Images go through our preprocessing (within 0.02 of PIL), so allow a looser bound.
    let ours = rows(&json["image_embeds"]);
    let theirs = rows(&reference["image_embeds"]);
    assert_eq!(ours.len(), images.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "image {i} norm {norm}");
        assert!(cosine(a, b) > 0.999, "image {i}: cosine {}", cosine(a, b));
    }
}

#[test]
fn classify_prints_sorted_probabilities() {
    let model = model();
    let img = image("landscape.png");
    let (ok, json, stderr) = webclip(&[
        "classify",
        "--model",
        &model,
        "--image",
        &img,
        "--label",
        "cat",
        "--label",
        "dog",
        "--label",
        "car",
        "--template",
        "a photo of a {}.",
        "--template",
        "a drawing of a {}.",
    ]);
    assert!(ok, "{stderr}");
    let results = json.as_array().unwrap();
    assert_eq!(results.len(), 3);
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!((scores.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    let mut labels: Vec<&str> = results
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    labels.sort();
    assert_eq!(labels, ["car", "cat", "dog"]);
}

#[test]
fn tokenize_matches_the_reference_ids() {
    let reference = read_json(model_dir("tiny-gelu").join("reference.json"));
    let model = model();
    let mut args = vec!["tokenize", "--model", model.as_str()];
    let texts = strings(&reference["texts"]);
    for t in &texts {
        args.extend(["--text", t]);
    }
    let (ok, json, stderr) = webclip(&args);
    assert!(ok, "{stderr}");
    assert_eq!(ids(&json["input_ids"]), ids(&reference["input_ids"]));
}

#[test]
fn preprocess_prints_shape_and_values() {
    let model = model();
    let img = image("large.png");
    let (ok, json, stderr) = webclip(&["preprocess", "--model", &model, "--image", &img]);
    assert!(ok, "{stderr}");
    assert_eq!(json["shape"], serde_json::json!([1, 3, 48, 48]));
    assert_eq!(json["pixel_values"].as_array().unwrap().len(), 3 * 48 * 48);
}

#[test]
fn errors_go_to_stderr_with_a_failing_status() {
    let (ok, _, stderr) = webclip(&["embed", "--model", "/nonexistent", "--text", "x"]);
    assert!(!ok);
    assert!(
        stderr.contains("E_IO") && stderr.contains("config.json"),
        "{stderr}"
    );
    let model = model();
    let (ok, _, stderr) = webclip(&[
        "classify",
        "--model",
        &model,
        "--image",
        "Cargo.toml",
        "--label",
        "x",
    ]);
    assert!(!ok);
    assert!(stderr.contains("E_IMAGE"), "{stderr}");
    let (ok, _, stderr) = webclip(&["embed", "--model", &model, "--device", "tpu"]);
    assert!(!ok);
    assert!(stderr.contains("E_INPUT"), "{stderr}");
}

/// A fresh scratch directory under the system temp dir.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("webclip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn train_on_a_data_directory_skips_and_counts_bad_pairs() {
    let data = scratch("data");
    let data_arg = data.display().to_string();
    let (ok, json, stderr) = webclip(&[
        "synth", "--out", &data_arg, "--count", "30", "--size", "40", "--seed", "3",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(json["written"], 30);
    // Add bad lines: an empty caption, a missing image, a corrupt PNG, a line that is not JSON.
    std::fs::write(data.join("broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    let mut index = std::fs::read_to_string(data.join("captions.jsonl")).unwrap();
    index += concat!(
        "{\"image\": \"0000.png\", \"caption\": \"  \"}\n",
        "{\"image\": \"missing.png\", \"caption\": \"a big red circle on the left\"}\n",
        "{\"image\": \"broken.png\", \"caption\": \"a big red square on the left\"}\n",
        "not json\n",
    );
    std::fs::write(data.join("captions.jsonl"), index).unwrap();

    let out = data.join("model");
    let out_arg = out.display().to_string();
    let (ok, json, stderr) = webclip(&[
        "train",
        "--data",
        &data_arg,
        "--out",
        &out_arg,
        "--steps",
        "12",
        "--batch-size",
        "8",
        "--eval-every",
        "0",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        json["skipped"],
        serde_json::json!({"empty_captions": 1, "unreadable_images": 2, "malformed_lines": 1})
    );
    assert!(stderr.contains("30 pairs"), "{stderr}");
    // 30 usable pairs: every tenth is held out for evaluation.
    let evaluation = &json["evaluations"][0];
    assert_eq!(evaluation["pairs"], 3);
    assert!(evaluation.get("shape_accuracy").is_none());
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
    ] {
        assert!(out.join(name).is_file(), "{name} written");
    }
    // The trained model is an ordinary model directory.
    let (ok, json, stderr) = webclip(&[
        "embed",
        "--model",
        &out_arg,
        "--text",
        "a big red circle on the left",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(json["text_embeds"][0].as_array().unwrap().len(), 64);

    // The same pairs as an open_clip style CSV (quoted captions may hold commas).
    let mut csv = String::from("filepath,caption\n");
    for i in 0..25 {
        csv += &format!("{i:04}.png,\"a shape, number {i}\"\n");
    }
    std::fs::remove_file(data.join("captions.jsonl")).unwrap();
    std::fs::write(data.join("captions.csv"), csv).unwrap();
    let (ok, json, stderr) = webclip(&[
        "train",
        "--data",
        &data_arg,
        "--out",
        &out_arg,
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--eval-every",
        "0",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(json["evaluations"][0]["pairs"], 2);
    // One epoch: 23 training pairs in batches of 4.
    assert_eq!(json["evaluations"][0]["step"], 6, "{stderr}");
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn train_rejects_a_directory_without_usable_pairs() {
    let data = scratch("empty-data");
    std::fs::write(
        data.join("captions.jsonl"),
        "{\"image\": \"x.png\", \"caption\": \"\"}\n",
    )
    .unwrap();
    let out = data.join("model").display().to_string();
    let (ok, _, stderr) = webclip(&[
        "train",
        "--data",
        &data.display().to_string(),
        "--out",
        &out,
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("E_INPUT") && stderr.contains("no usable image-caption pairs"),
        "{stderr}"
    );
    let (ok, _, stderr) = webclip(&["train", "--data", "/nonexistent/dir", "--out", &out]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/dir"), "{stderr}");
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn argument_errors_are_typed_with_status_2() {
    use std::os::unix::ffi::OsStrExt;
    let model = model();
    let invalid_utf8 = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    let cases: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec![
            "embed".as_ref(),
            "--model".as_ref(),
            model.as_ref(),
            "--frobnicate".as_ref(),
        ],
        vec!["embed".as_ref(), "--text".as_ref(), "x".as_ref()],
        vec![
            "classify".as_ref(),
            "--model".as_ref(),
            model.as_ref(),
            "--image".as_ref(),
            "a.png".as_ref(),
        ],
        vec![
            "tokenize".as_ref(),
            "--model".as_ref(),
            model.as_ref(),
            "--text".as_ref(),
            invalid_utf8,
        ],
        vec!["bench".as_ref(), "--runs".as_ref(), "-3".as_ref()],
        vec!["no-such-command".as_ref()],
        vec![],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_webclip"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error [E_INPUT]: "),
            "{args:?}: {stderr}"
        );
    }
    // Help and version are not errors.
    for flag in ["--help", "--version"] {
        let out = Command::new(env!("CARGO_BIN_EXE_webclip"))
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}");
    }
}

#[test]
fn out_of_range_values_are_input_errors() {
    let out = scratch("synth-range");
    let out = out.display().to_string();
    for args in [
        vec!["synth", "--out", out.as_str(), "--size", "0"],
        vec!["synth", "--out", out.as_str(), "--size", "100000000"],
        vec!["bench", "--train-batch", "0"],
        vec![
            "train",
            "--out",
            out.as_str(),
            "--batch-size",
            "0",
            "--steps",
            "1",
        ],
        vec![
            "train",
            "--out",
            out.as_str(),
            "--lr",
            "NaN",
            "--steps",
            "1",
        ],
    ] {
        let (ok, _, stderr) = webclip(&args);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains("E_INPUT"), "{args:?}: {stderr}");
    }
}

#[test]
fn open_clip_directories_load_with_a_timm_config_beside_and_a_tokenizer_from_elsewhere() {
    // As in timm's hub repos: a config.json that is not a CLIP config next to open_clip's
    // files, and no tokenizer.json (passed with --tokenizer).
    let source = model_dir("tiny-open-clip");
    let dir = scratch("open-clip-timm");
    for name in ["open_clip_config.json", "open_clip_model.safetensors"] {
        std::fs::copy(source.join(name), dir.join(name)).unwrap();
    }
    std::fs::write(
        dir.join("config.json"),
        r#"{"architecture": "vit_base_patch32_clip_224", "num_classes": 512}"#,
    )
    .unwrap();
    let reference = read_json(source.join("reference.json"));
    let text = reference["texts"][0].as_str().unwrap();
    let dir_arg = dir.display().to_string();
    let (ok, _, stderr) = webclip(&["embed", "--model", &dir_arg, "--text", text]);
    assert!(
        !ok && stderr.contains("E_IO") && stderr.contains("tokenizer.json"),
        "{stderr}"
    );
    let tokenizer = fixtures().join("tokenizer").join("tokenizer.json");
    let tokenizer = tokenizer.display().to_string();
    let (ok, json, stderr) = webclip(&[
        "embed",
        "--model",
        &dir_arg,
        "--tokenizer",
        &tokenizer,
        "--text",
        text,
    ]);
    assert!(ok, "{stderr}");
    assert_embeddings_close(
        "open_clip via the CLI",
        &rows(&json["text_embeds"]),
        &rows(&reference["text_embeds"])[..1],
        1e-4,
    );
}

#[test]
fn siglip_directories_with_only_spiece_model_classify_with_sigmoid_scores() {
    // As google/siglip-* repos ship it: SentencePiece's spiece.model and no tokenizer.json.
    let source = model_dir("tiny-siglip");
    let dir = scratch("siglip-spiece");
    for name in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer_config.json",
        "spiece.model",
    ] {
        std::fs::copy(source.join(name), dir.join(name)).unwrap();
    }
    let reference = read_json(source.join("reference.json"));
    let dir_arg = dir.display().to_string();
    let texts: Vec<&str> = (0..3)
        .map(|i| reference["texts"][i].as_str().unwrap())
        .collect();
    let (ok, json, stderr) = webclip(&["tokenize", "--model", &dir_arg, "--text", texts[2]]);
    assert!(ok, "{stderr}");
    assert_eq!(json["input_ids"][0], reference["spiece_input_ids"][2]);
    // SigLIP 2's tokenizer (padded on the left) through the CLI too.
    let siglip2 = model_dir("tiny-siglip2");
    let siglip2_reference = read_json(siglip2.join("reference.json"));
    let siglip2 = siglip2.display().to_string();
    let (ok, json, stderr) = webclip(&["tokenize", "--model", &siglip2, "--text", texts[2]]);
    assert!(ok, "{stderr}");
    assert_eq!(json["input_ids"][0], siglip2_reference["input_ids"][2]);
    let image = fixtures()
        .join("images")
        .join(reference["images"][0].as_str().unwrap());
    let image = image.display().to_string();
    let mut args = vec![
        "classify",
        "--model",
        &dir_arg,
        "--image",
        &image,
        "--template",
        "{}",
    ];
    for text in &texts {
        args.extend(["--label", text]);
    }
    let (ok, json, stderr) = webclip(&args);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("sigmoid"),
        "the CLI says how it scores: {stderr}"
    );
    let scores = json.as_array().unwrap();
    let probs = rows(&reference["probs_per_image"]);
    for score in scores {
        let j = texts.iter().position(|t| *t == score["label"]).unwrap();
        let diff = (score["score"].as_f64().unwrap() as f32 - probs[0][j]).abs();
        assert!(diff <= 1e-4, "{score}: differs by {diff}");
    }
}

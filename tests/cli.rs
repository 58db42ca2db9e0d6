//! The command line contract: `embed`, `classify`, `tokenize`, `preprocess`, errors.

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
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let images: Vec<&str> = reference["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
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
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
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

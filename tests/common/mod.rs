//! Helpers shared by the integration tests: fixture paths, JSON, comparisons.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn read_json(path: impl Into<PathBuf>) -> Value {
    let path = path.into();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().expect("array").iter().map(floats).collect()
}

pub fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string"))
        .collect()
}

pub fn ids(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Assert that embeddings match the reference: max abs diff and cosine per row.
pub fn assert_embeddings_close(what: &str, ours: &[Vec<f32>], reference: &[Vec<f32>], tol: f32) {
    assert_eq!(ours.len(), reference.len(), "{what}: row count");
    let mut worst = 0.0f32;
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let diff = max_abs_diff(a, b);
        let cos = cosine(a, b);
        assert!(diff <= tol, "{what} row {i}: max abs diff {diff} > {tol}");
        worst = worst.max(diff);
        assert!(cos >= 0.99999, "{what} row {i}: cosine {cos} < 0.99999");
    }
    eprintln!("{what}: worst max abs diff {worst:.2e}");
}

/// Read a raw little-endian f32 file.
pub fn read_f32(path: impl Into<PathBuf>) -> Vec<f32> {
    let path = path.into();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

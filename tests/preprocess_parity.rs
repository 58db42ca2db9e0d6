//! Image preprocessing against the PIL + torchvision reference.

mod common;

use common::*;
use webclip::image::preprocess;
use webclip::{PreprocessConfig, RgbImage};

/// PIL's fixed-point resampling is reproduced exactly, so only float rounding of the final
/// normalization may differ (the issue's bound is 0.02; anything above this is a bug).
const TOLERANCE: f32 = 1e-5;

/// Images where decoding legitimately differs from PIL (none at present).
const KNOWN_DIFFERENCES: &[&str] = &[];

#[test]
fn matches_pil_and_torchvision() {
    let cases = read_json(fixtures().join("preprocess/cases.json"));
    let mut worst = 0.0f32;
    for case in cases["cases"].as_array().unwrap() {
        let name = case["image"].as_str().unwrap();
        if KNOWN_DIFFERENCES.contains(&name) {
            continue;
        }
        let size = case["size"].as_u64().unwrap() as usize;
        let bytes = std::fs::read(fixtures().join("images").join(name)).unwrap();
        let image = RgbImage::decode(&bytes).unwrap();
        let (ours, shape) = preprocess(&image, &PreprocessConfig::openai(size)).unwrap();
        assert_eq!(shape, [3, size, size], "{name} at {size}");
        let reference = read_f32(
            fixtures()
                .join("preprocess")
                .join(case["file"].as_str().unwrap()),
        );
        let diff = max_abs_diff(&ours, &reference);
        assert!(diff <= TOLERANCE, "{name} at {size}: max abs diff {diff}");
        worst = worst.max(diff);
    }
    eprintln!("preprocessing: worst max abs diff {worst}");
}

#[test]
fn rgba_buffers_drop_alpha() {
    let rgba = [10u8, 20, 30, 0, 40, 50, 60, 255];
    let image = RgbImage::from_rgba(2, 1, &rgba).unwrap();
    assert_eq!(image.data, [10, 20, 30, 40, 50, 60]);
}

#[test]
fn bad_images_are_typed_errors() {
    assert_eq!(
        RgbImage::decode(b"not an image").unwrap_err().code(),
        "E_IMAGE"
    );
    assert_eq!(RgbImage::decode(b"").unwrap_err().code(), "E_IMAGE");
    assert_eq!(
        RgbImage::from_rgba(0, 0, &[]).unwrap_err().code(),
        "E_INPUT"
    );
}

#[test]
fn hugging_face_directories_crop_like_transformers() {
    let cases = read_json(fixtures().join("preprocess/transformers_cases.json"));
    let mut torchvision_rule_fails = 0;
    for case in cases["cases"].as_array().unwrap() {
        let name = case["image"].as_str().unwrap();
        let size = case["size"].as_u64().unwrap() as usize;
        let floor = &case["crop_top_left_floor"];
        assert_ne!(
            floor, &case["crop_top_left_torchvision"],
            "{name}: an odd margin"
        );
        let bytes = std::fs::read(fixtures().join("images").join(name)).unwrap();
        let image = RgbImage::decode(&bytes).unwrap();
        let reference = read_f32(
            fixtures()
                .join("preprocess")
                .join(case["file"].as_str().unwrap()),
        );
        // A Hugging Face directory's preprocessor_config.json follows transformers.
        let config = PreprocessConfig::from_json(
            &format!(r#"{{"size": {{"shortest_edge": {size}}}, "crop_size": {size}}}"#),
            size,
        )
        .unwrap();
        let (ours, _) = preprocess(&image, &config).unwrap();
        let diff = max_abs_diff(&ours, &reference);
        assert!(diff <= TOLERANCE, "{name} at {size}: max abs diff {diff}");
        let (torchvision, _) = preprocess(&image, &PreprocessConfig::openai(size)).unwrap();
        torchvision_rule_fails += (max_abs_diff(&torchvision, &reference) > TOLERANCE) as usize;
    }
    assert!(
        torchvision_rule_fails > 0,
        "the cases tell the two crop rules apart"
    );
}

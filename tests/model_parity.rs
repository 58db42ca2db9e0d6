//! The burn model against `transformers` (Hugging Face directories) and `open_clip` (its hub
//! layout) on the committed tiny checkpoints: text and image embeddings and logits, on the CPU
//! backend and (where an adapter exists) on wgpu.

mod common;

use common::*;
use webclip::config::Family;
use webclip::image::RgbImage;
use webclip::model::{values, TokenBatch};
use webclip::tokenizer::ClipTokenizer;
use webclip::{block_on, Backend, Clip};

const MODELS: [&str; 6] = [
    "tiny-quickgelu",
    "tiny-gelu",
    "tiny-gelu-fp16",
    "tiny-quickgelu-bf16",
    "tiny-open-clip",
    "tiny-open-clip-fp16",
];

fn check_model(name: &str, clip: &Clip, tol: f32) {
    let reference = read_json(model_dir(name).join("reference.json"));
    let input_ids = ids(&reference["input_ids"]);
    let text_reference = rows(&reference["text_embeds"]);

    // One padded batch, and each text alone: both must match the unpadded reference.
    let batched = block_on(clip.embed_token_ids(&input_ids)).unwrap();
    assert_embeddings_close(
        &format!("{name} text (batched)"),
        &batched,
        &text_reference,
        tol,
    );
    for (i, ids) in input_ids.iter().enumerate() {
        let alone = block_on(clip.embed_token_ids(std::slice::from_ref(ids))).unwrap();
        assert_embeddings_close(
            &format!("{name} text {i} (alone)"),
            &alone,
            &text_reference[i..=i],
            tol,
        );
    }

    let shape: Vec<usize> = reference["pixel_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let pixels = floats(&reference["pixel_values"]);
    let images =
        block_on(clip.embed_pixels(pixels, shape[0], [shape[1], shape[2], shape[3]])).unwrap();
    assert_embeddings_close(
        &format!("{name} image"),
        &images,
        &rows(&reference["image_embeds"]),
        tol,
    );

    let scale = reference["logit_scale"].as_f64().unwrap() as f32;
    assert!(
        (clip.logit_scale() - scale.exp()).abs() <= 1e-4 * scale.exp(),
        "{name} logit_scale"
    );
    for (i, row) in rows(&reference["logits_per_image"]).iter().enumerate() {
        let ours: Vec<f32> = text_reference
            .iter()
            .map(|t| clip.logit_scale() * webclip::tasks::dot(&images[i], t))
            .collect();
        let diff = max_abs_diff(&ours, row);
        assert!(
            diff <= 1e-3 * scale.exp(),
            "{name} logits row {i}: diff {diff}"
        );
    }
}

#[test]
fn cpu_matches_transformers() {
    let device = Backend::Cpu.device().unwrap();
    for name in MODELS {
        let clip = Clip::load_dir(model_dir(name), &device).unwrap();
        check_model(name, &clip, 1e-4);
    }
}

#[test]
fn wgpu_matches_transformers_where_available() {
    let device = match Backend::Wgpu.device() {
        Ok(device) => device,
        Err(e) => {
            eprintln!("skipping wgpu parity: {e}");
            return;
        }
    };
    for name in MODELS {
        let clip = Clip::load_dir(model_dir(name), &device).unwrap();
        check_model(name, &clip, 1e-4);
    }
}

#[test]
fn text_results_do_not_depend_on_batching() {
    let device = Backend::Cpu.device().unwrap();
    let clip = Clip::load_dir(model_dir("tiny-gelu"), &device).unwrap();
    let texts = [
        "a cat",
        "a much longer description of a small red triangle",
        "x",
    ];
    let together = block_on(clip.embed_texts(&texts)).unwrap();
    let fresh = Clip::load_dir(model_dir("tiny-gelu"), &device).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let alone = block_on(fresh.embed_texts(&[text])).unwrap();
        assert!(max_abs_diff(&alone[0], &together[i]) < 1e-5, "text {i}");
    }
}

#[test]
fn fixed_shape_text_batches_match_tight_ones() {
    // GPU devices pad text batches to a few fixed shapes; the rows must not change.
    let device = Backend::Cpu.device().unwrap();
    for name in ["tiny-quickgelu", "tiny-gelu"] {
        let clip = Clip::load_dir(model_dir(name), &device).unwrap();
        let input_ids = ids(&read_json(model_dir(name).join("reference.json"))["input_ids"]);
        let text = &clip.config().text;
        let embed = |batch: TokenBatch| values(clip.model().embed_texts(&batch)).unwrap();
        let tight = embed(TokenBatch::new(&input_ids, text, &device).unwrap());
        let shape = [input_ids.len() * 2 + 1, text.max_position_embeddings];
        let fixed = embed(TokenBatch::with_shape(&input_ids, text, &device, shape).unwrap());
        assert_eq!(fixed.len(), shape[0] * tight.len() / input_ids.len());
        let diff = max_abs_diff(&tight, &fixed[..tight.len()]);
        assert!(diff < 1e-5, "{name}: max abs diff {diff}");
    }
}

#[test]
fn open_clip_directories_match_open_clip_end_to_end() {
    // Token ids from open_clip's tokenizer, pixels from its transform (the directory's mean and
    // std, torchvision's crop rounding), and embeddings of the decoded image files.
    let device = Backend::Cpu.device().unwrap();
    for name in ["tiny-open-clip", "tiny-open-clip-fp16"] {
        let dir = model_dir(name);
        let config = std::fs::read_to_string(dir.join("open_clip_config.json")).unwrap();
        assert_eq!(Family::detect(&config), Family::OpenClip);
        let clip = Clip::load_dir(&dir, &device).unwrap();
        let reference = read_json(dir.join("reference.json"));
        for (text, want) in strings(&reference["texts"])
            .iter()
            .zip(ids(&reference["input_ids"]))
        {
            let got = clip.tokenizer().encode(text).unwrap();
            assert_eq!(got, want, "{name}: token ids of {text:?}");
        }
        check_image_files(name, &clip, &reference);
    }
}

/// The reference's image files decoded, preprocessed (pixels within 1e-5 of the reference's)
/// and embedded (within 1e-4): the images and their embeddings.
fn check_image_files(
    name: &str,
    clip: &Clip,
    reference: &serde_json::Value,
) -> (Vec<RgbImage>, Vec<Vec<f32>>) {
    let images: Vec<RgbImage> = strings(&reference["images"])
        .iter()
        .map(|f| {
            let path = fixtures().join("images").join(f);
            RgbImage::decode(&std::fs::read(path).unwrap()).unwrap()
        })
        .collect();
    let pixels: Vec<f32> = images
        .iter()
        .flat_map(|image| clip.preprocess(image).unwrap().0)
        .collect();
    let diff = max_abs_diff(&pixels, &floats(&reference["pixel_values"]));
    assert!(diff <= 1e-5, "{name}: pixel values differ by {diff}");
    let embeddings = block_on(clip.embed_images(&images)).unwrap();
    assert_embeddings_close(
        &format!("{name} image files"),
        &embeddings,
        &rows(&reference["image_embeds"]),
        1e-4,
    );
    (images, embeddings)
}

/// A SigLIP directory end to end against `transformers`' `SiglipModel`: token ids (padded to the
/// context with `tokenizer_config.json`'s pad token), pixels of the decoded files (exact-size
/// resize, bicubic in one directory and bilinear in the other), embeddings, and sigmoid scores.
fn check_siglip(name: &str, clip: &Clip) {
    let dir = model_dir(name);
    let reference = read_json(dir.join("reference.json"));
    let texts = strings(&reference["texts"]);
    for (text, want) in texts.iter().zip(ids(&reference["input_ids"])) {
        let got = clip.tokenizer().encode(text).unwrap();
        assert_eq!(got, want, "{name}: token ids of {text:?}");
    }
    // The same directory's spiece.model, read as SiglipTokenizer reads it.
    let context = clip.config().text.max_position_embeddings;
    let tokenizer_config = std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap();
    if let Ok(spiece) = std::fs::read(dir.join("spiece.model")) {
        let spiece = ClipTokenizer::siglip(&spiece, Some(&tokenizer_config), context).unwrap();
        for (text, want) in texts.iter().zip(ids(&reference["spiece_input_ids"])) {
            let got = spiece.encode(text).unwrap();
            assert_eq!(got, want, "{name}: spiece.model's token ids of {text:?}");
        }
    }
    // tokenizer_config.json's add_bos_token / add_eos_token rebuild the special tokens.
    if reference.get("flagged_tokenizer_config").is_some() {
        let json = std::fs::read(dir.join("tokenizer.json")).unwrap();
        let flags = reference["flagged_tokenizer_config"].to_string();
        let flagged = ClipTokenizer::siglip(&json, Some(&flags), context).unwrap();
        for (text, want) in texts.iter().zip(ids(&reference["flagged_input_ids"])) {
            let got = flagged.encode(text).unwrap();
            assert_eq!(got, want, "{name}: token ids of {text:?} under {flags}");
        }
    }
    let text_reference = rows(&reference["text_embeds"]);
    let texts_embedded = block_on(clip.embed_texts(&texts)).unwrap();
    assert_embeddings_close(
        &format!("{name} text"),
        &texts_embedded,
        &text_reference,
        1e-4,
    );

    let (images, image_embeds) = check_image_files(name, clip, &reference);

    let webclip::tasks::Scoring::Sigmoid { scale, bias } = clip.scoring() else {
        panic!("{name}: SigLIP scores with a sigmoid");
    };
    let want_scale = reference["logit_scale"].as_f64().unwrap() as f32;
    let want_bias = reference["logit_bias"].as_f64().unwrap() as f32;
    assert!(
        (scale - want_scale.exp()).abs() <= 1e-4 * scale,
        "{name} logit_scale"
    );
    assert!((bias - want_bias).abs() <= 1e-5, "{name} logit_bias");
    let probs = rows(&reference["probs_per_image"]);
    let sigmoid = |l: f32| 1.0 / (1.0 + (-l).exp());
    for (i, image) in image_embeds.iter().enumerate() {
        for (j, text) in texts_embedded.iter().enumerate() {
            let ours = sigmoid(clip.scoring().logit(webclip::tasks::dot(image, text)));
            let diff = (ours - probs[i][j]).abs();
            assert!(
                diff <= 1e-4,
                "{name}: image {i}, text {j}: sigmoid differs by {diff}"
            );
        }
    }
    // classify gives the same independent probabilities (texts 0-2 as labels, as they are).
    let labels = &texts[..3];
    let scores = block_on(clip.classify(&images[0], labels, &["{}"], webclip::Ensemble::Mean));
    for score in scores.unwrap() {
        let j = labels.iter().position(|l| *l == score.label).unwrap();
        let diff = (score.score - probs[0][j]).abs();
        assert!(
            diff <= 1e-4,
            "{name}: classify {:?}: diff {diff}",
            score.label
        );
    }
}

#[test]
fn siglip_directories_match_transformers_end_to_end() {
    let cpu = Backend::Cpu.device().unwrap();
    let wgpu = Backend::Wgpu.device();
    if let Err(e) = &wgpu {
        eprintln!("skipping SigLIP on wgpu: {e}");
    }
    for device in std::iter::once(cpu).chain(wgpu.ok()) {
        // SigLIP (a SentencePiece tokenizer, bicubic; an fp16 twin, bilinear) and SigLIP 2 at a
        // fixed resolution (Gemma-style byte-fallback BPE, lower case, padded on the left).
        for name in ["tiny-siglip", "tiny-siglip-fp16", "tiny-siglip2"] {
            let dir = model_dir(name);
            let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
            assert_eq!(Family::detect(&config), Family::Clip);
            let clip = Clip::load_dir(&dir, &device).unwrap();
            check_siglip(name, &clip);
        }
    }
}

#[test]
fn the_wgpu_device_can_be_asked_for_more_than_once() {
    // burn registers its wgpu runtime once per process: later calls share the first device.
    let first = Backend::Wgpu.device();
    let second = Backend::Wgpu.device();
    assert_eq!(first.is_ok(), second.is_ok(), "{first:?} / {second:?}");
}

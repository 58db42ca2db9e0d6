//! Evaluation during training: zero-shot accuracy and retrieval recall on synthetic scenes,
//! recall on a data directory's held-out pairs.

use serde::Serialize;

use super::data::{load_image, Pair};
use super::synthetic::{Rng, Scene, Split, COLOURS, POSITIONS, SHAPES, SIZES};
use crate::error::Result;
use crate::image::RgbImage;
use crate::pipeline::{block_on, Clip};
use crate::tasks::{self, Ensemble};

/// Zero-shot accuracy on the synthetic scenes: each attribute classified on its own.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroShot {
    /// Colour accuracy on held-out colour-shape pairs (chance: 1/6).
    pub colour_accuracy: f32,
    /// Shape accuracy on held-out colour-shape pairs (chance: 1/4).
    pub shape_accuracy: f32,
    /// Colour accuracy on colour-shape pairs seen in training.
    pub seen_colour_accuracy: f32,
    /// Shape accuracy on colour-shape pairs seen in training.
    pub seen_shape_accuracy: f32,
}

/// Image-text retrieval on held-out pairs: a hit when a top-k item has the same caption.
#[derive(Debug, Clone, Serialize)]
pub struct Recall {
    pub pairs: usize,
    pub image_to_text_recall_at_1: f32,
    pub image_to_text_recall_at_5: f32,
    pub text_to_image_recall_at_1: f32,
    pub text_to_image_recall_at_5: f32,
}

/// One evaluation during training.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub step: u64,
    /// Synthetic data only.
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub zero_shot: Option<ZeroShot>,
    #[serde(flatten)]
    pub recall: Recall,
}

/// Zero-shot colour and shape accuracy on held-out colour-shape pairs and on seen pairs, and
/// image-text retrieval on 100 fresh scenes. Each attribute is classified on its own with
/// prompts: the labels are its values (e.g. the four shapes), each scored through every caption
/// that has it ("a small red {} on the left", ...), with the probability ensemble (a softmax
/// over all captions, summed per label).
pub fn synthetic(clip: &Clip, step: u64, images: usize, seed: u64) -> Result<Evaluation> {
    let side = clip.config().vision.image_size;
    let mut rng = Rng::new(seed.wrapping_add(0x5eed));
    let captions_with = |fill: &dyn Fn(&str, &str, &str, &str) -> String| -> Vec<String> {
        let mut out = Vec::new();
        for (size, _) in SIZES {
            for (colour, _) in COLOURS {
                for shape in SHAPES {
                    for (position, _) in POSITIONS {
                        out.push(fill(size, colour, shape, position));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    };
    let shape_templates =
        captions_with(&|size, colour, _, pos| format!("a {size} {colour} {{}} {pos}"));
    let colour_templates =
        captions_with(&|size, _, shape, pos| format!("a {size} {{}} {shape} {pos}"));
    let shape_prompts = block_on(clip.embed_prompts(&SHAPES, &shape_templates))?;
    let colour_names: Vec<&str> = COLOURS.iter().map(|(name, _)| *name).collect();
    let colour_prompts = block_on(clip.embed_prompts(&colour_names, &colour_templates))?;
    let scoring = clip.scoring();
    let best = |embedding: &[f32], names: &[&str], prompts: &[Vec<Vec<f32>>]| -> usize {
        let scores =
            tasks::ensemble_scores(embedding, names, prompts, scoring, Ensemble::Probability);
        names
            .iter()
            .position(|n| *n == scores[0].label)
            .expect("a known label")
    };

    let mut accuracy = |split: Split| -> Result<(f32, f32)> {
        let scenes: Vec<Scene> = (0..images)
            .map(|_| Scene::random(&mut rng, split))
            .collect();
        let rendered: Vec<_> = scenes.iter().map(|s| s.render(side, &mut rng)).collect();
        let embeddings = block_on(clip.embed_images(&rendered))?;
        let (mut colour_hits, mut shape_hits) = (0, 0);
        for (scene, embedding) in scenes.iter().zip(&embeddings) {
            colour_hits +=
                (best(embedding, &colour_names, &colour_prompts) == scene.colour) as usize;
            shape_hits += (best(embedding, &SHAPES, &shape_prompts) == scene.shape) as usize;
        }
        let n = images.max(1) as f32;
        Ok((colour_hits as f32 / n, shape_hits as f32 / n))
    };
    let (colour_accuracy, shape_accuracy) = accuracy(Split::HeldOut)?;
    let (seen_colour_accuracy, seen_shape_accuracy) = accuracy(Split::Train)?;

    // Retrieval on fresh scenes from both splits.
    let scenes: Vec<Scene> = (0..100)
        .map(|i| {
            let split = if i % 2 == 0 {
                Split::Train
            } else {
                Split::HeldOut
            };
            Scene::random(&mut rng, split)
        })
        .collect();
    let rendered: Vec<_> = scenes.iter().map(|s| s.render(side, &mut rng)).collect();
    let captions: Vec<String> = scenes.iter().map(Scene::caption).collect();
    Ok(Evaluation {
        step,
        zero_shot: Some(ZeroShot {
            colour_accuracy,
            shape_accuracy,
            seen_colour_accuracy,
            seen_shape_accuracy,
        }),
        recall: recall(clip, &rendered, &captions)?,
    })
}

/// Retrieval recall on the held-out pairs of a data directory.
pub fn held_out_pairs(clip: &Clip, step: u64, held_out: &[&Pair]) -> Result<Evaluation> {
    let mut images = Vec::new();
    let mut captions = Vec::new();
    for pair in held_out {
        if let Ok(image) = load_image(&pair.image) {
            images.push(image);
            captions.push(pair.caption.clone());
        }
    }
    Ok(Evaluation {
        step,
        zero_shot: None,
        recall: recall(clip, &images, &captions)?,
    })
}

/// Image-to-text and text-to-image recall@1 and @5 of matching pairs; identical captions count
/// as equivalent.
fn recall(clip: &Clip, images: &[RgbImage], captions: &[String]) -> Result<Recall> {
    let image_embeddings = block_on(clip.embed_images(images))?;
    let text_embeddings = block_on(clip.embed_texts(captions))?;
    let at = |queries: &[Vec<f32>], keys: &[Vec<f32>], k: usize| -> Result<f32> {
        let mut hits = 0;
        for (i, q) in queries.iter().enumerate() {
            let top = tasks::rank(q, keys, k)?;
            hits += top.iter().any(|h| captions[h.index] == captions[i]) as usize;
        }
        Ok(hits as f32 / queries.len().max(1) as f32)
    };
    Ok(Recall {
        pairs: captions.len(),
        image_to_text_recall_at_1: at(&image_embeddings, &text_embeddings, 1)?,
        image_to_text_recall_at_5: at(&image_embeddings, &text_embeddings, 5)?,
        text_to_image_recall_at_1: at(&text_embeddings, &image_embeddings, 1)?,
        text_to_image_recall_at_5: at(&text_embeddings, &image_embeddings, 5)?,
    })
}

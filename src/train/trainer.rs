//! The contrastive training loop on synthetic image-caption data: batches of rendered scenes
//! and captions, symmetric InfoNCE, AdamW with warm-up and cosine decay, periodic zero-shot
//! evaluation on held-out colour-shape pairs, export as a Hugging Face CLIP directory.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::loss::clip_loss;
use super::optim::{learning_rate, AdamW, AdamWConfig};
use super::synthetic::{Rng, Scene, Split, COLOURS, POSITIONS, SHAPES, SIZES};
use super::vocab::{self, train_tokenizer};
use crate::config::{Activation, ClipConfig, PreprocessConfig, TextConfig, VisionConfig};
use crate::error::{Error, Result};
use crate::image::preprocess;
use crate::model::{values, ClipModel, TokenBatch};
use crate::pipeline::{block_on, Clip, ClipLoader, ModelFiles};
use crate::tasks;
use crate::tokenizer::ClipTokenizer;
use crate::weights::{export_safetensors, WeightDtype};

/// What to train and how.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub model: ClipConfig,
    pub batch_size: usize,
    pub steps: u64,
    pub warmup: u64,
    pub learning_rate: f64,
    pub optimizer: AdamWConfig,
    pub seed: u64,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Held-out images per evaluation.
    pub eval_images: usize,
}

impl TrainConfig {
    /// A small model for the synthetic shapes data (well under 8 MB in fp32).
    pub fn synthetic_default() -> Self {
        Self {
            model: ClipConfig {
                text: TextConfig {
                    vocab_size: 64,
                    hidden_size: 64,
                    intermediate_size: 256,
                    num_attention_heads: 4,
                    num_hidden_layers: 2,
                    max_position_embeddings: 16,
                    hidden_act: Activation::QuickGelu,
                    layer_norm_eps: 1e-5,
                    bos_token_id: vocab::BOS_ID,
                    eos_token_id: vocab::EOS_ID,
                    pad_token_id: vocab::EOS_ID,
                },
                vision: VisionConfig {
                    hidden_size: 64,
                    intermediate_size: 256,
                    num_attention_heads: 4,
                    num_hidden_layers: 3,
                    image_size: 32,
                    patch_size: 8,
                    num_channels: 3,
                    hidden_act: Activation::QuickGelu,
                    layer_norm_eps: 1e-5,
                },
                projection_dim: 64,
                logit_scale_init_value: (1.0f64 / 0.07).ln(),
            },
            batch_size: 64,
            steps: 1000,
            warmup: 50,
            learning_rate: 1e-3,
            optimizer: AdamWConfig::default(),
            seed: 0,
            eval_every: 250,
            eval_images: 240,
        }
    }
}

/// Zero-shot and retrieval results on held-out data.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub step: u64,
    /// Colour accuracy on held-out colour-shape pairs (chance: 1/6).
    pub colour_accuracy: f32,
    /// Shape accuracy on held-out colour-shape pairs (chance: 1/4).
    pub shape_accuracy: f32,
    /// Colour accuracy on colour-shape pairs seen in training.
    pub seen_colour_accuracy: f32,
    /// Shape accuracy on colour-shape pairs seen in training.
    pub seen_shape_accuracy: f32,
    pub image_to_text_recall_at_1: f32,
    pub image_to_text_recall_at_5: f32,
    pub text_to_image_recall_at_1: f32,
    pub text_to_image_recall_at_5: f32,
}

/// One progress report.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: u64,
    pub loss: f32,
    /// `exp(logit_scale)`.
    pub temperature_inverse: f32,
    pub learning_rate: f64,
    pub grad_norm: f32,
    pub pairs_per_second: f32,
}

/// A trained model, ready to write or use.
pub struct Trained {
    pub config: ClipConfig,
    pub tokenizer_json: String,
    pub preprocess: PreprocessConfig,
    pub weights: Vec<u8>,
    pub evaluations: Vec<Evaluation>,
    pub seconds: f64,
}

impl Trained {
    /// Write a Hugging Face CLIP directory: `config.json`, `model.safetensors`,
    /// `tokenizer.json`, `preprocessor_config.json`.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| Error::io(path, e))
        };
        write("config.json", self.config.to_json().as_bytes())?;
        write("model.safetensors", &self.weights)?;
        write("tokenizer.json", self.tokenizer_json.as_bytes())?;
        write(
            "preprocessor_config.json",
            self.preprocess.to_json().as_bytes(),
        )
    }

    /// Load the trained model for inference on `device`.
    pub fn load(&self, device: &Device) -> Result<Clip> {
        let preprocess = self.preprocess.to_json();
        let files = ModelFiles {
            config: &self.config.to_json(),
            tokenizer: self.tokenizer_json.as_bytes(),
            preprocessor: Some(&preprocess),
        };
        let mut loader = ClipLoader::new(files, device, Some(self.weights.len() as u64))?;
        loader.push_weights(&self.weights)?;
        block_on(loader.finish())
    }
}

/// A batch of synthetic pairs as tensors.
fn batch(
    rng: &mut Rng,
    split: Split,
    size: usize,
    config: &ClipConfig,
    preprocess_config: &PreprocessConfig,
    tokenizer: &ClipTokenizer,
    device: &Device,
) -> Result<(Tensor<4>, TokenBatch)> {
    let side = config.vision.image_size;
    let mut pixels = Vec::with_capacity(size * 3 * side * side);
    let mut ids = Vec::with_capacity(size);
    let mut scenes = Vec::with_capacity(size + 3);
    while scenes.len() < size {
        scenes.extend(Scene::group(rng, split));
    }
    scenes.truncate(size);
    for scene in scenes {
        pixels.extend(preprocess(&scene.render(side, rng), preprocess_config).0);
        ids.push(tokenizer.encode(&scene.caption())?);
    }
    let pixels = Tensor::from_data(TensorData::new(pixels, [size, 3, side, side]), device);
    Ok((pixels, TokenBatch::new(&ids, &config.text, device)?))
}

/// Train on synthetic shapes; `on_step` receives progress every `report_every` steps,
/// `on_eval` each evaluation.
pub fn train_synthetic(
    config: &TrainConfig,
    device: &Device,
    report_every: u64,
    mut on_step: impl FnMut(&StepReport),
    mut on_eval: impl FnMut(&Evaluation),
) -> Result<Trained> {
    let start = Instant::now();
    let captions = super::synthetic::all_captions();
    let tokenizer_json = train_tokenizer(&captions, config.model.text.vocab_size)?;
    let tokenizer = ClipTokenizer::from_bytes(
        tokenizer_json.as_bytes(),
        config.model.text.max_position_embeddings,
    )?;
    let mut model_config = config.model.clone();
    model_config.text.vocab_size = tokenizer.inner().get_vocab_size(true);
    model_config.validate()?;
    let preprocess = PreprocessConfig::openai(model_config.vision.image_size);

    device.seed(config.seed);
    let train_device = device.clone().autodiff();
    let mut model = ClipModel::new(&model_config, &train_device);
    let mut optimizer = AdamW::new(config.optimizer);
    let mut rng = Rng::new(config.seed);
    let mut evaluations = Vec::new();
    let mut window = (Instant::now(), 0usize);

    let export = |model: &ClipModel, evaluations: Vec<Evaluation>| -> Result<Trained> {
        Ok(Trained {
            config: model_config.clone(),
            tokenizer_json: tokenizer_json.clone(),
            preprocess: preprocess.clone(),
            weights: export_safetensors(model, WeightDtype::F32)?,
            evaluations,
            seconds: start.elapsed().as_secs_f64(),
        })
    };

    for step in 0..config.steps {
        let lr = learning_rate(step, config.warmup, config.steps, config.learning_rate);
        let (pixels, tokens) = batch(
            &mut rng,
            Split::Train,
            config.batch_size,
            &model_config,
            &preprocess,
            &tokenizer,
            &train_device,
        )?;
        let image = model.embed_images(pixels);
        let text = model.embed_texts(&tokens);
        let loss = clip_loss(image, text, model.logit_scale.val());
        let grads = loss.backward();
        let grad_norm = optimizer.step(&mut model, &grads, lr)?;
        window.1 += config.batch_size;

        let last = step + 1 == config.steps;
        if (step + 1) % report_every.max(1) == 0 || last {
            let read = |t: Tensor<1>| -> Result<f32> { Ok(values(t.inner())?[0]) };
            let elapsed = window.0.elapsed().as_secs_f32();
            on_step(&StepReport {
                step: step + 1,
                loss: read(loss)?,
                temperature_inverse: read(model.logit_scale.val())?.exp(),
                learning_rate: lr,
                grad_norm,
                pairs_per_second: window.1 as f32 / elapsed.max(1e-6),
            });
            window = (Instant::now(), 0);
        }
        let evaluate_now = last || (config.eval_every > 0 && (step + 1) % config.eval_every == 0);
        if evaluate_now {
            let trained = export(&model, Vec::new())?;
            let clip = trained.load(device)?;
            let evaluation = evaluate(&clip, step + 1, config.eval_images, config.seed)?;
            on_eval(&evaluation);
            evaluations.push(evaluation);
        }
    }
    export(&model, evaluations)
}

/// Zero-shot colour and shape accuracy on held-out colour-shape pairs and on seen pairs, and
/// image-text retrieval recall on fresh pairs. Each attribute is classified on its own, as
/// zero-shot CLIP does: the labels are its values (e.g. the four shapes), each scored with a
/// prompt ensemble over every value of the other attributes ("a small red {} on the left", ...).
pub fn evaluate(clip: &Clip, step: u64, images: usize, seed: u64) -> Result<Evaluation> {
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
    let shape_labels = block_on(clip.embed_labels(&SHAPES, &shape_templates))?;
    let colour_names: Vec<&str> = COLOURS.iter().map(|(name, _)| *name).collect();
    let colour_labels = block_on(clip.embed_labels(&colour_names, &colour_templates))?;
    let best = |embedding: &[f32], labels: &[Vec<f32>]| -> usize {
        (0..labels.len())
            .max_by(|&a, &b| {
                tasks::dot(embedding, &labels[a]).total_cmp(&tasks::dot(embedding, &labels[b]))
            })
            .expect("labels are not empty")
    };

    let mut accuracy = |split: Split| -> Result<(f32, f32)> {
        let scenes: Vec<Scene> = (0..images)
            .map(|_| Scene::random(&mut rng, split))
            .collect();
        let rendered: Vec<_> = scenes.iter().map(|s| s.render(side, &mut rng)).collect();
        let embeddings = block_on(clip.embed_images(&rendered))?;
        let (mut colour_hits, mut shape_hits) = (0, 0);
        for (scene, embedding) in scenes.iter().zip(&embeddings) {
            colour_hits += (best(embedding, &colour_labels) == scene.colour) as usize;
            shape_hits += (best(embedding, &shape_labels) == scene.shape) as usize;
        }
        let n = images.max(1) as f32;
        Ok((colour_hits as f32 / n, shape_hits as f32 / n))
    };
    let (colour_accuracy, shape_accuracy) = accuracy(Split::HeldOut)?;
    let (seen_colour_accuracy, seen_shape_accuracy) = accuracy(Split::Train)?;

    // Retrieval on fresh pairs from both splits: 100 images against their 100 captions.
    let count = 100;
    let scenes: Vec<Scene> = (0..count)
        .map(|i| {
            Scene::random(
                &mut rng,
                if i % 2 == 0 {
                    Split::Train
                } else {
                    Split::HeldOut
                },
            )
        })
        .collect();
    let rendered: Vec<_> = scenes.iter().map(|s| s.render(side, &mut rng)).collect();
    let image_embeddings = block_on(clip.embed_images(&rendered))?;
    let captions: Vec<String> = scenes.iter().map(Scene::caption).collect();
    let text_embeddings = block_on(clip.embed_texts(&captions))?;
    // A hit when the retrieved item has the same caption (identical captions are equivalent).
    let recall = |queries: &[Vec<f32>], keys: &[Vec<f32>], k: usize| -> Result<f32> {
        let mut hits = 0;
        for (i, q) in queries.iter().enumerate() {
            let top = tasks::rank(q, keys, k)?;
            hits += top.iter().any(|h| captions[h.index] == captions[i]) as usize;
        }
        Ok(hits as f32 / queries.len() as f32)
    };
    Ok(Evaluation {
        step,
        colour_accuracy,
        shape_accuracy,
        seen_colour_accuracy,
        seen_shape_accuracy,
        image_to_text_recall_at_1: recall(&image_embeddings, &text_embeddings, 1)?,
        image_to_text_recall_at_5: recall(&image_embeddings, &text_embeddings, 5)?,
        text_to_image_recall_at_1: recall(&text_embeddings, &image_embeddings, 1)?,
        text_to_image_recall_at_5: recall(&text_embeddings, &image_embeddings, 5)?,
    })
}

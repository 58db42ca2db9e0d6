//! The contrastive training loop: batches of image-caption pairs (synthetic scenes or a data
//! directory), symmetric InfoNCE, AdamW with warm-up and cosine decay, periodic evaluation on
//! held-out data (zero-shot accuracy on unseen colour-shape pairs, retrieval recall), export as
//! a Hugging Face CLIP directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::checkpoint::{self, TrainerState};
use super::data::{load_image, CaptionDataset, Pair};
use super::loss::clip_loss;
use super::optim::{learning_rate, AdamW, AdamWConfig};
use super::synthetic::{Rng, Scene, Split, COLOURS, POSITIONS, SHAPES, SIZES};
use super::vocab::{self, train_tokenizer};
use crate::config::{Activation, ClipConfig, PreprocessConfig, TextConfig, VisionConfig};
use crate::error::{Error, Result};
use crate::image::{preprocess, RgbImage};
use crate::model::{values, ClipModel, TokenBatch};
use crate::pipeline::{block_on, Clip, ClipLoader, ModelFiles};
use crate::tasks::{self, Ensemble};
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
    /// Seeds parameter initialisation (burn's generator for the device, which is shared by the
    /// whole process: start one training at a time for reproducible runs) and the data.
    pub seed: u64,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Held-out images per evaluation (synthetic data).
    pub eval_images: usize,
    /// A `tokenizer.json` to reuse (e.g. CLIP's); `None` trains a BPE vocabulary of the
    /// model's `vocab_size` on the captions.
    pub tokenizer: Option<String>,
    /// Write a checkpoint under `checkpoint_dir` every this many steps (0: never); see
    /// [`checkpoint`] for the layout.
    pub checkpoint_every: u64,
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from a checkpoint, as [`checkpoint::resolve`] chose it.
    pub resume: Option<checkpoint::Resolved>,
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
                    num_hidden_layers: 6,
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
            tokenizer: None,
            checkpoint_every: 0,
            checkpoint_dir: None,
            resume: None,
        }
    }

    /// Check the settings before anything is allocated (the model's sizes are checked by
    /// [`ClipConfig::validate`] once the vocabulary is known).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Input(what));
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return bad(format!(
                "batch size {} is outside 1..={MAX_BATCH}",
                self.batch_size
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return bad(format!(
                "learning rate {} is not a finite non-negative number",
                self.learning_rate
            ));
        }
        let o = &self.optimizer;
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay {} is not a finite non-negative number",
                o.weight_decay
            ));
        }
        if self.eval_images > MAX_EVAL_IMAGES {
            return bad(format!(
                "{} evaluation images exceed the limit of {MAX_EVAL_IMAGES}",
                self.eval_images
            ));
        }
        if self.checkpoint_every > 0 && self.checkpoint_dir.is_none() {
            return bad("checkpoints need a checkpoint directory".into());
        }
        Ok(())
    }
}

/// The largest training batch accepted.
pub const MAX_BATCH: usize = 1 << 16;
/// The most images per zero-shot evaluation.
const MAX_EVAL_IMAGES: usize = 100_000;

/// Where training pairs come from.
pub enum TrainData {
    /// The built-in synthetic scenes: batches of hard-negative groups from the training
    /// colour-shape pairs, evaluated zero-shot on the held-out pairs.
    Synthetic,
    /// Image-caption pairs on disk; every tenth pair (at most 200) is held out for evaluation.
    Captions(CaptionDataset),
}

impl TrainData {
    /// The pairs to train on and the held-out pairs (a data directory's; none when synthetic).
    pub fn split(&self) -> (Vec<&Pair>, Vec<&Pair>) {
        let TrainData::Captions(dataset) = self else {
            return (Vec::new(), Vec::new());
        };
        let holds_out = |i: usize| dataset.pairs.len() >= 20 && i % 10 == 9 && i / 10 < 200;
        let (mut train, mut held_out) = (Vec::new(), Vec::new());
        for (i, pair) in dataset.pairs.iter().enumerate() {
            if holds_out(i) {
                held_out.push(pair);
            } else {
                train.push(pair);
            }
        }
        (train, held_out)
    }

    /// Every caption, for training a tokenizer.
    fn captions(&self) -> Vec<String> {
        match self {
            TrainData::Synthetic => super::synthetic::all_captions(),
            TrainData::Captions(dataset) => {
                dataset.pairs.iter().map(|p| p.caption.clone()).collect()
            }
        }
    }
}

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
    /// Images of a data directory that failed to decode during training (skipped).
    pub unreadable_during_training: usize,
    pub seconds: f64,
}

impl Trained {
    /// The files of a Hugging Face CLIP directory: `config.json`, `model.safetensors`,
    /// `tokenizer.json`, `preprocessor_config.json`.
    pub fn files(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("config.json", self.config.to_json().into_bytes()),
            ("model.safetensors", self.weights.clone()),
            ("tokenizer.json", self.tokenizer_json.clone().into_bytes()),
            (
                "preprocessor_config.json",
                self.preprocess.to_json().into_bytes(),
            ),
        ]
    }

    /// Write the Hugging Face CLIP directory ([`Trained::files`]), each file atomically.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for (name, bytes) in self.files() {
            checkpoint::write_atomic(&dir.join(name), &bytes)?;
        }
        Ok(())
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

/// The share of synthetic scenes drawn in a colour with no name, captioned without a colour.
const UNNAMED_COLOUR_FRACTION: f32 = 0.4;

/// Draw `count` training pairs: hard-negative groups of synthetic scenes, each rendered at 1-4x
/// the model's resolution and preprocessed like any input image (so that the model sees the
/// resampling of larger pictures, as in the demo); or random pairs of a data directory.
fn draw_pairs(
    data: &[&Pair],
    rng: &mut Rng,
    count: usize,
    side: usize,
    unreadable: &mut usize,
) -> Result<Vec<(RgbImage, String)>> {
    let mut pairs = Vec::with_capacity(count);
    if data.is_empty() {
        let mut scenes = Vec::with_capacity(count + 3);
        while scenes.len() < count {
            scenes.extend(Scene::group(rng, Split::Train));
        }
        for scene in &scenes[..count] {
            let scale = 1 + rng.below(4);
            if rng.unit() < UNNAMED_COLOUR_FRACTION {
                let image = scene.render_unnamed_colour(side * scale, rng);
                pairs.push((image, scene.caption_without_colour()));
            } else {
                pairs.push((scene.render(side * scale, rng), scene.caption()));
            }
        }
        return Ok(pairs);
    }
    while pairs.len() < count {
        let pair = data[rng.below(data.len())];
        match load_image(&pair.image) {
            Ok(image) => pairs.push((image, pair.caption.clone())),
            // Checked on open, so this is a file changed since: skip it, unless it is all of them.
            Err(e) => {
                *unreadable += 1;
                if *unreadable > data.len() {
                    return Err(e);
                }
            }
        }
    }
    Ok(pairs)
}

/// Turn pairs into model inputs.
fn to_tensors(
    pairs: &[(RgbImage, String)],
    config: &ClipConfig,
    preprocess_config: &PreprocessConfig,
    tokenizer: &ClipTokenizer,
    device: &Device,
) -> Result<(Tensor<4>, TokenBatch)> {
    let side = config.vision.image_size;
    let mut pixels = Vec::with_capacity(pairs.len() * 3 * side * side);
    let mut ids = Vec::with_capacity(pairs.len());
    for (image, caption) in pairs {
        pixels.extend(preprocess(image, preprocess_config)?.0);
        ids.push(tokenizer.encode(caption)?);
    }
    let pixels = Tensor::from_data(
        TensorData::new(pixels, [pairs.len(), 3, side, side]),
        device,
    );
    Ok((pixels, TokenBatch::new(&ids, &config.text, device)?))
}

/// Train on `data`; `on_step` receives progress every `report_every` steps, `on_eval` each
/// evaluation.
pub fn train(
    config: &TrainConfig,
    data: &TrainData,
    device: &Device,
    report_every: u64,
    mut on_step: impl FnMut(&StepReport),
    mut on_eval: impl FnMut(&Evaluation),
) -> Result<Trained> {
    config.validate()?;
    let start = Instant::now();
    let mut optimizer = AdamW::new(config.optimizer);
    let train_device = device.clone().autodiff();
    let resumed = match &config.resume {
        Some(checkpoint) => Some(checkpoint::read(checkpoint, &mut optimizer, device)?),
        None => None,
    };
    let tokenizer_json = match (&resumed, &config.tokenizer) {
        (Some(resumed), _) => resumed.tokenizer_json.clone(),
        (None, Some(json)) => json.clone(),
        (None, None) => train_tokenizer(&data.captions(), config.model.text.vocab_size)?,
    };
    let text_config = resumed
        .as_ref()
        .map_or(&config.model.text, |r| &r.config.text);
    let tokenizer = ClipTokenizer::from_bytes(
        tokenizer_json.as_bytes(),
        text_config.max_position_embeddings,
    )?;
    let (mut model, model_config, mut rng, first_step) = match resumed {
        Some(resumed) => (
            resumed.model,
            resumed.config,
            Rng::from_state(resumed.state.rng),
            resumed.state.step,
        ),
        None => {
            device.seed(config.seed);
            let mut model_config = config.model.clone();
            model_config.text.vocab_size = tokenizer.inner().get_vocab_size(true);
            model_config.validate()?;
            let model = ClipModel::new(&model_config, &train_device);
            (model, model_config, Rng::new(config.seed), 0)
        }
    };
    // The exported directory is read back with transformers' rules: train with them too.
    let preprocess = PreprocessConfig::clip_image_processor(model_config.vision.image_size);
    let (train_pairs, held_out) = data.split();
    let mut evaluations = Vec::new();
    let mut unreadable = 0;
    let mut window = (Instant::now(), 0usize);

    let export = |model: &ClipModel, evaluations: Vec<Evaluation>, unreadable| -> Result<Trained> {
        Ok(Trained {
            config: model_config.clone(),
            tokenizer_json: tokenizer_json.clone(),
            preprocess: preprocess.clone(),
            weights: export_safetensors(model, WeightDtype::F32)?,
            evaluations,
            unreadable_during_training: unreadable,
            seconds: start.elapsed().as_secs_f64(),
        })
    };

    for step in first_step..config.steps {
        let lr = learning_rate(step, config.warmup, config.steps, config.learning_rate);
        let side = model_config.vision.image_size;
        let pairs = draw_pairs(
            &train_pairs,
            &mut rng,
            config.batch_size,
            side,
            &mut unreadable,
        )?;
        let (pixels, tokens) = to_tensors(
            &pairs,
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
        let every = |n: u64| n > 0 && (step + 1) % n == 0;
        if let (true, false, Some(dir)) =
            (every(config.checkpoint_every), last, &config.checkpoint_dir)
        {
            let state = TrainerState {
                step: step + 1,
                rng: rng.state(),
            };
            let files = export(&model, Vec::new(), unreadable)?.files();
            checkpoint::write(dir, files, &optimizer, state)?;
        }
        let evaluate_now = last || every(config.eval_every);
        if evaluate_now {
            let clip = block_on(Clip::from_parts(
                model.valid(),
                model_config.clone(),
                tokenizer.clone(),
                preprocess.clone(),
                device,
            ))?;
            let evaluation = match data {
                TrainData::Synthetic => evaluate(&clip, step + 1, config.eval_images, config.seed)?,
                TrainData::Captions(_) => evaluate_pairs(&clip, step + 1, &held_out)?,
            };
            on_eval(&evaluation);
            evaluations.push(evaluation);
        }
    }
    export(&model, evaluations, unreadable)
}

/// Zero-shot colour and shape accuracy on held-out colour-shape pairs and on seen pairs, and
/// image-text retrieval on 100 fresh scenes. Each attribute is classified on its own with
/// prompts: the labels are its values (e.g. the four shapes), each scored through every caption
/// that has it ("a small red {} on the left", ...), with the probability ensemble (a softmax
/// over all captions, summed per label).
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
    let shape_prompts = block_on(clip.embed_prompts(&SHAPES, &shape_templates))?;
    let colour_names: Vec<&str> = COLOURS.iter().map(|(name, _)| *name).collect();
    let colour_prompts = block_on(clip.embed_prompts(&colour_names, &colour_templates))?;
    let scale = clip.logit_scale();
    let best = |embedding: &[f32], names: &[&str], prompts: &[Vec<Vec<f32>>]| -> usize {
        let scores =
            tasks::ensemble_scores(embedding, names, prompts, scale, Ensemble::Probability);
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
fn evaluate_pairs(clip: &Clip, step: u64, held_out: &[&Pair]) -> Result<Evaluation> {
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

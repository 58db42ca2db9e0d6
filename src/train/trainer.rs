//! The contrastive training loop: batches of image-caption pairs from a [`TrainData`],
//! symmetric InfoNCE, AdamW with warm-up and cosine decay, checkpoints, periodic evaluation
//! (whatever the data source evaluates), export as a Hugging Face CLIP directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::checkpoint::{self, TrainerState};
use super::data::TrainData;
use super::evaluate::Evaluation;
use super::loss::model_loss;
use super::optim::{learning_rate, AdamW, AdamWConfig};
use super::synthetic::Rng;
use super::vocab::{self, train_tokenizer};
use crate::config::{
    Activation, Architecture, ClipConfig, PreprocessConfig, TextConfig, TextPooling, VisionConfig,
    VisionPooling,
};
use crate::error::{Error, Result};
use crate::image::{preprocess, RgbImage};
use crate::model::{on_worker, values, ClipModel, TokenBatch};
use crate::pipeline::{block_on, Clip, ClipLoader, ModelFiles};
use crate::tokenizer::ClipTokenizer;
use crate::weights::{export_safetensors, ParamTable, WeightDtype};

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
                    projection_size: None,
                    pooling: TextPooling::Eos,
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
                    pooling: VisionPooling::ClassToken,
                },
                projection_dim: 64,
                logit_scale_init_value: (1.0f64 / 0.07).ln(),
                architecture: Architecture::Clip,
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
    /// SigLIP: `tokenizer_config.json`, naming the pad token the text was padded with.
    pub tokenizer_config: Option<String>,
    pub preprocess: PreprocessConfig,
    pub weights: Vec<u8>,
    pub evaluations: Vec<Evaluation>,
    /// Images of a data directory that failed to decode during training (skipped).
    pub unreadable_during_training: usize,
    pub seconds: f64,
}

impl Trained {
    /// The files of a Hugging Face CLIP or SigLIP directory: `config.json`,
    /// `model.safetensors`, `tokenizer.json`, `preprocessor_config.json` (SigLIP: and
    /// `tokenizer_config.json`).
    pub fn files(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut files = vec![
            ("config.json", self.config.to_json().into_bytes()),
            ("model.safetensors", self.weights.clone()),
            ("tokenizer.json", self.tokenizer_json.clone().into_bytes()),
            (
                "preprocessor_config.json",
                self.preprocess.to_json().into_bytes(),
            ),
        ];
        if let Some(config) = &self.tokenizer_config {
            files.push(("tokenizer_config.json", config.clone().into_bytes()));
        }
        files
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
            tokenizer_config: self.tokenizer_config.as_deref(),
            preprocessor: Some(&preprocess),
        };
        let mut loader = ClipLoader::new(files, device, Some(self.weights.len() as u64))?;
        loader.push_weights(&self.weights)?;
        block_on(loader.finish())
    }
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

/// One optimizer step on a batch: both towers, the model's loss, backward, AdamW at `lr`.
/// Returns the loss and the gradient's global norm (before clipping). On the CPU it all runs
/// on a worker of the thread pool ([`on_worker`]).
pub fn optimizer_step(
    model: &mut ClipModel,
    optimizer: &mut AdamW,
    pixels: Tensor<4>,
    tokens: &TokenBatch,
    lr: f64,
) -> Result<(Tensor<1>, f32)> {
    on_worker(&pixels.device(), || {
        let image = model.embed_images(pixels);
        let loss = model_loss(model, image, model.embed_texts(tokens));
        let grads = loss.backward();
        let grad_norm = optimizer.step(model, &grads, lr)?;
        Ok((loss, grad_norm))
    })
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
    let train_device = device.clone().autodiff();
    let resumed = match &config.resume {
        Some(checkpoint) => Some(checkpoint::read(checkpoint, config.optimizer, device)?),
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
    let context = text_config.max_position_embeddings;
    let clip_tokenizer = ClipTokenizer::from_bytes(tokenizer_json.as_bytes(), context)?;
    let (mut model, mut optimizer, model_config, mut rng, first_step) = match resumed {
        Some(resumed) => (
            resumed.model,
            resumed.optimizer,
            resumed.config,
            Rng::from_state(resumed.state.rng),
            resumed.state.step,
        ),
        None => {
            device.seed(config.seed);
            let mut model_config = config.model.clone();
            model_config.text.vocab_size = clip_tokenizer.inner().get_vocab_size(true);
            model_config.validate()?;
            let model = ClipModel::new(&model_config, &train_device);
            let table = ParamTable::new(&model, &model_config);
            let optimizer = AdamW::new(config.optimizer, table);
            (model, optimizer, model_config, Rng::new(config.seed), 0)
        }
    };
    // SigLIP pads its text to the context: with the config's pad token, which its
    // tokenizer_config.json names for whoever loads the export.
    let (tokenizer, tokenizer_config) = match model_config.architecture {
        Architecture::Clip => (clip_tokenizer, None),
        Architecture::Siglip => {
            let pad = model_config.text.pad_token_id;
            let pad = clip_tokenizer.inner().id_to_token(pad).ok_or_else(|| {
                Error::Input(format!("pad_token_id {pad} is not in the tokenizer"))
            })?;
            let tokenizer_config = serde_json::json!({ "pad_token": pad }).to_string();
            let json = tokenizer_json.as_bytes();
            let tokenizer = ClipTokenizer::siglip(json, Some(&tokenizer_config), context)?;
            (tokenizer, Some(tokenizer_config))
        }
    };
    // The exported directory is read back with transformers' rules: train with them too.
    let preprocess =
        PreprocessConfig::defaults(model_config.architecture, model_config.vision.image_size);
    let (train_pairs, held_out) = data.split();
    let mut evaluations = Vec::new();
    let mut unreadable = 0;
    let mut window = (Instant::now(), 0usize);

    let export = |model: &ClipModel, evaluations: Vec<Evaluation>, unreadable| -> Result<Trained> {
        Ok(Trained {
            config: model_config.clone(),
            tokenizer_json: tokenizer_json.clone(),
            tokenizer_config: tokenizer_config.clone(),
            preprocess: preprocess.clone(),
            weights: export_safetensors(model, &model_config, WeightDtype::F32)?,
            evaluations,
            unreadable_during_training: unreadable,
            seconds: start.elapsed().as_secs_f64(),
        })
    };

    for step in first_step..config.steps {
        let lr = learning_rate(step, config.warmup, config.steps, config.learning_rate);
        let side = model_config.vision.image_size;
        let pairs = data.draw(
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
        let (loss, grad_norm) = optimizer_step(&mut model, &mut optimizer, pixels, &tokens, lr)?;
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
            let evaluation =
                data.evaluate(&clip, step + 1, &held_out, config.eval_images, config.seed)?;
            on_eval(&evaluation);
            evaluations.push(evaluation);
        }
    }
    export(&model, evaluations, unreadable)
}

//! Inference latency on a model of a given architecture with random weights: image and text
//! batches, medians after warm-up; and the time of one training step. `scripts/bench_reference.py`
//! (inference) and `scripts/bench_train.py` (training) run PyTorch and ONNX Runtime on the same
//! architecture in the same session and print the ratios.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use serde::Serialize;

use crate::config::{ClipConfig, TextPooling};
use crate::error::Result;
use crate::model::{ClipModel, DenseLayers, TokenBatch};
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::trainer::optimizer_step;

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct BenchCase {
    pub name: String,
    pub batch: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub runs: usize,
}

/// A ~12-token prompt (start and end tokens included), like "a photo of a small red car
/// parked next to a tree". (SigLIP pads it to its context.)
fn prompt_ids(config: &ClipConfig, len: usize) -> Vec<u32> {
    let last = config.text.vocab_size as u32 - 1;
    let eos = match config.text.pooling {
        _ if config.text.pools_at_argmax() => last,
        // SigLIP's config ids are CLIP's defaults, often outside its vocabulary: unused.
        TextPooling::Last => config.text.eos_token_id.min(last),
        TextPooling::Eos | TextPooling::Argmax => config.text.eos_token_id,
    };
    let mut ids = vec![config
        .text
        .bos_token_id
        .min(config.text.vocab_size as u32 - 2)];
    // Ordinary tokens: never 0 or 1 (special in small trained vocabularies) nor the last two.
    let span = (config.text.vocab_size as u32).saturating_sub(4).max(1);
    ids.extend((0..len - 2).map(|i| 2 + (320 + 7 * i as u32) % span));
    ids.push(eos);
    ids
}

fn time<F: FnMut() -> Result<()>>(
    name: &str,
    batch: usize,
    warmup: usize,
    runs: usize,
    mut f: F,
) -> Result<BenchCase> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(BenchCase {
        name: name.to_string(),
        batch,
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        runs,
    })
}

/// Measure image and text embedding latency for batches 1 and 8.
pub fn run(config: &ClipConfig, device: &Device, runs: usize) -> Result<Vec<BenchCase>> {
    let mut model = ClipModel::new(config, device);
    model.pack_for_cpu();
    let v = &config.vision;
    let read = |t: Tensor<2>| crate::model::values(t).map(|_| ());
    let mut cases = Vec::new();
    for batch in [1, 8] {
        let pixels = Tensor::<4>::random(
            [batch, v.num_channels, v.image_size, v.image_size],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        cases.push(time("image", batch, 2, runs, || {
            read(model.embed_images(pixels.clone()))
        })?);
    }
    for batch in [1, 8] {
        let ids = vec![prompt_ids(config, 12); batch];
        cases.push(time("text", batch, 2, runs, || {
            let tokens = TokenBatch::new(&ids, &config.text, device)?;
            read(model.embed_texts(&tokens))
        })?);
    }
    Ok(cases)
}

/// Measure one training step (forward through both towers, the model's loss, backward, AdamW)
/// on a batch of random images and 9-token captions.
pub fn train_step(
    config: &ClipConfig,
    device: &Device,
    batch: usize,
    runs: usize,
) -> Result<BenchCase> {
    let train_device = device.clone().autodiff();
    let mut model = ClipModel::new(config, &train_device);
    let table = crate::weights::ParamTable::new(&model, config);
    let mut optimizer = AdamW::new(AdamWConfig::default(), table);
    let v = &config.vision;
    let pixels = Tensor::<4>::random(
        [batch, v.num_channels, v.image_size, v.image_size],
        Distribution::Normal(0.0, 1.0),
        &train_device,
    );
    let ids = vec![prompt_ids(config, 9); batch];
    let mut case = time("train step", batch, 3, runs, || {
        let tokens = TokenBatch::new(&ids, &config.text, &train_device)?;
        let (loss, _) = optimizer_step(&mut model, &mut optimizer, pixels.clone(), &tokens, 1e-4)?;
        crate::model::values(loss.inner()).map(|_| ())
    })?;
    case.name = format!("train step ({} pairs)", batch);
    Ok(case)
}

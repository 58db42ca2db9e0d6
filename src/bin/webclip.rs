//! The webclip command line: embeddings, zero-shot classification, tokenization and
//! preprocessing on any Hugging Face CLIP directory, printed as JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use webclip::config::{siglip, Architecture};
use webclip::image::preprocess;
use webclip::pipeline::ModelDir;
use webclip::tasks::Scoring;
use webclip::train::synthetic::{Rng, Scene, Split};
use webclip::train::trainer::MAX_BATCH;
use webclip::train::{CaptionDataset, Evaluation, StepReport, TrainConfig, TrainData};
use webclip::{block_on, Backend, Clip, ClipConfig, Ensemble, Error, RgbImage, DEFAULT_TEMPLATE};

/// mimalloc keeps freed memory for reuse: the system allocator returns large blocks (the
/// activations of a forward pass) to the OS and faults them in again on every call.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "webclip",
    version,
    about = "CLIP image-text embeddings on burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// A model directory: Hugging Face CLIP (config.json, model.safetensors, tokenizer.json) or
    /// open_clip's hub layout (open_clip_config.json, open_clip_model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// A tokenizer.json to use instead of the directory's (open_clip repos often have none).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl ModelArgs {
    fn dir(&self) -> Result<ModelDir, Error> {
        ModelDir::read_with_tokenizer(&self.model, self.tokenizer.as_deref())
    }

    fn load(&self) -> Result<Clip, Error> {
        let device = Backend::parse(&self.device)?.device()?;
        Clip::load_model_dir(&self.dir()?, &device)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print L2-normalized image and text embeddings as JSON.
    Embed {
        #[command(flatten)]
        model: ModelArgs,
        /// An image file (PNG or JPEG); repeat for several.
        #[arg(long)]
        image: Vec<PathBuf>,
        /// A text; repeat for several.
        #[arg(long)]
        text: Vec<String>,
    },
    /// Zero-shot classification of one image; prints labels sorted by probability.
    Classify {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        image: PathBuf,
        /// A candidate label; repeat for several.
        #[arg(long, required = true)]
        label: Vec<String>,
        /// A prompt template with `{}` for the label; repeat, or write alternatives as
        /// `(a|b)`, for a template ensemble.
        #[arg(long)]
        template: Vec<String>,
        /// How an ensemble combines templates: mean (of prompt embeddings) or probability
        /// (a softmax over all prompts, summed per label; with SigLIP, the best prompt's).
        #[arg(long, default_value = "mean")]
        ensemble: String,
    },
    /// Print the token ids of texts (start and end tokens, no padding).
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, required = true)]
        text: Vec<String>,
    },
    /// Time image and text embedding on a model with random weights (ViT-B/32 by default).
    Bench {
        /// A config.json for the architecture; default: openai/clip-vit-base-patch32's.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Compute backend: cpu or wgpu.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Timed runs per case (after 2 warm-up runs).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Time a training step (forward, backward, AdamW) on this many pairs instead.
        #[arg(long)]
        train_batch: Option<usize>,
    },
    /// Contrastive pretraining, on a data directory or the built-in synthetic shapes; writes a
    /// Hugging Face CLIP directory. Progress goes to stderr, the evaluations to stdout as JSON.
    Train(TrainArgs),
    /// Write rendered synthetic scenes and their captions (`captions.jsonl`), e.g. as sample
    /// images or as a data directory for `train --data`.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 16)]
        count: usize,
        /// Image side in pixels.
        #[arg(long, default_value_t = 128)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Draw only colour-shape pairs held out of training.
        #[arg(long)]
        held_out: bool,
    },
    /// Print the preprocessed pixel values of an image.
    Preprocess {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        image: PathBuf,
    },
}

/// Bounds of `synth`'s arguments.
const MIN_SCENE_SIDE: usize = 8;
const MAX_SCENE_SIDE: usize = 4096;
const MAX_SCENES: usize = 1_000_000;

fn read_image(path: &Path) -> Result<RgbImage, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    RgbImage::decode(&bytes).map_err(|e| match e {
        Error::Image(message) => Error::Image(format!("{}: {message}", path.display())),
        other => other,
    })
}

fn run(cli: Cli) -> Result<serde_json::Value, Error> {
    Ok(match cli.command {
        Command::Embed { model, image, text } => {
            let clip = model.load()?;
            let images = image
                .iter()
                .map(|p| read_image(p))
                .collect::<Result<Vec<_>, _>>()?;
            let image_embeds = block_on(clip.embed_images(&images))?;
            let text_embeds = block_on(clip.embed_texts(&text))?;
            json!({"image_embeds": image_embeds, "text_embeds": text_embeds})
        }
        Command::Classify {
            model,
            image,
            label,
            template,
            ensemble,
        } => {
            let ensemble = Ensemble::parse(&ensemble)?;
            let clip = model.load()?;
            let image = read_image(&image)?;
            let templates = if template.is_empty() {
                vec![DEFAULT_TEMPLATE.to_string()]
            } else {
                template
            };
            let scores = block_on(clip.classify(&image, &label, &templates, ensemble))?;
            if let Scoring::Sigmoid { .. } = clip.scoring() {
                eprintln!(
                    "note: scores are independent sigmoid probabilities (SigLIP): they do not sum to 1"
                );
            }
            json!(scores)
        }
        Command::Tokenize { model, text } => {
            let tokenizer = model.dir()?.files().parse()?.tokenizer;
            json!({"input_ids": tokenizer.encode_batch(&text)?})
        }
        Command::Bench {
            config,
            device,
            runs,
            train_batch,
        } => {
            let config = match config {
                Some(path) => read_config(&path)?,
                None => ClipConfig::vit_base_patch32(),
            };
            if let Some(batch) = train_batch.filter(|b| !(1..=MAX_BATCH).contains(b)) {
                return Err(Error::Input(format!(
                    "--train-batch {batch} is outside 1..={MAX_BATCH}"
                )));
            }
            let device = Backend::parse(&device)?.device()?;
            let cases = match train_batch {
                Some(batch) => vec![webclip::bench::train_step(
                    &config,
                    &device,
                    batch,
                    runs.max(1),
                )?],
                None => webclip::bench::run(&config, &device, runs.max(1))?,
            };
            json!({ "cases": cases })
        }
        Command::Train(args) => train(args)?,
        Command::Synth {
            out,
            count,
            size,
            seed,
            held_out,
        } => {
            if !(MIN_SCENE_SIDE..=MAX_SCENE_SIDE).contains(&size) {
                return Err(Error::Input(format!(
                    "--size {size} is outside {MIN_SCENE_SIDE}..={MAX_SCENE_SIDE}"
                )));
            }
            if count > MAX_SCENES {
                return Err(Error::Input(format!(
                    "--count {count} exceeds the limit of {MAX_SCENES}"
                )));
            }
            let split = if held_out {
                Split::HeldOut
            } else {
                Split::Train
            };
            json!({"written": write_scenes(&out, count, size, seed, split)?})
        }
        Command::Preprocess { model, image } => {
            let config = model.dir()?.files().parse()?.preprocess;
            let (pixel_values, [c, h, w]) = preprocess(&read_image(&image)?, &config)?;
            json!({"shape": [1, c, h, w], "pixel_values": pixel_values})
        }
    })
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Output directory (config.json, model.safetensors, tokenizer.json, preprocessor_config.json).
    #[arg(long)]
    out: PathBuf,
    /// A directory with captions.jsonl ({"image": ..., "caption": ...} lines) or a CSV/TSV with
    /// filepath and caption (or title) columns; default: the built-in synthetic shapes.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A Hugging Face style `config.json` for the model (random init); default: the small
    /// synthetic preset. The vocabulary size follows the tokenizer.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A `tokenizer.json` to reuse (e.g. CLIP's); default: train a BPE vocabulary of the
    /// config's `vocab_size` on the captions.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The objective: contrastive (CLIP's softmax InfoNCE) or sigmoid (SigLIP's pairwise
    /// sigmoid loss; trains the SigLIP model of the config's sizes, exported as a SiglipModel).
    /// Default: the config's family.
    #[arg(long)]
    loss: Option<String>,
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Train for this many passes over a data directory's training pairs (sets --steps).
    #[arg(long, requires = "data")]
    epochs: Option<f64>,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate (linear warm-up, then cosine decay).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 50)]
    warmup: u64,
    #[arg(long, default_value_t = 0.2)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Evaluate zero-shot accuracy and recall every N steps (0: only at the end).
    #[arg(long, default_value_t = 250)]
    eval_every: u64,
    /// Write a checkpoint every N steps (0: never) to <out>/checkpoint/step-N (the last two
    /// are kept; each is complete or absent, even if training is killed).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: u64,
    /// Continue from a checkpoint (model, tokenizer, optimizer and data state): <out>/checkpoint
    /// for the newest complete one, or one step-N directory; the other flags should match the
    /// interrupted run's.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Images per split for the zero-shot evaluation (synthetic data).
    #[arg(long, default_value_t = 240)]
    eval_images: usize,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Image side in pixels (default: the model config's).
    #[arg(long)]
    image_size: Option<usize>,
    /// Patch side in pixels (default: the model config's).
    #[arg(long)]
    patch_size: Option<usize>,
}

fn read_config(path: &Path) -> Result<ClipConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    ClipConfig::from_json(&text)
}

fn train(args: TrainArgs) -> Result<serde_json::Value, Error> {
    let mut config = TrainConfig::synthetic_default();
    if let Some(path) = &args.config {
        config.model = read_config(path)?;
    }
    match (args.loss.as_deref(), config.model.architecture) {
        (None, _)
        | (Some("contrastive"), Architecture::Clip)
        | (Some("sigmoid"), Architecture::Siglip) => {}
        (Some("sigmoid"), Architecture::Clip) => config.model = siglip::from_clip(&config.model),
        (Some("contrastive"), Architecture::Siglip) => {
            return Err(Error::Input(
                "a SigLIP config trains with the sigmoid loss (--loss sigmoid)".into(),
            ))
        }
        (Some(other), _) => {
            return Err(Error::Input(format!(
                "unknown loss \"{other}\" (expected contrastive or sigmoid)"
            )))
        }
    }
    if let Some(path) = &args.tokenizer {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        config.tokenizer = Some(text);
    }
    let vision = &mut config.model.vision;
    vision.image_size = args.image_size.unwrap_or(vision.image_size);
    vision.patch_size = args.patch_size.unwrap_or(vision.patch_size);
    config.steps = args.steps;
    config.batch_size = args.batch_size;
    config.learning_rate = args.lr;
    config.warmup = args.warmup;
    config.optimizer.weight_decay = args.weight_decay;
    config.seed = args.seed;
    config.eval_every = args.eval_every;
    config.eval_images = args.eval_images;
    config.checkpoint_every = args.checkpoint_every;
    config.checkpoint_dir = Some(args.out.join("checkpoint"));
    if let Some(path) = &args.resume {
        let resolved = webclip::train::checkpoint::resolve(path)?;
        for (dir, why) in &resolved.skipped {
            eprintln!("skipping checkpoint {}: {why}", dir.display());
        }
        eprintln!(
            "resuming from {} (step {})",
            resolved.dir.display(),
            resolved.step
        );
        config.resume = Some(resolved);
    }
    let (data, skipped) = match &args.data {
        Some(dir) => {
            let dataset = CaptionDataset::open(dir)?;
            let skipped = dataset.skipped.clone();
            eprintln!(
                "{}: {} pairs; skipped {} with empty captions, {} unreadable images, {} malformed lines",
                dir.display(),
                dataset.pairs.len(),
                skipped.empty_captions,
                skipped.unreadable_images,
                skipped.malformed_lines
            );
            (TrainData::Captions(dataset), Some(skipped))
        }
        None => (TrainData::Synthetic, None),
    };
    if let Some(epochs) = args.epochs {
        if !(epochs.is_finite() && epochs > 0.0) {
            return Err(Error::Input(format!(
                "--epochs {epochs} is not a positive number"
            )));
        }
        let pairs = data.split().0.len() as f64;
        config.steps = (epochs * pairs / config.batch_size.max(1) as f64)
            .ceil()
            .max(1.0) as u64;
    }
    let device = Backend::parse(&args.device)?.device()?;
    let bar = ProgressBar::new(config.steps).with_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = |r: &StepReport| {
        let line = format!(
            "loss {:.4}  1/T {:.2}  lr {:.2e}  |g| {:.3}  {:.0} pairs/s",
            r.loss, r.temperature_inverse, r.learning_rate, r.grad_norm, r.pairs_per_second
        );
        if bar.is_hidden() {
            eprintln!("step {:>6}/{}  {line}", r.step, config.steps);
        } else {
            bar.set_position(r.step);
            bar.set_message(line);
        }
    };
    let eval = |e: &Evaluation| {
        bar.suspend(|| eprintln!("eval  {}", serde_json::to_string(e).unwrap_or_default()))
    };
    let trained = webclip::train::train(&config, &data, &device, 10, report, eval)?;
    bar.finish_and_clear();
    trained.write_dir(&args.out)?;
    eprintln!("wrote {} ({:.0} s)", args.out.display(), trained.seconds);
    Ok(json!({
        "seconds": trained.seconds,
        "evaluations": trained.evaluations,
        "skipped": skipped,
        "unreadable_during_training": trained.unreadable_during_training,
    }))
}

/// Render `count` synthetic scenes as PNGs with a `captions.jsonl`.
fn write_scenes(
    out: &Path,
    count: usize,
    size: usize,
    seed: u64,
    split: Split,
) -> Result<usize, Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut rng = Rng::new(seed);
    let mut lines = String::new();
    for i in 0..count {
        let scene = Scene::random(&mut rng, split);
        let name = format!("{i:04}.png");
        let path = out.join(&name);
        let png = scene.render(size, &mut rng).encode_png()?;
        std::fs::write(&path, png).map_err(|e| Error::io(&path, e))?;
        lines += &json!({"image": name, "caption": scene.caption()}).to_string();
        lines.push('\n');
    }
    let index = out.join("captions.jsonl");
    std::fs::write(&index, lines).map_err(|e| Error::io(&index, e))?;
    Ok(count)
}

/// Exit status of a command-line usage error (as clap and most tools use).
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's own text (with the usage line), under webclip's error format.
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text).trim_end();
            eprintln!("error [{}]: {text}", Error::Input(String::new()).code());
            return ExitCode::from(USAGE_ERROR);
        }
    };
    match run(cli) {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            ExitCode::FAILURE
        }
    }
}

//! The webclip command line: embeddings, zero-shot classification, tokenization and
//! preprocessing on any Hugging Face CLIP directory, printed as JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use webclip::image::preprocess;
use webclip::pipeline::ModelDir;
use webclip::train::{train_synthetic, TrainConfig};
use webclip::{block_on, Backend, Clip, ClipConfig, Error, RgbImage, DEFAULT_TEMPLATE};

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
    /// A Hugging Face CLIP directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// Compute backend: cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl ModelArgs {
    fn load(&self) -> Result<Clip, Error> {
        let device = Backend::parse(&self.device)?.device()?;
        Clip::load_dir(&self.model, &device)
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
        /// A prompt template with `{}` for the label; repeat for a template ensemble.
        #[arg(long)]
        template: Vec<String>,
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
    },
    /// Contrastive pretraining on the built-in synthetic shapes data; writes a Hugging Face
    /// CLIP directory. Progress lines go to stderr, the final evaluation to stdout as JSON.
    Train {
        /// Output directory (config.json, model.safetensors, tokenizer.json, preprocessor_config.json).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        steps: u64,
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
        /// Compute backend: cpu or wgpu.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// A Hugging Face style `config.json` for the model (random init); default: the small
        /// synthetic preset. The vocabulary size follows the trained caption tokenizer.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Image side in pixels (default: the model config's).
        #[arg(long)]
        image_size: Option<usize>,
        /// Patch side in pixels (default: the synthetic preset's).
        #[arg(long)]
        patch_size: Option<usize>,
    },
    /// Print the preprocessed pixel values of an image.
    Preprocess {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        image: PathBuf,
    },
}

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
        } => {
            let clip = model.load()?;
            let image = read_image(&image)?;
            let templates = if template.is_empty() {
                vec![DEFAULT_TEMPLATE.to_string()]
            } else {
                template
            };
            json!(block_on(clip.classify(&image, &label, &templates))?)
        }
        Command::Tokenize { model, text } => {
            let files = ModelDir::read(&model.model)?;
            let tokenizer = files.files().parse()?.tokenizer;
            json!({"input_ids": tokenizer.encode_batch(&text)?})
        }
        Command::Bench {
            config,
            device,
            runs,
        } => {
            let config = match config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|source| Error::Io { path, source })?;
                    ClipConfig::from_json(&text)?
                }
                None => ClipConfig::vit_base_patch32(),
            };
            let device = Backend::parse(&device)?.device()?;
            json!({"cases": webclip::bench::run(&config, &device, runs.max(1))?})
        }
        Command::Train {
            out,
            steps,
            batch_size,
            lr,
            warmup,
            weight_decay,
            seed,
            eval_every,
            device,
            config: model_config,
            image_size,
            patch_size,
        } => {
            let mut config = TrainConfig::synthetic_default();
            if let Some(path) = model_config {
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                config.model = ClipConfig::from_json(&text)?;
            }
            let vision = &mut config.model.vision;
            vision.image_size = image_size.unwrap_or(vision.image_size);
            vision.patch_size = patch_size.unwrap_or(vision.patch_size);
            config.steps = steps;
            config.batch_size = batch_size;
            config.learning_rate = lr;
            config.warmup = warmup;
            config.optimizer.weight_decay = weight_decay;
            config.seed = seed;
            config.eval_every = eval_every;
            let device = Backend::parse(&device)?.device()?;
            let trained = train_synthetic(
                &config,
                &device,
                10,
                |r| {
                    eprintln!(
                        "step {:>6}/{steps}  loss {:.4}  1/T {:.2}  lr {:.2e}  |g| {:.3}  {:.0} pairs/s",
                        r.step, r.loss, r.temperature_inverse, r.learning_rate, r.grad_norm, r.pairs_per_second
                    )
                },
                |e| eprintln!("eval  {}", serde_json::to_string(e).unwrap_or_default()),
            )?;
            trained.write_dir(&out)?;
            eprintln!("wrote {} ({:.0} s)", out.display(), trained.seconds);
            json!({"seconds": trained.seconds, "evaluations": trained.evaluations})
        }
        Command::Preprocess { model, image } => {
            let files = ModelDir::read(&model.model)?;
            let config = files.files().parse()?.preprocess;
            let (pixel_values, [c, h, w]) = preprocess(&read_image(&image)?, &config);
            json!({"shape": [1, c, h, w], "pixel_values": pixel_values})
        }
    })
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
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

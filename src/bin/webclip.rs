//! The webclip command line: embeddings, zero-shot classification, tokenization and
//! preprocessing on any Hugging Face CLIP directory, printed as JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use webclip::image::preprocess;
use webclip::pipeline::ModelDir;
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
    /// Print the preprocessed pixel values of an image.
    Preprocess {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        image: PathBuf,
    },
}

fn read_image(path: &Path) -> Result<RgbImage, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
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

//! # webclip
//!
//! CLIP-style contrastive image-text models in Rust, on burn: the same model code runs on the
//! CPU and on `wgpu` (WebGPU in the browser). Real Hugging Face checkpoints load unchanged.
//!
//! ```no_run
//! use webclip::{block_on, Backend, Clip, Ensemble, RgbImage};
//!
//! let device = Backend::Cpu.device()?;
//! let clip = Clip::load_dir("models/clip", &device)?;
//! let image = RgbImage::decode(&std::fs::read("cat.png").unwrap())?;
//! let templates = ["a photo of a {}."];
//! let scores = block_on(clip.classify(&image, &["cat", "dog"], &templates, Ensemble::Mean))?;
//! println!("{} {:.2}", scores[0].label, scores[0].score);
//! # Ok::<(), webclip::Error>(())
//! ```

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod config;
pub mod error;
pub mod image;
pub mod model;
pub mod pipeline;
pub mod tasks;
pub mod tokenizer;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
pub mod weights;

pub use config::{
    Activation, ClipConfig, CropRounding, PreprocessConfig, TextConfig, VisionConfig,
};
pub use error::{Error, Result};
pub use image::RgbImage;
pub use model::ClipModel;
#[cfg(not(target_arch = "wasm32"))]
pub use pipeline::block_on;
pub use pipeline::{Backend, Clip, ClipLoader, ModelFiles};
pub use tasks::{Ensemble, LabelScore, RankHit, DEFAULT_TEMPLATE};
pub use tokenizer::ClipTokenizer;

//! Contrastive pretraining on burn's autodiff, over the same model code as inference: the
//! symmetric InfoNCE loss, AdamW, synthetic image-caption data and data directories, a caption
//! tokenizer trainer, the training loop with evaluation and checkpoints, and export in the
//! Hugging Face layout.

pub mod checkpoint;
pub mod data;
pub mod evaluate;
pub mod loss;
pub mod optim;
pub mod synthetic;
pub mod trainer;
pub mod vocab;

pub use data::{CaptionDataset, SkipCounts, TrainData};
pub use evaluate::{Evaluation, Recall, ZeroShot};
pub use loss::{clip_loss, model_loss, sigmoid_loss};
pub use trainer::{train, StepReport, TrainConfig, Trained};

//! Contrastive pretraining on burn's autodiff, over the same model code as inference: the
//! symmetric InfoNCE loss, AdamW, synthetic image-caption data, a caption tokenizer trainer,
//! the training loop with evaluation, and export in the Hugging Face layout.

pub mod loss;
pub mod optim;
pub mod synthetic;
pub mod trainer;
pub mod vocab;

pub use loss::clip_loss;
pub use trainer::{evaluate, train_synthetic, Evaluation, StepReport, TrainConfig, Trained};

//! The CLIP architecture as burn modules. The code is written once and runs on any burn device
//! (the CPU backend, `wgpu`/WebGPU), with or without autodiff.

pub mod clip;
pub mod layers;
pub mod text;
pub mod vision;

pub use clip::{l2_normalize, ClipModel};
pub use text::{pool_position, TextTransformer, TokenBatch};
pub use vision::VisionTransformer;

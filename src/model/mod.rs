//! The CLIP architecture as burn modules. The code is written once and runs on any burn device
//! (the CPU backend, `wgpu`/WebGPU), with or without autodiff.

mod activation;
mod activation_op;
pub mod clip;
mod cpu_attention;
mod cpu_linear;
pub mod dense;
mod gpu_kernels;
pub mod layers;
mod panels;
pub mod text;
pub mod vision;

pub use clip::{l2_normalize, ClipModel};
pub use cpu_linear::on_worker;
pub use dense::{Dense, DenseLayers};
pub use text::{pool_position, TextTransformer, TokenBatch};
pub use vision::VisionTransformer;

use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};

/// A tensor's values as f32, read back synchronously (native callers; the browser reads with
/// `into_data_async`).
pub fn values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    data_values(tensor.into_data())
}

/// The largest absolute difference between two equally long value lists (tests' comparisons).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "value lists of different lengths");
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// The values of read-back tensor data as f32.
pub fn data_values(data: TensorData) -> Result<Vec<f32>> {
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Backend(format!("reading a tensor: {e:?}")))
}

//! Weights in the Hugging Face layout: the safetensors format, where each model parameter lives
//! in a checkpoint ([`mapping`]), loading (streamed) and export. This module depends on
//! [`crate::model`], never the other way.

mod export;
mod load;
pub mod mapping;
pub mod safetensors;

pub use export::{export_safetensors, param_values, WeightDtype};
pub use load::WeightLoader;
pub use mapping::{CheckpointTensor, ParamEntry, ParamTable};

/// How a Hugging Face tensor is laid out relative to the burn parameter it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Same shape and order.
    AsIs,
    /// A linear weight: Hugging Face stores `[out, in]`, burn `[in, out]`.
    Transposed,
    /// The patch convolution `[hidden, channels, patch, patch]`, kept as a matrix
    /// `[channels * patch * patch, hidden]`.
    Conv { channels: usize, patch: usize },
    /// A 0-dimensional Hugging Face tensor held as a burn tensor of shape `[1]`.
    Scalar,
}

impl Layout {
    /// The Hugging Face shape that corresponds to a burn parameter of shape `burn`.
    pub fn hf_shape(self, burn: &[usize]) -> Vec<usize> {
        match self {
            Layout::AsIs => burn.to_vec(),
            Layout::Transposed => vec![burn[1], burn[0]],
            Layout::Conv { channels, patch } => vec![burn[1], channels, patch, patch],
            Layout::Scalar => vec![],
        }
    }

    /// Reorder row-major Hugging Face data into the burn parameter's order.
    pub fn to_burn(self, data: Vec<f32>, burn: &[usize]) -> Vec<f32> {
        match self {
            Layout::AsIs | Layout::Scalar => data,
            // Both are `[rows, cols] -> [cols, rows]` with rows = burn[1].
            Layout::Transposed | Layout::Conv { .. } => transpose(&data, burn[1], burn[0]),
        }
    }

    /// Reorder a burn parameter's data into the Hugging Face order.
    pub fn to_hf(self, data: Vec<f32>, burn: &[usize]) -> Vec<f32> {
        match self {
            Layout::AsIs | Layout::Scalar => data,
            Layout::Transposed | Layout::Conv { .. } => transpose(&data, burn[0], burn[1]),
        }
    }
}

/// Transpose a row-major `[rows, cols]` matrix.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

//! Writing a model's parameters as a Hugging Face `model.safetensors`.

use burn::module::Param;
use burn::tensor::Tensor;

use super::safetensors::serialize;
use super::{Layout, ParamVisitor};
use crate::error::Result;
use crate::model::ClipModel;

/// The floating-point type written to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    F16,
    BF16,
}

/// Serialize every parameter of `model` under its Hugging Face name.
pub fn export_safetensors(model: &ClipModel, dtype: WeightDtype) -> Result<Vec<u8>> {
    let mut collect = Collect {
        dtype,
        tensors: Vec::new(),
    };
    model.clone().visit_params(&mut collect)?;
    collect.tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(serialize(&collect.tensors))
}

struct Collect {
    dtype: WeightDtype,
    tensors: Vec<(String, &'static str, Vec<usize>, Vec<u8>)>,
}

impl ParamVisitor for Collect {
    fn param<const D: usize>(
        &mut self,
        name: &str,
        param: &mut Param<Tensor<D>>,
        layout: Layout,
    ) -> Result<()> {
        let tensor = param.val();
        let burn_shape = tensor.dims().to_vec();
        let values = crate::model::values(tensor)?;
        let values = layout.to_hf(values, &burn_shape);
        let (dtype, bytes): (&'static str, Vec<u8>) = match self.dtype {
            WeightDtype::F32 => ("F32", values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            WeightDtype::F16 => (
                "F16",
                values
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
            ),
            WeightDtype::BF16 => (
                "BF16",
                values
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
            ),
        };
        self.tensors
            .push((name.to_string(), dtype, layout.hf_shape(&burn_shape), bytes));
        Ok(())
    }
}

//! Writing a model's parameters as a Hugging Face `model.safetensors`.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

use super::mapping::ParamTable;
use super::safetensors::serialize;
use crate::config::ClipConfig;
use crate::error::Result;
use crate::model::{ClipModel, DenseLayers};

/// The floating-point type written to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    F16,
    BF16,
}

/// Serialize every parameter of `model` under its Hugging Face name.
pub fn export_safetensors(
    model: &ClipModel,
    config: &ClipConfig,
    dtype: WeightDtype,
) -> Result<Vec<u8>> {
    let mut model = model.clone();
    model.unpack();
    let values = param_values(&model)?;
    let tensors = ParamTable::new(&model, config).to_checkpoint(&values);
    let entries: Vec<_> = tensors
        .into_iter()
        .map(|t| {
            let (dtype, bytes) = encode(&t.values, dtype);
            (t.name, dtype, t.shape, bytes)
        })
        .collect();
    Ok(serialize(&entries))
}

/// Every parameter's values (in the model's layout), by id.
pub fn param_values(model: &ClipModel) -> Result<HashMap<ParamId, Vec<f32>>> {
    struct Collect(Result<HashMap<ParamId, Vec<f32>>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Ok(map) = &mut self.0 {
                match crate::model::values(param.val()) {
                    Ok(values) => {
                        map.insert(param.id, values);
                    }
                    Err(e) => self.0 = Err(e),
                }
            }
        }
    }
    let mut collect = Collect(Ok(HashMap::new()));
    model.visit(&mut collect);
    collect.0
}

fn encode(values: &[f32], dtype: WeightDtype) -> (&'static str, Vec<u8>) {
    match dtype {
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
    }
}

//! Training checkpoints: the model as a Hugging Face CLIP directory, plus the optimizer's moments
//! (`optimizer.safetensors`) and the loop's position (`trainer_state.json`), so that a resumed
//! run continues exactly where the checkpoint was taken (bit for bit on the CPU backend).

use std::collections::HashMap;
use std::path::Path;

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::optim::AdamW;
use crate::config::ClipConfig;
use crate::error::{Error, Result};
use crate::model::ClipModel;
use crate::pipeline::{Clip, ModelDir};
use crate::weights::safetensors::{decode_f32, serialize, Header};
use crate::weights::{Layout, ParamVisitor};

const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "trainer_state.json";

/// Where the training loop stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Steps completed.
    pub step: u64,
    /// The data generator's state.
    pub rng: u64,
}

/// Write the optimizer and loop state into `dir` (which already holds the model files).
pub fn write_state(dir: &Path, optimizer: &AdamW, state: TrainerState) -> Result<()> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io(path, e))
    };
    write(OPTIMIZER_FILE, &serialize(&optimizer.state_tensors()?))?;
    let json = serde_json::to_string_pretty(&state).expect("the state always serializes");
    write(STATE_FILE, json.as_bytes())
}

/// A checkpoint read back: the model (trainable, on the autodiff form of the device), its
/// tokenizer, and where the loop stood; the optimizer is restored in place.
pub struct Resumed {
    pub model: ClipModel,
    pub config: ClipConfig,
    pub tokenizer_json: String,
    pub state: TrainerState,
}

/// Read a checkpoint directory written during training.
pub fn read(dir: &Path, optimizer: &mut AdamW, device: &Device) -> Result<Resumed> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| Error::io(path, e))
    };
    let state: TrainerState = serde_json::from_slice(&read(STATE_FILE)?).map_err(|e| {
        Error::Input(format!(
            "{}: not a trainer state: {e}",
            dir.join(STATE_FILE).display()
        ))
    })?;
    let bytes = read(OPTIMIZER_FILE)?;
    let header = Header::parse(&bytes, Some(bytes.len() as u64))?;
    let data = &bytes[header.data_start as usize..];
    let mut moments = HashMap::new();
    for info in &header.tensors {
        let values = decode_f32(info, &data[info.start as usize..info.end as usize])?;
        moments.insert(info.name.clone(), values);
    }
    optimizer.restore(state.step, moments, device)?;

    let files = ModelDir::read(dir)?;
    let tokenizer_json = String::from_utf8_lossy(files.files().tokenizer).into_owned();
    let clip = Clip::load_dir(dir, &device.clone().autodiff())?;
    let mut model = clip.model().clone();
    trainable(&mut model)?;
    Ok(Resumed {
        model,
        config: clip.config().clone(),
        tokenizer_json,
        state,
    })
}

/// Mark every parameter as trainable (a loaded model is for inference).
pub fn trainable(model: &mut ClipModel) -> Result<()> {
    struct RequireGrad;
    impl ParamVisitor for RequireGrad {
        fn param<const D: usize>(
            &mut self,
            _: &str,
            param: &mut Param<Tensor<D>>,
            _: Layout,
        ) -> Result<()> {
            *param = Param::initialized(param.id, param.val().require_grad());
            Ok(())
        }
    }
    model.visit_params(&mut RequireGrad)
}

//! Where each model parameter lives in a Hugging Face checkpoint.
//!
//! The model's field names follow the checkpoint's (`text_model.encoder.layers.3.mlp.fc1`), so a
//! parameter's checkpoint name is its module path, except for the rules in this file: burn's
//! own field names inside its modules, the layout of linear weights, the patch convolution and
//! the scalar `logit_scale`, and our modules that hold several checkpoint modules side by side
//! (one Q/K/V projection). Loading, export and the optimizer's weight-decay groups all read the
//! [`ParamTable`] built from these rules. open_clip's checkpoints name the same parameters
//! differently: [`OPEN_CLIP_NAMES`] renames, and their Q/K/V is one tensor already. SigLIP's
//! follow the Hugging Face rules but for its pooling head's attention ([`SIGLIP_NAMES`]).

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

use super::Layout;
use crate::config::{Architecture, ClipConfig, Family};
use crate::model::ClipModel;

/// burn's field names inside its modules → the checkpoint's: `(module type, field, name)`.
const FIELD_NAMES: &[(&str, &str, &str)] = &[
    ("Struct:LayerNorm", "gamma", "weight"),
    ("Struct:LayerNorm", "beta", "bias"),
];

/// Our modules that stand for several checkpoint modules, their outputs stacked side by side
/// in this order: `(our module, checkpoint modules)`.
const FUSED: &[(&str, &[&str])] = &[("qkv_proj", &["q_proj", "k_proj", "v_proj"])];

/// The patch convolution's weight, under a vision tower; held as a matrix.
const PATCH_CONV: &str = ".embeddings.patch_embedding.weight";

/// A 0-dimensional tensor in CLIP checkpoints (`[1]` in SigLIP's), `[1]` in the model.
const LOGIT_SCALE: &str = "logit_scale";

/// open_clip's names for the Hugging Face names (with our unsplit `qkv_proj`): each pair
/// replaces a part of the name, in order.
const OPEN_CLIP_NAMES: &[(&str, &str)] = &[
    (
        "vision_model.embeddings.patch_embedding.weight",
        "visual.conv1.weight",
    ),
    (
        "vision_model.embeddings.class_embedding",
        "visual.class_embedding",
    ),
    (
        "vision_model.embeddings.position_embedding.weight",
        "visual.positional_embedding",
    ),
    ("vision_model.pre_layrnorm.", "visual.ln_pre."),
    ("vision_model.post_layernorm.", "visual.ln_post."),
    (
        "vision_model.encoder.layers.",
        "visual.transformer.resblocks.",
    ),
    ("visual_projection.weight", "visual.proj"),
    ("text_model.embeddings.token_embedding.", "token_embedding."),
    (
        "text_model.embeddings.position_embedding.weight",
        "positional_embedding",
    ),
    ("text_model.encoder.layers.", "transformer.resblocks."),
    ("text_model.final_layer_norm.", "ln_final."),
    ("text_projection.weight", "text_projection"),
    (".layer_norm1.", ".ln_1."),
    (".layer_norm2.", ".ln_2."),
    (".self_attn.qkv_proj.weight", ".attn.in_proj_weight"),
    (".self_attn.qkv_proj.bias", ".attn.in_proj_bias"),
    (".self_attn.out_proj.", ".attn.out_proj."),
    (".mlp.fc1.", ".mlp.c_fc."),
    (".mlp.fc2.", ".mlp.c_proj."),
];

/// SigLIP's names for the Hugging Face CLIP-style names: its pooling head's attention is a
/// `torch.nn.MultiheadAttention`, with Q/K/V as one tensor.
const SIGLIP_NAMES: &[(&str, &str)] = &[
    (
        ".head.attention.qkv_proj.weight",
        ".head.attention.in_proj_weight",
    ),
    (
        ".head.attention.qkv_proj.bias",
        ".head.attention.in_proj_bias",
    ),
];

/// open_clip stores the two projections as `x @ proj` matrices, `[in, out]` like the model.
const OPEN_CLIP_UNTRANSPOSED: &[&str] = &["visual.proj", "text_projection"];

/// One parameter of the model and the checkpoint tensors that hold it.
#[derive(Debug, Clone)]
pub struct ParamEntry {
    pub id: ParamId,
    /// Its module path, e.g. `vision_model.encoder.layers.0.self_attn.qkv_proj.weight`.
    pub path: String,
    /// Its shape in the model.
    pub shape: Vec<usize>,
    /// The checkpoint tensors that hold it; several are stacked along the last dimension.
    pub tensors: Vec<String>,
    /// How each of those tensors is laid out relative to its share of the parameter.
    pub layout: Layout,
    /// A linear layer's weight (or the patch convolution's).
    matrix: bool,
}

impl ParamEntry {
    /// A weight matrix of a linear layer or the patch convolution (these take weight decay).
    pub fn is_matrix(&self) -> bool {
        self.matrix
    }

    /// The number of values.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The model-side shape of one checkpoint tensor's share.
    pub fn piece_shape(&self) -> Vec<usize> {
        let mut shape = self.shape.clone();
        if let Some(last) = shape.last_mut() {
            *last /= self.tensors.len();
        }
        shape
    }

    /// The shape each of its checkpoint tensors has.
    pub fn tensor_shape(&self) -> Vec<usize> {
        self.layout.hf_shape(&self.piece_shape())
    }

    /// Write share `i` (in the model's layout) into the parameter's values.
    pub fn put_piece(&self, values: &mut [f32], i: usize, piece: &[f32]) {
        let (width, share) = self.widths();
        for (row, src) in values.chunks_mut(width).zip(piece.chunks(share)) {
            row[i * share..][..share].copy_from_slice(src);
        }
    }

    /// Share `i` of the parameter's values, in the model's layout.
    pub fn piece(&self, values: &[f32], i: usize) -> Vec<f32> {
        let (width, share) = self.widths();
        values
            .chunks(width)
            .flat_map(|row| &row[i * share..][..share])
            .copied()
            .collect()
    }

    /// The last dimension, and one tensor's share of it.
    fn widths(&self) -> (usize, usize) {
        let width = self.shape.last().copied().unwrap_or(1).max(1);
        (width, width / self.tensors.len())
    }
}

/// A tensor in a checkpoint's layout.
#[derive(Debug, Clone)]
pub struct CheckpointTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every parameter of a model with its checkpoint tensors, in the model's order.
#[derive(Debug, Clone)]
pub struct ParamTable {
    entries: Vec<ParamEntry>,
}

impl ParamTable {
    /// The table of `model` under Hugging Face names, built with `config` (for the patch
    /// convolution's shape).
    pub fn new(model: &ClipModel, config: &ClipConfig) -> Self {
        Self::for_family(model, config, Family::Clip)
    }

    /// The table of `model` under the names of `family`'s checkpoints.
    pub fn for_family(model: &ClipModel, config: &ClipConfig, family: Family) -> Self {
        let mut walk = Walk {
            path: Vec::new(),
            containers: Vec::new(),
            entries: Vec::new(),
            conv: Layout::Conv {
                channels: config.vision.num_channels,
                patch: config.vision.patch_size,
            },
            family,
            architecture: config.architecture,
        };
        model.visit(&mut walk);
        Self {
            entries: walk.entries,
        }
    }

    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }

    /// Checkpoint tensor name → (entry index, share index).
    pub fn by_tensor(&self) -> HashMap<String, (usize, usize)> {
        let mut map = HashMap::new();
        for (index, entry) in self.entries.iter().enumerate() {
            for (share, name) in entry.tensors.iter().enumerate() {
                map.insert(name.clone(), (index, share));
            }
        }
        map
    }

    /// Parameter id → entry index.
    pub fn by_id(&self) -> HashMap<ParamId, usize> {
        let ids = self.entries.iter().enumerate();
        ids.map(|(index, entry)| (entry.id, index)).collect()
    }

    /// Checkpoint tensors from per-parameter values in the model's layout (a parameter without
    /// values, e.g. one without a gradient, gives none), sorted by name.
    pub fn to_checkpoint(&self, values: &HashMap<ParamId, Vec<f32>>) -> Vec<CheckpointTensor> {
        let mut out = Vec::new();
        for entry in &self.entries {
            let Some(values) = values.get(&entry.id) else {
                continue;
            };
            let shape = entry.piece_shape();
            for (i, name) in entry.tensors.iter().enumerate() {
                out.push(CheckpointTensor {
                    name: name.clone(),
                    shape: entry.tensor_shape(),
                    values: entry.layout.to_hf(entry.piece(values, i), &shape),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Walks the model, keeping the module path from burn's enter/exit calls.
struct Walk {
    path: Vec<String>,
    /// The type of the module holding each path element (`Struct:LayerNorm`, `Vec`, …).
    containers: Vec<String>,
    entries: Vec<ParamEntry>,
    conv: Layout,
    family: Family,
    architecture: Architecture,
}

impl ModuleVisitor for Walk {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
        self.containers.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (Some((field, modules)), Some(container)) =
            (self.path.split_last(), self.containers.last())
        else {
            return;
        };
        let field = FIELD_NAMES
            .iter()
            .find(|(c, f, _)| c == container && f == field)
            .map_or(field.as_str(), |(_, _, name)| name);
        let name = join(modules, &[field]);
        let renames = match (self.family, self.architecture) {
            (Family::OpenClip, _) => OPEN_CLIP_NAMES,
            (Family::Clip, Architecture::Siglip) => SIGLIP_NAMES,
            (Family::Clip, Architecture::Clip) => &[],
        };
        let renamed = renames
            .iter()
            .fold(name.clone(), |name, (hf, ours)| name.replacen(hf, ours, 1));
        let tensors = match modules.split_last() {
            // A renamed parameter is one tensor; so is any outside the fused modules.
            _ if renamed != name => vec![renamed],
            Some((module, parents)) => match FUSED.iter().find(|(ours, _)| ours == module) {
                Some((_, parts)) => parts
                    .iter()
                    .map(|part| join(parents, &[part, field]))
                    .collect(),
                None => vec![name.clone()],
            },
            None => vec![name.clone()],
        };
        let matrix = container == "Struct:Dense" && field == "weight";
        // Judged by the Hugging Face name, whatever the checkpoint calls it.
        let layout = if OPEN_CLIP_UNTRANSPOSED.contains(&tensors[0].as_str()) {
            Layout::AsIs
        } else if name == LOGIT_SCALE && self.architecture == Architecture::Clip {
            Layout::Scalar
        } else if name.ends_with(PATCH_CONV) {
            self.conv
        } else if matrix {
            Layout::Transposed
        } else {
            Layout::AsIs
        };
        self.entries.push(ParamEntry {
            id: param.id,
            path: self.path.join("."),
            shape: param.lazy_shape().as_slice().to_vec(),
            tensors,
            layout,
            matrix,
        });
    }
}

fn join(parents: &[String], tail: &[&str]) -> String {
    let parts = parents
        .iter()
        .map(String::as_str)
        .chain(tail.iter().copied());
    parts.collect::<Vec<_>>().join(".")
}

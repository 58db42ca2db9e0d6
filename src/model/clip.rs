//! The two towers, their projections into one space (CLIP; SigLIP's towers end in their own
//! heads), the learned temperature and (SigLIP) bias.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use super::cpu_linear::on_worker;
use super::dense::{Dense, DenseLayers};
use super::text::{TextTransformer, TokenBatch};
use super::vision::VisionTransformer;
use crate::config::{siglip, Architecture, ClipConfig};

/// A CLIP model (`CLIPModel` in `transformers`) or a SigLIP model (`SiglipModel`), on any burn
/// device. Field names follow the checkpoint's tensor names; `weights::mapping` lists the few
/// places where they differ.
#[derive(Module, Debug)]
pub struct ClipModel {
    pub text_model: TextTransformer,
    pub vision_model: VisionTransformer,
    /// CLIP only.
    pub text_projection: Option<Dense>,
    /// CLIP only.
    pub visual_projection: Option<Dense>,
    /// Log of the inverse temperature; logits are `exp(logit_scale) * cos (+ logit_bias)`.
    pub logit_scale: Param<Tensor<1>>,
    /// SigLIP only.
    pub logit_bias: Option<Param<Tensor<1>>>,
}

impl ClipModel {
    /// A model with freshly initialised (lazy) parameters.
    pub fn new(config: &ClipConfig, device: &Device) -> Self {
        let clip = config.architecture == Architecture::Clip;
        let projection =
            |width: usize| clip.then(|| Dense::new(width, config.projection_dim, false, device));
        let scalar = |value: f64| Param::from_tensor(Tensor::from_floats([value as f32], device));
        Self {
            text_model: TextTransformer::new(&config.text, device),
            vision_model: VisionTransformer::new(&config.vision, device),
            text_projection: projection(config.text.hidden_size),
            visual_projection: projection(config.vision.hidden_size),
            logit_scale: scalar(config.logit_scale_init_value),
            logit_bias: (!clip).then(|| scalar(siglip::INIT_LOGIT_BIAS)),
        }
    }

    /// Projected, unnormalized image features `[batch, projection_dim]`.
    pub fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        project(&self.visual_projection, self.vision_model.forward(pixels))
    }

    /// Projected, unnormalized text features `[batch, projection_dim]`.
    pub fn text_features(&self, tokens: &TokenBatch) -> Tensor<2> {
        project(&self.text_projection, self.text_model.forward(tokens))
    }

    /// L2-normalized image embeddings.
    pub fn embed_images(&self, pixels: Tensor<4>) -> Tensor<2> {
        on_worker(&pixels.device(), || {
            l2_normalize(self.image_features(pixels))
        })
    }

    /// L2-normalized text embeddings.
    pub fn embed_texts(&self, tokens: &TokenBatch) -> Tensor<2> {
        on_worker(&tokens.ids.device(), || {
            l2_normalize(self.text_features(tokens))
        })
    }
}

impl DenseLayers for ClipModel {
    fn dense_layers(&mut self) -> Vec<&mut Dense> {
        let mut dense = self.text_model.dense_layers();
        dense.extend(self.vision_model.dense_layers());
        dense.extend(self.text_projection.as_mut());
        dense.extend(self.visual_projection.as_mut());
        dense
    }
}

fn project(projection: &Option<Dense>, features: Tensor<2>) -> Tensor<2> {
    match projection {
        Some(projection) => projection.forward(features),
        None => features,
    }
}

/// Divide each row by its L2 norm.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

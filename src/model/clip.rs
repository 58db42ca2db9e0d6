//! The two towers, their projections into one space, and the learned temperature.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::layers::{apply, linear};
use super::text::{TextTransformer, TokenBatch};
use super::vision::VisionTransformer;
use crate::config::ClipConfig;

/// A CLIP model (`CLIPModel` in `transformers`), on any burn device. Field names follow the
/// checkpoint's tensor names; `weights::mapping` lists the few places where they differ.
#[derive(Module, Debug)]
pub struct ClipModel {
    pub text_model: TextTransformer,
    pub vision_model: VisionTransformer,
    pub text_projection: Linear,
    pub visual_projection: Linear,
    /// Log of the inverse temperature; logits are `exp(logit_scale) * cos`.
    pub logit_scale: Param<Tensor<1>>,
}

impl ClipModel {
    /// A model with freshly initialised (lazy) parameters.
    pub fn new(config: &ClipConfig, device: &Device) -> Self {
        let projection = config.projection_dim;
        Self {
            text_model: TextTransformer::new(&config.text, device),
            vision_model: VisionTransformer::new(&config.vision, device),
            text_projection: linear(config.text.hidden_size, projection, false, device),
            visual_projection: linear(config.vision.hidden_size, projection, false, device),
            logit_scale: Param::from_tensor(Tensor::from_floats(
                [config.logit_scale_init_value as f32],
                device,
            )),
        }
    }

    /// Projected, unnormalized image features `[batch, projection_dim]`.
    pub fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        apply(&self.visual_projection, self.vision_model.forward(pixels))
    }

    /// Projected, unnormalized text features `[batch, projection_dim]`.
    pub fn text_features(&self, tokens: &TokenBatch) -> Tensor<2> {
        apply(&self.text_projection, self.text_model.forward(tokens))
    }

    /// L2-normalized image embeddings.
    pub fn embed_images(&self, pixels: Tensor<4>) -> Tensor<2> {
        l2_normalize(self.image_features(pixels))
    }

    /// L2-normalized text embeddings.
    pub fn embed_texts(&self, tokens: &TokenBatch) -> Tensor<2> {
        l2_normalize(self.text_features(tokens))
    }
}

/// Divide each row by its L2 norm.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

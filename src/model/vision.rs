//! The ViT image tower: patches, a class token, a pre-LN transformer, the class token out.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor};

use super::layers::{apply, layer_norm, linear, normal, visit_layer_norm, Encoder, EncoderShape};
use crate::config::VisionConfig;
use crate::error::Result;
use crate::weights::{Layout, ParamVisitor};

/// CLIP's vision transformer (`CLIPVisionTransformer` in `transformers`).
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// The patch convolution (no bias) as a matrix `[channels * patch * patch, hidden]`.
    pub patch_embedding: Linear,
    pub class_embedding: Param<Tensor<1>>,
    /// `[num_patches + 1, hidden]`.
    pub position_embedding: Param<Tensor<2>>,
    pub pre_layrnorm: LayerNorm,
    pub encoder: Encoder,
    pub post_layernorm: LayerNorm,
    pub patch_size: usize,
    pub num_channels: usize,
}

impl VisionTransformer {
    pub fn new(config: &VisionConfig, device: &Device) -> Self {
        let hidden = config.hidden_size;
        let patch_dim = config.num_channels * config.patch_size * config.patch_size;
        let shape = EncoderShape {
            hidden,
            intermediate: config.intermediate_size,
            heads: config.num_attention_heads,
            layers: config.num_hidden_layers,
            activation: config.hidden_act,
            layer_norm_eps: config.layer_norm_eps,
        };
        Self {
            patch_embedding: linear(patch_dim, hidden, false, device),
            class_embedding: normal([hidden], 0.02, device),
            position_embedding: normal([config.num_positions(), hidden], 0.02, device),
            pre_layrnorm: layer_norm(hidden, config.layer_norm_eps, device),
            encoder: Encoder::new(&shape, device),
            post_layernorm: layer_norm(hidden, config.layer_norm_eps, device),
            patch_size: config.patch_size,
            num_channels: config.num_channels,
        }
    }

    /// `pixels`: `[batch, channels, size, size]` → pooled features `[batch, hidden]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        let [batch, channels, height, width] = pixels.dims();
        let p = self.patch_size;
        let (rows, cols) = (height / p, width / p);
        // Cut the image into patches, each flattened in (channel, y, x) order like the conv kernel.
        let patches = pixels
            .reshape([batch, channels, rows, p, cols, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch, rows * cols, channels * p * p]);
        let patches = apply(&self.patch_embedding, patches);
        let hidden = patches.dims()[2];
        let class = self
            .class_embedding
            .val()
            .reshape([1, 1, hidden])
            .expand([batch, 1, hidden]);
        let x = Tensor::cat(vec![class, patches], 1);
        let x = x + self.position_embedding.val().unsqueeze::<3>();
        let x = self.pre_layrnorm.forward(x);
        let x = self.encoder.forward(x, None, false);
        let class_token = x.narrow(1, 0, 1).reshape([batch, hidden]);
        self.post_layernorm.forward(class_token)
    }

    /// Visit every parameter under its Hugging Face name (`vision_model.*`).
    pub fn visit_params<V: ParamVisitor>(&mut self, v: &mut V, prefix: &str) -> Result<()> {
        let conv = Layout::Conv {
            channels: self.num_channels,
            patch: self.patch_size,
        };
        v.param(
            &format!("{prefix}.embeddings.patch_embedding.weight"),
            &mut self.patch_embedding.weight,
            conv,
        )?;
        v.param(
            &format!("{prefix}.embeddings.class_embedding"),
            &mut self.class_embedding,
            Layout::AsIs,
        )?;
        v.param(
            &format!("{prefix}.embeddings.position_embedding.weight"),
            &mut self.position_embedding,
            Layout::AsIs,
        )?;
        visit_layer_norm(v, &format!("{prefix}.pre_layrnorm"), &mut self.pre_layrnorm)?;
        self.encoder.visit_params(v, &format!("{prefix}.encoder"))?;
        visit_layer_norm(
            v,
            &format!("{prefix}.post_layernorm"),
            &mut self.post_layernorm,
        )
    }
}

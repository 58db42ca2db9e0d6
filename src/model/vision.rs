//! The ViT image tower: patches, a class token, a pre-LN transformer, the class token out.

use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Device, Tensor};

use super::layers::{apply, embedding, layer_norm, linear, normal, Encoder, EncoderShape};
use crate::config::VisionConfig;

/// CLIP's vision transformer (`CLIPVisionTransformer` in `transformers`; field names follow its
/// checkpoint names, and `pre_layrnorm` is spelled as there).
#[derive(Module, Debug)]
pub struct VisionTransformer {
    pub embeddings: VisionEmbeddings,
    pub pre_layrnorm: LayerNorm,
    pub encoder: Encoder,
    pub post_layernorm: LayerNorm,
}

/// Patches and the class token, with their learned positions (`CLIPVisionEmbeddings`).
#[derive(Module, Debug)]
pub struct VisionEmbeddings {
    /// The patch convolution (stride = kernel, no bias) as a matrix
    /// `[channels * patch * patch, hidden]` over flattened patches.
    pub patch_embedding: Linear,
    pub class_embedding: Param<Tensor<1>>,
    /// `[num_patches + 1, hidden]`.
    pub position_embedding: Embedding,
    pub patch_size: usize,
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
            embeddings: VisionEmbeddings {
                patch_embedding: linear(patch_dim, hidden, false, device),
                class_embedding: normal([hidden], 0.02, device),
                position_embedding: embedding(config.num_positions(), hidden, 0.02, device),
                patch_size: config.patch_size,
            },
            pre_layrnorm: layer_norm(hidden, config.layer_norm_eps, device),
            encoder: Encoder::new(&shape, device),
            post_layernorm: layer_norm(hidden, config.layer_norm_eps, device),
        }
    }

    /// `pixels`: `[batch, channels, size, size]` → pooled features `[batch, hidden]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        let batch = pixels.dims()[0];
        let x = self.embeddings.forward(pixels);
        let hidden = x.dims()[2];
        let x = self.pre_layrnorm.forward(x);
        let x = self.encoder.forward(x, None, false);
        let class_token = x.narrow(1, 0, 1).reshape([batch, hidden]);
        self.post_layernorm.forward(class_token)
    }
}

impl VisionEmbeddings {
    /// `pixels`: `[batch, channels, size, size]` → `[batch, 1 + patches, hidden]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
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
        x + self.position_embedding.weight.val().unsqueeze::<3>()
    }
}

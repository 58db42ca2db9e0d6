//! The ViT image tower: patches (CLIP: and a class token), a pre-LN transformer, pooling (CLIP:
//! the class token; SigLIP: an attention-pooling head).

use burn::module::{Module, Param};
use burn::nn::Embedding;
use burn::tensor::{Device, Int, Tensor};

use super::dense::{Dense, DenseLayers};
use super::layers::{
    embedding, layer_norm, normal, Attention, Encoder, EncoderShape, LayerNorm, Mlp,
};
use crate::config::{VisionConfig, VisionPooling};

/// The vision transformer (`CLIPVisionTransformer` / `SiglipVisionTransformer` in
/// `transformers`; field names follow their checkpoint names, and `pre_layrnorm` is spelled as
/// there).
#[derive(Module, Debug)]
pub struct VisionTransformer {
    pub embeddings: VisionEmbeddings,
    /// CLIP only.
    pub pre_layrnorm: Option<LayerNorm>,
    pub encoder: Encoder,
    pub post_layernorm: LayerNorm,
    /// SigLIP only.
    pub head: Option<AttentionPoolingHead>,
}

/// Patches (and CLIP's class token), with their learned positions (`CLIPVisionEmbeddings`).
#[derive(Module, Debug)]
pub struct VisionEmbeddings {
    /// The patch convolution (stride = kernel; a bias in SigLIP) as a matrix
    /// `[channels * patch * patch, hidden]` over flattened patches.
    pub patch_embedding: Dense,
    /// CLIP only.
    pub class_embedding: Option<Param<Tensor<1>>>,
    /// `[num_positions, hidden]`.
    pub position_embedding: Embedding,
    pub patch_size: usize,
}

/// SigLIP's pooling (`SiglipMultiheadAttentionPoolingHead`): a learned probe attends over the
/// patches (`torch.nn.MultiheadAttention`, its `in_proj` our `qkv_proj`), then a residual MLP.
#[derive(Module, Debug)]
pub struct AttentionPoolingHead {
    /// `[1, 1, hidden]`.
    pub probe: Param<Tensor<3>>,
    pub attention: Attention,
    pub layernorm: LayerNorm,
    pub mlp: Mlp,
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
        let clip = config.pooling == VisionPooling::ClassToken;
        let eps = config.layer_norm_eps;
        Self {
            embeddings: VisionEmbeddings {
                patch_embedding: Dense::new(patch_dim, hidden, !clip, device),
                class_embedding: clip.then(|| normal([hidden], 0.02, device)),
                position_embedding: embedding(config.num_positions(), hidden, 0.02, device),
                patch_size: config.patch_size,
            },
            pre_layrnorm: clip.then(|| layer_norm(hidden, eps, device)),
            encoder: Encoder::new(&shape, device),
            post_layernorm: layer_norm(hidden, eps, device),
            head: (!clip).then(|| AttentionPoolingHead {
                probe: normal([1, 1, hidden], 0.02, device),
                attention: Attention::new(hidden, shape.heads, device),
                layernorm: layer_norm(hidden, eps, device),
                mlp: Mlp::new(hidden, shape.intermediate, shape.activation, device),
            }),
        }
    }

    /// `pixels`: `[batch, channels, size, size]` → pooled features `[batch, hidden]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        let batch = pixels.dims()[0];
        let x = self.embeddings.forward(pixels);
        let x = match &self.pre_layrnorm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        match &self.head {
            Some(head) => {
                let x = self.encoder.forward(x, None, false);
                head.forward(self.post_layernorm.forward(x))
            }
            None => {
                let positions = x.dims()[1] as i64;
                let class_tokens =
                    Tensor::<1, Int>::arange(0..batch as i64, &x.device()) * positions;
                let class_tokens = self.encoder.forward_rows(x, None, false, class_tokens);
                self.post_layernorm.forward(class_tokens)
            }
        }
    }
}

impl DenseLayers for VisionTransformer {
    fn dense_layers(&mut self) -> Vec<&mut Dense> {
        let mut dense = vec![&mut self.embeddings.patch_embedding];
        dense.extend(self.encoder.dense_layers());
        if let Some(head) = &mut self.head {
            dense.extend(head.attention.dense_layers());
            dense.extend(head.mlp.dense_layers());
        }
        dense
    }
}

impl VisionEmbeddings {
    /// `pixels`: `[batch, channels, size, size]` → `[batch, positions, hidden]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        let [batch, channels, height, width] = pixels.dims();
        let p = self.patch_size;
        let (rows, cols) = (height / p, width / p);
        // As the stride-p convolution does, leave out pixels past the last whole patch.
        let pixels = match (rows * p, cols * p) {
            (h, w) if (h, w) == (height, width) => pixels,
            (h, w) => pixels.narrow(2, 0, h).narrow(3, 0, w),
        };
        // Cut the image into patches, each flattened in (channel, y, x) order like the conv kernel.
        let patches = pixels
            .reshape([batch, channels, rows, p, cols, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch, rows * cols, channels * p * p]);
        let x = self.patch_embedding.forward(patches);
        let hidden = x.dims()[2];
        let x = match &self.class_embedding {
            Some(class) => {
                let class = class
                    .val()
                    .reshape([1, 1, hidden])
                    .expand([batch, 1, hidden]);
                Tensor::cat(vec![class, x], 1)
            }
            None => x,
        };
        x + self.position_embedding.weight.val().unsqueeze::<3>()
    }
}

impl AttentionPoolingHead {
    /// `x`: `[batch, positions, hidden]` → `[batch, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [batch, _, hidden] = x.dims();
        let probe = self.probe.val().expand([batch, 1, hidden]);
        let pooled = self.attention.attend(probe, x);
        let pooled = pooled.clone() + self.mlp.forward(self.layernorm.forward(pooled));
        pooled.reshape([batch, hidden])
    }
}

//! Building blocks shared by both towers: activations, layer norm, multi-head attention, the MLP
//! and the pre-LayerNorm encoder layer of CLIP's and SigLIP's transformers.

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::tensor::activation::{gelu, gelu_approximate, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor};

use super::dense::{Dense, DenseLayers};
use super::{cpu_attention, gpu_kernels};
use crate::config::Activation;

/// Apply the configured nonlinearity (on the CPU backend as one operation, see
/// [`super::activation_op`]).
pub fn activate<const D: usize>(x: Tensor<D>, activation: Activation) -> Tensor<D> {
    if let Some(out) = super::activation_op::try_activate(&x, activation) {
        return out;
    }
    match activation {
        Activation::QuickGelu => x.clone() * sigmoid(x * 1.702),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
    }
}

/// A lazily initialised parameter drawn from `N(0, std²)`.
pub fn normal<const D: usize>(shape: [usize; D], std: f64, device: &Device) -> Param<Tensor<D>> {
    Initializer::Normal { mean: 0.0, std }.init(shape, device)
}

/// A lazily initialised embedding table `[count, width]` drawn from `N(0, std²)`.
pub fn embedding(count: usize, width: usize, std: f64, device: &Device) -> Embedding {
    EmbeddingConfig::new(count, width)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device)
}

/// A LayerNorm with the given epsilon.
pub fn layer_norm(d_model: usize, epsilon: f64, device: &Device) -> LayerNorm {
    LayerNorm {
        gamma: Initializer::Ones.init([d_model], device),
        beta: Some(Initializer::Zeros.init([d_model], device)),
        epsilon,
    }
}

/// Layer normalization over the last axis: `(x - mean) / sqrt(var + epsilon) * gamma + beta`.
/// burn's `LayerNorm` parameters under the same names; on GPU devices one kernel (see
/// [`super::gpu_kernels`]).
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub epsilon: f64,
}

impl LayerNorm {
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Some(out) = super::gpu_kernels::try_layer_norm(self, &x) {
            return out;
        }
        let beta = self.beta.as_ref().map(Param::val);
        burn::tensor::module::layer_norm(x, self.gamma.val(), beta, self.epsilon)
    }
}

/// Multi-head self-attention with biased projections. Query, key and value come from one
/// projection three times as wide (`[q | k | v]` along its output), filled from a checkpoint's
/// `q_proj`, `k_proj` and `v_proj` (see `weights::mapping`): one matrix product instead of three.
#[derive(Module, Debug)]
pub struct Attention {
    pub qkv_proj: Dense,
    pub out_proj: Dense,
    pub num_heads: usize,
}

impl Attention {
    pub fn new(hidden: usize, num_heads: usize, device: &Device) -> Self {
        Self {
            qkv_proj: Dense::new(hidden, 3 * hidden, true, device),
            out_proj: Dense::new(hidden, hidden, true, device),
            num_heads,
        }
    }

    /// `x`: `[batch, seq, hidden]`. `mask`: `[batch, 1 or heads, seq, seq]`, true where a key must
    /// be ignored. `causal`: each position sees only itself and earlier positions.
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4, Bool>>, causal: bool) -> Tensor<3> {
        self.out_proj.forward(self.context(x, mask, causal))
    }

    /// The heads' attention output before the output projection, `[batch, seq, hidden]`.
    pub fn context(&self, x: Tensor<3>, mask: Option<Tensor<4, Bool>>, causal: bool) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let qkv = self.qkv_proj.forward(x);
        if let Some(context) = try_attention(&qkv, &qkv, self.num_heads, mask.as_ref(), causal) {
            return context;
        }
        let head_dim = hidden / self.num_heads;
        // [batch, seq, 3 * hidden] -> [3, batch, heads, seq, head_dim]
        let qkv = qkv
            .reshape([batch, seq, 3, self.num_heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| qkv.clone().narrow(0, i, 1).squeeze_dim::<4>(0);
        merged_heads(part(0), part(1), part(2), mask, causal)
    }

    /// Attention of `query` (`[batch, queries, hidden]`) over `x` (`[batch, seq, hidden]`),
    /// unmasked: SigLIP's pooling head. Q comes from `query`, K and V from `x`.
    pub fn attend(&self, query: Tensor<3>, x: Tensor<3>) -> Tensor<3> {
        let hidden = x.dims()[2];
        let q = self.qkv_proj.forward(query);
        let kv = self.qkv_proj.forward(x);
        if let Some(context) = try_attention(&q, &kv, self.num_heads, None, false) {
            return self.out_proj.forward(context);
        }
        let heads = |t: Tensor<3>| {
            let [batch, seq, _] = t.dims();
            t.reshape([batch, seq, self.num_heads, hidden / self.num_heads])
                .swap_dims(1, 2)
        };
        let q = q.narrow(2, 0, hidden);
        let (k, v) = (
            kv.clone().narrow(2, hidden, hidden),
            kv.narrow(2, 2 * hidden, hidden),
        );
        self.out_proj
            .forward(merged_heads(heads(q), heads(k), heads(v), None, false))
    }
}

/// Attention read straight from Q/K/V projections (see [`gpu_kernels::try_attention`]) by a
/// kernel of our own: on GPU devices, or on the CPU backend at inference; `None` elsewhere
/// (autodiff: burn's attention, through [`merged_heads`]).
fn try_attention(
    query: &Tensor<3>,
    key_value: &Tensor<3>,
    heads: usize,
    mask: Option<&Tensor<4, Bool>>,
    causal: bool,
) -> Option<Tensor<3>> {
    gpu_kernels::try_attention(query, key_value, heads, mask, causal)
        .or_else(|| cpu_attention::try_attention(query, key_value, heads, mask, causal))
}

/// Whether Q/K/V projections `query` (`[batch, queries, 3 * hidden]`) and `key_value`
/// (`[batch, keys, 3 * hidden]`), `heads` and a `mask` (`[batch, 1 or heads, queries, keys]`)
/// have the sizes the attention kernels of [`gpu_kernels`] and [`cpu_attention`] take
/// (`causal` needs as many queries as keys); sizes that disagree go to burn's attention,
/// which reports them.
pub(super) fn attention_fits(
    query: &Tensor<3>,
    key_value: &Tensor<3>,
    heads: usize,
    mask: Option<&Tensor<4, Bool>>,
    causal: bool,
) -> bool {
    let ([batch, queries, projected], [kv_batch, keys, kv_projected]) =
        (query.dims(), key_value.dims());
    heads > 0
        && projected % (3 * heads) == 0
        && [kv_batch, kv_projected] == [batch, projected]
        && mask.is_none_or(|m| {
            let [mask_batch, mask_heads, mask_queries, mask_keys] = m.dims();
            [mask_batch, mask_queries, mask_keys] == [batch, queries, keys]
                && (mask_heads == 1 || mask_heads == heads)
        })
        && (!causal || queries == keys)
}

/// burn's attention over heads `[batch, heads, seq, head_dim]`, the heads merged back into
/// `[batch, seq, heads * head_dim]` (where [`try_attention`] does not apply).
pub(super) fn merged_heads(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
    causal: bool,
) -> Tensor<3> {
    let [batch, heads, queries, head_dim] = q.dims();
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    attention(q, k, v, mask, None, options)
        .swap_dims(1, 2)
        .reshape([batch, queries, heads * head_dim])
}

impl DenseLayers for Attention {
    fn dense_layers(&mut self) -> Vec<&mut Dense> {
        vec![&mut self.qkv_proj, &mut self.out_proj]
    }
}

/// The feed-forward block: `fc2(act(fc1(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Dense,
    pub fc2: Dense,
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    pub fn new(
        hidden: usize,
        intermediate: usize,
        activation: Activation,
        device: &Device,
    ) -> Self {
        Self {
            fc1: Dense::new(hidden, intermediate, true, device),
            fc2: Dense::new(intermediate, hidden, true, device),
            activation,
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2
            .forward(self.fc1.forward_activated(x, self.activation))
    }

    /// `residual + forward(x)`, the sum in `fc2`'s pass on GPU devices.
    pub fn forward_residual(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.fc2
            .forward_residual(self.fc1.forward_activated(x, self.activation), residual)
    }
}

impl DenseLayers for Mlp {
    fn dense_layers(&mut self) -> Vec<&mut Dense> {
        vec![&mut self.fc1, &mut self.fc2]
    }
}

/// Hyper-parameters of one transformer stack.
#[derive(Debug, Clone, Copy)]
pub struct EncoderShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub layers: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
}

/// A pre-LayerNorm transformer layer: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: Attention,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
}

impl EncoderLayer {
    pub fn new(shape: &EncoderShape, device: &Device) -> Self {
        Self {
            layer_norm1: layer_norm(shape.hidden, shape.layer_norm_eps, device),
            self_attn: Attention::new(shape.hidden, shape.heads, device),
            layer_norm2: layer_norm(shape.hidden, shape.layer_norm_eps, device),
            mlp: Mlp::new(shape.hidden, shape.intermediate, shape.activation, device),
        }
    }

    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4, Bool>>, causal: bool) -> Tensor<3> {
        self.forward_picked(x, mask, causal, |rows| rows)
    }

    /// [`EncoderLayer::forward`] at the rows `pick` keeps: attention reads every position, then
    /// the output projection, both residuals and the MLP run on the picked rows only.
    pub fn forward_picked(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        causal: bool,
        pick: impl Fn(Tensor<3>) -> Tensor<3>,
    ) -> Tensor<3> {
        let attention = &self.self_attn;
        let context = attention.context(self.layer_norm1.forward(x.clone()), mask, causal);
        let x = attention.out_proj.forward_residual(pick(context), pick(x));
        self.mlp
            .forward_residual(self.layer_norm2.forward(x.clone()), x)
    }
}

/// A stack of encoder layers.
#[derive(Module, Debug)]
pub struct Encoder {
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn new(shape: &EncoderShape, device: &Device) -> Self {
        Self {
            layers: (0..shape.layers)
                .map(|_| EncoderLayer::new(shape, device))
                .collect(),
        }
    }

    pub fn forward(
        &self,
        mut x: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        causal: bool,
    ) -> Tensor<3> {
        for layer in &self.layers {
            x = layer.forward(x, mask.clone(), causal);
        }
        x
    }

    /// The stack's output `[rows, hidden]` at `rows`, flat indices `b * seq + position` into
    /// `x`'s `[batch, seq]` positions: `forward` then those rows, but the last layer computes
    /// only them past its attention (a pooled tower reads nothing else).
    pub fn forward_rows(
        &self,
        mut x: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
        causal: bool,
        rows: Tensor<1, Int>,
    ) -> Tensor<2> {
        let [count] = rows.dims();
        let [_, _, hidden] = x.dims();
        let pick = |x: Tensor<3>| {
            let [batch, seq, width] = x.dims();
            x.reshape([batch * seq, width])
                .select(0, rows.clone())
                .reshape([count, 1, width])
        };
        let x = match self.layers.split_last() {
            Some((last, earlier)) => {
                for layer in earlier {
                    x = layer.forward(x, mask.clone(), causal);
                }
                last.forward_picked(x, mask, causal, pick)
            }
            None => pick(x),
        };
        x.reshape([count, hidden])
    }
}

impl DenseLayers for Encoder {
    fn dense_layers(&mut self) -> Vec<&mut Dense> {
        self.layers
            .iter_mut()
            .flat_map(|layer| {
                let mut dense = layer.self_attn.dense_layers();
                dense.extend(layer.mlp.dense_layers());
                dense
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{max_abs_diff, values, DenseLayers};
    use burn::tensor::{Distribution, TensorData};

    #[test]
    fn forward_rows_equals_the_whole_stack_at_those_rows() {
        let device = Device::flex();
        let (batch, seq, hidden, heads) = (2, 5, 8, 2);
        let shape = EncoderShape {
            hidden,
            intermediate: 16,
            heads,
            layers: 3,
            activation: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        };
        let mut encoder = Encoder::new(&shape, &device);
        encoder.pack_for_cpu();
        let x = Tensor::<3>::random(
            [batch, seq, hidden],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let rows = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 5, 9], [3]), &device);
        // The second sequence's last key is padding.
        let padding: Vec<bool> = (0..batch * seq * seq)
            .map(|i| i >= seq * seq && i % seq == seq - 1)
            .collect();
        let mask =
            Tensor::<4, Bool>::from_data(TensorData::new(padding, [batch, 1, seq, seq]), &device);
        for (mask, causal) in [(None, false), (Some(mask), true)] {
            let whole = encoder
                .forward(x.clone(), mask.clone(), causal)
                .reshape([batch * seq, hidden])
                .select(0, rows.clone());
            let picked = encoder.forward_rows(x.clone(), mask, causal, rows.clone());
            assert_eq!(picked.dims(), [3, hidden]);
            let (picked, whole) = (values(picked).unwrap(), values(whole).unwrap());
            let diff = max_abs_diff(&picked, &whole);
            assert!(diff < 1e-5, "causal {causal}: rows differ by {diff}");
        }
    }
}

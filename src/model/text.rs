//! The text transformer (causal in CLIP, bidirectional in SigLIP) and its pooling rules.

use burn::module::Module;
use burn::nn::Embedding;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::dense::{Dense, DenseLayers};
use super::layers::{embedding, layer_norm, Encoder, EncoderShape, LayerNorm};
use crate::config::{TextConfig, TextPooling};
use crate::error::{Error, Result};

/// The text transformer (`CLIPTextTransformer` / `SiglipTextTransformer` in `transformers`;
/// field names follow their checkpoint names).
#[derive(Module, Debug)]
pub struct TextTransformer {
    pub embeddings: TextEmbeddings,
    pub encoder: Encoder,
    pub final_layer_norm: LayerNorm,
    /// SigLIP's linear head on the pooled token (CLIP projects outside the tower).
    pub head: Option<Dense>,
}

/// Token and position embeddings (`CLIPTextEmbeddings`).
#[derive(Module, Debug)]
pub struct TextEmbeddings {
    /// `[vocab_size, hidden]`.
    pub token_embedding: Embedding,
    /// `[max_position_embeddings, hidden]`.
    pub position_embedding: Embedding,
}

/// A batch of token sequences, padded to the longest one, ready for the text tower.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// `[batch, seq]` token ids; padding positions hold `pad_token_id`.
    pub ids: Tensor<2, Int>,
    /// `[batch, 1, seq, seq]`, true at keys a query must not see: padding, and with a fixed
    /// shape also later positions; `None` when nothing is masked (and always for SigLIP, which
    /// attends to its padding as it was trained to).
    pub padding_mask: Option<Tensor<4, Bool>>,
    /// burn's attention applies the causal rule: a causal tower whose mask does not hold it
    /// (with fixed shapes, for GPU devices, the mask holds it: burn's attention would otherwise
    /// build a causal mask in every layer).
    pub causal: bool,
    /// Flat index `b * seq + position` of the token each sequence is pooled at.
    pub pool_index: Tensor<1, Int>,
}

impl TokenBatch {
    /// Pad `sequences` into one batch. Each sequence must be non-empty and fit the context. A
    /// SigLIP batch ([`TextPooling::Last`]) always spans the whole context, padded with
    /// `pad_token_id` where the tokenizer has not padded already.
    pub fn new(sequences: &[Vec<u32>], config: &TextConfig, device: &Device) -> Result<Self> {
        Self::build(sequences, config, device, None)
    }

    /// Like [`TokenBatch::new`], padded to a fixed `[batch, seq]` shape (rows past the
    /// sequences repeat the last one; the mask is always present and holds the causal rule),
    /// so that a backend that compiles kernels per input shape reuses them for every batch of
    /// this shape. The first `sequences.len()` rows of the output are the sequences' embeddings.
    pub fn with_shape(
        sequences: &[Vec<u32>],
        config: &TextConfig,
        device: &Device,
        shape: [usize; 2],
    ) -> Result<Self> {
        Self::build(sequences, config, device, Some(shape))
    }

    fn build(
        sequences: &[Vec<u32>],
        config: &TextConfig,
        device: &Device,
        shape: Option<[usize; 2]>,
    ) -> Result<Self> {
        if sequences.is_empty() {
            return Err(Error::Input("no token sequences to encode".into()));
        }
        let longest = sequences.iter().map(Vec::len).max().unwrap_or(0);
        let bidirectional = !config.is_causal();
        let shape = match shape {
            Some([batch, _]) if bidirectional => Some([batch, config.max_position_embeddings]),
            None if bidirectional => Some([sequences.len(), config.max_position_embeddings]),
            shape => shape,
        };
        let [batch, seq] = shape.unwrap_or([sequences.len(), longest]);
        if batch < sequences.len() || seq < longest {
            return Err(Error::Input(format!(
                "{} sequences of up to {longest} tokens do not fit a [{batch}, {seq}] batch",
                sequences.len()
            )));
        }
        let last = sequences.last().expect("not empty");
        let sequences: Vec<&Vec<u32>> = sequences
            .iter()
            .chain(std::iter::repeat_n(last, batch - sequences.len()))
            .collect();
        if let Some(i) = sequences.iter().position(|s| s.is_empty()) {
            return Err(Error::Input(format!("token sequence {i} is empty")));
        }
        if seq > config.max_position_embeddings {
            return Err(Error::Input(format!(
                "a token sequence has {seq} tokens, more than max_position_embeddings ({})",
                config.max_position_embeddings
            )));
        }
        let mut ids = Vec::with_capacity(batch * seq);
        let mut pool = Vec::with_capacity(batch);
        for (b, tokens) in sequences.iter().enumerate() {
            if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= config.vocab_size) {
                return Err(Error::Input(format!(
                    "token id {bad} is outside the vocabulary of {} tokens",
                    config.vocab_size
                )));
            }
            ids.extend(tokens.iter().map(|&t| t as i64));
            ids.extend(std::iter::repeat_n(
                config.pad_token_id as i64,
                seq - tokens.len(),
            ));
            let position = match config.pooling {
                TextPooling::Last => seq - 1,
                TextPooling::Eos | TextPooling::Argmax => pool_position(tokens, config),
            };
            pool.push((b * seq + position) as i64);
        }
        let causal_in_mask = shape.is_some() && !bidirectional;
        let padded = causal_in_mask || sequences.iter().any(|s| s.len() < seq);
        let padding_mask = (padded && !bidirectional).then(|| {
            let mut mask = Vec::with_capacity(batch * seq * seq);
            for tokens in &sequences {
                for query in 0..seq {
                    let hidden =
                        |key: usize| key >= tokens.len() || (causal_in_mask && key > query);
                    mask.extend((0..seq).map(hidden));
                }
            }
            Tensor::<4, Bool>::from_data(TensorData::new(mask, [batch, 1, seq, seq]), device)
        });
        Ok(Self {
            ids: Tensor::from_data(TensorData::new(ids, [batch, seq]), device),
            padding_mask,
            causal: !bidirectional && !causal_in_mask,
            pool_index: Tensor::from_data(TensorData::new(pool, [batch]), device),
        })
    }
}

/// Where `transformers` pools a sequence: at the highest id for old configs with
/// `eos_token_id == 2`, else at the first `eos_token_id` (position 0 if there is none).
pub fn pool_position(tokens: &[u32], config: &TextConfig) -> usize {
    if config.pools_at_argmax() {
        // First occurrence of the maximum, as torch.argmax returns.
        let max = tokens.iter().copied().max().unwrap_or(0);
        tokens.iter().position(|&t| t == max).unwrap_or(0)
    } else {
        tokens
            .iter()
            .position(|&t| t == config.eos_token_id)
            .unwrap_or(0)
    }
}

impl TextTransformer {
    pub fn new(config: &TextConfig, device: &Device) -> Self {
        let head = config
            .projection_size
            .map(|width| Dense::new(config.hidden_size, width, true, device));
        let hidden = config.hidden_size;
        let shape = EncoderShape {
            hidden,
            intermediate: config.intermediate_size,
            heads: config.num_attention_heads,
            layers: config.num_hidden_layers,
            activation: config.hidden_act,
            layer_norm_eps: config.layer_norm_eps,
        };
        Self {
            embeddings: TextEmbeddings {
                token_embedding: embedding(config.vocab_size, hidden, 0.02, device),
                position_embedding: embedding(config.max_position_embeddings, hidden, 0.01, device),
            },
            encoder: Encoder::new(&shape, device),
            final_layer_norm: layer_norm(hidden, config.layer_norm_eps, device),
            head,
        }
    }

    /// Pooled features `[batch, hidden]` of a token batch.
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<2> {
        let x = self.embeddings.forward(&batch.ids);
        // The `[batch, 1, seq, seq]` mask serves every head: attention broadcasts it.
        let mask = batch.padding_mask.clone();
        let pooled = self
            .encoder
            .forward_rows(x, mask, batch.causal, batch.pool_index.clone());
        let pooled = self.final_layer_norm.forward(pooled);
        match &self.head {
            Some(head) => head.forward(pooled),
            None => pooled,
        }
    }
}

impl DenseLayers for TextTransformer {
    fn dense_layers(&mut self) -> Vec<&mut Dense> {
        let mut dense = self.encoder.dense_layers();
        dense.extend(self.head.as_mut());
        dense
    }
}

impl TextEmbeddings {
    /// `ids`: `[batch, seq]` → `[batch, seq, hidden]`.
    pub fn forward(&self, ids: &Tensor<2, Int>) -> Tensor<3> {
        let [size, seq] = ids.dims();
        let tokens = self
            .token_embedding
            .weight
            .val()
            .select(0, ids.clone().reshape([size * seq]));
        let hidden = tokens.dims()[1];
        let positions = self.position_embedding.weight.val().narrow(0, 0, seq);
        tokens.reshape([size, seq, hidden]) + positions.unsqueeze::<3>()
    }
}

//! Tokenization through the `tokenizers` crate, with each family's rules. CLIP: open_clip's text
//! clean-up, then the BPE of a `tokenizer.json` with the start and end tokens. SigLIP: the
//! `tokenizer.json` as it is (its post-processor appends the end token), padded to the whole
//! context as the reference processor pads (`padding="max_length"`). Both cut long texts keeping
//! the end token.

mod clean;
mod html;
mod spiece;

pub use clean::clean_text;

use crate::error::{Error, Result};
use tokenizers::PostProcessor;

/// The tokenizer of one model.
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
    /// SigLIP: pad every sequence to `max_len` with this id.
    pad_to_max: Option<u32>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("max_len", &self.max_len)
            .field("pad_to_max", &self.pad_to_max)
            .finish()
    }
}

impl ClipTokenizer {
    /// Load a `tokenizer.json`; sequences are cut to `max_len` tokens (the model's
    /// `max_position_embeddings`).
    pub fn from_bytes(json: &[u8], max_len: usize) -> Result<Self> {
        if !is_json(json) {
            return Err(Error::Tokenizer(
                "CLIP needs a tokenizer.json (this looks like a SentencePiece model)".into(),
            ));
        }
        let inner = tokenizers::Tokenizer::from_bytes(json)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        Self::new(inner, max_len)
    }

    fn new(mut inner: tokenizers::Tokenizer, max_len: usize) -> Result<Self> {
        // Literal "<|endoftext|>" in a prompt is text, as in open_clip, not a special token.
        inner.set_encode_special_tokens(true);
        if max_len < 2 {
            return Err(Error::Tokenizer(format!(
                "max length {max_len} leaves no room for the start and end tokens"
            )));
        }
        Ok(Self {
            inner,
            max_len,
            pad_to_max: None,
        })
    }

    /// Load a SigLIP tokenizer: a `tokenizer.json`, used as it is (no CLIP clean-up), or a
    /// SentencePiece `spiece.model` (told apart by their contents), which encodes as
    /// `transformers`' `SiglipTokenizer`. Texts are cut to `max_len` keeping the end token and
    /// padded to `max_len` with the pad token: `tokenizer_config.json`'s `pad_token` where
    /// given, else the `tokenizer.json`'s padding token or `<pad>`, else (`spiece.model`)
    /// `</s>`, SiglipTokenizer's default. Where `tokenizer_config.json` sets `add_bos_token` or
    /// `add_eos_token` (SigLIP 2's Gemma tokenizer), the start and end tokens follow those
    /// flags, as `transformers` rebuilds the post-processor from them.
    pub fn siglip(file: &[u8], tokenizer_config: Option<&str>, max_len: usize) -> Result<Self> {
        let config = match tokenizer_config {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                Error::Tokenizer(format!("tokenizer_config.json: invalid JSON: {e}"))
            })?,
            None => serde_json::Value::Null,
        };
        let token = |field: &str| {
            let value = &config[field];
            value.get("content").unwrap_or(value).as_str()
        };
        let (mut tokenizer, default_pad) = if is_json(file) {
            let mut tokenizer = Self::from_bytes(file, max_len)?;
            let flags = [
                ("add_bos_token", "bos_token"),
                ("add_eos_token", "eos_token"),
            ]
            .map(|(flag, name)| (config.get(flag).map(|f| f == true), token(name)));
            if flags.iter().any(|(flag, _)| flag.is_some()) {
                // transformers: `[bos] $A [eos]` by the flags, a token without an id dropped.
                let ids = flags.map(|(flag, name)| {
                    let name = name.filter(|_| flag == Some(true))?;
                    Some((name.to_string(), tokenizer.inner.token_to_id(name)?))
                });
                let [bos, eos] = ids;
                let template: Vec<&str> = (bos.as_ref().map(|(n, _)| n.as_str()).into_iter())
                    .chain(["$A"])
                    .chain(eos.as_ref().map(|(n, _)| n.as_str()))
                    .collect();
                let post = tokenizers::processors::template::TemplateProcessing::builder()
                    .try_single(template)
                    .and_then(|b| {
                        b.special_tokens(bos.into_iter().chain(eos).collect::<Vec<_>>())
                            .build()
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|e| Error::Tokenizer(format!("tokenizer_config.json: {e}")))?;
                tokenizer.inner.with_post_processor(Some(post));
            }
            let padding = tokenizer.inner.get_padding().map(|p| p.pad_token.clone());
            (tokenizer, padding.unwrap_or_else(|| "<pad>".into()))
        } else {
            let lower_case = config["do_lower_case"].as_bool().unwrap_or(true);
            let inner = spiece::siglip_tokenizer(file, lower_case)?;
            (Self::new(inner, max_len)?, "</s>".into())
        };
        // Long texts are cut before the special tokens are added, as transformers'
        // `truncation=True` does (the same code, in `tokenizers`).
        let added = tokenizer
            .inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if added >= max_len {
            return Err(Error::Tokenizer(format!(
                "{added} special tokens leave no room in a context of {max_len}"
            )));
        }
        let truncation = tokenizers::TruncationParams {
            max_length: max_len,
            ..Default::default()
        };
        tokenizer
            .inner
            .with_truncation(Some(truncation))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let name = token("pad_token").map_or(default_pad, str::to_string);
        let id = tokenizer.inner.token_to_id(&name).ok_or_else(|| {
            Error::Tokenizer(format!("the pad token {name:?} is not in the vocabulary"))
        })?;
        tokenizer.pad_to_max = Some(id);
        Ok(tokenizer)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of one text, special tokens included, padded only for SigLIP. A text longer
    /// than the context is cut, keeping the end token last (as open_clip does).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let cleaned = match self.pad_to_max {
            None => clean_text(text),
            Some(_) => text.to_string(),
        };
        let encoding = self
            .inner
            .encode(cleaned.as_str(), true)
            .map_err(|e| Error::Tokenizer(format!("encoding {text:?}: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() > self.max_len {
            let last = *ids.last().expect("longer than max_len >= 2");
            ids.truncate(self.max_len);
            ids[self.max_len - 1] = last;
        }
        if let Some(pad) = self.pad_to_max {
            ids.resize(self.max_len, pad);
        }
        Ok(ids)
    }

    /// Token ids of several texts.
    pub fn encode_batch(&self, texts: &[impl AsRef<str>]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.encode(t.as_ref())).collect()
    }
}

/// Whether a tokenizer file is JSON (a `tokenizer.json`) rather than a SentencePiece model.
fn is_json(file: &[u8]) -> bool {
    file.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

//! Tokenization through the `tokenizers` crate, with each family's rules. CLIP: open_clip's text
//! clean-up, then the BPE of a `tokenizer.json` with the start and end tokens. SigLIP: the
//! `tokenizer.json` as it is (with what `tokenizer_config.json` changes, [`siglip`]) or a
//! SentencePiece `spiece.model` ([`spiece`]), padded to the whole context as the reference
//! processor pads (`padding="max_length"`). Long texts are cut keeping the end token (CLIP: as
//! open_clip does; SigLIP: before the special tokens are added, as `truncation=True` does).

mod clean;
mod html;
mod siglip;
mod spiece;

pub use clean::clean_text;

use siglip::TokenizerConfig;
use tokenizers::PostProcessor;

use crate::error::{Error, Result};

/// The tokenizer of one model.
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
    /// SigLIP: pad every sequence to `max_len`.
    pad_to_max: Option<Padding>,
}

/// How a SigLIP tokenizer pads: with this id, after the text or (`left`) before it.
#[derive(Debug, Clone, Copy)]
struct Padding {
    id: u32,
    left: bool,
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
    /// `transformers`' `SiglipTokenizer`. Texts are cut to `max_len` before the special tokens
    /// are added (as `truncation=True` cuts) and padded to `max_len` with the pad token:
    /// `tokenizer_config.json`'s `pad_token` where given, else the `tokenizer.json`'s padding
    /// token or `<pad>`, else (`spiece.model`) `</s>`, SiglipTokenizer's default; on the right,
    /// or on the left where the config says so (`Siglip2Tokenizer` by default). A `tokenizer.json` also gets what `transformers`
    /// applies from the config at load ([`TokenizerConfig::apply`]).
    pub fn siglip(file: &[u8], tokenizer_config: Option<&str>, max_len: usize) -> Result<Self> {
        let config = TokenizerConfig::parse(tokenizer_config)?;
        let (mut tokenizer, default_pad) = if is_json(file) {
            let mut tokenizer = Self::from_bytes(file, max_len)?;
            config.apply(&mut tokenizer.inner)?;
            let padding = tokenizer.inner.get_padding().map(|p| p.pad_token.clone());
            (tokenizer, padding.unwrap_or_else(|| "<pad>".into()))
        } else {
            let inner = spiece::siglip_tokenizer(file, config.lower_case())?;
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
        let name = config
            .token("pad_token")
            .map_or(default_pad, str::to_string);
        let id = tokenizer.inner.token_to_id(&name).ok_or_else(|| {
            Error::Tokenizer(format!("the pad token {name:?} is not in the vocabulary"))
        })?;
        tokenizer.pad_to_max = Some(Padding {
            id,
            left: config.pads_left(),
        });
        Ok(tokenizer)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of one text, special tokens included, padded only for SigLIP. A text longer
    /// than the context is cut, keeping the end token last (as open_clip does).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        // SigLIP's clean-up, where it has one, is part of its tokenizer.
        let cleaned: std::borrow::Cow<str> = match self.pad_to_max {
            None => clean_text(text).into(),
            Some(_) => text.into(),
        };
        let encoding = self
            .inner
            .encode(cleaned.as_ref(), true)
            .map_err(|e| Error::Tokenizer(format!("encoding {text:?}: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() > self.max_len {
            let last = *ids.last().expect("longer than max_len >= 2");
            ids.truncate(self.max_len);
            ids[self.max_len - 1] = last;
        }
        if let Some(Padding { id, left }) = self.pad_to_max {
            let pad = std::iter::repeat_n(id, self.max_len.saturating_sub(ids.len()));
            ids = match left {
                true => pad.chain(ids).collect(),
                false => ids.into_iter().chain(pad).collect(),
            };
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

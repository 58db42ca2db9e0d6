//! CLIP tokenization: open_clip's text clean-up, then the BPE of a `tokenizer.json` through the
//! `tokenizers` crate, with the start and end tokens and truncation that keeps the end token.

mod clean;
mod html;

pub use clean::clean_text;

use crate::error::{Error, Result};

/// A CLIP tokenizer for one model.
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl ClipTokenizer {
    /// Load a `tokenizer.json`; sequences are cut to `max_len` tokens (the model's
    /// `max_position_embeddings`).
    pub fn from_bytes(json: &[u8], max_len: usize) -> Result<Self> {
        let mut inner = tokenizers::Tokenizer::from_bytes(json)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        // Literal "<|endoftext|>" in a prompt is text, as in open_clip, not a special token.
        inner.set_encode_special_tokens(true);
        if max_len < 2 {
            return Err(Error::Tokenizer(format!(
                "max length {max_len} leaves no room for the start and end tokens"
            )));
        }
        Ok(Self { inner, max_len })
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of one text, start and end tokens included, without padding. A text longer
    /// than the context is cut, keeping the end token last (as open_clip does).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let cleaned = clean_text(text);
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
        Ok(ids)
    }

    /// Token ids of several texts.
    pub fn encode_batch(&self, texts: &[impl AsRef<str>]) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.encode(t.as_ref())).collect()
    }
}

//! What `transformers` applies to a SigLIP tokenizer at load, from its `tokenizer_config.json`:
//! the pad token and side, the `add_bos_token` / `add_eos_token` flags (which rebuild the
//! post-processor), and `Siglip2Tokenizer`'s lower case.

use serde_json::Value;
use tokenizers::normalizers::{Lowercase, Sequence};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{NormalizerWrapper, Tokenizer};

use crate::error::{Error, Result};

/// The fields of a `tokenizer_config.json` that SigLIP's tokenizers read (all optional).
pub struct TokenizerConfig(Value);

/// `transformers`' SigLIP 2 tokenizer class: Gemma's, lower-casing, padding on the left.
const SIGLIP2_CLASS: &str = "Siglip2Tokenizer";

impl TokenizerConfig {
    /// Parse the file's text; `None` is an empty config.
    pub fn parse(text: Option<&str>) -> Result<Self> {
        let value = match text {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                Error::Tokenizer(format!("tokenizer_config.json: invalid JSON: {e}"))
            })?,
            None => Value::Null,
        };
        Ok(Self(value))
    }

    /// A special token's text (a string, or an object with `content`).
    pub fn token(&self, field: &str) -> Option<&str> {
        let value = &self.0[field];
        value.get("content").unwrap_or(value).as_str()
    }

    /// SiglipTokenizer's `do_lower_case` (default: true).
    pub fn lower_case(&self) -> bool {
        self.0["do_lower_case"].as_bool().unwrap_or(true)
    }

    /// Whether padding goes before the text: `padding_side`, else the class's default.
    pub fn pads_left(&self) -> bool {
        match self.0["padding_side"].as_str() {
            Some(side) => side == "left",
            None => self.0["tokenizer_class"] == SIGLIP2_CLASS,
        }
    }

    /// Apply to a `tokenizer.json` what `transformers` applies when it loads one with this
    /// config: `Siglip2Tokenizer` lower-cases first, and explicit `add_bos_token` /
    /// `add_eos_token` flags make the post-processor `[bos] $A [eos]` (a token without an id
    /// dropped).
    pub fn apply(&self, tokenizer: &mut Tokenizer) -> Result<()> {
        if self.0["tokenizer_class"] == SIGLIP2_CLASS {
            let mut steps: Vec<NormalizerWrapper> = vec![Lowercase.into()];
            steps.extend(tokenizer.get_normalizer().cloned());
            tokenizer
                .with_normalizer(Some(Sequence::new(steps)))
                .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        }
        let flags = [
            ("add_bos_token", "bos_token"),
            ("add_eos_token", "eos_token"),
        ];
        if flags.iter().all(|(flag, _)| self.0.get(flag).is_none()) {
            return Ok(());
        }
        let [bos, eos] = flags.map(|(flag, name)| {
            let name = self.token(name).filter(|_| self.0[flag] == true)?;
            Some((name.to_string(), tokenizer.token_to_id(name)?))
        });
        let names = |t: &Option<(String, u32)>| t.as_ref().map(|(name, _)| name.clone());
        let template: Vec<String> = names(&bos)
            .into_iter()
            .chain(["$A".to_string()])
            .chain(names(&eos))
            .collect();
        let post = TemplateProcessing::builder()
            .try_single(template)
            .and_then(|b| {
                b.special_tokens(bos.into_iter().chain(eos).collect::<Vec<_>>())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| Error::Tokenizer(format!("tokenizer_config.json: {e}")))?;
        tokenizer.with_post_processor(Some(post));
        Ok(())
    }
}

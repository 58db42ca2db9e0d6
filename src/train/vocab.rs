//! A small BPE tokenizer trained on captions with the `tokenizers` crate, in CLIP's style
//! (lower case, `</w>` word ends, `<|startoftext|>` ... `<|endoftext|>`), for new models whose
//! captions do not need CLIP's 49408-token vocabulary.

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::{Lowercase, Sequence, NFC};
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};
use tokenizers::{
    DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
};

use crate::error::{Error, Result};

/// Id of `<|startoftext|>` in a trained vocabulary.
pub const BOS_ID: u32 = 0;
/// Id of `<|endoftext|>` in a trained vocabulary (also used for padding).
pub const EOS_ID: u32 = 1;

/// Train a BPE vocabulary of at most `vocab_size` tokens on `captions`; returns `tokenizer.json`.
pub fn train_tokenizer(captions: &[String], vocab_size: usize) -> Result<String> {
    let err = |e: tokenizers::Error| Error::Tokenizer(format!("training: {e}"));
    let specials = vec![
        AddedToken::from("<|startoftext|>", true),
        AddedToken::from("<|endoftext|>", true),
    ];
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(specials)
        .end_of_word_suffix("</w>".into())
        .build()
        .into();
    let model = BPE::builder()
        .end_of_word_suffix("</w>".into())
        .build()
        .map_err(err)?;
    let post = TemplateProcessing::builder()
        .try_single("<|startoftext|> $A <|endoftext|>")
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .special_tokens(vec![("<|startoftext|>", BOS_ID), ("<|endoftext|>", EOS_ID)])
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut tokenizer = TokenizerBuilder::<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(model.into())
    .with_normalizer(Some(
        Sequence::new(vec![NFC.into(), Lowercase.into()]).into(),
    ))
    .with_pre_tokenizer(Some(Whitespace {}.into()))
    .with_post_processor(Some(post.into()))
    .build()
    .map_err(err)?;
    tokenizer
        .train(&mut trainer, captions.iter())
        .map_err(err)?;
    let tokenizer: Tokenizer = tokenizer.into();
    let check = |token: &str, id: u32| {
        if tokenizer.token_to_id(token) != Some(id) {
            return Err(Error::Tokenizer(format!("{token} did not get id {id}")));
        }
        Ok(())
    };
    check("<|startoftext|>", BOS_ID)?;
    check("<|endoftext|>", EOS_ID)?;
    renumber(&tokenizer.to_string(false).map_err(err)?)
}

/// The trainer numbers its initial alphabet in hash-map order, which changes from run to run;
/// give every non-special token an id in sorted order so training is reproducible.
fn renumber(json: &str) -> Result<String> {
    let bad = |what: &str| Error::Tokenizer(format!("trained tokenizer: {what}"));
    let mut root: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let vocab = root
        .pointer_mut("/model/vocab")
        .and_then(serde_json::Value::as_object_mut)
        .ok_or_else(|| bad("no model.vocab"))?;
    let mut tokens: Vec<String> = vocab
        .iter()
        .filter(|(_, id)| id.as_u64().is_some_and(|id| id > EOS_ID as u64))
        .map(|(token, _)| token.clone())
        .collect();
    tokens.sort();
    for (i, token) in tokens.into_iter().enumerate() {
        vocab.insert(token, (EOS_ID as usize + 1 + i).into());
    }
    let json = root.to_string();
    Tokenizer::from_bytes(json.as_bytes()).map_err(|e| bad(&e.to_string()))?;
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClipTokenizer;

    #[test]
    fn trained_tokenizer_wraps_and_splits_captions() {
        let captions = vec![
            "a small red circle".to_string(),
            "a big blue square".to_string(),
        ];
        let json = train_tokenizer(&captions, 64).unwrap();
        let tokenizer = ClipTokenizer::from_bytes(json.as_bytes(), 16).unwrap();
        let ids = tokenizer.encode("A small  BLUE circle").unwrap();
        assert_eq!(ids.first(), Some(&BOS_ID));
        assert_eq!(ids.last(), Some(&EOS_ID));
        assert_eq!(ids.len(), 6, "{ids:?}");
        assert_eq!(
            json,
            train_tokenizer(&captions, 64).unwrap(),
            "training is reproducible"
        );
    }
}

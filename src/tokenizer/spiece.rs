//! SentencePiece's `spiece.model` (a protobuf `ModelProto`), as SigLIP repos ship their
//! tokenizer, read into a `tokenizers` unigram tokenizer that encodes as `transformers`'
//! `SiglipTokenizer` does: its clean-up (lower case, ASCII punctuation removed, runs of
//! whitespace folded), SentencePiece's normalization (the model's precompiled character map), a
//! `▁` before each word, and the end token appended.
//!
//! The file is untrusted: every length and index is checked before use, and the character
//! map's trie is walked once up front, so that normalizing any text stays within its bounds.

use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Lowercase, Precompiled, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{NormalizerWrapper, Tokenizer};

use crate::error::{Error, Result};

/// The fields of `ModelProto` a unigram tokenizer needs.
#[derive(Debug, Default)]
struct Model {
    /// `(piece, score)` in id order.
    pieces: Vec<(String, f64)>,
    unk_id: i64,
    eos_id: i64,
    byte_fallback: bool,
    /// SentencePiece's `model_type`: 1 is unigram.
    model_type: u64,
    charsmap: Vec<u8>,
    add_dummy_prefix: bool,
}

/// Build SigLIP's tokenizer from the bytes of a `spiece.model`; `lower_case` is
/// `tokenizer_config.json`'s `do_lower_case` (SiglipTokenizer's default: true).
pub fn siglip_tokenizer(bytes: &[u8], lower_case: bool) -> Result<Tokenizer> {
    let bad = |message: String| Error::Tokenizer(format!("spiece.model: {message}"));
    let model = parse_model(bytes).map_err(|e| bad(e.to_string()))?;
    if model.model_type != 1 {
        return Err(bad(format!(
            "model type {} is not supported (only unigram, 1)",
            model.model_type
        )));
    }
    let id = |name: &str, id: i64| {
        usize::try_from(id)
            .ok()
            .filter(|&i| i < model.pieces.len())
            .ok_or_else(|| bad(format!("{name} {id} is not a piece id")))
    };
    let unk = id("unk_id", model.unk_id)?;
    let eos = id("eos_id", model.eos_id)?;
    let eos_piece = model.pieces[eos].0.clone();
    let unigram = Unigram::from(model.pieces, Some(unk), model.byte_fallback)
        .map_err(|e| bad(format!("the vocabulary is unusable: {e}")))?;

    let regex = |pattern: &str, with: &str| {
        let pattern = tokenizers::normalizers::replace::ReplacePattern::Regex(pattern.into());
        Replace::new(pattern, with).expect("a valid pattern")
    };
    let mut steps: Vec<NormalizerWrapper> =
        vec![Replace::new("▁", " ").expect("a valid pattern").into()];
    if lower_case {
        steps.push(Lowercase.into());
    }
    // Python's `string.punctuation`, then `re.sub(r"\s+", " ", text).strip()`.
    steps.push(regex(r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]"##, "").into());
    steps.push(regex(r"\s+", " ").into());
    steps.push(Strip::new(true, true).into());
    if !model.charsmap.is_empty() {
        check_charsmap(&model.charsmap).map_err(|e| bad(format!("precompiled_charsmap: {e}")))?;
        let precompiled = Precompiled::from(&model.charsmap)
            .map_err(|e| bad(format!("precompiled_charsmap: {e}")))?;
        steps.push(precompiled.into());
        // SentencePiece's remove_extra_whitespaces, after the map.
        steps.push(regex(" {2,}", " ").into());
        steps.push(Strip::new(true, true).into());
    }
    let prepend = match model.add_dummy_prefix {
        true => PrependScheme::Always,
        false => PrependScheme::Never,
    };
    let post = TemplateProcessing::builder()
        .try_single(format!("$A {eos_piece}"))
        .and_then(|b| {
            b.special_tokens(vec![(eos_piece.as_str(), eos as u32)])
                .build()
                .map_err(|e| e.to_string())
        })
        .map_err(|e| bad(format!("the end token {eos_piece:?}: {e}")))?;

    let mut tokenizer = Tokenizer::new(unigram);
    tokenizer
        .with_normalizer(Some(Sequence::new(steps)))
        .map_err(|e| bad(e.to_string()))?
        .with_pre_tokenizer(Some(Metaspace::new('▁', prepend, true)))
        .with_post_processor(Some(post));
    Ok(tokenizer)
}

/// A protobuf decoding error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Malformed(String);

/// One protobuf field: its number and its value (a varint, or the bytes of a length-delimited
/// or fixed-width field).
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of one protobuf message, in order.
fn fields<'a>(
    mut bytes: &'a [u8],
) -> impl Iterator<Item = std::result::Result<(u64, Value<'a>), Malformed>> + 'a {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let mut next = || -> std::result::Result<(u64, Value<'a>), Malformed> {
            let key = varint(&mut bytes)?;
            let value = match key & 7 {
                0 => Value::Varint(varint(&mut bytes)?),
                1 => Value::Bytes(take(&mut bytes, 8)?),
                2 => {
                    let len = usize::try_from(varint(&mut bytes)?)
                        .map_err(|_| Malformed("a length past the address space".into()))?;
                    Value::Bytes(take(&mut bytes, len)?)
                }
                5 => Value::Bytes(take(&mut bytes, 4)?),
                wire => return Err(Malformed(format!("unsupported wire type {wire}"))),
            };
            Ok((key >> 3, value))
        };
        let field = next();
        if field.is_err() {
            bytes = &[];
        }
        Some(field)
    })
}

fn varint(bytes: &mut &[u8]) -> std::result::Result<u64, Malformed> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes
            .split_first()
            .ok_or_else(|| Malformed("truncated".into()))?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Malformed("a varint longer than 10 bytes".into()))
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> std::result::Result<&'a [u8], Malformed> {
    if bytes.len() < len {
        return Err(Malformed(format!(
            "truncated: a field of {len} bytes where {} remain",
            bytes.len()
        )));
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(head)
}

/// `ModelProto`: pieces (1), trainer_spec (2), normalizer_spec (3), with SentencePiece's defaults.
fn parse_model(bytes: &[u8]) -> std::result::Result<Model, Malformed> {
    let mut model = Model {
        unk_id: 0,
        eos_id: 2,
        model_type: 1,
        add_dummy_prefix: true,
        ..Model::default()
    };
    let wrong = |what: &str| Malformed(format!("{what} has the wrong wire type"));
    for field in fields(bytes) {
        match field? {
            (1, Value::Bytes(piece)) => {
                let (mut text, mut score) = (None, 0.0f32);
                for field in fields(piece) {
                    match field? {
                        (1, Value::Bytes(s)) => {
                            let s = std::str::from_utf8(s)
                                .map_err(|_| Malformed("a piece is not UTF-8".into()))?;
                            text = Some(s.to_string());
                        }
                        (2, Value::Bytes(&[a, b, c, d])) => {
                            score = f32::from_le_bytes([a, b, c, d]);
                        }
                        (1 | 2, _) => return Err(wrong("a piece")),
                        _ => {}
                    }
                }
                let text = text.ok_or_else(|| Malformed("a piece without text".into()))?;
                if !score.is_finite() {
                    return Err(Malformed(format!("piece {text:?} has score {score}")));
                }
                model.pieces.push((text, f64::from(score)));
            }
            (2, Value::Bytes(spec)) => {
                for field in fields(spec) {
                    match field? {
                        (3, Value::Varint(v)) => model.model_type = v,
                        (35, Value::Varint(v)) => model.byte_fallback = v != 0,
                        // int32 fields: negative values are sign-extended to 64 bits.
                        (40, Value::Varint(v)) => model.unk_id = v as i64,
                        (42, Value::Varint(v)) => model.eos_id = v as i64,
                        (3 | 35 | 40 | 42, _) => return Err(wrong("trainer_spec")),
                        _ => {}
                    }
                }
            }
            (3, Value::Bytes(spec)) => {
                for field in fields(spec) {
                    match field? {
                        (2, Value::Bytes(map)) => model.charsmap = map.to_vec(),
                        (3, Value::Varint(v)) => model.add_dummy_prefix = v != 0,
                        (2 | 3, _) => return Err(wrong("normalizer_spec")),
                        _ => {}
                    }
                }
            }
            (1..=3, _) => return Err(wrong("a ModelProto field")),
            _ => {}
        }
    }
    if model.pieces.is_empty() {
        return Err(Malformed(
            "no pieces (is this a SentencePiece model?)".into(),
        ));
    }
    Ok(model)
}

/// The longest key `Precompiled` looks up: a grapheme of up to 5 bytes.
const MAX_KEY: usize = 5;

/// Walk the double-array trie of a precompiled character map as `Precompiled` does for every
/// possible key, checking that each index it would read is in bounds (it indexes without
/// checks, so a corrupt map would otherwise panic while normalizing).
fn check_charsmap(map: &[u8]) -> std::result::Result<(), Malformed> {
    let (size, rest) = map
        .split_first_chunk::<4>()
        .ok_or_else(|| Malformed("shorter than its header".into()))?;
    let size = u32::from_le_bytes(*size) as usize;
    if !size.is_multiple_of(4) || size > rest.len() {
        return Err(Malformed(format!("a trie of {size} bytes does not fit")));
    }
    let (trie, normalized) = rest.split_at(size);
    let units: Vec<usize> = trie
        .chunks_exact(4)
        .map(|u| u32::from_le_bytes([u[0], u[1], u[2], u[3]]) as usize)
        .collect();
    let normalized = std::str::from_utf8(normalized)
        .map_err(|_| Malformed("its strings are not UTF-8".into()))?;
    let offset = |unit: usize| (unit >> 10) << ((unit & (1 << 9)) >> 6);
    let label = |unit: usize| unit & ((1 << 31) | 0xff);
    let out_of_bounds = || Malformed("an index past the trie".into());
    let root = *units.first().ok_or_else(out_of_bounds)?;
    let mut stack = vec![(offset(root), 0usize)];
    let mut seen = std::collections::HashSet::new();
    while let Some((node, depth)) = stack.pop() {
        if depth == MAX_KEY || !seen.insert((node, depth)) {
            continue;
        }
        for byte in 1..=255usize {
            let child = node ^ byte;
            let unit = *units.get(child).ok_or_else(out_of_bounds)?;
            if label(unit) != byte {
                continue;
            }
            let next = child ^ offset(unit);
            if (unit >> 8) & 1 == 1 {
                let value = *units.get(next).ok_or_else(out_of_bounds)? & ((1 << 31) - 1);
                if !normalized.is_char_boundary(value) {
                    return Err(Malformed(format!("a string index {value} is invalid")));
                }
            }
            stack.push((next, depth + 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_files_are_errors() {
        for bytes in [
            &b""[..],
            b"\x0a",                 // a length-delimited field without its length
            b"\x0a\x05ab",           // a field longer than the file
            b"\x0b",                 // a group (wire type 3)
            b"\x08\x01",             // pieces as a varint
            b"\x0a\x00",             // a piece without text
            b"\x0a\x03\x0a\x01\xff", // a piece that is not UTF-8
        ] {
            let e = siglip_tokenizer(bytes, true).unwrap_err();
            assert!(matches!(e, Error::Tokenizer(_)), "{bytes:?}: {e}");
        }
    }

    #[test]
    fn corrupt_character_maps_are_rejected() {
        assert!(check_charsmap(b"\x04\x00\x00").is_err());
        assert!(check_charsmap(b"\x08\x00\x00\x00\x00\x00\x00\x00").is_err());
        // One unit whose children lie past the end.
        assert!(check_charsmap(b"\x04\x00\x00\x00\x00\x04\x00\x00").is_err());
    }
}

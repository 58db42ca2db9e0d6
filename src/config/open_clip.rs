//! open_clip's hub layout: `open_clip_config.json` (`model_cfg` and `preprocess_cfg`, as
//! `open_clip.push_to_hf_hub` writes it), read into the same [`ClipConfig`] and
//! [`PreprocessConfig`] as a Hugging Face directory. Absent fields take open_clip's defaults
//! (`CLIPVisionCfg`, `CLIPTextCfg`); options that change the architecture beyond the plain ViT
//! CLIP are an error naming the field.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    parse, Activation, Architecture, ClipConfig, CropRounding, PreprocessConfig, Resample,
    TextConfig, TextPooling, VisionConfig, VisionPooling, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
};
use crate::error::{Error, Result};

/// The config file's name.
pub const CONFIG: &str = "open_clip_config.json";

/// open_clip's token ids in its CLIP vocabulary: start and end of text are the last two ids,
/// padding is 0.
const PAD_ID: u32 = 0;

#[derive(Deserialize)]
struct File {
    model_cfg: ModelCfg,
    #[serde(default)]
    preprocess_cfg: PreprocessCfg,
}

#[derive(Deserialize)]
struct ModelCfg {
    embed_dim: usize,
    #[serde(default)]
    quick_gelu: bool,
    vision_cfg: VisionCfg,
    text_cfg: TextCfg,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(default)]
struct VisionCfg {
    layers: usize,
    width: usize,
    head_width: usize,
    mlp_ratio: f64,
    patch_size: usize,
    image_size: ImageSize,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(default)]
struct TextCfg {
    context_length: usize,
    vocab_size: usize,
    width: usize,
    heads: usize,
    layers: usize,
    mlp_ratio: f64,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// `image_size`: one side, or `[height, width]` (square only).
#[derive(Deserialize)]
#[serde(untagged, expecting = "expected a number or [height, width]")]
enum ImageSize {
    Side(usize),
    HeightWidth([usize; 2]),
}

#[derive(Deserialize)]
#[serde(default)]
struct PreprocessCfg {
    mean: Vec<f32>,
    std: Vec<f32>,
    interpolation: String,
    resize_mode: String,
}

impl Default for VisionCfg {
    fn default() -> Self {
        Self {
            layers: 12,
            width: 768,
            head_width: 64,
            mlp_ratio: 4.0,
            patch_size: 16,
            image_size: ImageSize::Side(224),
            other: Map::new(),
        }
    }
}

impl Default for TextCfg {
    fn default() -> Self {
        Self {
            context_length: 77,
            vocab_size: 49408,
            width: 512,
            heads: 8,
            layers: 12,
            mlp_ratio: 4.0,
            other: Map::new(),
        }
    }
}

impl Default for PreprocessCfg {
    fn default() -> Self {
        Self {
            mean: OPENAI_CLIP_MEAN.to_vec(),
            std: OPENAI_CLIP_STD.to_vec(),
            interpolation: "bicubic".into(),
            resize_mode: "shortest".into(),
        }
    }
}

/// Options of open_clip that change the architecture, with the value that leaves it a plain
/// ViT CLIP (`null`: the option must be absent or null): `(section, key, plain value, what)`.
const ARCHITECTURE_OPTIONS: &[(&str, &str, Value, &str)] = &[
    (
        "model_cfg",
        "init_logit_bias",
        Value::Null,
        "a sigmoid (SigLIP-style) model",
    ),
    (
        "model_cfg",
        "custom_text",
        Value::Bool(false),
        "a custom text tower",
    ),
    ("model_cfg", "multimodal_cfg", Value::Null, "a CoCa model"),
    (
        "model_cfg",
        "nonscalar_logit_scale",
        Value::Bool(false),
        "a non-scalar logit scale",
    ),
    (
        "vision_cfg",
        "timm_model_name",
        Value::Null,
        "a timm image tower",
    ),
    ("vision_cfg", "ls_init_value", Value::Null, "LayerScale"),
    (
        "vision_cfg",
        "attentional_pool",
        Value::Bool(false),
        "attentional pooling",
    ),
    (
        "vision_cfg",
        "no_ln_pre",
        Value::Bool(false),
        "no pre-LayerNorm",
    ),
    (
        "vision_cfg",
        "final_ln_after_pool",
        Value::Bool(false),
        "LayerNorm after pooling",
    ),
    (
        "vision_cfg",
        "input_patchnorm",
        Value::Bool(false),
        "patch normalization",
    ),
    (
        "vision_cfg",
        "proj_bias",
        Value::Bool(false),
        "a projection bias",
    ),
    (
        "vision_cfg",
        "act_kwargs",
        Value::Null,
        "activation options",
    ),
    (
        "vision_cfg",
        "norm_kwargs",
        Value::Null,
        "normalization options",
    ),
    (
        "text_cfg",
        "hf_model_name",
        Value::Null,
        "a Hugging Face text tower",
    ),
    ("text_cfg", "ls_init_value", Value::Null, "LayerScale"),
    ("text_cfg", "embed_cls", Value::Bool(false), "a class token"),
    (
        "text_cfg",
        "no_causal_mask",
        Value::Bool(false),
        "no causal mask",
    ),
    (
        "text_cfg",
        "proj_bias",
        Value::Bool(false),
        "a projection bias",
    ),
    (
        "text_cfg",
        "final_ln_after_pool",
        Value::Bool(false),
        "LayerNorm after pooling",
    ),
    ("text_cfg", "act_kwargs", Value::Null, "activation options"),
    (
        "text_cfg",
        "norm_kwargs",
        Value::Null,
        "normalization options",
    ),
];

/// Options whose value must be one named string: `(section, key, value)`.
const FIXED_CHOICES: &[(&str, &str, &str)] = &[
    ("vision_cfg", "pool_type", "tok"),
    ("vision_cfg", "proj_type", "linear"),
    ("text_cfg", "pool_type", "argmax"),
    ("text_cfg", "proj_type", "linear"),
];

/// Parse `open_clip_config.json` into the model's configuration and its preprocessing.
pub fn from_json(text: &str) -> Result<(ClipConfig, PreprocessConfig)> {
    let (file, _): (File, Value) = parse(text, CONFIG)?;
    let m = &file.model_cfg;
    for (section, other) in [
        ("model_cfg", &m.other),
        ("vision_cfg", &m.vision_cfg.other),
        ("text_cfg", &m.text_cfg.other),
    ] {
        check_plain(section, other)?;
    }
    let bad = |field: &str, message: String| Error::Config {
        file: CONFIG,
        message: format!("`{field}`: {message}"),
    };
    let (v, t) = (&m.vision_cfg, &m.text_cfg);
    let image_size = match v.image_size {
        ImageSize::Side(side) => side,
        ImageSize::HeightWidth([h, w]) if h == w => h,
        ImageSize::HeightWidth([h, w]) => Err(bad(
            "model_cfg.vision_cfg.image_size",
            format!("{h}x{w} is not square (not supported)"),
        ))?,
    };
    let widened = |field: &str, width: usize, ratio: f64| -> Result<usize> {
        let wide = width as f64 * ratio;
        if !(ratio.is_finite() && ratio > 0.0 && wide.fract() == 0.0 && wide <= u32::MAX as f64) {
            return Err(bad(
                field,
                format!("{ratio} does not give a whole MLP width"),
            ));
        }
        Ok(wide as usize)
    };
    if v.head_width == 0 || !v.width.is_multiple_of(v.head_width) {
        return Err(bad(
            "model_cfg.vision_cfg.head_width",
            format!("{} does not divide the width {}", v.head_width, v.width),
        ));
    }
    let activation = match m.quick_gelu {
        true => Activation::QuickGelu,
        false => Activation::Gelu,
    };
    let config = ClipConfig {
        text: TextConfig {
            vocab_size: t.vocab_size,
            hidden_size: t.width,
            intermediate_size: widened("model_cfg.text_cfg.mlp_ratio", t.width, t.mlp_ratio)?,
            num_attention_heads: t.heads,
            num_hidden_layers: t.layers,
            max_position_embeddings: t.context_length,
            hidden_act: activation,
            layer_norm_eps: 1e-5,
            bos_token_id: t.vocab_size.saturating_sub(2) as u32,
            eos_token_id: t.vocab_size.saturating_sub(1) as u32,
            pad_token_id: PAD_ID,
            projection_size: None,
            pooling: TextPooling::Argmax,
        },
        vision: VisionConfig {
            hidden_size: v.width,
            intermediate_size: widened("model_cfg.vision_cfg.mlp_ratio", v.width, v.mlp_ratio)?,
            num_attention_heads: v.width / v.head_width,
            num_hidden_layers: v.layers,
            image_size,
            patch_size: v.patch_size,
            num_channels: 3,
            hidden_act: activation,
            layer_norm_eps: 1e-5,
            pooling: VisionPooling::ClassToken,
        },
        projection_dim: m.embed_dim,
        logit_scale_init_value: (1.0f64 / 0.07).ln(),
        architecture: Architecture::Clip,
    };
    config.validate()?;
    let p = &file.preprocess_cfg;
    let resample = match p.interpolation.as_str() {
        "bicubic" => Resample::Bicubic,
        "bilinear" => Resample::Bilinear,
        other => {
            return Err(bad(
                "preprocess_cfg.interpolation",
                format!("`{other}` is not supported (bicubic or bilinear)"),
            ))
        }
    };
    if p.resize_mode != "shortest" {
        return Err(bad(
            "preprocess_cfg.resize_mode",
            format!("`{}` is not supported (only shortest)", p.resize_mode),
        ));
    }
    let triple = |field: &str, values: &[f32]| match *values {
        [a, b, c] => Ok([a, b, c]),
        [a] => Ok([a; 3]),
        _ => Err(bad(field, format!("expected 3 numbers, found {values:?}"))),
    };
    let preprocess = PreprocessConfig {
        mean_std: Some((
            triple("preprocess_cfg.mean", &p.mean)?,
            triple("preprocess_cfg.std", &p.std)?,
        )),
        resample,
        // open_clip's transform: torchvision's Resize and CenterCrop.
        crop_rounding: CropRounding::HalfEven,
        ..PreprocessConfig::openai(image_size)
    };
    preprocess.validate(image_size).map_err(|e| match e {
        Error::Config { message, .. } => bad("preprocess_cfg", message),
        other => other,
    })?;
    Ok((config, preprocess))
}

/// Every architecture option in `section` is off.
fn check_plain(section: &str, other: &Map<String, Value>) -> Result<()> {
    let field = |key: &str| match section {
        "model_cfg" => format!("model_cfg.{key}"),
        _ => format!("model_cfg.{section}.{key}"),
    };
    let options = ARCHITECTURE_OPTIONS.iter().filter(|o| o.0 == section);
    for (_, key, plain, what) in options {
        match other.get(*key) {
            Some(value) if !value.is_null() && value != plain => {
                return Err(Error::Config {
                    file: CONFIG,
                    message: format!("`{}`: {what} is not supported", field(key)),
                });
            }
            _ => {}
        }
    }
    for (_, key, expected) in FIXED_CHOICES.iter().filter(|c| c.0 == section) {
        match other.get(*key) {
            Some(value) if value.as_str() != Some(expected) => {
                return Err(Error::Config {
                    file: CONFIG,
                    message: format!(
                        "`{}`: {value} is not supported (only \"{expected}\")",
                        field(key)
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_open_clip() {
        let (c, p) = from_json(r#"{"model_cfg": {"embed_dim": 512, "vision_cfg": {"patch_size": 32}, "text_cfg": {}}}"#).unwrap();
        assert_eq!(c.vision.num_attention_heads, 12);
        assert_eq!(c.vision.intermediate_size, 3072);
        assert_eq!(c.text.hidden_act, Activation::Gelu);
        assert!(c.text.pools_at_argmax());
        assert_eq!(p.crop_rounding, CropRounding::HalfEven);
    }

    #[test]
    fn other_architectures_are_named() {
        for (json, field) in [
            (
                r#"{"model_cfg": {"embed_dim": 8, "vision_cfg": {"timm_model_name": "x"}, "text_cfg": {}}}"#,
                "vision_cfg.timm_model_name",
            ),
            (
                r#"{"model_cfg": {"embed_dim": 8, "init_logit_bias": -10, "vision_cfg": {}, "text_cfg": {}}}"#,
                "model_cfg.init_logit_bias",
            ),
            (
                r#"{"model_cfg": {"embed_dim": 8, "vision_cfg": {}, "text_cfg": {"pool_type": "last"}}}"#,
                "text_cfg.pool_type",
            ),
            (
                r#"{"model_cfg": {"embed_dim": 8, "vision_cfg": {"layers": [3, 4, 6, 3]}, "text_cfg": {}}}"#,
                "vision_cfg.layers",
            ),
            (
                r#"{"model_cfg": {"embed_dim": 8, "vision_cfg": {}, "text_cfg": {}}, "preprocess_cfg": {"resize_mode": "squash"}}"#,
                "preprocess_cfg.resize_mode",
            ),
        ] {
            let e = from_json(json).unwrap_err();
            assert_eq!(e.code(), "E_CONFIG");
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
    }
}

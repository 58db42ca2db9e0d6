//! SigLIP's Hugging Face `config.json` (`SiglipModel`, also the fixed-resolution SigLIP 2
//! checkpoints): the same two sections as CLIP's, read with `SiglipTextConfig`'s and
//! `SiglipVisionConfig`'s defaults, into a [`ClipConfig`] of [`Architecture::Siglip`].

use serde_json::{json, Value};

use super::{Architecture, ClipConfig, TextPooling, VisionPooling, CONFIG};
use crate::error::{Error, Result};

/// `model_type` of a SigLIP config.
pub const MODEL_TYPE: &str = "siglip";

/// SigLIP's initial `logit_scale` and `logit_bias` (the paper's: a temperature of 10 and a
/// bias of -10, so that the many negative pairs start with a small loss).
pub const INIT_LOGIT_SCALE: f64 = std::f64::consts::LN_10;
/// See [`INIT_LOGIT_SCALE`].
pub const INIT_LOGIT_BIAS: f64 = -10.0;

/// `transformers`' defaults for each section, where they differ from CLIP's.
fn defaults() -> [(&'static str, Value); 2] {
    [
        (
            "text_config",
            json!({
                "vocab_size": 32000, "hidden_size": 768, "intermediate_size": 3072,
                "num_attention_heads": 12, "num_hidden_layers": 12,
                "max_position_embeddings": 64, "hidden_act": "gelu_pytorch_tanh",
                "layer_norm_eps": 1e-6, "pad_token_id": 1,
            }),
        ),
        (
            "vision_config",
            json!({
                "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                "num_hidden_layers": 12, "image_size": 224, "patch_size": 16,
                "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6,
            }),
        ),
    ]
}

/// Read a parsed SigLIP `config.json` (null fields already removed).
pub(crate) fn from_value(mut value: Value) -> Result<ClipConfig> {
    let bad = |field: &str, message: String| Error::Config {
        file: CONFIG,
        message: format!("`{field}`: {message}"),
    };
    for (section, defaults) in defaults() {
        if let (Some(Value::Object(fields)), Value::Object(defaults)) =
            (value.get_mut(section), defaults)
        {
            for (name, default) in defaults {
                fields.entry(name).or_insert(default);
            }
        }
    }
    if let Some(head) = value.pointer("/vision_config/vision_use_head") {
        if head != &Value::Bool(true) {
            return Err(bad(
                "vision_config.vision_use_head",
                format!("{head} is not supported (the image embedding is the attention-pooling head's output)"),
            ));
        }
    }
    let mut config: ClipConfig = super::from_value(value, CONFIG)?;
    config.architecture = Architecture::Siglip;
    config.text.pooling = TextPooling::Last;
    config.vision.pooling = VisionPooling::AttentionHead;
    let head = config
        .text
        .projection_size
        .unwrap_or(config.text.hidden_size);
    if head != config.vision.hidden_size {
        return Err(bad(
            "text_config.projection_size",
            format!(
                "{head} differs from vision_config.hidden_size {} (both embeddings must share one space)",
                config.vision.hidden_size
            ),
        ));
    }
    config.text.projection_size = Some(head);
    config.projection_dim = head;
    config.logit_scale_init_value = INIT_LOGIT_SCALE;
    Ok(config)
}

/// The SigLIP model of a CLIP config's sizes (for training with the sigmoid loss): no class
/// token, the attention-pooling head and a text head (to the image width) instead of the
/// projections, the paper's initial scale and bias.
pub fn from_clip(config: &ClipConfig) -> ClipConfig {
    let mut siglip = config.clone();
    siglip.architecture = Architecture::Siglip;
    siglip.text.pooling = TextPooling::Last;
    siglip.text.projection_size = Some(config.vision.hidden_size);
    siglip.vision.pooling = VisionPooling::AttentionHead;
    siglip.projection_dim = config.vision.hidden_size;
    siglip.logit_scale_init_value = INIT_LOGIT_SCALE;
    siglip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Activation;

    #[test]
    fn defaults_follow_transformers() {
        let c = ClipConfig::from_json(
            r#"{"model_type": "siglip", "text_config": {}, "vision_config": {}}"#,
        )
        .unwrap();
        assert_eq!(c.architecture, Architecture::Siglip);
        assert_eq!(c.text.max_position_embeddings, 64);
        assert_eq!(c.text.hidden_act, Activation::GeluTanh);
        assert_eq!(c.vision.patch_size, 16);
        assert_eq!(c.vision.num_positions(), 196);
        assert_eq!(c.projection_dim, 768);
        assert_eq!(ClipConfig::from_json(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn unsupported_options_name_the_field() {
        let e = ClipConfig::from_json(
            r#"{"model_type": "siglip", "text_config": {}, "vision_config": {"vision_use_head": false}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("vision_use_head"), "{e}");
        let e = ClipConfig::from_json(
            r#"{"model_type": "siglip", "text_config": {"projection_size": 64}, "vision_config": {}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("projection_size"), "{e}");
        let e = ClipConfig::from_json(
            r#"{"model_type": "siglip", "text_config": {}, "vision_config": {"image_size": [224, 256]}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("vision_config.image_size"), "{e}");
    }
}

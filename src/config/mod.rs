//! Model and preprocessing configuration, read from a Hugging Face `config.json` and
//! `preprocessor_config.json`, or from open_clip's `open_clip_config.json` ([`open_clip`]).
//!
//! Fields that `transformers` gives a default (`CLIPTextConfig`, `CLIPVisionConfig`) take the same
//! default here, so any directory that `CLIPModel.from_pretrained` loads is read the same way. The
//! `text_config` and `vision_config` sections themselves are required, and every field that is
//! present must have the right type and a usable value; errors name the field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

pub mod open_clip;
pub mod siglip;

/// The nonlinearity inside each MLP block, under its `hidden_act` names in `transformers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, used by OpenAI's checkpoints.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact GELU with `erf`.
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU with the `tanh` approximation.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
}

/// The causal text transformer (`text_config`; absent fields take `CLIPTextConfig`'s defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
    pub pad_token_id: u32,
    /// SigLIP's text head width (`projection_size`; `None` for CLIP, which projects outside
    /// the tower).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection_size: Option<usize>,
    /// Which token the tower's output is read at; not a `config.json` field (the reader sets it
    /// from the model family).
    #[serde(skip)]
    pub pooling: TextPooling,
}

/// Where the text tower reads its output, and how it attends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextPooling {
    /// CLIP in `transformers`: causal attention, pooled at the first `eos_token_id` (at the
    /// highest id for old configs with `eos_token_id == 2`).
    #[default]
    Eos,
    /// open_clip: causal attention, pooled at the highest token id.
    Argmax,
    /// SigLIP: bidirectional attention over the whole context (padding included, no mask, as
    /// the model was trained), pooled at the last position.
    Last,
}

/// The model family's architecture: what differs between CLIP and SigLIP beyond sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Architecture {
    /// CLIP: class token, pre-LayerNorm, causal text tower, projections, softmax over labels.
    #[default]
    Clip,
    /// SigLIP: no class token, an attention-pooling head, bidirectional text tower with a head,
    /// a learned `logit_bias`, and independent sigmoid scores.
    Siglip,
}

/// The ViT image tower (`vision_config`; absent fields take `CLIPVisionConfig`'s defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// How the tower's output is pooled; not a `config.json` field (the reader sets it from
    /// the model family).
    #[serde(skip)]
    pub pooling: VisionPooling,
}

/// How the image tower pools its patches into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VisionPooling {
    /// CLIP: a class token in front of the patches (and a LayerNorm before the encoder), read
    /// at the end.
    #[default]
    ClassToken,
    /// SigLIP: no class token (the patch convolution has a bias); a learned probe attends over
    /// the patches, then a LayerNorm and an MLP (`SiglipMultiheadAttentionPoolingHead`).
    AttentionHead,
}

/// A whole CLIP model: both towers and the shared embedding space (`CLIPConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    #[serde(rename = "text_config")]
    pub text: TextConfig,
    #[serde(rename = "vision_config")]
    pub vision: VisionConfig,
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
    /// Initial value of the (log) temperature; the loaded weights carry the trained one.
    #[serde(default = "default_logit_scale")]
    pub logit_scale_init_value: f64,
    /// CLIP or SigLIP, from `model_type`.
    #[serde(skip)]
    pub architecture: Architecture,
}

fn default_projection_dim() -> usize {
    512
}

fn default_logit_scale() -> f64 {
    2.6592
}

impl Default for TextConfig {
    /// `CLIPTextConfig`'s defaults.
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_attention_heads: 8,
            num_hidden_layers: 12,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            bos_token_id: 49406,
            eos_token_id: 49407,
            pad_token_id: 1,
            projection_size: None,
            pooling: TextPooling::Eos,
        }
    }
}

impl Default for VisionConfig {
    /// `CLIPVisionConfig`'s defaults.
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_attention_heads: 12,
            num_hidden_layers: 12,
            image_size: 224,
            patch_size: 32,
            num_channels: 3,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            pooling: VisionPooling::ClassToken,
        }
    }
}

/// Parse JSON text into `T` with errors that name the field (`text_config.hidden_size`). Null
/// values count as absent, as `transformers` treats them.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &'static str,
) -> Result<(T, Value)> {
    let value = parse_object(text, file)?;
    Ok((from_value(value.clone(), file)?, value))
}

/// Parse JSON text that must be an object, with null-valued fields removed.
pub(crate) fn parse_object(text: &str, file: &'static str) -> Result<Value> {
    let invalid = |message: String| Error::Config { file, message };
    let mut value: Value =
        serde_json::from_str(text).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(invalid("expected a JSON object".into()));
    }
    strip_nulls(&mut value);
    Ok(value)
}

/// Deserialize `T` from a parsed object, with errors that name the field.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    value: Value,
    file: &'static str,
) -> Result<T> {
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let found = value.pointer(&format!("/{}", path.replace('.', "/")));
        match found {
            Some(Value::String(name)) if path.ends_with("hidden_act") => {
                Error::UnknownActivation(name.clone())
            }
            _ if path == "." => Error::Config {
                file,
                message: e.into_inner().to_string(),
            },
            _ => Error::Config {
                file,
                message: format!("`{path}`: {}", e.into_inner()),
            },
        }
    })
}

/// Remove every null-valued field, recursively.
fn strip_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

impl TextConfig {
    /// How the pooled token is chosen: open_clip and old OpenAI exports (`eos_token_id == 2`)
    /// pool at the highest token id, newer ones at the first `eos_token_id`.
    pub fn pools_at_argmax(&self) -> bool {
        self.pooling == TextPooling::Argmax
            || (self.pooling == TextPooling::Eos && self.eos_token_id == 2)
    }

    /// Whether each position attends only to itself and earlier ones (CLIP), or to the whole
    /// sequence (SigLIP).
    pub fn is_causal(&self) -> bool {
        self.pooling != TextPooling::Last
    }
}

impl VisionConfig {
    /// Number of patches along one side of the image (the convolution's: pixels past the last
    /// whole patch are left out).
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Number of positions: one per patch, plus the class token in CLIP.
    pub fn num_positions(&self) -> usize {
        let class_token = self.pooling == VisionPooling::ClassToken;
        self.grid_size() * self.grid_size() + usize::from(class_token)
    }
}

impl ClipConfig {
    /// The architecture of `openai/clip-vit-base-patch32` (used by the benchmark).
    pub fn vit_base_patch32() -> Self {
        Self {
            text: TextConfig {
                eos_token_id: 2,
                ..TextConfig::default()
            },
            vision: VisionConfig::default(),
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
            architecture: Architecture::Clip,
        }
    }

    /// Parse the text of a Hugging Face `config.json`: `CLIPModel`, or `SiglipModel`
    /// (`model_type` "siglip", read by [`siglip::from_value`] with SigLIP's defaults).
    pub fn from_json(text: &str) -> Result<Self> {
        let value = parse_object(text, CONFIG)?;
        let config: ClipConfig = match value.get("model_type") {
            None => from_value(value, CONFIG)?,
            Some(Value::String(t)) if t == "clip" => from_value(value, CONFIG)?,
            Some(Value::String(t)) if t == siglip::MODEL_TYPE => siglip::from_value(value)?,
            Some(other) => {
                return Err(Error::Config {
                    file: CONFIG,
                    message: format!(
                        "`model_type` is {other}, expected \"clip\" or \"{}\"",
                        siglip::MODEL_TYPE
                    ),
                })
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Check every value before anything is allocated: sizes positive and within
    /// [`SIZE_LIMITS`], heads dividing widths, patches tiling the image, token ids inside the
    /// vocabulary, finite positive epsilons, and a parameter count that fits in memory.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(Error::Config {
                file: CONFIG,
                message: format!("`{field}`: {message}"),
            })
        };
        let t = &self.text;
        let v = &self.vision;
        let l = &SIZE_LIMITS;
        for (field, value, max) in [
            ("text_config.vocab_size", t.vocab_size, l.vocab),
            ("text_config.hidden_size", t.hidden_size, l.width),
            (
                "text_config.intermediate_size",
                t.intermediate_size,
                l.width * 8,
            ),
            (
                "text_config.num_attention_heads",
                t.num_attention_heads,
                l.width,
            ),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
                l.positions,
            ),
            ("vision_config.hidden_size", v.hidden_size, l.width),
            (
                "vision_config.intermediate_size",
                v.intermediate_size,
                l.width * 8,
            ),
            (
                "vision_config.num_attention_heads",
                v.num_attention_heads,
                l.width,
            ),
            ("vision_config.image_size", v.image_size, l.image_side),
            ("vision_config.patch_size", v.patch_size, l.image_side),
            ("projection_dim", self.projection_dim, l.width),
        ] {
            if value == 0 {
                return bad(field, "must be positive".into());
            }
            if value > max {
                return bad(field, format!("{value} exceeds the limit of {max}"));
            }
        }
        for (field, value) in [
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
        ] {
            if value > l.layers {
                return bad(field, format!("{value} exceeds the limit of {}", l.layers));
            }
        }
        if v.num_channels != 3 {
            return bad(
                "vision_config.num_channels",
                format!("{} (images are RGB: must be 3)", v.num_channels),
            );
        }
        for (field, eps) in [
            ("text_config.layer_norm_eps", t.layer_norm_eps),
            ("vision_config.layer_norm_eps", v.layer_norm_eps),
        ] {
            if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
                return bad(field, format!("{eps} is not a small positive number"));
            }
        }
        if !self.logit_scale_init_value.is_finite() || self.logit_scale_init_value.abs() > 100.0 {
            return bad(
                "logit_scale_init_value",
                format!("{} is not a finite log scale", self.logit_scale_init_value),
            );
        }
        // SigLIP reads neither start nor end token ids (its defaults are CLIP's, outside its
        // vocabulary); it pads with `pad_token_id` only where the tokenizer has not.
        let read_ids = match t.pooling {
            TextPooling::Last => 2,
            TextPooling::Eos | TextPooling::Argmax => 0,
        };
        for (field, id) in [
            ("text_config.bos_token_id", t.bos_token_id),
            ("text_config.eos_token_id", t.eos_token_id),
            ("text_config.pad_token_id", t.pad_token_id),
        ]
        .into_iter()
        .skip(read_ids)
        {
            if id as usize >= t.vocab_size {
                return bad(
                    field,
                    format!("{id} is outside the vocabulary of {} tokens", t.vocab_size),
                );
            }
        }
        if !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return bad(
                "text_config.num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    t.num_attention_heads, t.hidden_size
                ),
            );
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return bad(
                "vision_config.num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    v.num_attention_heads, v.hidden_size
                ),
            );
        }
        // Like the patch convolution, a grid that does not tile the image leaves the last
        // pixels out (SigLIP so400m: 27 patches of 14 in 384 pixels).
        if v.image_size < v.patch_size {
            return bad(
                "vision_config.patch_size",
                format!("{} exceeds image_size {}", v.patch_size, v.image_size),
            );
        }
        if v.num_positions() > l.positions {
            return bad(
                "vision_config.patch_size",
                format!(
                    "{} patches of {} exceed the limit of {} positions",
                    v.num_positions() - 1,
                    v.patch_size,
                    l.positions
                ),
            );
        }
        if t.max_position_embeddings < 2 {
            return bad(
                "text_config.max_position_embeddings",
                "must leave room for the start and end tokens".into(),
            );
        }
        let parameters = self.parameter_count();
        // Each parameter is an f32: the model must also fit the address space (4 GiB on wasm32).
        let limit = l.parameters.min(usize::MAX as u64 / 4);
        if parameters > limit {
            return Err(Error::Config {
                file: CONFIG,
                message: format!(
                    "the sizes imply {parameters} parameters, more than the limit of {limit}"
                ),
            });
        }
        Ok(())
    }

    /// The number of parameters these sizes imply (saturating; call after the size checks).
    pub fn parameter_count(&self) -> u64 {
        let (t, v) = (&self.text, &self.vision);
        let n = |x: usize| x as u64;
        let layer = |hidden: usize, intermediate: usize| {
            let (h, i) = (n(hidden), n(intermediate));
            4 * (h * h + h) + 2 * h * i + i + h + 4 * h
        };
        let text = n(t.vocab_size) * n(t.hidden_size)
            + n(t.max_position_embeddings) * n(t.hidden_size)
            + n(t.num_hidden_layers) * layer(t.hidden_size, t.intermediate_size)
            + 2 * n(t.hidden_size);
        let patch = n(v.num_channels) * n(v.patch_size) * n(v.patch_size);
        let vision = patch * n(v.hidden_size)
            + n(v.hidden_size)
            + n(v.num_positions()) * n(v.hidden_size)
            + n(v.num_hidden_layers) * layer(v.hidden_size, v.intermediate_size)
            + 4 * n(v.hidden_size);
        let heads = match self.architecture {
            Architecture::Clip => n(self.projection_dim) * n(t.hidden_size + v.hidden_size),
            // The text head, and the vision head: probe, attention, LayerNorm and MLP.
            Architecture::Siglip => {
                let (h, i) = (n(v.hidden_size), n(v.intermediate_size));
                let text_head = n(t.hidden_size) * n(self.projection_dim) + n(self.projection_dim);
                text_head + h + 4 * (h * h + h) + 2 * h + 2 * h * i + i + h
            }
        };
        text + vision + heads + 2
    }

    /// Write this config as a Hugging Face `config.json` that `transformers` loads.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("a config always serializes");
        let (class, model_type) = match self.architecture {
            Architecture::Clip => ("CLIPModel", "clip"),
            Architecture::Siglip => ("SiglipModel", siglip::MODEL_TYPE),
        };
        value["architectures"] = serde_json::json!([class]);
        value["model_type"] = model_type.into();
        for tower in ["text", "vision"] {
            let section = &mut value[format!("{tower}_config")];
            section["model_type"] = format!("{model_type}_{tower}_model").into();
            if self.architecture == Architecture::Clip {
                section["projection_dim"] = self.projection_dim.into();
            }
        }
        serde_json::to_string_pretty(&value).expect("a JSON value always serializes")
    }
}

/// How images are turned into the model's input (`preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// How the image is resized (`None`: not at all).
    pub resize: Option<Resize>,
    /// The resampling filter of the resize (PIL's).
    pub resample: Resample,
    /// Center crop to `(height, width)` (`None`: no crop).
    pub crop: Option<(usize, usize)>,
    /// Multiply 8-bit values by this (`None`: no rescale).
    pub rescale_factor: Option<f32>,
    /// Per-channel mean and std (`None`: no normalization).
    pub mean_std: Option<([f32; 3], [f32; 3])>,
    /// How the center crop's offset is rounded when the margin is odd.
    pub crop_rounding: CropRounding,
}

/// The target of a resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// The shortest side becomes this long, the aspect ratio kept (CLIP).
    ShortestEdge(usize),
    /// Exactly this size, the aspect ratio not kept (SigLIP).
    Exact { height: usize, width: usize },
}

/// A resampling filter, as PIL implements it (antialiased on downscale). The numbers are
/// PIL's, as `preprocessor_config.json` files write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// `resample: 2`.
    Bilinear,
    /// `resample: 3`.
    Bicubic,
}

impl Resample {
    /// The filter of PIL's number, if supported.
    pub fn from_pil(code: u64) -> Option<Self> {
        match code {
            2 => Some(Resample::Bilinear),
            3 => Some(Resample::Bicubic),
            _ => None,
        }
    }

    /// PIL's number of the filter.
    pub fn pil(self) -> u8 {
        match self {
            Resample::Bilinear => 2,
            Resample::Bicubic => 3,
        }
    }
}

/// Where a center crop starts when the margin `size - crop` is odd: the references differ by
/// one pixel there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropRounding {
    /// `floor((size - crop) / 2)`: `transformers`' `CLIPImageProcessor`, the reference for
    /// Hugging Face directories.
    Floor,
    /// `round((size - crop) / 2)`, half to even: torchvision's `CenterCrop`, as OpenAI's and
    /// open_clip's transforms use.
    HalfEven,
}

/// OpenAI CLIP's normalization constants.
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's normalization constants.
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// `transformers`' `IMAGENET_STANDARD_MEAN` and `_STD` (SigLIP's): values to `[-1, 1]`.
pub const STANDARD_MEAN_STD: ([f32; 3], [f32; 3]) = ([0.5; 3], [0.5; 3]);

impl PreprocessConfig {
    /// OpenAI's preprocessing (PIL bicubic resize, torchvision center crop) for a model with the
    /// given input size.
    pub fn openai(image_size: usize) -> Self {
        Self {
            resize: Some(Resize::ShortestEdge(image_size)),
            resample: Resample::Bicubic,
            crop: Some((image_size, image_size)),
            rescale_factor: Some(1.0 / 255.0),
            mean_std: Some((OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)),
            crop_rounding: CropRounding::HalfEven,
        }
    }

    /// `transformers`' `CLIPImageProcessor` defaults for a model of the given input size: as
    /// [`PreprocessConfig::openai`], with the crop offset floored. Hugging Face CLIP
    /// directories without a `preprocessor_config.json` use this.
    pub fn clip_image_processor(image_size: usize) -> Self {
        Self {
            crop_rounding: CropRounding::Floor,
            ..Self::openai(image_size)
        }
    }

    /// `transformers`' `SiglipImageProcessor` defaults for a model of the given input size: a
    /// bicubic resize to the exact size (no crop), values to `[-1, 1]`.
    pub fn siglip_image_processor(image_size: usize) -> Self {
        Self {
            resize: Some(Resize::Exact {
                height: image_size,
                width: image_size,
            }),
            crop: None,
            mean_std: Some(STANDARD_MEAN_STD),
            ..Self::clip_image_processor(image_size)
        }
    }

    /// The image processor's defaults for a model of `architecture` and `image_size`.
    pub fn defaults(architecture: Architecture, image_size: usize) -> Self {
        match architecture {
            Architecture::Clip => Self::clip_image_processor(image_size),
            Architecture::Siglip => Self::siglip_image_processor(image_size),
        }
    }

    /// Parse a `preprocessor_config.json` (`CLIPImageProcessor`); absent fields take the
    /// processor's defaults for a CLIP model of `image_size`.
    pub fn from_json(text: &str, image_size: usize) -> Result<Self> {
        Self::from_json_for(text, Architecture::Clip, image_size)
    }

    /// Parse a `preprocessor_config.json` of a model of `architecture`: absent fields take the
    /// defaults of its `image_processor_type` (`CLIPImageProcessor` or `SiglipImageProcessor`),
    /// or where it names none, of the architecture's processor.
    pub fn from_json_for(
        text: &str,
        architecture: Architecture,
        image_size: usize,
    ) -> Result<Self> {
        let (raw, _): (RawPreprocessor, Value) = parse(text, PREPROCESSOR)?;
        let processor = match raw.image_processor_type.as_deref() {
            None => architecture,
            Some(name) if name.starts_with("CLIPImageProcessor") => Architecture::Clip,
            Some(name) if name.starts_with("SiglipImageProcessor") => Architecture::Siglip,
            Some(other) => {
                return Err(Error::Config {
                    file: PREPROCESSOR,
                    message: format!(
                        "`image_processor_type`: {other} is not supported (CLIPImageProcessor or SiglipImageProcessor)"
                    ),
                })
            }
        };
        let defaults = Self::defaults(processor, image_size);
        let (default_mean, default_std) = defaults.mean_std.expect("normalizes");
        let triple =
            |field: &str, values: Option<Vec<f32>>, default: [f32; 3]| match values.as_deref() {
                None => Ok(default),
                Some(&[a, b, c]) => Ok([a, b, c]),
                Some(&[a]) => Ok([a; 3]),
                Some(other) => Err(Error::Config {
                    file: PREPROCESSOR,
                    message: format!("`{field}` must be a list of 3 numbers, found {other:?}"),
                }),
            };
        let resize = match raw.size {
            _ if !raw.do_resize.unwrap_or(true) => None,
            None => defaults.resize,
            Some(Size::Side(side))
            | Some(Size::ShortestEdge {
                shortest_edge: side,
            }) => Some(Resize::ShortestEdge(side)),
            Some(Size::HeightWidth { height, width }) => Some(Resize::Exact { height, width }),
        };
        let resample = match raw.resample {
            None => defaults.resample,
            Some(code) => Resample::from_pil(code).ok_or_else(|| Error::Config {
                file: PREPROCESSOR,
                message: format!(
                    "`resample`: {code} is not supported (2 = bilinear or 3 = bicubic)"
                ),
            })?,
        };
        let crop = match raw.crop_size {
            _ if !raw.do_center_crop.unwrap_or(defaults.crop.is_some()) => None,
            None => Some((image_size, image_size)),
            Some(Crop::Side(side)) => Some((side, side)),
            Some(Crop::HeightWidth { height, width }) => {
                Some((height.unwrap_or(image_size), width.unwrap_or(image_size)))
            }
        };
        let config = Self {
            resize,
            resample,
            crop,
            rescale_factor: raw.do_rescale.then_some(raw.rescale_factor as f32),
            mean_std: match raw.do_normalize {
                true => Some((
                    triple("image_mean", raw.image_mean, default_mean)?,
                    triple("image_std", raw.image_std, default_std)?,
                )),
                false => None,
            },
            crop_rounding: defaults.crop_rounding,
        };
        config.validate(image_size)?;
        Ok(config)
    }

    /// Check the values against a model whose input is `image_size` pixels square: sizes
    /// positive and bounded, the output (crop, else resize) equal to the model's input, finite
    /// factors, nonzero stds.
    pub fn validate(&self, image_size: usize) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(Error::Config {
                file: PREPROCESSOR,
                message: format!("`{field}`: {message}"),
            })
        };
        let max = SIZE_LIMITS.image_side;
        let (resize_h, resize_w) = match self.resize {
            Some(Resize::ShortestEdge(side)) => (Some(side), None),
            Some(Resize::Exact { height, width }) => (Some(height), Some(width)),
            None => (None, None),
        };
        let sizes = [
            (
                "size.shortest_edge",
                resize_h.filter(|_| resize_w.is_none()),
            ),
            ("size.height", resize_h.filter(|_| resize_w.is_some())),
            ("size.width", resize_w),
            ("crop_size.height", self.crop.map(|c| c.0)),
            ("crop_size.width", self.crop.map(|c| c.1)),
        ];
        for (field, value) in sizes {
            match value {
                Some(0) => return bad(field, "must be positive".into()),
                Some(n) if n > max => {
                    return bad(field, format!("{n} exceeds the limit of {max} pixels"))
                }
                _ => {}
            }
        }
        match (self.crop, self.resize) {
            (Some((h, w)), _)
            | (
                None,
                Some(Resize::Exact {
                    height: h,
                    width: w,
                }),
            ) if (h, w) != (image_size, image_size) => {
                let field = if self.crop.is_some() {
                    "crop_size"
                } else {
                    "size"
                };
                return bad(
                    field,
                    format!("{w}x{h} differs from the model's image_size {image_size}"),
                );
            }
            _ => {}
        }
        if let Some(f) = self.rescale_factor.filter(|f| !f.is_finite()) {
            return bad("rescale_factor", format!("{f} is not a finite number"));
        }
        if let Some((mean, std)) = self.mean_std {
            if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
                return bad("image_mean", format!("{m} is not a finite number"));
            }
            if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s != 0.0)) {
                return bad("image_std", format!("{s} is not a finite nonzero number"));
            }
        }
        Ok(())
    }

    /// Write this as a `preprocessor_config.json`: `SiglipImageProcessor`'s for an exact
    /// resize without a crop, else `CLIPImageProcessor`'s (the two share their fields).
    pub fn to_json(&self) -> String {
        let processor = match (self.resize, self.crop) {
            (Some(Resize::Exact { .. }), None) => "SiglipImageProcessor",
            _ => "CLIPImageProcessor",
        };
        let (mean, std) = self.mean_std.unwrap_or((OPENAI_CLIP_MEAN, OPENAI_CLIP_STD));
        let (crop_h, crop_w) = self.crop.unwrap_or((0, 0));
        let size = match self.resize {
            Some(Resize::ShortestEdge(side)) => serde_json::json!({"shortest_edge": side}),
            Some(Resize::Exact { height, width }) => {
                serde_json::json!({"height": height, "width": width})
            }
            None => serde_json::json!({"shortest_edge": 0}),
        };
        let value = serde_json::json!({
            "image_processor_type": processor,
            "do_resize": self.resize.is_some(),
            "size": size,
            "resample": self.resample.pil(),
            "do_center_crop": self.crop.is_some(),
            "crop_size": {"height": crop_h, "width": crop_w},
            "do_rescale": self.rescale_factor.is_some(),
            "rescale_factor": self.rescale_factor.unwrap_or(1.0 / 255.0),
            "do_normalize": self.mean_std.is_some(),
            "image_mean": mean,
            "image_std": std,
            "do_convert_rgb": true,
        });
        serde_json::to_string_pretty(&value).expect("a JSON value always serializes")
    }
}

/// The fields of a `preprocessor_config.json` that the preprocessing reads (absent booleans
/// that differ between processors stay `None` here).
#[derive(Deserialize)]
#[serde(default)]
struct RawPreprocessor {
    image_processor_type: Option<String>,
    do_resize: Option<bool>,
    size: Option<Size>,
    resample: Option<u64>,
    do_center_crop: Option<bool>,
    crop_size: Option<Crop>,
    do_rescale: bool,
    rescale_factor: f64,
    do_normalize: bool,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
}

impl Default for RawPreprocessor {
    fn default() -> Self {
        Self {
            image_processor_type: None,
            do_resize: None,
            size: None,
            resample: None,
            do_center_crop: None,
            crop_size: None,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: None,
            image_std: None,
        }
    }
}

/// `size`: the shortest edge, as a number (older configs) or `{"shortest_edge": n}`, or an
/// exact `{"height": h, "width": w}`.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "expected a number, {\"shortest_edge\": n} or {\"height\": h, \"width\": w}"
)]
enum Size {
    Side(usize),
    ShortestEdge { shortest_edge: usize },
    HeightWidth { height: usize, width: usize },
}

/// `crop_size`: a number or `{"height": h, "width": w}`.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "expected a number or {\"height\": h, \"width\": w}"
)]
enum Crop {
    Side(usize),
    HeightWidth {
        height: Option<usize>,
        width: Option<usize>,
    },
}

/// Upper bounds on a config's sizes, far above any published CLIP model and low enough that
/// size arithmetic cannot overflow, also on 32-bit wasm.
pub struct SizeLimits {
    /// Vocabulary size.
    pub vocab: usize,
    /// Hidden and projection widths and head counts (intermediate sizes: 8x this).
    pub width: usize,
    /// Layers per tower.
    pub layers: usize,
    /// Text context length and image patches (+1).
    pub positions: usize,
    /// Image side in pixels (model input and preprocessing sizes).
    pub image_side: usize,
    /// Parameters in the whole model.
    pub parameters: u64,
}

/// The limits [`ClipConfig::validate`] and [`PreprocessConfig::validate`] apply.
pub const SIZE_LIMITS: SizeLimits = SizeLimits {
    vocab: 1 << 22,
    width: 1 << 14,
    layers: 256,
    positions: 1 << 14,
    image_side: 4096,
    parameters: 20_000_000_000,
};

/// Which layout a model directory follows, told by its config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A Hugging Face `CLIPModel` or `SiglipModel` (its `Architecture` tells them apart):
    /// `config.json`, `model.safetensors`.
    Clip,
    /// open_clip's hub layout: `open_clip_config.json`, `open_clip_model.safetensors`.
    OpenClip,
}

impl Family {
    /// The family a config file's text belongs to, if it is one of ours: open_clip's has a
    /// `model_cfg` section, a Hugging Face CLIP or SigLIP config has `text_config` or a
    /// `model_type` of theirs (other `config.json` files, e.g. timm's beside an open_clip
    /// checkpoint, are neither).
    pub fn recognize(config: &str) -> Option<Self> {
        let value = serde_json::from_str::<Value>(config).ok()?;
        if value.get("model_cfg").is_some() {
            Some(Family::OpenClip)
        } else if value.get("text_config").is_some()
            || value["model_type"] == "clip"
            || value["model_type"] == siglip::MODEL_TYPE
        {
            Some(Family::Clip)
        } else {
            None
        }
    }

    /// The family to read a config file as: [`Family::recognize`]'s, else Hugging Face (whose
    /// reader then says what is wrong with it).
    pub fn detect(config: &str) -> Self {
        Self::recognize(config).unwrap_or(Family::Clip)
    }

    /// The config file's name.
    pub fn config_file(self) -> &'static str {
        match self {
            Family::Clip => CONFIG,
            Family::OpenClip => open_clip::CONFIG,
        }
    }

    /// The weights file's name.
    pub fn weights_file(self) -> &'static str {
        match self {
            Family::Clip => "model.safetensors",
            Family::OpenClip => "open_clip_model.safetensors",
        }
    }
}

const CONFIG: &str = "config.json";
const PREPROCESSOR: &str = "preprocessor_config.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_transformers() {
        let c = ClipConfig::from_json(r#"{"text_config": {}, "vision_config": {}}"#).unwrap();
        assert_eq!(c.text.eos_token_id, 49407);
        assert_eq!(c.vision.patch_size, 32);
        assert_eq!(c.text.hidden_act, Activation::QuickGelu);
    }

    #[test]
    fn errors_name_the_field() {
        let e = ClipConfig::from_json(r#"{"vision_config": {}}"#).unwrap_err();
        assert!(e.to_string().contains("`text_config`"), "{e}");
        let e = ClipConfig::from_json(
            r#"{"text_config": {"hidden_size": "big"}, "vision_config": {}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("text_config.hidden_size"), "{e}");
        let e = ClipConfig::from_json(
            r#"{"text_config": {"hidden_act": "relu"}, "vision_config": {}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::UnknownActivation(ref a) if a == "relu"),
            "{e}"
        );
        let e =
            ClipConfig::from_json(r#"{"text_config": {}, "vision_config": {"patch_size": 300}}"#)
                .unwrap_err();
        assert!(e.to_string().contains("vision_config.patch_size"), "{e}");
        // A grid that does not tile the image leaves the last pixels out, as the convolution.
        let c =
            ClipConfig::from_json(r#"{"text_config": {}, "vision_config": {"patch_size": 30}}"#)
                .unwrap();
        assert_eq!(c.vision.num_positions(), 7 * 7 + 1);
    }

    #[test]
    fn round_trips_through_json() {
        let c = ClipConfig::vit_base_patch32();
        assert_eq!(ClipConfig::from_json(&c.to_json()).unwrap(), c);
        let p = PreprocessConfig::clip_image_processor(224);
        assert_eq!(PreprocessConfig::from_json(&p.to_json(), 224).unwrap(), p);
        let s = PreprocessConfig::siglip_image_processor(224);
        assert!(s.to_json().contains("SiglipImageProcessor"));
        let read = PreprocessConfig::from_json_for(&s.to_json(), Architecture::Clip, 224);
        assert_eq!(
            read.unwrap(),
            s,
            "the processor type, not the caller, gives the defaults"
        );
    }
}

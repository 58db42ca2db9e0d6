//! Model and preprocessing configuration, read from a Hugging Face `config.json` and
//! `preprocessor_config.json`.
//!
//! Fields that `transformers` gives a default (`CLIPTextConfig`, `CLIPVisionConfig`) take the same
//! default here, so any directory that `CLIPModel.from_pretrained` loads is read the same way. The
//! `text_config` and `vision_config` sections themselves are required, and every field that is
//! present must have the right type and a usable value; errors name the field.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The nonlinearity inside each MLP block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, used by OpenAI's checkpoints.
    QuickGelu,
    /// Exact GELU with `erf`.
    Gelu,
    /// GELU with the `tanh` approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    /// Parse a `hidden_act` string as `transformers` names it.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "quick_gelu" => Ok(Activation::QuickGelu),
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            other => Err(Error::UnknownActivation(other.to_string())),
        }
    }

    /// The `hidden_act` string for this activation.
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::QuickGelu => "quick_gelu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_new",
        }
    }
}

/// The causal text transformer.
#[derive(Debug, Clone, PartialEq)]
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
}

/// The ViT image tower.
#[derive(Debug, Clone, PartialEq)]
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
}

/// A whole CLIP model: both towers and the shared embedding space.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub projection_dim: usize,
    /// Initial value of the (log) temperature; the loaded weights carry the trained one.
    pub logit_scale_init_value: f64,
}

impl TextConfig {
    /// How the pooled token is chosen: old OpenAI exports (`eos_token_id == 2`) pool at the
    /// highest token id, newer ones at the first `eos_token_id`.
    pub fn pools_at_argmax(&self) -> bool {
        self.eos_token_id == 2
    }
}

impl VisionConfig {
    /// Number of patches along one side of the image.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Number of positions: one class token plus one per patch.
    pub fn num_positions(&self) -> usize {
        self.grid_size() * self.grid_size() + 1
    }
}

impl ClipConfig {
    /// The architecture of `openai/clip-vit-base-patch32` (used by the benchmark).
    pub fn vit_base_patch32() -> Self {
        Self {
            text: TextConfig {
                vocab_size: 49408,
                hidden_size: 512,
                intermediate_size: 2048,
                num_attention_heads: 8,
                num_hidden_layers: 12,
                max_position_embeddings: 77,
                hidden_act: Activation::QuickGelu,
                layer_norm_eps: 1e-5,
                bos_token_id: 49406,
                eos_token_id: 2,
                pad_token_id: 1,
            },
            vision: VisionConfig {
                hidden_size: 768,
                intermediate_size: 3072,
                num_attention_heads: 12,
                num_hidden_layers: 12,
                image_size: 224,
                patch_size: 32,
                num_channels: 3,
                hidden_act: Activation::QuickGelu,
                layer_norm_eps: 1e-5,
            },
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
        }
    }

    /// Parse the text of a Hugging Face `config.json` for `CLIPModel`.
    pub fn from_json(text: &str) -> Result<Self> {
        let root: Value = serde_json::from_str(text).map_err(|e| Error::Config {
            file: CONFIG,
            message: format!("invalid JSON: {e}"),
        })?;
        let root = Fields::object(&root, "")?;
        if let Some(model_type) = root.opt_str("model_type")? {
            if model_type != "clip" {
                return Err(Error::Config {
                    file: CONFIG,
                    message: format!("`model_type` is `{model_type}`, expected `clip`"),
                });
            }
        }
        let text = Fields::object(root.required("text_config")?, "text_config.")?;
        let vision = Fields::object(root.required("vision_config")?, "vision_config.")?;

        let text = TextConfig {
            vocab_size: text.usize_or("vocab_size", 49408)?,
            hidden_size: text.usize_or("hidden_size", 512)?,
            intermediate_size: text.usize_or("intermediate_size", 2048)?,
            num_attention_heads: text.usize_or("num_attention_heads", 8)?,
            num_hidden_layers: text.usize_or("num_hidden_layers", 12)?,
            max_position_embeddings: text.usize_or("max_position_embeddings", 77)?,
            hidden_act: text.activation_or("hidden_act", Activation::QuickGelu)?,
            layer_norm_eps: text.f64_or("layer_norm_eps", 1e-5)?,
            bos_token_id: text.u32_or("bos_token_id", 49406)?,
            eos_token_id: text.u32_or("eos_token_id", 49407)?,
            pad_token_id: text.u32_or("pad_token_id", 1)?,
        };
        let vision = VisionConfig {
            hidden_size: vision.usize_or("hidden_size", 768)?,
            intermediate_size: vision.usize_or("intermediate_size", 3072)?,
            num_attention_heads: vision.usize_or("num_attention_heads", 12)?,
            num_hidden_layers: vision.usize_or("num_hidden_layers", 12)?,
            image_size: vision.usize_or("image_size", 224)?,
            patch_size: vision.usize_or("patch_size", 32)?,
            num_channels: vision.usize_or("num_channels", 3)?,
            hidden_act: vision.activation_or("hidden_act", Activation::QuickGelu)?,
            layer_norm_eps: vision.f64_or("layer_norm_eps", 1e-5)?,
        };
        let config = ClipConfig {
            text,
            vision,
            projection_dim: root.usize_or("projection_dim", 512)?,
            logit_scale_init_value: root.f64_or("logit_scale_init_value", 2.6592)?,
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
        for (field, id) in [
            ("text_config.bos_token_id", t.bos_token_id),
            ("text_config.eos_token_id", t.eos_token_id),
            ("text_config.pad_token_id", t.pad_token_id),
        ] {
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
        if v.image_size < v.patch_size || !v.image_size.is_multiple_of(v.patch_size) {
            return bad(
                "vision_config.patch_size",
                format!("{} does not tile image_size {}", v.patch_size, v.image_size),
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
        let projections = n(self.projection_dim) * n(t.hidden_size + v.hidden_size);
        text + vision + projections + 1
    }

    /// Write this config as a Hugging Face `config.json` that `transformers` loads.
    pub fn to_json(&self) -> String {
        let t = &self.text;
        let v = &self.vision;
        let value = serde_json::json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": self.logit_scale_init_value,
            "text_config": {
                "model_type": "clip_text_model",
                "vocab_size": t.vocab_size,
                "hidden_size": t.hidden_size,
                "intermediate_size": t.intermediate_size,
                "num_attention_heads": t.num_attention_heads,
                "num_hidden_layers": t.num_hidden_layers,
                "max_position_embeddings": t.max_position_embeddings,
                "hidden_act": t.hidden_act.hf_name(),
                "layer_norm_eps": t.layer_norm_eps,
                "bos_token_id": t.bos_token_id,
                "eos_token_id": t.eos_token_id,
                "pad_token_id": t.pad_token_id,
                "projection_dim": self.projection_dim,
            },
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": v.hidden_size,
                "intermediate_size": v.intermediate_size,
                "num_attention_heads": v.num_attention_heads,
                "num_hidden_layers": v.num_hidden_layers,
                "image_size": v.image_size,
                "patch_size": v.patch_size,
                "num_channels": v.num_channels,
                "hidden_act": v.hidden_act.hf_name(),
                "layer_norm_eps": v.layer_norm_eps,
                "projection_dim": self.projection_dim,
            },
        });
        serde_json::to_string_pretty(&value).expect("a JSON value always serializes")
    }
}

/// How images are turned into the model's input (`preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Resize so the shortest side has this length (`None`: no resize).
    pub shortest_edge: Option<usize>,
    /// Center crop to `(height, width)` (`None`: no crop).
    pub crop: Option<(usize, usize)>,
    /// Multiply 8-bit values by this (`None`: no rescale).
    pub rescale_factor: Option<f32>,
    /// Per-channel mean and std (`None`: no normalization).
    pub mean_std: Option<([f32; 3], [f32; 3])>,
    /// How the center crop's offset is rounded when the margin is odd.
    pub crop_rounding: CropRounding,
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

impl PreprocessConfig {
    /// OpenAI's preprocessing (PIL bicubic resize, torchvision center crop) for a model with the
    /// given input size.
    pub fn openai(image_size: usize) -> Self {
        Self {
            shortest_edge: Some(image_size),
            crop: Some((image_size, image_size)),
            rescale_factor: Some(1.0 / 255.0),
            mean_std: Some((OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)),
            crop_rounding: CropRounding::HalfEven,
        }
    }

    /// `transformers`' `CLIPImageProcessor` defaults for a model of the given input size: as
    /// [`PreprocessConfig::openai`], with the crop offset floored. Hugging Face directories
    /// without a `preprocessor_config.json` use this.
    pub fn clip_image_processor(image_size: usize) -> Self {
        Self {
            crop_rounding: CropRounding::Floor,
            ..Self::openai(image_size)
        }
    }

    /// Parse a `preprocessor_config.json` (`CLIPImageProcessor`); absent fields take the
    /// processor's defaults for a model of `image_size`.
    pub fn from_json(text: &str, image_size: usize) -> Result<Self> {
        let root: Value = serde_json::from_str(text).map_err(|e| Error::Config {
            file: PREPROCESSOR,
            message: format!("invalid JSON: {e}"),
        })?;
        let f = Fields {
            map: root.as_object().ok_or_else(|| Error::Config {
                file: PREPROCESSOR,
                message: "expected a JSON object".into(),
            })?,
            prefix: "",
            file: PREPROCESSOR,
        };
        let defaults = Self::clip_image_processor(image_size);
        let shortest_edge = if f.bool_or("do_resize", true)? {
            Some(match f.map.get("size") {
                None => image_size,
                Some(Value::Object(size)) => {
                    let size = Fields {
                        map: size,
                        prefix: "size.",
                        file: PREPROCESSOR,
                    };
                    match size.map.get("shortest_edge") {
                        Some(_) => size.usize_or("shortest_edge", image_size)?,
                        None => {
                            return Err(Error::Config {
                                file: PREPROCESSOR,
                                message: "`size` without `shortest_edge` is not supported (CLIP resizes the shortest edge)".into(),
                            })
                        }
                    }
                }
                Some(_) => f.usize_or("size", image_size)?,
            })
        } else {
            None
        };
        let crop = if f.bool_or("do_center_crop", true)? {
            Some(match f.map.get("crop_size") {
                None => (image_size, image_size),
                Some(Value::Object(crop)) => {
                    let crop = Fields {
                        map: crop,
                        prefix: "crop_size.",
                        file: PREPROCESSOR,
                    };
                    (
                        crop.usize_or("height", image_size)?,
                        crop.usize_or("width", image_size)?,
                    )
                }
                Some(_) => {
                    let side = f.usize_or("crop_size", image_size)?;
                    (side, side)
                }
            })
        } else {
            None
        };
        let rescale_factor = if f.bool_or("do_rescale", true)? {
            Some(f.f64_or("rescale_factor", 1.0 / 255.0)? as f32)
        } else {
            None
        };
        let mean_std = if f.bool_or("do_normalize", true)? {
            let (default_mean, default_std) = defaults.mean_std.expect("openai() normalizes");
            Some((
                f.triple_or("image_mean", default_mean)?,
                f.triple_or("image_std", default_std)?,
            ))
        } else {
            None
        };
        let config = Self {
            shortest_edge,
            crop,
            rescale_factor,
            mean_std,
            crop_rounding: defaults.crop_rounding,
        };
        config.validate(image_size)?;
        Ok(config)
    }

    /// Check the values against a model whose input is `image_size` pixels square: sizes
    /// positive and bounded, the crop equal to the model's input, finite factors, nonzero stds.
    pub fn validate(&self, image_size: usize) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(Error::Config {
                file: PREPROCESSOR,
                message: format!("`{field}`: {message}"),
            })
        };
        let max = SIZE_LIMITS.image_side;
        let sizes = [
            ("size.shortest_edge", self.shortest_edge),
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
        if let Some((h, w)) = self.crop {
            if (h, w) != (image_size, image_size) {
                return bad(
                    "crop_size",
                    format!("{w}x{h} differs from the model's image_size {image_size}"),
                );
            }
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

    /// Write this as a `preprocessor_config.json` for `CLIPImageProcessor`.
    pub fn to_json(&self) -> String {
        let (mean, std) = self.mean_std.unwrap_or((OPENAI_CLIP_MEAN, OPENAI_CLIP_STD));
        let (crop_h, crop_w) = self.crop.unwrap_or((0, 0));
        let value = serde_json::json!({
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": self.shortest_edge.is_some(),
            "size": {"shortest_edge": self.shortest_edge.unwrap_or(0)},
            "resample": 3,
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

const CONFIG: &str = "config.json";
const PREPROCESSOR: &str = "preprocessor_config.json";

/// Typed access to one JSON object's fields, with errors that name the field.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: &'static str,
    file: &'static str,
}

impl<'a> Fields<'a> {
    fn object(value: &'a Value, prefix: &'static str) -> Result<Self> {
        let map = value.as_object().ok_or_else(|| Error::Config {
            file: CONFIG,
            message: format!("`{}` must be a JSON object", prefix.trim_end_matches('.')),
        })?;
        Ok(Self {
            map,
            prefix,
            file: CONFIG,
        })
    }

    fn wrong_type(&self, key: &str, expected: &str) -> Error {
        Error::Config {
            file: self.file,
            message: format!(
                "`{}{key}` must be {expected}, found {}",
                self.prefix, self.map[key]
            ),
        }
    }

    fn required(&self, key: &str) -> Result<&'a Value> {
        self.map.get(key).ok_or_else(|| Error::MissingField {
            file: self.file,
            field: format!("{}{key}", self.prefix),
        })
    }

    fn present(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| self.wrong_type(key, "a non-negative integer")),
        }
    }

    fn u32_or(&self, key: &str, default: u32) -> Result<u32> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| self.wrong_type(key, "an integer from 0 to 4294967295")),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.wrong_type(key, "a number")),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.wrong_type(key, "true or false")),
        }
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a string")),
        }
    }

    fn activation_or(&self, key: &str, default: Activation) -> Result<Activation> {
        match self.opt_str(key)? {
            None => Ok(default),
            Some(name) => Activation::parse(name),
        }
    }

    fn triple_or(&self, key: &str, default: [f32; 3]) -> Result<[f32; 3]> {
        let Some(v) = self.present(key) else {
            return Ok(default);
        };
        let values: Option<Vec<f32>> = v
            .as_array()
            .map(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect())
            .unwrap_or(None);
        match values.as_deref() {
            Some([a, b, c]) => Ok([*a, *b, *c]),
            Some([a]) => Ok([*a; 3]),
            _ => Err(self.wrong_type(key, "a list of 3 numbers")),
        }
    }
}

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
            ClipConfig::from_json(r#"{"text_config": {}, "vision_config": {"patch_size": 30}}"#)
                .unwrap_err();
        assert!(e.to_string().contains("vision_config.patch_size"), "{e}");
    }

    #[test]
    fn round_trips_through_json() {
        let c = ClipConfig::vit_base_patch32();
        assert_eq!(ClipConfig::from_json(&c.to_json()).unwrap(), c);
        let p = PreprocessConfig::clip_image_processor(224);
        assert_eq!(PreprocessConfig::from_json(&p.to_json(), 224).unwrap(), p);
    }
}

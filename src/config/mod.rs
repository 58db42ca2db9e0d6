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
    /// Pool at the highest token id whatever `eos_token_id` is (open_clip's rule); not a
    /// `config.json` field.
    #[serde(skip)]
    pub argmax_pooling: bool,
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
            argmax_pooling: false,
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
        }
    }
}

/// Parse JSON text into `T` with errors that name the field (`text_config.hidden_size`). Null
/// values count as absent, as `transformers` treats them.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &'static str,
) -> Result<(T, Value)> {
    let invalid = |message: String| Error::Config { file, message };
    let mut value: Value =
        serde_json::from_str(text).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(invalid("expected a JSON object".into()));
    }
    strip_nulls(&mut value);
    match serde_path_to_error::deserialize(&value) {
        Ok(parsed) => Ok((parsed, value)),
        Err(e) => {
            let path = e.path().to_string();
            let found = value.pointer(&format!("/{}", path.replace('.', "/")));
            Err(match found {
                Some(Value::String(name)) if path.ends_with("hidden_act") => {
                    Error::UnknownActivation(name.clone())
                }
                _ if path == "." => invalid(e.into_inner().to_string()),
                _ => invalid(format!("`{path}`: {}", e.into_inner())),
            })
        }
    }
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
        self.argmax_pooling || self.eos_token_id == 2
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
                eos_token_id: 2,
                ..TextConfig::default()
            },
            vision: VisionConfig::default(),
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
        }
    }

    /// Parse the text of a Hugging Face `config.json` for `CLIPModel`.
    pub fn from_json(text: &str) -> Result<Self> {
        let (config, value): (ClipConfig, Value) = parse(text, CONFIG)?;
        match value.get("model_type") {
            None => {}
            Some(Value::String(t)) if t == "clip" => {}
            Some(other) => {
                return Err(Error::Config {
                    file: CONFIG,
                    message: format!("`model_type` is {other}, expected \"clip\""),
                })
            }
        }
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
        let mut value = serde_json::to_value(self).expect("a config always serializes");
        value["architectures"] = serde_json::json!(["CLIPModel"]);
        value["model_type"] = "clip".into();
        for (tower, model_type) in [
            ("text_config", "clip_text_model"),
            ("vision_config", "clip_vision_model"),
        ] {
            value[tower]["model_type"] = model_type.into();
            value[tower]["projection_dim"] = self.projection_dim.into();
        }
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
        let (raw, _): (RawPreprocessor, Value) = parse(text, PREPROCESSOR)?;
        let defaults = Self::clip_image_processor(image_size);
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
        let shortest_edge = match raw.size {
            _ if !raw.do_resize => None,
            None => Some(image_size),
            Some(Size::Side(side))
            | Some(Size::ShortestEdge {
                shortest_edge: side,
            }) => Some(side),
        };
        let crop = match raw.crop_size {
            _ if !raw.do_center_crop => None,
            None => Some((image_size, image_size)),
            Some(Crop::Side(side)) => Some((side, side)),
            Some(Crop::HeightWidth { height, width }) => {
                Some((height.unwrap_or(image_size), width.unwrap_or(image_size)))
            }
        };
        let config = Self {
            shortest_edge,
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

/// The fields of a `preprocessor_config.json` that CLIP's preprocessing reads.
#[derive(Deserialize)]
#[serde(default)]
struct RawPreprocessor {
    do_resize: bool,
    size: Option<Size>,
    do_center_crop: bool,
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
            do_resize: true,
            size: None,
            do_center_crop: true,
            crop_size: None,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: None,
            image_std: None,
        }
    }
}

/// `size`: the shortest edge, as a number (older configs) or `{"shortest_edge": n}`.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "expected a number or {\"shortest_edge\": n} (CLIP resizes the shortest edge)"
)]
enum Size {
    Side(usize),
    ShortestEdge { shortest_edge: usize },
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
    /// A Hugging Face `CLIPModel`: `config.json`, `model.safetensors`.
    Clip,
    /// open_clip's hub layout: `open_clip_config.json`, `open_clip_model.safetensors`.
    OpenClip,
}

impl Family {
    /// The family a config file's text belongs to, if it is one of ours: open_clip's has a
    /// `model_cfg` section, a Hugging Face CLIP config has `text_config` or `model_type` "clip"
    /// (other `config.json` files, e.g. timm's beside an open_clip checkpoint, are neither).
    pub fn recognize(config: &str) -> Option<Self> {
        let value = serde_json::from_str::<Value>(config).ok()?;
        if value.get("model_cfg").is_some() {
            Some(Family::OpenClip)
        } else if value.get("text_config").is_some() || value["model_type"] == "clip" {
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

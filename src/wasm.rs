//! The wasm-bindgen surface: a thin shell over [`crate::pipeline`]. The JS wrapper in
//! `pkg-template/index.js` fetches files, reads image sources into RGBA and calls these.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Array, Float32Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::config::{Architecture, ClipConfig, Family};
use crate::error::Error;
use crate::image::{ImageLimits, RgbImage};
use crate::pipeline::{Backend, Clip, ClipLoader, ModelFiles};
use crate::tasks::{Ensemble, DEFAULT_TEMPLATE};

unsafe extern "C" {
    /// The linker's function that runs every static constructor (burn's kernel registries use
    /// the `inventory` crate, which registers through them).
    fn __wasm_call_ctors();
}

/// Runs once, when the module is instantiated (wasm-bindgen's start function): the static
/// constructors. A module that never calls them itself gets a call linked in before every
/// exported function instead, which re-registered everything and cost ~1.5 ms per call.
#[wasm_bindgen(start)]
fn start() {
    // SAFETY: called once, before any other export, as the linker's contract requires.
    unsafe { __wasm_call_ctors() }
}

/// A JS `Error` carrying the webclip error code in `code`.
fn js_error(e: Error) -> JsValue {
    let error = js_sys::Error::new(&e.to_string());
    error.set_name("WebclipError");
    let _ = js_sys::Reflect::set(&error, &"code".into(), &e.code().into());
    error.into()
}

thread_local! {
    static PANIC_HANDLER: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
}

/// Call `handler(message)` when webclip panics, just before the wasm instance traps. A panic
/// inside an async call would otherwise leave its promise pending forever: the JS wrapper uses
/// this to reject every pending call with `E_INTERNAL` and to mark the instance unusable.
#[wasm_bindgen(js_name = setPanicHandler)]
pub fn set_panic_handler(handler: js_sys::Function) {
    PANIC_HANDLER.with(|h| *h.borrow_mut() = Some(handler));
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        PANIC_HANDLER.with(|h| {
            if let Ok(handler) = h.try_borrow() {
                if let Some(handler) = handler.as_ref() {
                    let _ = handler.call1(&JsValue::NULL, &message.into());
                }
            }
        });
    }));
}

/// Which layout a config file's text belongs to ([`Family::recognize`]): `"clip"` (Hugging
/// Face), `"siglip"` (Hugging Face, with SigLIP's tokenizer files), `"open_clip"`, or `""`
/// (neither), so that the JS wrapper knows which files to fetch.
#[wasm_bindgen(js_name = configFamily)]
pub fn config_family(text: &str) -> String {
    let siglip =
        |text| ClipConfig::from_json(text).is_ok_and(|c| c.architecture == Architecture::Siglip);
    match Family::recognize(text) {
        Some(Family::Clip) if siglip(text) => "siglip",
        Some(Family::Clip) => "clip",
        Some(Family::OpenClip) => "open_clip",
        None => "",
    }
    .into()
}

/// The prompt template `classify` uses when none is given.
#[wasm_bindgen(js_name = defaultTemplate)]
pub fn default_template() -> String {
    DEFAULT_TEMPLATE.to_string()
}

thread_local! {
    /// The page's WebGPU device, created by the first load that asks for it and shared by every
    /// model after it (burn registers one server per device: a second one fails).
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// Create the compute device: `"webgpu"` (fails if no adapter) or `"cpu"`
/// ([`Backend::parse`]'s names).
async fn create_device(kind: &str) -> Result<Device, Error> {
    match Backend::parse(kind)? {
        Backend::Cpu => Ok(Device::flex()),
        Backend::Wgpu => {
            if let Some(device) = WEBGPU.with(|d| d.borrow().clone()) {
                return Ok(device);
            }
            let created = Device::wgpu_options().init_async().await;
            // Another load may have created it while this one waited.
            if let Some(device) = WEBGPU.with(|d| d.borrow().clone()) {
                return Ok(device);
            }
            let device =
                created.map_err(|e| Error::Backend(format!("WebGPU is unavailable: {e}")))?;
            WEBGPU.with(|d| *d.borrow_mut() = Some(device.clone()));
            Ok(device)
        }
    }
}

/// A model being loaded: small files first, then the weights in chunks.
#[wasm_bindgen]
pub struct Loader {
    inner: ClipLoader,
    device: String,
}

#[wasm_bindgen]
impl Loader {
    /// Start loading on `device` (`"webgpu"` or `"cpu"`). `weights_len` is the exact size of
    /// `model.safetensors` if known (not a transfer's `Content-Length`, which compression changes).
    pub async fn create(
        device: String,
        config: String,
        tokenizer: Vec<u8>,
        tokenizer_config: Option<String>,
        preprocessor: Option<String>,
        weights_len: Option<f64>,
    ) -> Result<Loader, JsValue> {
        if let Some(n) = weights_len.filter(|n| !(n.is_finite() && *n >= 0.0)) {
            return Err(js_error(Error::Input(format!(
                "weights length {n} is not a non-negative number"
            ))));
        }
        let burn_device = create_device(&device).await.map_err(js_error)?;
        let files = ModelFiles {
            config: &config,
            tokenizer: &tokenizer,
            tokenizer_config: tokenizer_config.as_deref(),
            preprocessor: preprocessor.as_deref(),
        };
        let inner = ClipLoader::new(files, &burn_device, weights_len.map(|n| n as u64))
            .map_err(js_error)?;
        Ok(Loader { inner, device })
    }

    /// Add the next bytes of `model.safetensors`.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        self.inner.push_weights(chunk).map_err(js_error)
    }

    /// The length of `model.safetensors` its header promises (`undefined` until the header is
    /// in). Progress and truncation are judged against this, not the transfer's length, which
    /// differs under compression.
    #[wasm_bindgen(getter, js_name = totalBytes)]
    pub fn total_bytes(&self) -> Option<f64> {
        self.inner.weights_total_bytes().map(|n| n as f64)
    }

    /// Finish loading and warm the model up (shaders compile here, not on the first call).
    pub async fn finish(self) -> Result<WasmClip, JsValue> {
        let clip = self.inner.finish().await.map_err(js_error)?;
        clip.warm_up().await.map_err(js_error)?;
        Ok(WasmClip {
            clip: Rc::new(clip),
            device: self.device,
        })
    }
}

/// Images gathered for one call (RGBA buffers or encoded PNG/JPEG bytes).
#[wasm_bindgen]
#[derive(Default)]
pub struct ImageBatch {
    images: Vec<RgbImage>,
    limits: ImageLimits,
}

#[wasm_bindgen]
impl ImageBatch {
    #[wasm_bindgen(constructor)]
    pub fn new() -> ImageBatch {
        ImageBatch::default()
    }

    /// Bound the images this batch accepts (default: 16384 pixels a side, 512 MiB decoded).
    #[wasm_bindgen(js_name = setLimits)]
    pub fn set_limits(&mut self, max_side: u32, max_bytes: f64) -> Result<(), JsValue> {
        if !(max_side > 0 && max_bytes.is_finite() && max_bytes >= 1.0) {
            return Err(js_error(Error::Input(format!(
                "image limits must be positive (got maxSide {max_side}, maxBytes {max_bytes})"
            ))));
        }
        self.limits = ImageLimits {
            max_side,
            max_bytes: max_bytes as u64,
        };
        Ok(())
    }

    /// Add RGBA pixels (what a canvas or `ImageData` holds); alpha is dropped.
    #[wasm_bindgen(js_name = pushRgba)]
    pub fn push_rgba(&mut self, data: &[u8], width: u32, height: u32) -> Result<(), JsValue> {
        let image = RgbImage::from_rgba_with(width as usize, height as usize, data, &self.limits)
            .map_err(js_error)?;
        self.images.push(image);
        Ok(())
    }

    /// Add an encoded PNG or JPEG image.
    #[wasm_bindgen(js_name = pushEncoded)]
    pub fn push_encoded(&mut self, bytes: &[u8]) -> Result<(), JsValue> {
        let image = RgbImage::decode_with(bytes, &self.limits).map_err(js_error)?;
        self.images.push(image);
        Ok(())
    }

    /// Number of images.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.images.len()
    }
}

fn to_js_rows(rows: Vec<Vec<f32>>) -> JsValue {
    rows.iter()
        .map(|r| Float32Array::from(r.as_slice()))
        .collect::<Array>()
        .into()
}

fn to_js<T: serde::Serialize>(value: &T) -> Result<JsValue, JsValue> {
    serde_wasm_bindgen::to_value(value).map_err(|e| js_error(Error::Backend(e.to_string())))
}

/// A loaded model.
#[wasm_bindgen]
pub struct WasmClip {
    clip: Rc<Clip>,
    device: String,
}

#[wasm_bindgen]
impl WasmClip {
    /// The device in use: `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.device.clone()
    }

    /// Size of the shared embedding space.
    #[wasm_bindgen(getter, js_name = embeddingDim)]
    pub fn embedding_dim(&self) -> usize {
        self.clip.config().projection_dim
    }

    /// How `classify` scores: `"softmax"` (CLIP: across the labels) or `"sigmoid"` (SigLIP: each
    /// label's own probability).
    #[wasm_bindgen(getter)]
    pub fn scoring(&self) -> String {
        self.clip.scoring().name().into()
    }

    /// Normalized image embeddings (`Float32Array[]`).
    #[wasm_bindgen(js_name = embedImages)]
    pub fn embed_images(&self, batch: ImageBatch) -> Promise {
        let clip = self.clip.clone();
        future_to_promise(async move {
            let rows = clip.embed_images(&batch.images).await.map_err(js_error)?;
            Ok(to_js_rows(rows))
        })
    }

    /// Normalized text embeddings (`Float32Array[]`).
    #[wasm_bindgen(js_name = embedTexts)]
    pub fn embed_texts(&self, texts: Vec<String>) -> Promise {
        let clip = self.clip.clone();
        future_to_promise(async move {
            let rows = clip.embed_texts(&texts).await.map_err(js_error)?;
            Ok(to_js_rows(rows))
        })
    }

    /// Token ids of a text (start and end tokens included, no padding).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        self.clip.tokenizer().encode(text).map_err(js_error)
    }

    /// Zero-shot classification of the batch's one image: `[{label, score}]`, best first.
    pub fn classify(
        &self,
        batch: ImageBatch,
        labels: Vec<String>,
        templates: Vec<String>,
        ensemble: String,
    ) -> Promise {
        let clip = self.clip.clone();
        future_to_promise(async move {
            let ensemble = Ensemble::parse(&ensemble).map_err(js_error)?;
            let [image] = &batch.images[..] else {
                return Err(js_error(Error::Input(format!(
                    "classify takes one image, got {}",
                    batch.images.len()
                ))));
            };
            let scores = clip
                .classify(image, &labels, &templates, ensemble)
                .await
                .map_err(js_error)?;
            to_js(&scores)
        })
    }

    /// Rank a gallery (`count` embeddings of `embeddingDim` floats, back to back) by a text
    /// query: `[{index, score}]`, best first.
    #[wasm_bindgen(js_name = rankText)]
    pub fn rank_text(&self, query: String, gallery: Vec<f32>, topk: usize) -> Promise {
        let clip = self.clip.clone();
        future_to_promise(async move {
            let dim = clip.config().projection_dim;
            if !gallery.len().is_multiple_of(dim) {
                return Err(js_error(Error::Input(format!(
                    "the gallery has {} floats, not a multiple of the embedding size {dim}",
                    gallery.len()
                ))));
            }
            let rows: Vec<Vec<f32>> = gallery.chunks(dim).map(<[f32]>::to_vec).collect();
            let hits = clip
                .rank_text(&query, &rows, topk)
                .await
                .map_err(js_error)?;
            to_js(&hits)
        })
    }
}

//! The library's front door: [`Clip`] bundles a model, its tokenizer and its preprocessing on
//! one device, and offers embeddings, classification and ranking. The command line and the
//! wasm package are thin shells over it.
//!
//! Methods that read results back from the device are `async` (WebGPU can only read
//! asynchronously); native callers use [`block_on`].

use std::collections::HashMap;
use std::sync::Mutex;

use burn::tensor::{Device, Tensor, TensorData};

use crate::config::{open_clip, Architecture, ClipConfig, Family, PreprocessConfig};
use crate::error::{Error, Result};
use crate::image::{preprocess, RgbImage};
use crate::model::{ClipModel, DenseLayers, TokenBatch};
use crate::tasks::{self, Ensemble, LabelScore, RankHit, Scoring};
use crate::tokenizer::ClipTokenizer;
use crate::weights::WeightLoader;

/// Images are embedded this many at a time.
const IMAGE_BATCH: usize = 16;
/// Texts are embedded this many at a time (sorted by length, so padding stays small).
const TEXT_BATCH: usize = 32;
/// On devices that compile kernels per input shape, text batches are padded up to one of these
/// lengths (or the context length) and to a power-of-two row count, so that a few shapes cover
/// every batch and the first classification after loading compiles nothing new.
const TEXT_LENGTH_BUCKETS: [usize; 3] = [16, 32, 64];

/// The `[batch, seq]` shape a GPU device runs `count` texts of up to `longest` tokens in.
fn text_bucket(count: usize, longest: usize, context: usize) -> [usize; 2] {
    let seq = TEXT_LENGTH_BUCKETS
        .into_iter()
        .find(|&b| b >= longest)
        .unwrap_or(context)
        .min(context)
        .max(longest);
    [count.next_power_of_two().min(TEXT_BATCH.max(count)), seq]
}

/// At most this many prompt embeddings are cached.
const TEXT_CACHE_LIMIT: usize = 8192;

/// Which compute backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (SIMD, multi-threaded natively).
    Cpu,
    /// burn's `wgpu` backend: WebGPU in the browser, Vulkan/Metal/DX12 natively.
    Wgpu,
}

impl Backend {
    /// Parse `cpu` or `wgpu` (`webgpu` is accepted too).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(Backend::Cpu),
            "wgpu" | "webgpu" | "gpu" => Ok(Backend::Wgpu),
            other => Err(Error::Input(format!(
                "unknown device `{other}` (expected cpu or wgpu)"
            ))),
        }
    }

    /// The device (natively; the browser initialises WebGPU asynchronously). The wgpu device
    /// is set up once per process (burn's runtime registers only once); later calls share it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn device(self) -> Result<Device> {
        static WGPU: std::sync::OnceLock<std::result::Result<Device, String>> =
            std::sync::OnceLock::new();
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => WGPU
                .get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string()))
                .clone()
                .map_err(|e| Error::Backend(format!("no usable wgpu adapter: {e}"))),
        }
    }
}

/// Run a future to completion on the current thread (native callers of the async API).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

/// The small files of a model directory, as text: a Hugging Face CLIP directory or open_clip's
/// hub layout (told apart by the config's contents, [`Family::detect`]).
#[derive(Debug, Clone, Copy)]
pub struct ModelFiles<'a> {
    /// `config.json`, or open_clip's `open_clip_config.json`.
    pub config: &'a str,
    /// `tokenizer.json`, or SigLIP's `spiece.model`.
    pub tokenizer: &'a [u8],
    /// `tokenizer_config.json`, if the model has one (SigLIP reads its pad token and side and
    /// its special-token flags).
    pub tokenizer_config: Option<&'a str>,
    /// `preprocessor_config.json`, if the model has one (open_clip's config holds its own).
    pub preprocessor: Option<&'a str>,
}

/// The parsed small files of a model.
pub struct ParsedFiles {
    pub family: Family,
    pub config: ClipConfig,
    pub tokenizer: ClipTokenizer,
    pub preprocess: PreprocessConfig,
}

impl ModelFiles<'_> {
    /// Parse the config, tokenizer and preprocessing files.
    pub fn parse(&self) -> Result<ParsedFiles> {
        let family = Family::detect(self.config);
        let (config, preprocess) = match family {
            Family::Clip => {
                let config = ClipConfig::from_json(self.config)?;
                let (architecture, size) = (config.architecture, config.vision.image_size);
                let preprocess = match self.preprocessor {
                    Some(text) => PreprocessConfig::from_json_for(text, architecture, size)?,
                    None => PreprocessConfig::defaults(architecture, size),
                };
                (config, preprocess)
            }
            Family::OpenClip => open_clip::from_json(self.config)?,
        };
        let context = config.text.max_position_embeddings;
        let tokenizer = match config.architecture {
            Architecture::Clip => ClipTokenizer::from_bytes(self.tokenizer, context)?,
            Architecture::Siglip => {
                ClipTokenizer::siglip(self.tokenizer, self.tokenizer_config, context)?
            }
        };
        Ok(ParsedFiles {
            family,
            config,
            tokenizer,
            preprocess,
        })
    }
}

/// The small files of a model directory, read into memory.
#[cfg(not(target_arch = "wasm32"))]
pub struct ModelDir {
    pub dir: std::path::PathBuf,
    pub config: String,
    pub tokenizer: Vec<u8>,
    pub tokenizer_config: Option<String>,
    pub preprocessor: Option<String>,
}

#[cfg(not(target_arch = "wasm32"))]
impl ModelDir {
    /// Read the config (`config.json` if it is a CLIP config, else `open_clip_config.json`),
    /// `tokenizer.json` (else, for SigLIP repos without one, `spiece.model`) and, if present,
    /// `tokenizer_config.json` and `preprocessor_config.json`.
    pub fn read(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::read_with_tokenizer(dir, None)
    }

    /// [`ModelDir::read`] with the tokenizer from `tokenizer` instead of the directory's (open_clip
    /// repos often have none).
    pub fn read_with_tokenizer(
        dir: impl AsRef<std::path::Path>,
        tokenizer: Option<&std::path::Path>,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let read = |path: std::path::PathBuf| std::fs::read(&path).map_err(|e| Error::io(path, e));
        let text = |name: &str| {
            read(dir.join(name)).and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| Error::Config {
                    file: "config",
                    message: format!("{name} is not UTF-8 text"),
                })
            })
        };
        let optional = |name: &str| match text(name) {
            Ok(text) => Ok(Some(text)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        };
        // A Hugging Face CLIP config first (some open_clip repos carry both layouts); timm's
        // config.json beside an open_clip checkpoint is not one.
        let config = match optional(Family::Clip.config_file())? {
            Some(hf) if Family::recognize(&hf) == Some(Family::Clip) => hf,
            hf => match (optional(Family::OpenClip.config_file())?, hf) {
                (Some(open_clip), _) => open_clip,
                (None, Some(hf)) => hf,
                (None, None) => text(Family::Clip.config_file())?,
            },
        };
        Ok(Self {
            preprocessor: optional("preprocessor_config.json")?,
            tokenizer_config: optional("tokenizer_config.json")?,
            config,
            tokenizer: match tokenizer {
                Some(path) => read(path.into())?,
                // SigLIP repos often ship only SentencePiece's model, `spiece.model`.
                None => match read(dir.join("tokenizer.json")) {
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound
                            && dir.join("spiece.model").is_file() =>
                    {
                        read(dir.join("spiece.model"))?
                    }
                    other => other?,
                },
            },
            dir,
        })
    }

    /// The files as [`ModelFiles`].
    pub fn files(&self) -> ModelFiles<'_> {
        ModelFiles {
            config: &self.config,
            tokenizer: &self.tokenizer,
            tokenizer_config: self.tokenizer_config.as_deref(),
            preprocessor: self.preprocessor.as_deref(),
        }
    }

    /// Load the model and parse the small files, the weights (`model.safetensors` or
    /// `open_clip_model.safetensors`) streamed from disk in chunks.
    pub fn load(&self, device: &Device) -> Result<(ClipModel, ParsedFiles)> {
        use std::io::Read;

        let family = Family::detect(&self.config);
        let weights_path = self.dir.join(family.weights_file());
        let mut file =
            std::fs::File::open(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(&weights_path, e))?
            .len();
        let mut loader = ClipLoader::new(self.files(), device, Some(len))?;
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut chunk)
                .map_err(|e| Error::io(&weights_path, e))?;
            if n == 0 {
                break;
            }
            loader.push_weights(&chunk[..n])?;
        }
        loader.finish_model()
    }
}

/// A model being loaded: the config is read and the weights arrive in chunks.
pub struct ClipLoader {
    files: ParsedFiles,
    device: Device,
    weights: WeightLoader,
}

impl ClipLoader {
    /// Read the small files; `weights_len` is the size of `model.safetensors` when known.
    pub fn new(files: ModelFiles<'_>, device: &Device, weights_len: Option<u64>) -> Result<Self> {
        let files = files.parse()?;
        let model = ClipModel::new(&files.config, device);
        Ok(Self {
            weights: WeightLoader::new(model, &files.config, files.family, device, weights_len),
            files,
            device: device.clone(),
        })
    }

    /// Add the next bytes of `model.safetensors`.
    pub fn push_weights(&mut self, chunk: &[u8]) -> Result<()> {
        self.weights.push(chunk)
    }

    /// The length of `model.safetensors` that its header promises, once the header is in.
    pub fn weights_total_bytes(&self) -> Option<u64> {
        self.weights.header().map(|h| h.file_len())
    }

    /// Finish loading once every byte has been pushed: the model and the parsed small files
    /// (e.g. to resume training, where no [`Clip`] is needed).
    pub fn finish_model(self) -> Result<(ClipModel, ParsedFiles)> {
        Ok((self.weights.finish()?, self.files))
    }

    /// Finish loading once every byte has been pushed.
    pub async fn finish(self) -> Result<Clip> {
        let device = self.device.clone();
        let (model, files) = self.finish_model()?;
        Clip::from_parts(
            model,
            files.config,
            files.tokenizer,
            files.preprocess,
            &device,
        )
        .await
    }
}

/// A loaded CLIP model with its tokenizer and preprocessing.
pub struct Clip {
    model: ClipModel,
    config: ClipConfig,
    tokenizer: ClipTokenizer,
    preprocess: PreprocessConfig,
    device: Device,
    /// `exp(logit_scale)`.
    logit_scale: f32,
    /// SigLIP's `logit_bias`.
    logit_bias: Option<f32>,
    text_cache: Mutex<HashMap<String, Vec<f32>>>,
}

impl Clip {
    /// A `Clip` around a model already in memory on `device` (e.g. the one being trained, as
    /// `Module::valid()` gives it: no file round trip).
    pub async fn from_parts(
        mut model: ClipModel,
        config: ClipConfig,
        tokenizer: ClipTokenizer,
        preprocess: PreprocessConfig,
        device: &Device,
    ) -> Result<Self> {
        let logit_scale = read_values(model.logit_scale.val().reshape([1, 1])).await?[0];
        let logit_bias = match &model.logit_bias {
            Some(bias) => Some(read_values(bias.val().reshape([1, 1])).await?[0]),
            None => None,
        };
        // On the CPU backend, weights go into the layout of this CPU's matrix kernel.
        model.pack_for_cpu();
        Ok(Clip {
            model,
            config,
            tokenizer,
            preprocess,
            device: device.clone(),
            logit_scale: logit_scale.exp(),
            logit_bias,
            text_cache: Mutex::new(HashMap::new()),
        })
    }

    /// Load a model directory: Hugging Face CLIP (`config.json`, `model.safetensors`,
    /// `tokenizer.json`, optional `preprocessor_config.json`), SigLIP (the same, or
    /// `spiece.model` for the tokenizer) or open_clip's hub layout
    /// (`open_clip_config.json`, `open_clip_model.safetensors`, `tokenizer.json`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: impl AsRef<std::path::Path>, device: &Device) -> Result<Self> {
        Self::load_model_dir(&ModelDir::read(dir)?, device)
    }

    /// Load from a [`ModelDir`] already read (e.g. with a tokenizer from elsewhere).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_model_dir(model_dir: &ModelDir, device: &Device) -> Result<Self> {
        let (model, files) = model_dir.load(device)?;
        block_on(Self::from_parts(
            model,
            files.config,
            files.tokenizer,
            files.preprocess,
            device,
        ))
    }

    /// The model configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The preprocessing configuration.
    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// The burn model. On the CPU backend its linear weights are packed for inference
    /// ([`DenseLayers::pack_for_cpu`]); [`DenseLayers::unpack`] restores them (export and
    /// training do it themselves).
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `exp(logit_scale)`: the factor between cosine similarity and logits.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// How classification turns similarities into scores: CLIP's softmax across labels, or
    /// SigLIP's independent sigmoid per label.
    pub fn scoring(&self) -> Scoring {
        match self.logit_bias {
            None => Scoring::Softmax {
                scale: self.logit_scale,
            },
            Some(bias) => Scoring::Sigmoid {
                scale: self.logit_scale,
                bias,
            },
        }
    }

    /// Run one image and the common text batch shapes through the model so that a GPU backend
    /// compiles its kernels now rather than on the first real call (one text, and a full batch
    /// of short prompts as classification sends).
    pub async fn warm_up(&self) -> Result<()> {
        let v = &self.config.vision;
        let shape = [v.num_channels, v.image_size, v.image_size];
        self.embed_pixels(vec![0.0; shape.iter().product()], 1, shape)
            .await?;
        self.embed_token_ids(&[vec![0, 0]]).await?;
        if self.compiles_per_shape() {
            self.embed_token_ids(&vec![vec![0, 0]; TEXT_BATCH]).await?;
        }
        Ok(())
    }

    /// Whether the device compiles kernels for each new input shape (GPU backends), so that
    /// inputs are padded to a few fixed shapes.
    pub fn compiles_per_shape(&self) -> bool {
        self.device.clone().inner() != Device::flex()
    }

    /// Preprocess an image into the model's input, `[3, height, width]`.
    pub fn preprocess(&self, image: &RgbImage) -> Result<(Vec<f32>, [usize; 3])> {
        preprocess(image, &self.preprocess)
    }

    /// Normalized embeddings of images.
    pub async fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let side = self.config.vision.image_size;
        let shape = [3, side, side];
        let mut out = Vec::with_capacity(images.len());
        for (b, batch) in images.chunks(IMAGE_BATCH).enumerate() {
            let mut pixels = Vec::new();
            for (i, image) in batch.iter().enumerate() {
                let (values, [_, h, w]) = self.preprocess(image)?;
                if [h, w] != [side, side] {
                    return Err(Error::Input(format!(
                        "image {}: preprocessing gives {w}x{h} pixels but the model takes \
                         {side}x{side} (the preprocessor config has no center crop)",
                        b * IMAGE_BATCH + i
                    )));
                }
                pixels.extend(values);
            }
            out.extend(self.embed_pixels(pixels, batch.len(), shape).await?);
        }
        Ok(out)
    }

    /// Normalized embeddings of already preprocessed images: `pixels` holds `count` images of
    /// `shape` (`[3, height, width]`) back to back.
    pub async fn embed_pixels(
        &self,
        pixels: Vec<f32>,
        count: usize,
        shape: [usize; 3],
    ) -> Result<Vec<Vec<f32>>> {
        let v = &self.config.vision;
        let expected = [v.num_channels, v.image_size, v.image_size];
        if shape != expected || pixels.len() != count * shape.iter().product::<usize>() {
            return Err(Error::Input(format!(
                "pixel values must be {count} images of shape {expected:?}, got shape {shape:?} and {} values",
                pixels.len()
            )));
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let [c, h, w] = shape;
        let input = Tensor::<4>::from_data(TensorData::new(pixels, [count, c, h, w]), &self.device);
        read_rows(self.model.embed_images(input)).await
    }

    /// Normalized embeddings of texts; results are cached per text.
    pub async fn embed_texts(&self, texts: &[impl AsRef<str>]) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Option<Vec<f32>>> = {
            let cache = self.text_cache.lock().expect("cache lock");
            texts
                .iter()
                .map(|t| cache.get(t.as_ref()).cloned())
                .collect()
        };
        let todo: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        if !todo.is_empty() {
            let ids = todo
                .iter()
                .map(|&i| self.tokenizer.encode(texts[i].as_ref()))
                .collect::<Result<Vec<_>>>()?;
            let embeddings = self.embed_token_ids(&ids).await?;
            let mut cache = self.text_cache.lock().expect("cache lock");
            if cache.len() + todo.len() > TEXT_CACHE_LIMIT {
                cache.clear();
            }
            for (&i, e) in todo.iter().zip(embeddings) {
                cache.insert(texts[i].as_ref().to_string(), e.clone());
                out[i] = Some(e);
            }
        }
        Ok(out.into_iter().map(|e| e.expect("filled above")).collect())
    }

    /// Normalized embeddings of token id sequences (start and end tokens included).
    pub async fn embed_token_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        // Batch texts of similar length together so little compute goes to padding.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(TEXT_BATCH) {
            let sequences: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            let text = &self.config.text;
            let batch = if self.compiles_per_shape() {
                let longest = sequences.iter().map(Vec::len).max().unwrap_or(0);
                let shape = text_bucket(chunk.len(), longest, text.max_position_embeddings);
                TokenBatch::with_shape(&sequences, text, &self.device, shape)?
            } else {
                TokenBatch::new(&sequences, text, &self.device)?
            };
            let rows = read_rows(self.model.embed_texts(&batch)).await?;
            for (&i, row) in chunk.iter().zip(rows) {
                out[i] = row;
            }
        }
        Ok(out)
    }

    /// The embeddings of each label's prompts (`result[i][j]`: label `i` in template `j`).
    /// Templates may hold alternatives, `(a|b)`, expanded by [`tasks::expand_templates`].
    pub async fn embed_prompts(
        &self,
        labels: &[impl AsRef<str>],
        templates: &[impl AsRef<str>],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        tasks::check_labels(labels, templates)?;
        let templates = tasks::expand_templates(templates)?;
        let prompts: Vec<String> = labels
            .iter()
            .flat_map(|l| tasks::prompts(l.as_ref(), &templates))
            .collect();
        let embeddings = self.embed_texts(&prompts).await?;
        Ok(embeddings
            .chunks(templates.len())
            .map(<[Vec<f32>]>::to_vec)
            .collect())
    }

    /// One embedding per label through prompt templates: one template, or the mean ensemble
    /// (each prompt embedding normalized, averaged, renormalized).
    pub async fn embed_labels(
        &self,
        labels: &[impl AsRef<str>],
        templates: &[impl AsRef<str>],
    ) -> Result<Vec<Vec<f32>>> {
        let prompts = self.embed_prompts(labels, templates).await?;
        Ok(prompts.iter().map(|p| tasks::ensemble(p)).collect())
    }

    /// Zero-shot classification, combining several templates as `ensemble` says, sorted best
    /// first: a softmax over `logit_scale * cos` (CLIP), or each label's own sigmoid
    /// probability (SigLIP; see [`Clip::scoring`]).
    pub async fn classify(
        &self,
        image: &RgbImage,
        labels: &[impl AsRef<str>],
        templates: &[impl AsRef<str>],
        ensemble: Ensemble,
    ) -> Result<Vec<LabelScore>> {
        let prompts = self.embed_prompts(labels, templates).await?;
        let image_embedding = self.embed_images(std::slice::from_ref(image)).await?;
        Ok(tasks::ensemble_scores(
            &image_embedding[0],
            labels,
            &prompts,
            self.scoring(),
            ensemble,
        ))
    }

    /// Rank a gallery of image embeddings by similarity to a text query, best first.
    pub async fn rank_text(
        &self,
        query: &str,
        gallery: &[Vec<f32>],
        topk: usize,
    ) -> Result<Vec<RankHit>> {
        let query = self.embed_texts(&[query]).await?;
        tasks::rank(&query[0], gallery, topk)
    }
}

/// Read a `[rows, cols]` tensor back as rows.
async fn read_rows(tensor: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, cols] = tensor.dims();
    let values = read_values(tensor).await?;
    Ok(values.chunks(cols.max(1)).map(<[f32]>::to_vec).collect())
}

async fn read_values(tensor: Tensor<2>) -> Result<Vec<f32>> {
    let data = tensor
        .into_data_async()
        .await
        .map_err(|e| Error::Backend(format!("reading results: {e:?}")))?;
    crate::model::data_values(data)
}

//! The one error type of webclip. Every variant names what is wrong, and has a stable code
//! (`E_CONFIG`, `E_SHAPE`, ...) that the JS wrapper and the command line expose.

use std::path::PathBuf;

/// Everything that can go wrong in webclip.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `config.json` or `preprocessor_config.json` is not valid JSON or has a field of the wrong type.
    #[error("{file}: {message}")]
    Config { file: &'static str, message: String },

    /// A `hidden_act` that the model does not implement.
    #[error("config.json: unknown activation `{0}` in `hidden_act` (expected quick_gelu, gelu, gelu_new, gelu_pytorch_tanh or gelu_fast)")]
    UnknownActivation(String),

    /// The safetensors header is corrupt: bad length, bad JSON, offsets past the end, overlaps.
    #[error("model.safetensors: corrupt header: {0}")]
    CorruptHeader(String),

    /// The weights file is shorter than its header promises.
    #[error(
        "model.safetensors: truncated: the header promises {expected} bytes but only {got} arrived"
    )]
    Truncated { expected: u64, got: u64 },

    /// A tensor the model needs is not in the weights file.
    #[error("model.safetensors: missing tensor `{0}`")]
    MissingTensor(String),

    /// A tensor has a shape other than the config implies.
    #[error("model.safetensors: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// A tensor is stored in a dtype that webclip cannot upcast to f32.
    #[error("model.safetensors: tensor `{name}` has dtype {dtype}, expected F32, F16 or BF16")]
    UnsupportedDtype { name: String, dtype: String },

    /// `tokenizer.json` could not be loaded or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// An image could not be decoded.
    #[error("image: {0}")]
    Image(String),

    /// An argument is unusable: an empty label list, an image of zero size, a bad buffer length.
    #[error("invalid input: {0}")]
    Input(String),

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The compute backend failed (device creation, reading a tensor back).
    #[error("backend: {0}")]
    Backend(String),

    /// Memory ran out (reported instead of aborting where webclip allocates large buffers).
    #[error("out of memory: {0}")]
    OutOfMemory(String),

    /// A training checkpoint is incomplete or corrupt.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
}

impl Error {
    /// A stable, machine-readable code for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config { .. } | Error::UnknownActivation(_) => "E_CONFIG",
            Error::CorruptHeader(_) | Error::UnsupportedDtype { .. } => "E_FORMAT",
            Error::Truncated { .. } => "E_TRUNCATED",
            Error::MissingTensor(_) | Error::ShapeMismatch { .. } => "E_SHAPE",
            Error::Tokenizer(_) => "E_TOKENIZER",
            Error::Image(_) => "E_IMAGE",
            Error::Input(_) => "E_INPUT",
            Error::Io { .. } => "E_IO",
            Error::Backend(_) => "E_BACKEND",
            Error::OutOfMemory(_) => "E_MEMORY",
            Error::Checkpoint { .. } => "E_CHECKPOINT",
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with webclip's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

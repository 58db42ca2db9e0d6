//! Training checkpoints that survive a crash: each one is a fresh directory
//! `<root>/step-NNNNNNNN/` holding the model as a Hugging Face CLIP directory, the optimizer's
//! moments (`optimizer.safetensors`), the loop's position (`trainer_state.json`) and a
//! `manifest.json` with the step and each file's length and SHA-256. It is written under a
//! temporary name, every file synced, then renamed into place, and the last two are kept; so a
//! run killed at any moment leaves at least one complete checkpoint once it has written one.
//! Resuming verifies the manifest and falls back to the previous complete checkpoint.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::optim::{AdamW, AdamWConfig};
use crate::config::ClipConfig;
use crate::error::{Error, Result};
use crate::model::{ClipModel, DenseLayers};
use crate::pipeline::ModelDir;
use crate::weights::safetensors::{decode_f32, serialize, Header};
use crate::weights::ParamTable;

const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "trainer_state.json";
const MANIFEST_FILE: &str = "manifest.json";
/// Complete checkpoints kept; older ones are deleted once a new one is in place.
const KEEP: usize = 2;
/// Prefix of checkpoint directories (`step-00000120`).
const STEP_PREFIX: &str = "step-";
/// Prefix of a checkpoint being written.
const TEMP_PREFIX: &str = ".tmp-";

/// Test hook: abort the process halfway through writing the file whose path ends with this
/// (e.g. `step-00000004/optimizer.safetensors`), as a kill would, to prove that resuming
/// survives it.
#[doc(hidden)]
pub const CRASH_ENV: &str = "WEBCLIP_TEST_CRASH_WRITING";

/// Where the training loop stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Steps completed.
    pub step: u64,
    /// The data generator's state.
    pub rng: u64,
}

/// What a checkpoint directory holds, written last.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    step: u64,
    files: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestEntry {
    name: String,
    bytes: u64,
    sha256: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Write `bytes` to `path` and sync them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| Error::io(path, e);
    let mut file = File::create(path).map_err(io)?;
    let crash_here = std::env::var(CRASH_ENV)
        .is_ok_and(|suffix| !suffix.is_empty() && path.to_string_lossy().ends_with(&suffix));
    if crash_here {
        file.write_all(&bytes[..bytes.len() / 2]).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::process::abort();
    }
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Sync a directory's entries (a rename inside it) to disk, where the platform allows.
fn sync_dir(dir: &Path) -> Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        // Some platforms cannot open or sync directories; the files themselves are synced.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Write a file under a temporary name in the same directory, sync it, then rename it into
/// place: a crash leaves the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = path.with_file_name(format!("{TEMP_PREFIX}{}", name.unwrap_or_default()));
    write_synced(&temp, bytes)?;
    std::fs::rename(&temp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Write a checkpoint of `step` under `root`: the model `files` (name, bytes), the optimizer
/// and the loop state. Returns its directory.
pub fn write(
    root: &Path,
    files: Vec<(&'static str, Vec<u8>)>,
    optimizer: &AdamW,
    state: TrainerState,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let name = format!("{STEP_PREFIX}{:08}", state.step);
    let temp = root.join(format!("{TEMP_PREFIX}{name}"));
    let dir = root.join(&name);
    if temp.exists() {
        std::fs::remove_dir_all(&temp).map_err(|e| Error::io(&temp, e))?;
    }
    std::fs::create_dir(&temp).map_err(|e| Error::io(&temp, e))?;

    let mut all = files;
    all.push((OPTIMIZER_FILE, serialize(&optimizer.state_tensors()?)));
    let json = serde_json::to_vec_pretty(&state).expect("the state always serializes");
    all.push((STATE_FILE, json));
    let mut manifest = Manifest {
        step: state.step,
        files: Vec::new(),
    };
    for (file, bytes) in &all {
        write_synced(&temp.join(file), bytes)?;
        manifest.files.push(ManifestEntry {
            name: file.to_string(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        });
    }
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest always serializes");
    write_synced(&temp.join(MANIFEST_FILE), &json)?;
    sync_dir(&temp)?;

    // A checkpoint of this step may exist from an earlier run that was resumed before it.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    std::fs::rename(&temp, &dir).map_err(|e| Error::io(&dir, e))?;
    sync_dir(root)?;

    let steps = step_dirs(root)?;
    for (_, old) in steps.iter().rev().skip(KEEP) {
        std::fs::remove_dir_all(old).map_err(|e| Error::io(old, e))?;
    }
    Ok(dir)
}

/// The checkpoint directories under `root`, oldest first.
fn step_dirs(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let name = entry.file_name();
        let step = name
            .to_str()
            .and_then(|n| n.strip_prefix(STEP_PREFIX))
            .and_then(|n| n.parse::<u64>().ok());
        if let (Some(step), true) = (step, entry.path().is_dir()) {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// A checkpoint chosen for resuming, and why newer ones were passed over.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// The step it was taken after.
    pub step: u64,
    /// Newer checkpoints that were incomplete or corrupt, each with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Choose the checkpoint to resume from: `path` is either a checkpoint directory or the root
/// that holds them. The newest complete one wins (at most `path` itself, when it is one);
/// incomplete or corrupt ones are skipped and reported.
pub fn resolve(path: &Path) -> Result<Resolved> {
    // Newest first; a directory that cannot be listed holds no checkpoint.
    let newest_first = |root: &Path| -> Vec<PathBuf> {
        let dirs = step_dirs(root).unwrap_or_default();
        dirs.into_iter().rev().map(|(_, d)| d).collect()
    };
    let is_checkpoint = path.join(MANIFEST_FILE).exists() || path.join(STATE_FILE).exists();
    let candidates = if is_checkpoint {
        // The named checkpoint, then the older ones beside it.
        let siblings = newest_first(path.parent().unwrap_or(Path::new(".")));
        match siblings.iter().position(|d| same_dir(d, path)) {
            Some(i) => siblings[i..].to_vec(),
            None => vec![path.to_path_buf()],
        }
    } else {
        newest_first(path)
    };
    let mut skipped = Vec::new();
    for dir in candidates {
        match verify(&dir) {
            Ok(step) => return Ok(Resolved { dir, step, skipped }),
            Err(e) => skipped.push((dir, e.to_string())),
        }
    }
    let reasons: Vec<String> = skipped
        .iter()
        .map(|(d, why)| format!("{}: {why}", d.display()))
        .collect();
    Err(Error::Checkpoint {
        path: path.to_path_buf(),
        message: if reasons.is_empty() {
            "no checkpoint here (expected step-NNNNNNNN directories or a checkpoint directory)"
                .into()
        } else {
            format!("no complete checkpoint ({})", reasons.join("; "))
        },
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Check a checkpoint directory against its manifest; returns its step.
fn verify(dir: &Path) -> Result<u64> {
    let bad = |message: String| Error::Checkpoint {
        path: dir.to_path_buf(),
        message,
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&manifest_path).map_err(|e| {
        bad(format!(
            "{MANIFEST_FILE} is unreadable ({e}): the checkpoint is incomplete"
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("{MANIFEST_FILE} is invalid: {e}")))?;
    for required in [
        OPTIMIZER_FILE,
        STATE_FILE,
        "config.json",
        "model.safetensors",
    ] {
        if !manifest.files.iter().any(|f| f.name == required) {
            return Err(bad(format!("{MANIFEST_FILE} does not list {required}")));
        }
    }
    for entry in &manifest.files {
        if entry.name.contains(['/', '\\']) || entry.name.starts_with('.') {
            return Err(bad(format!(
                "{MANIFEST_FILE} names a file outside it: {}",
                entry.name
            )));
        }
        let path = dir.join(&entry.name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if bytes.len() as u64 != entry.bytes {
            return Err(bad(format!(
                "{} has {} bytes, the manifest says {}",
                entry.name,
                bytes.len(),
                entry.bytes
            )));
        }
        if sha256_hex(&bytes) != entry.sha256 {
            return Err(bad(format!(
                "{} does not match its SHA-256 in the manifest",
                entry.name
            )));
        }
    }
    Ok(manifest.step)
}

/// A checkpoint read back: the model (trainable, on the autodiff form of the device), its
/// optimizer, its tokenizer, and where the loop stood.
pub struct Resumed {
    pub model: ClipModel,
    pub optimizer: AdamW,
    pub config: ClipConfig,
    pub tokenizer_json: String,
    pub state: TrainerState,
}

/// Read a checkpoint that [`resolve`] chose (and so checked against its manifest); the
/// optimizer gets `optimizer`'s hyper-parameters and the checkpoint's moments.
pub fn read(checkpoint: &Resolved, optimizer: AdamWConfig, device: &Device) -> Result<Resumed> {
    let (dir, manifest_step) = (checkpoint.dir.as_path(), checkpoint.step);
    let in_file = |name: &str| {
        let path = dir.join(name);
        move |e: Error| Error::Checkpoint {
            path: path.clone(),
            message: match e {
                Error::CorruptHeader(m) | Error::Input(m) => m,
                other => other.to_string(),
            },
        }
    };
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| Error::io(path, e))
    };
    let state: TrainerState = serde_json::from_slice(&read(STATE_FILE)?)
        .map_err(|e| in_file(STATE_FILE)(Error::Input(format!("not a trainer state: {e}"))))?;
    if state.step != manifest_step {
        return Err(in_file(STATE_FILE)(Error::Input(format!(
            "step {} differs from the manifest's {manifest_step}",
            state.step
        ))));
    }

    let model_dir = ModelDir::read(dir)?;
    let (model, files) = model_dir.load(&device.clone().autodiff())?;
    let model = trainable(model);
    let mut optimizer = AdamW::new(optimizer, ParamTable::new(&model, &files.config));

    let bytes = read(OPTIMIZER_FILE)?;
    let header =
        Header::parse(&bytes, Some(bytes.len() as u64)).map_err(in_file(OPTIMIZER_FILE))?;
    if header.file_len() != bytes.len() as u64 {
        return Err(in_file(OPTIMIZER_FILE)(Error::Input(format!(
            "the header covers {} bytes, the file has {}",
            header.file_len(),
            bytes.len()
        ))));
    }
    let data = &bytes[header.data_start as usize..];
    let mut moments = HashMap::new();
    for info in &header.tensors {
        let values = decode_f32(info, &data[info.start as usize..info.end as usize])
            .map_err(in_file(OPTIMIZER_FILE))?;
        moments.insert(info.name.clone(), values);
    }
    optimizer
        .restore(state.step, moments, device)
        .map_err(in_file(OPTIMIZER_FILE))?;

    Ok(Resumed {
        model,
        optimizer,
        config: files.config,
        tokenizer_json: String::from_utf8_lossy(&model_dir.tokenizer).into_owned(),
        state,
    })
}

/// Mark every parameter as trainable (a loaded model is for inference: its weights are
/// unpacked where they were packed).
pub fn trainable(mut model: ClipModel) -> ClipModel {
    model.unpack();
    struct RequireGrad;
    impl ModuleMapper for RequireGrad {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            Param::initialized(param.id, param.val().require_grad())
        }
    }
    model.map(&mut RequireGrad)
}

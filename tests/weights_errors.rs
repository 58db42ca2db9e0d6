//! Loading weights: every kind of bad file gives a typed error that names the problem; unused
//! tensors are tolerated; export round-trips.

mod common;

use common::*;
use webclip::pipeline::ModelDir;
use webclip::weights::safetensors::{serialize, Header};
use webclip::weights::{export_safetensors, WeightDtype};
use webclip::{block_on, Backend, Clip, ClipLoader, Error};

type Tensors = Vec<(String, &'static str, Vec<usize>, Vec<u8>)>;

fn original() -> (ModelDir, Vec<u8>) {
    let dir = model_dir("tiny-quickgelu");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    (ModelDir::read(&dir).unwrap(), bytes)
}

fn tensors(bytes: &[u8]) -> Tensors {
    let header = Header::parse(bytes, Some(bytes.len() as u64)).unwrap();
    let data = &bytes[header.data_start as usize..];
    header
        .tensors
        .iter()
        .map(|t| {
            let dtype: &'static str = match t.dtype.as_str() {
                "F32" => "F32",
                "F16" => "F16",
                "BF16" => "BF16",
                other => panic!("unexpected dtype {other} in fixture"),
            };
            (
                t.name.clone(),
                dtype,
                t.shape.clone(),
                data[t.start as usize..t.end as usize].to_vec(),
            )
        })
        .collect()
}

/// Load `weights` pushed in chunks, the transport announcing the true length.
fn load(dir: &ModelDir, weights: &[u8], chunk: usize) -> Result<Clip, Error> {
    load_announced(dir, weights, chunk, Some(weights.len() as u64))
}

/// Load `weights`, the transport announcing `announced` bytes (a download that stops early
/// announces more than arrives; `None` when no length is known).
fn load_announced(
    dir: &ModelDir,
    weights: &[u8],
    chunk: usize,
    announced: Option<u64>,
) -> Result<Clip, Error> {
    let device = Backend::Cpu.device()?;
    let mut loader = ClipLoader::new(dir.files(), &device, announced)?;
    for part in weights.chunks(chunk.max(1)) {
        loader.push_weights(part)?;
    }
    block_on(loader.finish())
}

#[test]
fn streaming_in_small_chunks_gives_the_same_model() {
    let (dir, bytes) = original();
    let whole = load(&dir, &bytes, bytes.len()).unwrap();
    let streamed = load(&dir, &bytes, 997).unwrap();
    let ids = vec![vec![49406, 320, 2368, 49407]];
    let a = block_on(whole.embed_token_ids(&ids)).unwrap();
    let b = block_on(streamed.embed_token_ids(&ids)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn truncated_file_is_e_truncated() {
    let (dir, bytes) = original();
    let full = Some(bytes.len() as u64);
    // The download stops early: fewer bytes arrive than announced, or than the header promises.
    for announced in [full, None] {
        let err = load_announced(&dir, &bytes[..bytes.len() - 100], 4096, announced)
            .err()
            .unwrap();
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
        assert_eq!(err.code(), "E_TRUNCATED");
        let err = load_announced(&dir, &bytes[..20], 4096, announced)
            .err()
            .unwrap();
        assert_eq!(err.code(), "E_TRUNCATED", "cut inside the header: {err}");
    }
    // A complete file that is simply shorter than its header promises.
    let short = &bytes[..bytes.len() - 100];
    let err = load(&dir, short, 4096).err().unwrap();
    assert_eq!(err.code(), "E_TRUNCATED", "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let (dir, bytes) = original();
    let mut t = tensors(&bytes);
    t.retain(|(name, ..)| name != "text_projection.weight");
    let err = load(&dir, &serialize(&t), 1 << 20).err().unwrap();
    assert!(
        matches!(&err, Error::MissingTensor(name) if name == "text_projection.weight"),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let (mut dir, bytes) = original();
    dir.config = dir
        .config
        .replace("\"projection_dim\": 16", "\"projection_dim\": 8");
    assert!(
        dir.config.contains("\"projection_dim\": 8"),
        "fixture config changed layout"
    );
    let err = load(&dir, &bytes, 1 << 20).err().unwrap();
    match &err {
        Error::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert!(name.ends_with("projection.weight"), "{err}");
            assert_ne!(expected, found);
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
    assert_eq!(err.code(), "E_SHAPE");
}

#[test]
fn unexpected_dtype_is_named() {
    let (dir, bytes) = original();
    let mut t = tensors(&bytes);
    let entry = t.iter_mut().find(|(n, ..)| n == "logit_scale").unwrap();
    entry.1 = "I32";
    let err = load(&dir, &serialize(&t), 1 << 20).err().unwrap();
    assert!(
        matches!(&err, Error::UnsupportedDtype { name, dtype } if name == "logit_scale" && dtype == "I32"),
        "{err}"
    );
    assert_eq!(err.code(), "E_FORMAT");
}

#[test]
fn corrupt_headers_are_e_format() {
    let (dir, bytes) = original();
    // A header length past the end of the file.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(bytes.len() as u64 * 2).to_le_bytes());
    // Garbage where the JSON should be.
    let mut garbage = bytes.clone();
    garbage[8..16].copy_from_slice(b"\xff\xfe{{{{{{");
    // Two tensors claiming the same bytes.
    let header = Header::parse(&bytes, None).unwrap();
    let json_len = header.data_start as usize - 8;
    let json = std::str::from_utf8(&bytes[8..8 + json_len]).unwrap();
    let (a, b) = (&header.tensors[0], &header.tensors[1]);
    let overlapping = json.replacen(
        &format!("\"data_offsets\":[{},{}]", b.start, b.end),
        &format!(
            "\"data_offsets\":[{},{}]",
            a.start,
            a.start + (b.end - b.start)
        ),
        1,
    );
    assert_ne!(overlapping, json, "fixture header layout changed");
    let mut overlap = bytes.clone();
    overlap[8..8 + json_len].copy_from_slice(format!("{overlapping:<json_len$}").as_bytes());

    for (what, file) in [
        ("huge length", huge),
        ("garbage", garbage),
        ("overlap", overlap),
    ] {
        let err = load(&dir, &file, 1 << 20).err().unwrap();
        assert!(matches!(err, Error::CorruptHeader(_)), "{what}: {err}");
        assert_eq!(err.code(), "E_FORMAT", "{what}");
    }
}

#[test]
fn unused_tensors_are_tolerated() {
    let (dir, bytes) = original();
    let mut t = tensors(&bytes);
    let ids: Vec<u8> = (0..77i64).flat_map(|i| i.to_le_bytes()).collect();
    t.push((
        "text_model.embeddings.position_ids".into(),
        "F32",
        vec![1, 77, 2],
        ids,
    ));
    load(&dir, &serialize(&t), 1 << 20).unwrap();
}

#[test]
fn bad_configs_are_e_config() {
    let (mut dir, bytes) = original();
    dir.config = dir.config.replace("quick_gelu", "swish");
    let err = load(&dir, &bytes, 1 << 20).err().unwrap();
    assert!(
        matches!(&err, Error::UnknownActivation(a) if a == "swish"),
        "{err}"
    );
    assert_eq!(err.code(), "E_CONFIG");
}

#[test]
fn export_round_trips() {
    let (dir, bytes) = original();
    let clip = load(&dir, &bytes, 1 << 20).unwrap();
    let ids = vec![vec![49406, 320, 1125, 539, 320, 2368, 49407]];
    let reference = block_on(clip.embed_token_ids(&ids)).unwrap();
    let exported = export_safetensors(clip.model(), clip.config(), WeightDtype::F32).unwrap();
    // The same tensors under the same names and shapes as transformers wrote (Q/K/V split
    // back into three, linear weights `[out, in]`, the patch conv 4-D, `logit_scale` 0-D).
    let tensors = |bytes: &[u8]| {
        let header = Header::parse(bytes, Some(bytes.len() as u64)).unwrap();
        let mut named: Vec<(String, Vec<usize>)> = header
            .tensors
            .into_iter()
            .map(|t| (t.name, t.shape))
            .collect();
        named.sort();
        named
    };
    assert_eq!(tensors(&exported), tensors(&bytes));
    let again = load(&dir, &exported, 1 << 20).unwrap();
    assert_eq!(block_on(again.embed_token_ids(&ids)).unwrap(), reference);
    let half = export_safetensors(clip.model(), clip.config(), WeightDtype::F16).unwrap();
    let again = load(&dir, &half, 1 << 20).unwrap();
    let e = block_on(again.embed_token_ids(&ids)).unwrap();
    assert!(max_abs_diff(&e[0], &reference[0]) < 5e-3);
}

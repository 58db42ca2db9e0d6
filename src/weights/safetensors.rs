//! The safetensors format: an 8-byte little-endian header length, a JSON header mapping tensor
//! names to dtype, shape and byte range, then the tensor bytes. The header is validated in full
//! (lengths, ranges, overlaps, holes) before any tensor is used, so a corrupt or truncated file
//! is an [`Error`] that names the tensor or byte offset, never a panic.

use serde_json::Value;

use crate::error::{Error, Result};

/// The largest header accepted (the reference implementation's limit).
const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Byte range within the data section (after the header).
    pub start: u64,
    pub end: u64,
}

/// A parsed, validated header.
#[derive(Debug, Clone)]
pub struct Header {
    /// Tensors sorted by their position in the file.
    pub tensors: Vec<TensorInfo>,
    /// Offset of the data section from the start of the file (`8 + header length`).
    pub data_start: u64,
    /// Length of the data section that the header promises.
    pub data_len: u64,
}

/// Bytes per element of each safetensors dtype.
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

impl Header {
    /// How many bytes from the start of the file are needed to parse the header, once at least
    /// the first 8 are known; `None` before that.
    pub fn needed(prefix: &[u8]) -> Result<Option<u64>> {
        let Some(len) = prefix.get(..8) else {
            return Ok(None);
        };
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        if len > MAX_HEADER_LEN {
            return Err(Error::CorruptHeader(format!(
                "header length {len} (bytes 0..8) exceeds the {MAX_HEADER_LEN}-byte limit"
            )));
        }
        Ok(Some(8 + len))
    }

    /// Parse and validate the header from the first bytes of the file. `file_len`, when known,
    /// is checked against the header length.
    pub fn parse(bytes: &[u8], file_len: Option<u64>) -> Result<Self> {
        let Some(data_start) = Self::needed(bytes)? else {
            return Err(Error::CorruptHeader(format!(
                "the file is {} bytes long, too short for the 8-byte header length",
                bytes.len()
            )));
        };
        let available = file_len.unwrap_or(bytes.len() as u64);
        if data_start > available || data_start > bytes.len() as u64 {
            return Err(Error::CorruptHeader(format!(
                "header length {} (bytes 0..8) runs past the end of the file ({} bytes)",
                data_start - 8,
                available.min(bytes.len() as u64)
            )));
        }
        let json = &bytes[8..data_start as usize];
        let root: Value = serde_json::from_slice(json).map_err(|e| {
            Error::CorruptHeader(format!(
                "header JSON (bytes 8..{data_start}) is invalid: {e}"
            ))
        })?;
        let root = root.as_object().ok_or_else(|| {
            Error::CorruptHeader("header JSON is not an object of tensors".into())
        })?;

        let mut tensors = Vec::with_capacity(root.len());
        for (name, entry) in root {
            if name == "__metadata__" {
                continue;
            }
            tensors.push(parse_entry(name, entry)?);
        }
        tensors.sort_by_key(|t| (t.start, t.end));

        // The data section must be covered exactly: no overlaps and no holes.
        let mut cursor = 0u64;
        let mut previous: Option<&TensorInfo> = None;
        for t in &tensors {
            if t.start < cursor {
                let p = previous.expect("cursor > 0 implies a previous tensor");
                return Err(Error::CorruptHeader(format!(
                    "tensors `{}` (bytes {}..{}) and `{}` (bytes {}..{}) overlap",
                    p.name, p.start, p.end, t.name, t.start, t.end
                )));
            }
            if t.start > cursor {
                return Err(Error::CorruptHeader(format!(
                    "bytes {cursor}..{} of the data section belong to no tensor (before `{}`)",
                    t.start, t.name
                )));
            }
            cursor = t.end;
            previous = Some(t);
        }
        // Every offset must be addressable here (4 GiB on 32-bit wasm), so that the `as usize`
        // conversions of byte positions elsewhere are exact.
        if data_start
            .checked_add(cursor)
            .and_then(|n| usize::try_from(n).ok())
            .is_none()
        {
            return Err(Error::CorruptHeader(format!(
                "the header describes {cursor} bytes of tensor data, more than this platform can address"
            )));
        }
        Ok(Self {
            tensors,
            data_start,
            data_len: cursor,
        })
    }

    /// Total file length that the header promises.
    pub fn file_len(&self) -> u64 {
        self.data_start + self.data_len
    }
}

fn parse_entry(name: &str, entry: &Value) -> Result<TensorInfo> {
    let bad = |what: &str| Error::CorruptHeader(format!("tensor `{name}`: {what}"));
    let dtype = entry
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing or non-string `dtype`"))?;
    let size = dtype_size(dtype).ok_or_else(|| bad(&format!("unknown dtype `{dtype}`")))?;
    let shape: Vec<usize> = entry
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect()
        })
        .ok_or_else(|| bad("missing or invalid `shape`"))?;
    let offsets: Vec<u64> = entry
        .get("data_offsets")
        .and_then(Value::as_array)
        .and_then(|o| o.iter().map(Value::as_u64).collect())
        .ok_or_else(|| bad("missing or invalid `data_offsets`"))?;
    let [start, end] = offsets[..] else {
        return Err(bad("`data_offsets` must be [begin, end]"));
    };
    if end < start {
        return Err(bad(&format!(
            "data_offsets [{start}, {end}] end before they begin"
        )));
    }
    let elements = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| bad("shape overflows"))?;
    if end - start != elements {
        return Err(bad(&format!(
            "data_offsets [{start}, {end}] hold {} bytes but {dtype} {shape:?} needs {elements}",
            end - start
        )));
    }
    Ok(TensorInfo {
        name: name.to_string(),
        dtype: dtype.to_string(),
        shape,
        start,
        end,
    })
}

/// Decode a tensor's bytes to f32, upcasting F16 and BF16. Running out of memory is an error,
/// not an abort.
pub fn decode_f32(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>> {
    let pairs = || {
        bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let mut out = Vec::new();
    let elements = bytes.len() / dtype_size(&info.dtype).unwrap_or(1) as usize;
    out.try_reserve_exact(elements).map_err(|_| {
        Error::OutOfMemory(format!(
            "decoding tensor `{}` ({elements} values)",
            info.name
        ))
    })?;
    match info.dtype.as_str() {
        "F32" => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        "F16" => out.extend(pairs().map(|b| half::f16::from_bits(b).to_f32())),
        "BF16" => out.extend(pairs().map(|b| half::bf16::from_bits(b).to_f32())),
        other => {
            return Err(Error::UnsupportedDtype {
                name: info.name.clone(),
                dtype: other.to_string(),
            })
        }
    }
    Ok(out)
}

/// One tensor to write: name, dtype (e.g. `"F32"`), shape, little-endian bytes.
pub type Entry<'a> = (String, &'a str, Vec<usize>, Vec<u8>);

/// Serialize tensors as a safetensors file.
pub fn serialize(tensors: &[Entry<'_>]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "producer": "webclip"}),
    );
    let mut offset = 0usize;
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let mut json = serde_json::to_vec(&Value::Object(header)).expect("JSON always serializes");
    // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data_len: usize) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend(std::iter::repeat_n(0u8, data_len));
        out
    }

    #[test]
    fn parses_a_valid_header() {
        let f = file(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[],"data_offsets":[8,10]}}"#,
            10,
        );
        let h = Header::parse(&f, Some(f.len() as u64)).unwrap();
        assert_eq!(h.tensors.len(), 2);
        assert_eq!(h.file_len(), f.len() as u64);
    }

    #[test]
    fn rejects_corrupt_headers_by_name() {
        let cases = [
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#,
                "`a`",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                "overlap",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                "bytes 0..4",
            ),
            (
                r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}}"#,
                "unknown dtype",
            ),
            (r#"{"a": 3"#, "invalid"),
        ];
        for (header, expected) in cases {
            let f = file(header, 16);
            let e = Header::parse(&f, None).unwrap_err();
            assert!(matches!(e, Error::CorruptHeader(_)), "{header}: {e}");
            assert!(e.to_string().contains(expected), "{header}: {e}");
        }
        let mut f = file("{}", 0);
        f[0] = 200;
        let e = Header::parse(&f, None).unwrap_err();
        assert!(e.to_string().contains("runs past the end"), "{e}");
    }
}

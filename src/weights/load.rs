//! Streaming placement of safetensors weights into a [`ClipModel`]: bytes are pushed as they
//! arrive (from a file, or a `fetch` stream in the browser), the header is parsed as soon as it
//! is complete, and each tensor goes to the device as soon as its bytes are in (a parameter
//! stacked from several tensors, such as Q/K/V, as soon as the last of them is in). Peak memory
//! is one copy of the weights on the device plus the tensors in flight. The parameters are put
//! into the model in one pass at the end.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};

use super::mapping::ParamTable;
use super::safetensors::{decode_f32, Header, TensorInfo};
use crate::config::{ClipConfig, Family};
use crate::error::{Error, Result};
use crate::model::ClipModel;

/// Feeds a safetensors byte stream into a model's parameters.
pub struct WeightLoader {
    model: ClipModel,
    table: ParamTable,
    /// Checkpoint tensor name → (table entry, share of the parameter).
    sources: HashMap<String, (usize, usize)>,
    /// Each parameter's values on the device (flat), once all its tensors are in.
    placed: Vec<Option<Tensor<1>>>,
    /// Parameters stacked from several tensors, while some of them are still on the way.
    partial: HashMap<usize, Partial>,
    device: Device,
    /// Total length announced by the transport (e.g. `Content-Length`), if any.
    expected_len: Option<u64>,
    header: Option<Header>,
    /// Bytes received but not yet consumed; `buffer[0]` is at file offset `buffer_offset`.
    buffer: Vec<u8>,
    buffer_offset: u64,
    received: u64,
    next_tensor: usize,
}

/// A stacked parameter's values on the host, and which of its tensors have arrived.
struct Partial {
    values: Vec<f32>,
    arrived: Vec<bool>,
}

impl WeightLoader {
    /// Start loading a `family` checkpoint into `model` (built from `config`), whose
    /// parameters will live on `device`.
    pub fn new(
        model: ClipModel,
        config: &ClipConfig,
        family: Family,
        device: &Device,
        expected_len: Option<u64>,
    ) -> Self {
        let table = ParamTable::for_family(&model, config, family);
        Self {
            sources: table.by_tensor(),
            placed: vec![None; table.entries().len()],
            partial: HashMap::new(),
            table,
            model,
            device: device.clone(),
            expected_len,
            header: None,
            buffer: Vec::new(),
            buffer_offset: 0,
            received: 0,
            next_tensor: 0,
        }
    }

    /// The parsed header, once enough bytes have arrived.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Add the next bytes of the file.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.received += chunk.len() as u64;
        self.buffer.try_reserve(chunk.len()).map_err(|_| {
            Error::OutOfMemory(format!(
                "buffering model.safetensors at byte {} ({} bytes held)",
                self.received,
                self.buffer.len()
            ))
        })?;
        self.buffer.extend_from_slice(chunk);
        if self.header.is_none() {
            let Some(needed) = Header::needed(&self.buffer)? else {
                return Ok(());
            };
            if let Some(len) = self.expected_len {
                if needed > len {
                    return Err(Error::CorruptHeader(format!(
                        "header length {} (bytes 0..8) runs past the end of the file ({len} bytes)",
                        needed - 8
                    )));
                }
            }
            if (self.buffer.len() as u64) < needed {
                return Ok(());
            }
            let header = Header::parse(&self.buffer[..needed as usize], Some(needed))?;
            if let Some(len) = self.expected_len {
                if header.file_len() > len {
                    return Err(Error::Truncated {
                        expected: header.file_len(),
                        got: len,
                    });
                }
            }
            self.buffer.drain(..needed as usize);
            self.buffer_offset = needed;
            self.header = Some(header);
        }
        self.place_complete_tensors()
    }

    fn place_complete_tensors(&mut self) -> Result<()> {
        let header = self
            .header
            .take()
            .expect("called after the header is parsed");
        let result = (|| {
            let mut consumed = 0usize;
            while let Some(info) = header.tensors.get(self.next_tensor) {
                let start = (header.data_start + info.start - self.buffer_offset) as usize;
                let end = (header.data_start + info.end - self.buffer_offset) as usize;
                if end > self.buffer.len() {
                    break;
                }
                self.place(info, start..end)?;
                consumed = end;
                self.next_tensor += 1;
            }
            self.buffer.drain(..consumed);
            self.buffer_offset += consumed as u64;
            Ok(())
        })();
        self.header = Some(header);
        result
    }

    /// Finish: the stream must have delivered every byte the header promised, and every
    /// parameter of the model must have been filled. Returns the loaded model.
    pub fn finish(self) -> Result<ClipModel> {
        let Some(header) = &self.header else {
            return Err(if self.received < 8 {
                Error::CorruptHeader(format!(
                    "the file is {} bytes long, too short for the 8-byte header length",
                    self.received
                ))
            } else {
                Error::Truncated {
                    expected: Header::needed(&self.buffer)?.unwrap_or(8),
                    got: self.received,
                }
            });
        };
        if self.received < header.file_len() {
            return Err(Error::Truncated {
                expected: header.file_len(),
                got: self.received,
            });
        }
        if self.received > header.file_len() {
            return Err(Error::CorruptHeader(format!(
                "{} bytes follow the last tensor (the header covers {} bytes)",
                self.received - header.file_len(),
                header.file_len()
            )));
        }
        let missing = self.placed.iter().position(Option::is_none);
        if let Some(index) = missing {
            let entry = &self.table.entries()[index];
            let arrived = self.partial.get(&index).map(|p| p.arrived.as_slice());
            let first = (0..entry.tensors.len())
                .find(|&i| !arrived.is_some_and(|a| a[i]))
                .unwrap_or(0);
            return Err(Error::MissingTensor(entry.tensors[first].clone()));
        }
        let mut place = PlaceAll {
            by_id: self.table.by_id(),
            placed: self.placed,
        };
        Ok(self.model.map(&mut place))
    }

    /// Decode the tensor at `range` of the buffer into the parameter it belongs to (tensors the
    /// model does not use are skipped).
    fn place(&mut self, info: &TensorInfo, range: std::ops::Range<usize>) -> Result<()> {
        let Some(&(index, share)) = self.sources.get(&info.name) else {
            return Ok(());
        };
        let entry = &self.table.entries()[index];
        let expected = entry.tensor_shape();
        if info.shape != expected {
            return Err(Error::ShapeMismatch {
                name: info.name.clone(),
                expected,
                found: info.shape.clone(),
            });
        }
        let values = decode_f32(info, &self.buffer[range])?;
        let values = entry.layout.to_burn(values, &entry.piece_shape());
        let shares = entry.tensors.len();
        let complete = if shares == 1 {
            values
        } else {
            let partial = match self.partial.entry(index) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let mut buffer = Vec::new();
                    buffer.try_reserve_exact(entry.numel()).map_err(|_| {
                        Error::OutOfMemory(format!(
                            "staging {} ({} values)",
                            entry.path,
                            entry.numel()
                        ))
                    })?;
                    buffer.resize(entry.numel(), 0.0);
                    e.insert(Partial {
                        values: buffer,
                        arrived: vec![false; shares],
                    })
                }
            };
            entry.put_piece(&mut partial.values, share, &values);
            partial.arrived[share] = true;
            if !partial.arrived.iter().all(|&a| a) {
                return Ok(());
            }
            self.partial.remove(&index).expect("present").values
        };
        let len = complete.len();
        let tensor = Tensor::from_data(TensorData::new(complete, [len]), &self.device);
        self.placed[index] = Some(tensor);
        Ok(())
    }
}

/// Puts each parameter's loaded values into the model.
struct PlaceAll {
    by_id: HashMap<ParamId, usize>,
    placed: Vec<Option<Tensor<1>>>,
}

impl ModuleMapper for PlaceAll {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let index = self.by_id.get(&param.id).copied();
        let Some(values) = index.and_then(|i| self.placed[i].take()) else {
            return param;
        };
        let tensor = values.reshape(param.lazy_shape());
        let id = param.id;
        param.transform_for_load(tensor, id)
    }
}

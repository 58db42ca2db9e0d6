//! Streaming placement of safetensors weights into a [`ClipModel`]: bytes are pushed as they
//! arrive (from a file, or a `fetch` stream in the browser), the header is parsed as soon as it
//! is complete, and each tensor goes to the device as soon as its bytes are in. Peak memory is
//! one copy of the weights on the device plus the largest tensor in flight.

use std::collections::HashSet;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};

use super::safetensors::{decode_f32, Header, TensorInfo};
use super::{Layout, ParamVisitor};
use crate::error::{Error, Result};
use crate::model::ClipModel;

/// Feeds a safetensors byte stream into a model's parameters.
pub struct WeightLoader {
    model: ClipModel,
    device: Device,
    /// Total length announced by the transport (e.g. `Content-Length`), if any.
    expected_len: Option<u64>,
    header: Option<Header>,
    /// Bytes received but not yet consumed; `buffer[0]` is at file offset `buffer_offset`.
    buffer: Vec<u8>,
    buffer_offset: u64,
    received: u64,
    next_tensor: usize,
    loaded: HashSet<String>,
}

impl WeightLoader {
    /// Start loading into `model`, whose parameters will live on `device`.
    pub fn new(model: ClipModel, device: &Device, expected_len: Option<u64>) -> Self {
        Self {
            model,
            device: device.clone(),
            expected_len,
            header: None,
            buffer: Vec::new(),
            buffer_offset: 0,
            received: 0,
            next_tensor: 0,
            loaded: HashSet::new(),
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
                let mut assign = Assign {
                    info,
                    bytes: &self.buffer[start..end],
                    device: &self.device,
                    found: false,
                };
                self.model.visit_params(&mut assign)?;
                if assign.found {
                    self.loaded.insert(info.name.clone());
                }
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
    pub fn finish(mut self) -> Result<ClipModel> {
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
        let mut missing = FindMissing {
            loaded: &self.loaded,
            missing: Vec::new(),
        };
        self.model.visit_params(&mut missing)?;
        match missing.missing.first() {
            None => Ok(self.model),
            Some(name) => Err(Error::MissingTensor(name.clone())),
        }
    }
}

/// Fills the one parameter named like the tensor at hand.
struct Assign<'a> {
    info: &'a TensorInfo,
    bytes: &'a [u8],
    device: &'a Device,
    found: bool,
}

impl ParamVisitor for Assign<'_> {
    fn param<const D: usize>(
        &mut self,
        name: &str,
        param: &mut Param<Tensor<D>>,
        layout: Layout,
    ) -> Result<()> {
        if name != self.info.name {
            return Ok(());
        }
        self.found = true;
        let burn_shape = param.lazy_shape().as_slice().to_vec();
        let expected = layout.hf_shape(&burn_shape);
        if self.info.shape != expected {
            return Err(Error::ShapeMismatch {
                name: name.to_string(),
                expected,
                found: self.info.shape.clone(),
            });
        }
        let data = layout.to_burn(decode_f32(self.info, self.bytes)?, &burn_shape);
        let tensor = Tensor::from_data(TensorData::new(data, burn_shape), self.device);
        *param = param.clone().transform_for_load(tensor, param.id);
        Ok(())
    }
}

/// Lists the parameters that no tensor filled.
struct FindMissing<'a> {
    loaded: &'a HashSet<String>,
    missing: Vec<String>,
}

impl ParamVisitor for FindMissing<'_> {
    fn param<const D: usize>(
        &mut self,
        name: &str,
        _: &mut Param<Tensor<D>>,
        _: Layout,
    ) -> Result<()> {
        if !self.loaded.contains(name) {
            self.missing.push(name.to_string());
        }
        Ok(())
    }
}

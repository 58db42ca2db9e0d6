//! A faster linear layer for inference on burn's CPU backend (Flex), natively and in wasm.
//!
//! burn computes `x @ w` for a batched input as one matrix product per batch item, each on one
//! thread, and adds the bias in a second pass; below ~7M multiply-adds it uses one thread. Here
//! all rows of the batch form one matrix and (natively) the output columns are split between
//! the threads, so each thread streams only its share of the weights (the strategy of ONNX
//! Runtime's MLAS when the output is wider than tall). Weights packed in panels
//! ([`super::panels`]) go through this CPU's panel kernel, which writes bias and activation
//! itself; row-major ones (CPUs without a kernel) through `gemm`, accumulating onto the bias,
//! with the activation in a second pass. Measured in `docs/performance.md`.
//!
//! It applies only to plain (non-autodiff) f32 Flex tensors with contiguous data; everything
//! else, training included, takes burn's path unchanged.

use super::activation::apply_activation;
use super::dense::Dense;
use super::layers::activate;
use super::panels::{Kernel, Product};
use crate::config::Activation;
use burn::backend::Flex;
use burn::tensor::module::linear;
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use burn_flex::FlexTensor;

/// Below this many multiply-adds one thread does the whole product.
const SPLIT_THRESHOLD: usize = 32 * 32 * 32;
/// Each thread's share of the output columns is a multiple of this (whole SIMD tiles).
const COLUMN_ALIGN: usize = 16;
/// Activations are applied in parallel chunks of at least this many values.
const ACTIVATION_CHUNK: usize = 4096;

/// `dense.forward(x)` through the fast path where it applies.
pub fn forward<const D: usize>(dense: &Dense, x: Tensor<D>) -> Tensor<D> {
    match try_forward(dense, &x, None) {
        Some(out) => out,
        None => linear(x, dense.weight_rows(), dense.bias.as_ref().map(|b| b.val())),
    }
}

/// `activate(dense.forward(x), activation)`; on the fast path the activation is applied in
/// the same pass over the output, in parallel (burn's is three single-threaded passes).
pub fn forward_activated<const D: usize>(
    dense: &Dense,
    x: Tensor<D>,
    activation: Activation,
) -> Tensor<D> {
    // Exact GELU needs erf, which std lacks: burn applies it.
    let fused = (activation != Activation::Gelu).then_some(activation);
    match fused.and_then(|a| try_forward(dense, &x, Some(a))) {
        Some(out) => out,
        None => activate(forward(dense, x), activation),
    }
}

/// `f` of the values of a plain (non-autodiff) f32 CPU tensor with contiguous data; `None`
/// for any other tensor.
pub fn with_f32_values<const D: usize, R>(
    tensor: &Tensor<D>,
    f: impl FnOnce(&[f32]) -> R,
) -> Option<R> {
    let tensor = tensor.clone().try_into_primitive::<Flex>().ok()?;
    if tensor.dtype() != DType::F32 {
        return None;
    }
    Some(f(tensor.as_slice::<f32>()?))
}

/// A weight as the fast path reads it.
#[derive(Clone, Copy)]
enum Weights<'a> {
    /// `[k, n]`, row-major: multiplied by `gemm`.
    Rows(&'a [f32]),
    /// Packed in panels for `Kernel`.
    Panels(Kernel, &'a [f32]),
}

fn try_forward<const D: usize>(
    dense: &Dense,
    x: &Tensor<D>,
    activation: Option<Activation>,
) -> Option<Tensor<D>> {
    let x = x.clone().try_into_primitive::<Flex>().ok()?;
    let w = dense.weight.val().try_into_primitive::<Flex>().ok()?;
    let b = match &dense.bias {
        Some(bias) => Some(bias.val().try_into_primitive::<Flex>().ok()?),
        None => None,
    };
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return None;
    }
    let (x_data, w_data) = (x.as_slice::<f32>()?, w.as_slice::<f32>()?);
    let bias = match &b {
        Some(b) if b.dtype() == DType::F32 => Some(b.as_slice::<f32>()?),
        Some(_) => return None,
        None => None,
    };
    let (k, n) = (dense.d_input, dense.d_output);
    let weights = match dense.panel_width() {
        Some(width) => Weights::Panels(Kernel::for_width(width)?, w_data),
        // A row-major weight exactly one panel wide is in the panel layout already.
        None => match Kernel::for_width(n) {
            Some(kernel) => Weights::Panels(kernel, w_data),
            None => Weights::Rows(w_data),
        },
    };
    let dims = x.layout().shape().to_vec();
    let sizes_agree = dims.last() == Some(&k)
        && bias.is_none_or(|b| b.len() == n)
        && match weights {
            Weights::Rows(w) => w.len() == k * n,
            Weights::Panels(kernel, w) => {
                w.len() == n.div_ceil(kernel.width()) * k * kernel.width()
            }
        };
    if !sizes_agree {
        return None;
    }
    let m: usize = dims[..dims.len() - 1].iter().product();

    let mut out_dims = dims;
    *out_dims.last_mut().expect("D >= 1") = n;
    let out = match weights {
        Weights::Panels(kernel, packed) => {
            let product = Product {
                m,
                k,
                n,
                x: x_data,
                packed,
                bias,
                activation,
            };
            panel_product(kernel, &product)
        }
        Weights::Rows(w) => {
            let mut out = vec![0.0; m * n];
            if let Some(bias) = bias {
                out.chunks_exact_mut(n)
                    .for_each(|row| row.copy_from_slice(bias));
            }
            gemm_product(m, k, n, x_data, w, &mut out);
            if let Some(activation) = activation {
                for_each_part(out.chunks_mut(n.max(ACTIVATION_CHUNK)), |chunk| {
                    apply_activation(chunk, activation)
                });
            }
            out
        }
    };
    let out = TensorData::new(out, Shape::from(out_dims));
    Some(Tensor::from_primitive::<Flex>(FlexTensor::from_data(out)))
}

/// A panel product's `m x n` output, the panels split across threads (each thread streams only
/// its share of the weights).
fn panel_product(kernel: Kernel, product: &Product) -> Vec<f32> {
    let Product { m, k, n, .. } = *product;
    let count = n.div_ceil(kernel.width());
    let parts = if m * n * k >= SPLIT_THRESHOLD {
        threads().min(count)
    } else {
        1
    };
    let per_part = count.div_ceil(parts.max(1)).max(1);
    let mut out = Vec::<f32>::with_capacity(m * n);
    let out_ptr = out.as_mut_ptr() as usize;
    for_each_part((0..count).step_by(per_part), |first| {
        // SAFETY: `out` has room for `m x n` values; each part writes only the columns of its
        // own panels, and together the parts cover every panel.
        unsafe {
            let panels = first..count.min(first + per_part);
            kernel.run(product, panels, out_ptr as *mut f32)
        }
    });
    // SAFETY: every value was written above.
    unsafe { out.set_len(m * n) };
    out
}

/// `out[m, n] += x[m, k] @ w[k, n]` through `gemm`, with the output columns split across
/// threads (each thread streams only its share of the weights).
fn gemm_product(m: usize, k: usize, n: usize, x: &[f32], w: &[f32], out: &mut [f32]) {
    let parts = if m * n * k >= SPLIT_THRESHOLD {
        threads().min(n / COLUMN_ALIGN).max(1)
    } else {
        1
    };
    let width = n.div_ceil(parts).div_ceil(COLUMN_ALIGN) * COLUMN_ALIGN;
    let out_ptr = out.as_mut_ptr() as usize;
    for_each_part((0..n).step_by(width.max(1)), |start| {
        // SAFETY: `x` is `m x k`, `w` is `k x n`, `out` is `m x n`, all row-major and alive for
        // this call; each part writes only its own columns `start..start + cols` of `out`.
        unsafe { gemm_columns(m, k, n, x, w, start..n.min(start + width), out_ptr) }
    });
}

/// `out[.., columns] += x @ w[.., columns]` through `gemm` (on the calling thread).
///
/// # Safety
/// `x` is `m x k`, `w` is `k x n`; `out` points at `m x n` values, all row-major.
unsafe fn gemm_columns(
    m: usize,
    k: usize,
    n: usize,
    x: &[f32],
    w: &[f32],
    columns: std::ops::Range<usize>,
    out: usize,
) {
    gemm::gemm(
        m,
        columns.len(),
        k,
        (out as *mut f32).add(columns.start),
        1,
        n as isize,
        true,
        x.as_ptr(),
        1,
        k as isize,
        w.as_ptr().add(columns.start),
        1,
        n as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// Threads available for one product.
#[cfg(not(target_arch = "wasm32"))]
fn threads() -> usize {
    rayon::current_num_threads()
}

#[cfg(target_arch = "wasm32")]
fn threads() -> usize {
    1
}

/// `f()`, run on one of the thread pool's workers where `device` is the CPU. Each operation's
/// parallel parts then start from a worker, which runs one part itself and leaves the rest to
/// be stolen, instead of the calling thread sleeping until the pool has run them all and being
/// woken again, at every operation (text batch 1: 11% faster). Elsewhere (wgpu, wasm) `f()`.
#[cfg(not(target_arch = "wasm32"))]
pub fn on_worker<R: Send>(device: &Device, f: impl FnOnce() -> R + Send) -> R {
    match device.clone().inner() == Device::flex() {
        true => rayon::scope(|_| f()),
        false => f(),
    }
}

#[cfg(target_arch = "wasm32")]
pub fn on_worker<R>(_device: &Device, f: impl FnOnce() -> R) -> R {
    f()
}

/// Run `f` on every item, in parallel where there are threads and more than one item.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn for_each_part<T: Send>(items: impl Iterator<Item = T>, f: impl Fn(T) + Sync + Send) {
    use rayon::prelude::*;
    let items: Vec<T> = items.collect();
    match items.len() {
        0 | 1 => items.into_iter().for_each(f),
        _ => items.into_par_iter().for_each(f),
    }
}

#[cfg(target_arch = "wasm32")]
pub(super) fn for_each_part<T>(items: impl Iterator<Item = T>, f: impl Fn(T)) {
    items.for_each(f);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{max_abs_diff, DenseLayers};
    use burn::tensor::{Device, TensorData};

    /// The layer as given and packed for this CPU's kernel (where it has one).
    fn layouts(dense: Dense) -> Vec<Dense> {
        let mut packed = dense.clone();
        packed.pack_for_cpu();
        vec![dense, packed]
    }

    #[test]
    fn matches_burns_linear_on_every_shape_class() {
        let device = Device::flex();
        for (batch, rows, k, n, bias) in [
            (1, 50, 64, 96, true),
            (3, 7, 33, 17, true),
            (2, 12, 128, 512, false),
            (1, 1, 5, 3, true),
            (1, 13, 40, 64, true),
        ] {
            let values: Vec<f32> = (0..batch * rows * k)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let x = Tensor::<3>::from_data(TensorData::new(values, [batch, rows, k]), &device);
            let dense = Dense::new(k, n, bias, &device);
            let burns = linear(
                x.clone(),
                dense.weight.val(),
                dense.bias.as_ref().map(|b| b.val()),
            );
            let burns = crate::model::values(burns).unwrap();
            for dense in layouts(dense) {
                let ours = try_forward(&dense, &x, None).expect("the fast path applies");
                let ours = crate::model::values(ours).unwrap();
                let diff = max_abs_diff(&ours, &burns);
                let packed = dense.panel_width();
                assert!(
                    diff < 1e-4,
                    "[{batch}, {rows}, {k}] x [{k}, {n}], panels {packed:?}: {diff}"
                );
            }
        }
    }

    #[test]
    fn packing_keeps_the_weights() {
        let device = Device::flex();
        let dense = Dense::new(24, 100, true, &device);
        let rows = crate::model::values(dense.weight.val()).unwrap();
        let [_, mut packed] = layouts(dense).try_into().unwrap();
        if Kernel::detect().is_some() {
            assert!(packed.panel_width().is_some());
        }
        assert_eq!(crate::model::values(packed.weight_rows()).unwrap(), rows);
        packed.unpack();
        assert_eq!(packed.panel_width(), None);
        assert_eq!(crate::model::values(packed.weight.val()).unwrap(), rows);
    }

    #[test]
    fn burns_path_reads_packed_weights_too() {
        // A strided input is not for the fast path: burn multiplies, by the unpacked weight.
        let device = Device::flex();
        let mut dense = Dense::new(8, 20, true, &device);
        let x = Tensor::<2>::from_data(
            TensorData::new((0..40).map(|i| i as f32 / 7.0).collect::<Vec<_>>(), [8, 5]),
            &device,
        )
        .transpose();
        let want = crate::model::values(dense.forward(x.clone())).unwrap();
        dense.pack_for_cpu();
        let got = crate::model::values(dense.forward(x)).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn fused_activations_match_burns() {
        let device = Device::flex();
        let dense = Dense::new(48, 80, true, &device);
        let values: Vec<f32> = (0..2 * 9 * 48)
            .map(|i| ((i * 53) % 97) as f32 / 24.0 - 2.0)
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(values, [2, 9, 48]), &device);
        let burns = |activation| {
            let bias = dense.bias.as_ref().map(|b| b.val());
            let plain = linear(x.clone(), dense.weight.val(), bias);
            crate::model::values(activate(plain, activation)).unwrap()
        };
        for activation in [
            Activation::QuickGelu,
            Activation::GeluTanh,
            Activation::Gelu,
        ] {
            let want = burns(activation);
            for dense in layouts(dense.clone()) {
                let ours = forward_activated(&dense, x.clone(), activation);
                let diff = max_abs_diff(&crate::model::values(ours).unwrap(), &want);
                assert!(diff < 1e-5, "{activation:?}: {diff}");
            }
        }
    }

    #[test]
    fn autodiff_tensors_take_burns_path() {
        let device = Device::flex().autodiff();
        let mut dense = Dense::new(4, 100, true, &device);
        dense.pack_for_cpu();
        assert_eq!(dense.panel_width(), None, "autodiff weights stay row-major");
        let x = Tensor::<2>::ones([2, 4], &device).require_grad();
        assert!(try_forward(&dense, &x, None).is_none());
    }
}

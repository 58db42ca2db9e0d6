//! Layer norm and attention as one GPU kernel each, on burn's cubecl backend (wgpu) without
//! autodiff. burn builds both from many kernels there: its layer norm is a mean, a variance and
//! four elementwise passes; its attention fallback is two matrix products, a mask fill and a
//! multi-pass softmax, with the heads permuted into and out of it. Each dispatch costs more than
//! the work at CLIP's sizes, so here each is one launch:
//!
//! - [`try_layer_norm`]: one workgroup per row, sums reduced in shared memory, mean and variance
//!   in two passes (as PyTorch computes them);
//! - [`try_attention`]: one invocation per query row and head, an online softmax over the keys
//!   (no score matrix is written), reading the heads through their strides (so the Q/K/V
//!   projection's output is not copied) and writing `[batch, queries, heads * head_dim]`, the
//!   layout the output projection reads.
//!
//! Both are opaque operations to burn's fusion (`#[backend_extension(Cube, Fusion)]`); other
//! devices and autodiff keep burn's composition.

use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::backend::{backend_extension, Backend, Dispatch, DispatchDevice};
use burn::tensor::{Bool, DType, Device, Shape, Tensor};
use burn_cubecl::cubecl::calculate_cube_count_elemwise;
use burn_cubecl::cubecl::prelude::{CubeCount, CubeDim};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;

/// Invocations per workgroup of the layer norm (one workgroup per row; a power of two).
const LAYER_NORM_UNITS: usize = 64;

/// Stand-in for `-inf` as the softmax's first running maximum (WGSL has no infinity literal).
const LOWEST_SCORE: f32 = -3.0e38;

/// The operations, routed by burn's backend dispatch.
#[backend_extension(Cube, Fusion)]
pub trait GpuKernels: Backend {
    /// `(x - mean) / sqrt(var + epsilon) * gamma + beta` over the last axis.
    #[fusion(dtype = x, shape = x)]
    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;

    /// Scaled dot-product attention of `[batch, heads, seq, head_dim]` query, key and value,
    /// returned as `[batch, queries, heads * head_dim]`.
    #[fusion(dtype = query, shape = attention_output_shape(query))]
    fn attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self>;

    /// [`GpuKernels::attention`] with a mask (`[batch, heads or 1, queries, keys]`, true where
    /// a key is ignored).
    #[fusion(dtype = query, shape = attention_output_shape(query))]
    fn masked_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self>;
}

fn attention_output_shape(query: &Shape) -> Shape {
    let [batch, heads, queries, head_dim] = query.dims();
    Shape::new([batch, queries, heads * head_dim])
}

/// Whether `device` is a GPU (cubecl) device without autodiff.
fn gpu_inference(device: &Device) -> bool {
    !device.is_autodiff() && matches!(device.as_dispatch(), DispatchDevice::Cube(_))
}

/// Whether `x` is an f32 tensor on a GPU device, without autodiff.
fn on_gpu<const D: usize>(x: &Tensor<D>) -> bool {
    gpu_inference(&x.device()) && x.dtype() == DType::F32
}

/// `norm(x)` as one kernel on a GPU device, else [`None`] (burn's layer norm applies).
pub fn try_layer_norm<const D: usize>(
    norm: &super::layers::LayerNorm,
    x: &Tensor<D>,
) -> Option<Tensor<D>> {
    let gamma = norm.gamma.val();
    let beta = norm.beta.as_ref()?.val();
    if !on_gpu(x) || !on_gpu(&gamma) || !on_gpu(&beta) {
        return None;
    }
    let out = <Dispatch as GpuKernels>::layer_norm(
        x.clone().into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        norm.epsilon,
    );
    Some(Tensor::from_dispatch(out))
}

/// Attention over heads (`[batch, heads, seq, head_dim]`, scaled by `1/sqrt(head_dim)`) as one
/// kernel on a GPU device, returned as `[batch, queries, heads * head_dim]`; else [`None`].
pub fn try_attention(
    query: &Tensor<4>,
    key: &Tensor<4>,
    value: &Tensor<4>,
    mask: Option<&Tensor<4, Bool>>,
    causal: bool,
) -> Option<Tensor<3>> {
    if !on_gpu(query)
        || !on_gpu(key)
        || !on_gpu(value)
        || mask.is_some_and(|m| !gpu_inference(&m.device()))
    {
        return None;
    }
    let [query, key, value] = [query, key, value].map(|x| x.clone().into_dispatch());
    let out = match mask {
        Some(mask) => <Dispatch as GpuKernels>::masked_attention(
            query,
            key,
            value,
            mask.clone().into_dispatch(),
            causal,
        ),
        None => <Dispatch as GpuKernels>::attention(query, key, value, causal),
    };
    Some(Tensor::from_dispatch(out))
}

impl GpuKernels for CubeBackend {
    fn layer_norm(x: CubeTensor, gamma: CubeTensor, beta: CubeTensor, epsilon: f64) -> CubeTensor {
        let x = into_contiguous(x);
        let width = *x
            .meta
            .shape
            .last()
            .expect("a layer norm's input has an axis");
        let rows = x.meta.shape.num_elements() / width.max(1);
        let output = empty_device_contiguous_dtype(
            x.client.clone(),
            x.device.clone(),
            x.meta.shape.clone(),
            x.dtype,
        );
        // One workgroup per row, spread over two grid axes past the per-axis limit.
        let max_x = x.client.properties().hardware.max_cube_count.0 as usize;
        let (count_x, count_y) = (rows.min(max_x), rows.div_ceil(max_x));
        let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
        kernels::layer_norm_kernel::launch(
            &x.client.clone(),
            CubeCount::Static(count_x as u32, count_y as u32, 1),
            CubeDim::new_1d(LAYER_NORM_UNITS as u32),
            x.into_tensor_arg(),
            into_contiguous(gamma).into_tensor_arg(),
            into_contiguous(beta).into_tensor_arg(),
            output.clone().into_tensor_arg(),
            epsilon as f32,
            LAYER_NORM_UNITS,
            dtype,
        );
        output
    }

    fn attention(
        query: CubeTensor,
        key: CubeTensor,
        value: CubeTensor,
        causal: bool,
    ) -> CubeTensor {
        launch_attention(query, key, value, None, causal)
    }

    fn masked_attention(
        query: CubeTensor,
        key: CubeTensor,
        value: CubeTensor,
        mask: CubeTensor,
        causal: bool,
    ) -> CubeTensor {
        launch_attention(query, key, value, Some(mask), causal)
    }
}

fn launch_attention(
    query: CubeTensor,
    key: CubeTensor,
    value: CubeTensor,
    mask: Option<CubeTensor>,
    causal: bool,
) -> CubeTensor {
    let [batch, heads, queries, head_dim] = query.meta.shape.dims();
    let output = empty_device_contiguous_dtype(
        query.client.clone(),
        query.device.clone(),
        attention_output_shape(&query.meta.shape),
        query.dtype,
    );
    let client = query.client.clone();
    let rows = batch * heads * queries;
    let cube_dim = CubeDim::new(&client, rows);
    let cube_count = calculate_cube_count_elemwise(&client, rows, cube_dim);
    let scale = 1.0 / (head_dim as f32).sqrt();
    let float = burn::backend::cubecl::dtype_to_storage_type(query.dtype);
    let masked = mask.is_some();
    // Without a mask the kernel never reads its mask argument: the query stands in.
    let mask = mask.unwrap_or_else(|| query.clone());
    let mask_type = burn::backend::cubecl::dtype_to_storage_type(mask.dtype);
    kernels::attention_kernel::launch(
        &client,
        cube_count,
        cube_dim,
        query.into_tensor_arg(),
        key.into_tensor_arg(),
        value.into_tensor_arg(),
        mask.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        scale,
        head_dim,
        masked,
        causal,
        [float, mask_type],
    );
    output
}

mod kernels {
    //! The kernels, in cubecl's Rust dialect (compiled to WGSL / SPIR-V at first launch).

    use super::LOWEST_SCORE;
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;

    /// One workgroup normalizes one row of a contiguous `[rows, width]` tensor.
    #[cube(launch)]
    pub fn layer_norm_kernel<F: Float>(
        input: &Tensor<F>,
        gamma: &Tensor<F>,
        beta: &Tensor<F>,
        output: &mut Tensor<F>,
        epsilon: f32,
        #[comptime] units: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let width = input.shape(input.rank() - 1);
        let row = CUBE_POS;
        if row * width >= input.len() {
            terminate!();
        }
        let unit = UNIT_POS_X as usize;
        let base = row * width;
        let mut partial = Shared::<[F]>::new_slice(units);

        let mut sum = F::new(0.0);
        let mut i = unit;
        while i < width {
            sum += input[base + i];
            i += units;
        }
        let mean = block_sum::<F>(&mut partial, sum) / F::cast_from(width as u32);

        let mut squares = F::new(0.0);
        let mut i = unit;
        while i < width {
            let centered = input[base + i] - mean;
            squares += centered * centered;
            i += units;
        }
        let variance = block_sum::<F>(&mut partial, squares) / F::cast_from(width as u32);
        let inverse_deviation = F::new(1.0) / F::sqrt(variance + F::cast_from(epsilon));

        let mut i = unit;
        while i < width {
            output[base + i] = (input[base + i] - mean) * inverse_deviation * gamma[i] + beta[i];
            i += units;
        }
    }

    /// The sum of every unit's `value` in the workgroup, returned to all of them.
    #[cube]
    fn block_sum<F: Float>(partial: &mut Shared<[F]>, value: F) -> F {
        let unit = UNIT_POS_X as usize;
        partial[unit] = value;
        sync_cube();
        let mut stride = CUBE_DIM_X as usize / 2;
        while stride > 0 {
            if unit < stride {
                partial[unit] = partial[unit] + partial[unit + stride];
            }
            sync_cube();
            stride /= 2;
        }
        let total = partial[0];
        // Every unit has read the total before the slots are written again.
        sync_cube();
        total
    }

    /// One invocation computes one query row of one head: an online softmax over the keys.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn attention_kernel<F: Float, M: Numeric>(
        query: &Tensor<F>,
        key: &Tensor<F>,
        value: &Tensor<F>,
        mask: &Tensor<M>,
        output: &mut Tensor<F>,
        scale: f32,
        #[comptime] head_dim: usize,
        #[comptime] masked: bool,
        #[comptime] causal: bool,
        #[define(F, M)] _dtypes: [ElemType; 2],
    ) {
        let heads = query.shape(1);
        let queries = query.shape(2);
        let keys = key.shape(2);
        let row = ABSOLUTE_POS;
        if row >= query.shape(0) * heads * queries {
            terminate!();
        }
        let i = row % queries;
        let head = (row / queries) % heads;
        let b = row / (queries * heads);

        let q_base = b * query.stride(0) + head * query.stride(1) + i * query.stride(2);
        let k_base = b * key.stride(0) + head * key.stride(1);
        let v_base = b * value.stride(0) + head * value.stride(1);
        let (q_step, k_step, v_step) = (query.stride(3), key.stride(3), value.stride(3));

        let mut q_row = Array::<F>::new(head_dim);
        let mut acc = Array::<F>::new(head_dim);
        let scale = F::cast_from(scale);
        for d in 0..head_dim {
            q_row[d] = query[q_base + d * q_step] * scale;
            acc[d] = F::new(0.0);
        }

        let mut mask_base = 0usize;
        if masked {
            let mask_head = if mask.shape(1) == 1 { 0usize } else { head };
            mask_base = b * mask.stride(0) + mask_head * mask.stride(1) + i * mask.stride(2);
        }
        let mut end = keys;
        if causal {
            end = i + 1;
        }
        let mut running_max = F::new(LOWEST_SCORE);
        let mut total_weight = F::new(0.0);
        for j in 0..end {
            let mut keep = true;
            if masked {
                keep = u32::cast_from(mask[mask_base + j * mask.stride(3)]) == 0;
            }
            if keep {
                let k_row = k_base + j * key.stride(2);
                let mut score = F::new(0.0);
                for d in 0..head_dim {
                    score += q_row[d] * key[k_row + d * k_step];
                }
                let new_max = F::max(running_max, score);
                let correction = F::exp(running_max - new_max);
                let weight = F::exp(score - new_max);
                total_weight = total_weight * correction + weight;
                let v_row = v_base + j * value.stride(2);
                for d in 0..head_dim {
                    acc[d] = acc[d] * correction + weight * value[v_row + d * v_step];
                }
                running_max = new_max;
            }
        }

        // A row whose keys are all masked has no weight: it is written as zeros.
        let mut inverse = F::new(0.0);
        if total_weight > F::new(0.0) {
            inverse = F::new(1.0) / total_weight;
        }
        let out_base = ((b * queries + i) * heads + head) * head_dim;
        for d in 0..head_dim {
            output[out_base + d] = acc[d] * inverse;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::values;
    use crate::pipeline::Backend as Devices;
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::TensorData;

    /// The GPU device, where this machine has an adapter.
    fn gpu() -> Option<Device> {
        Devices::Wgpu
            .device()
            .inspect_err(|e| eprintln!("skipping GPU kernels: {e}"))
            .ok()
    }

    /// Reproducible values in [-2, 2).
    fn tensor<const D: usize>(shape: [usize; D], seed: usize, device: &Device) -> Tensor<D> {
        let count = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..count)
            .map(|i| ((i * 7919 + seed * 104729) % 4001) as f32 / 1000.0 - 2.0)
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let (a, b) = (values(a).unwrap(), values(b).unwrap());
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn layer_norm_matches_burns() {
        let Some(device) = gpu() else { return };
        // Widths below, at and above the workgroup, not multiples of it; offset rows.
        for (width, seed) in [(5, 1), (64, 2), (100, 3), (768, 4)] {
            let x = tensor([3, 7, width], seed, &device) * 3.0 + 1.5;
            let norm = LayerNormParams {
                gamma: tensor([width], seed + 10, &device),
                beta: tensor([width], seed + 20, &device),
            };
            let ours = norm.ours(&x).expect("an f32 GPU tensor");
            let want = burn::tensor::module::layer_norm(x, norm.gamma, Some(norm.beta), 1e-5);
            let diff = max_diff(ours, want);
            assert!(diff < 1e-5, "width {width}: max abs diff {diff}");
        }
    }

    struct LayerNormParams {
        gamma: Tensor<1>,
        beta: Tensor<1>,
    }

    impl LayerNormParams {
        fn ours<const D: usize>(&self, x: &Tensor<D>) -> Option<Tensor<D>> {
            let norm = crate::model::layers::LayerNorm {
                gamma: burn::module::Param::from_tensor(self.gamma.clone()),
                beta: Some(burn::module::Param::from_tensor(self.beta.clone())),
                epsilon: 1e-5,
            };
            try_layer_norm(&norm, x)
        }
    }

    /// burn's attention, heads merged back into `[batch, queries, heads * head_dim]`.
    fn burns(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        mask: Option<Tensor<4, Bool>>,
        causal: bool,
    ) -> Tensor<3> {
        let [batch, heads, queries, head_dim] = q.dims();
        let mask = mask.map(|m| m.expand([batch, heads, queries, k.dims()[2]]));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: causal,
        };
        attention(q, k, v, mask, None, options)
            .swap_dims(1, 2)
            .reshape([batch, queries, heads * head_dim])
    }

    #[test]
    fn attention_matches_burns() {
        let Some(device) = gpu() else { return };
        let (batch, heads, seq, head_dim) = (2, 3, 7, 8);
        // Q, K and V as strided views of one projection, as the encoder passes them.
        let qkv = tensor([batch, seq, 3 * heads * head_dim], 5, &device)
            .reshape([batch, seq, 3, heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| qkv.clone().narrow(0, i, 1).squeeze_dim::<4>(0);
        let (q, k, v) = (part(0), part(1), part(2));
        // Padding: the second sequence has 4 tokens; a [batch, 1, seq, seq] mask.
        let lengths = [seq, 4];
        let padding: Vec<bool> = (0..batch * seq * seq)
            .map(|i| i % seq >= lengths[i / (seq * seq)])
            .collect();
        let padding =
            Tensor::<4, Bool>::from_data(TensorData::new(padding, [batch, 1, seq, seq]), &device);
        for (mask, causal) in [
            (None, false),
            (None, true),
            (Some(padding.clone()), false),
            (Some(padding.clone()), true),
            (Some(padding.clone().expand([batch, heads, seq, seq])), true),
        ] {
            let ours = try_attention(&q, &k, &v, mask.as_ref(), causal).expect("GPU tensors");
            let want = burns(q.clone(), k.clone(), v.clone(), mask, causal);
            let diff = max_diff(ours, want);
            assert!(diff < 1e-5, "causal {causal}: max abs diff {diff}");
        }
        // One query over all keys (SigLIP's pooling head).
        let probe = q.clone().narrow(2, 0, 1);
        let ours = try_attention(&probe, &k, &v, None, false).expect("GPU tensors");
        let diff = max_diff(ours, burns(probe, k, v, None, false));
        assert!(diff < 1e-5, "one query: max abs diff {diff}");
    }

    #[test]
    fn other_devices_keep_burns_path() {
        let cpu = Device::flex();
        let x = Tensor::<4>::ones([1, 1, 2, 4], &cpu);
        assert!(try_attention(&x, &x, &x, None, false).is_none());
        if let Some(gpu) = gpu() {
            let x = Tensor::<4>::ones([1, 1, 2, 4], &gpu.autodiff());
            assert!(try_attention(&x, &x, &x, None, false).is_none());
        }
    }
}

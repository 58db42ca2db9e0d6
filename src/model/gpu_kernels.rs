//! Layer norm, attention and the linear layer as one GPU kernel each, on burn's cubecl backend
//! (wgpu, WebGPU) without autodiff. burn builds each from many kernels there: its layer norm is
//! a mean, a variance and four elementwise passes; its attention fallback is two matrix
//! products, a mask fill and a multi-pass softmax, with the heads copied into and out of it; its
//! fused matrix product needs cooperative matrices, which WGSL lacks, so the bias, activation
//! and residual each take a kernel of their own. A dispatch costs more than the work at CLIP's
//! sizes; an encoder layer here is seven:
//!
//! - [`try_layer_norm`]: one workgroup per row, sums reduced in shared memory, mean and variance
//!   in two passes (as PyTorch computes them);
//! - [`try_attention`]: one invocation per query row and head, an online softmax over the keys
//!   (no score matrix is written), reading Q, K and V straight from the Q/K/V projection's
//!   output and writing `[batch, queries, hidden]`, the layout the output projection reads;
//! - [`try_linear`]: `activation(x @ W + b)` or `x @ W + b + residual`, a tiled matrix product
//!   whose epilogue adds the bias, applies the activation and adds the residual (larger products:
//!   cubecl's matrix product, then the epilogue as a second kernel).
//!
//! They are opaque operations to burn's fusion (`#[backend_extension(Cube, Fusion)]`); the
//! kernels themselves are in [`kernels`]. The CPU backend and autodiff keep burn's composition.

use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::backend::{backend_extension, Backend, Dispatch, DispatchDevice};
use burn::tensor::{Bool, DType, Device, Shape, Tensor};

use super::dense::Dense;
use crate::config::Activation;
use burn_cubecl::cubecl::calculate_cube_count_elemwise;
use burn_cubecl::cubecl::prelude::{CubeCount, CubeDim};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::kernel::matmul::{matmul, MatmulStrategy};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::ops::reshape;
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

    /// `activation(x @ weight + bias)` over the last axis of `x` (`activation`: an
    /// [`activation_code`]).
    #[fusion(dtype = x, shape = linear_output_shape(x, weight))]
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        activation: u32,
    ) -> FloatTensor<Self>;

    /// `x @ weight + bias + residual` over the last axis of `x`.
    #[fusion(dtype = x, shape = residual)]
    fn linear_residual(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Multi-head scaled dot-product attention, read from Q/K/V projections: `query`
    /// (`[batch, queries, 3 * hidden]`) gives Q in its first `hidden` columns, `key_value`
    /// (`[batch, keys, 3 * hidden]`) K and V in the next two. Returns `[batch, queries, hidden]`.
    #[fusion(dtype = query, shape = attention_output_shape(query))]
    fn attention(
        query: FloatTensor<Self>,
        key_value: FloatTensor<Self>,
        heads: usize,
        causal: bool,
    ) -> FloatTensor<Self>;

    /// [`GpuKernels::attention`] with a mask (`[batch, heads or 1, queries, keys]`, true where
    /// a key is ignored).
    #[fusion(dtype = query, shape = attention_output_shape(query))]
    fn masked_attention(
        query: FloatTensor<Self>,
        key_value: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        heads: usize,
        causal: bool,
    ) -> FloatTensor<Self>;
}

fn linear_output_shape(x: &Shape, weight: &Shape) -> Shape {
    let mut shape = x.clone();
    let last = shape.num_dims() - 1;
    shape[last] = weight[1];
    shape
}

/// The linear kernel's code for an activation (0: none).
fn activation_code(activation: Option<Activation>) -> u32 {
    match activation {
        None => 0,
        Some(Activation::QuickGelu) => 1,
        Some(Activation::Gelu) => 2,
        Some(Activation::GeluTanh) => 3,
    }
}

fn attention_output_shape(query: &Shape) -> Shape {
    let [batch, queries, projected] = query.dims();
    Shape::new([batch, queries, projected / 3])
}

/// Whether `device` is a GPU (cubecl) device without autodiff.
fn gpu_inference(device: &Device) -> bool {
    !device.is_autodiff() && matches!(device.as_dispatch(), DispatchDevice::Cube(_))
}

/// Whether `x` is an f32 tensor on a GPU device, without autodiff.
fn on_gpu<const D: usize>(x: &Tensor<D>) -> bool {
    gpu_inference(&x.device()) && x.dtype() == DType::F32
}

/// `norm(x)` as one kernel on a GPU device, else [`None`] (also where the sizes disagree: burn's
/// layer norm reports it).
pub fn try_layer_norm<const D: usize>(
    norm: &super::layers::LayerNorm,
    x: &Tensor<D>,
) -> Option<Tensor<D>> {
    let gamma = norm.gamma.val();
    let beta = norm.beta.as_ref()?.val();
    let width = x.dims()[D - 1];
    let fits = gamma.dims() == [width] && beta.dims() == [width];
    if !fits || !on_gpu(x) || !on_gpu(&gamma) || !on_gpu(&beta) {
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

/// `activation(dense(x))`, or `dense(x) + residual`, as one kernel on a GPU device, else
/// [`None`] (also where the layer has no bias or the shapes disagree: burn's path reports it).
pub fn try_linear<const D: usize>(
    dense: &Dense,
    x: &Tensor<D>,
    activation: Option<Activation>,
    residual: Option<&Tensor<D>>,
) -> Option<Tensor<D>> {
    if !on_gpu(x) {
        return None;
    }
    let (weight, bias) = (dense.weight.val(), dense.bias.as_ref()?.val());
    let [k, n] = weight.dims();
    let fits = x.dims()[D - 1] == k && bias.dims() == [n];
    let mut out_dims = x.dims();
    out_dims[D - 1] = n;
    let residual_fits = residual.is_none_or(|r| r.dims() == out_dims && on_gpu(r));
    if !fits || !residual_fits || !on_gpu(&weight) || !on_gpu(&bias) {
        return None;
    }
    let [x, weight] = [x.clone().into_dispatch(), weight.into_dispatch()];
    let bias = bias.into_dispatch();
    let out = match residual {
        Some(residual) => <Dispatch as GpuKernels>::linear_residual(
            x,
            weight,
            bias,
            residual.clone().into_dispatch(),
        ),
        None => <Dispatch as GpuKernels>::linear(x, weight, bias, activation_code(activation)),
    };
    Some(Tensor::from_dispatch(out))
}

/// Multi-head attention (scaled by `1/sqrt(head_dim)`) as one kernel on a GPU device, else
/// [`None`]. `query`: `[batch, queries, 3 * hidden]`, Q in its first `hidden` columns;
/// `key_value`: `[batch, keys, 3 * hidden]`, K and V in the next two (both are Q/K/V projection
/// outputs); `mask`: `[batch, heads or 1, queries, keys]`, true where a key is ignored. Returns
/// `[batch, queries, hidden]`, the heads side by side. Sizes that disagree also give [`None`]
/// (burn's attention reports them).
pub fn try_attention(
    query: &Tensor<3>,
    key_value: &Tensor<3>,
    heads: usize,
    mask: Option<&Tensor<4, Bool>>,
    causal: bool,
) -> Option<Tensor<3>> {
    let fits = super::layers::attention_fits(query, key_value, heads, mask, causal);
    let on_gpu = on_gpu(query) && on_gpu(key_value);
    if !fits || !on_gpu || mask.is_some_and(|m| !gpu_inference(&m.device())) {
        return None;
    }
    let [query, key_value] = [query, key_value].map(|x| x.clone().into_dispatch());
    let out = match mask {
        Some(mask) => <Dispatch as GpuKernels>::masked_attention(
            query,
            key_value,
            mask.clone().into_dispatch(),
            heads,
            causal,
        ),
        None => <Dispatch as GpuKernels>::attention(query, key_value, heads, causal),
    };
    Some(Tensor::from_dispatch(out))
}

impl GpuKernels for CubeBackend {
    fn linear(x: CubeTensor, weight: CubeTensor, bias: CubeTensor, activation: u32) -> CubeTensor {
        launch_linear(x, weight, bias, None, activation)
    }

    fn linear_residual(
        x: CubeTensor,
        weight: CubeTensor,
        bias: CubeTensor,
        residual: CubeTensor,
    ) -> CubeTensor {
        launch_linear(x, weight, bias, Some(residual), 0)
    }

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
        key_value: CubeTensor,
        heads: usize,
        causal: bool,
    ) -> CubeTensor {
        launch_attention(query, key_value, None, heads, causal)
    }

    fn masked_attention(
        query: CubeTensor,
        key_value: CubeTensor,
        mask: CubeTensor,
        heads: usize,
        causal: bool,
    ) -> CubeTensor {
        launch_attention(query, key_value, Some(mask), heads, causal)
    }
}

/// Output rows, columns and reduction steps of one linear kernel workgroup's tile (chosen on
/// SwiftShader: against `64 x 64` tiles of `8 x 8` per invocation, the forward is as fast and
/// the pipelines compile in 2 s less).
const TILE_ROWS: usize = 32;
const TILE_COLUMNS: usize = 32;
const TILE_DEPTH: usize = 16;
/// Outputs each invocation computes (rows, columns): the workgroup is
/// `TILE_COLUMNS / UNIT_COLUMNS x TILE_ROWS / UNIT_ROWS` invocations.
const UNIT_ROWS: usize = 4;
const UNIT_COLUMNS: usize = 4;

/// Products of more multiply-adds than this run as cubecl's matrix product, then the epilogue
/// as a second kernel. The single kernel saves a dispatch, which is what small products cost (on
/// SwiftShader about 1 ms each), but it multiplies slower: on lavapipe 0.7 GMAC/s against
/// cubecl's 3.2 on ViT-B/32's products.
const SINGLE_KERNEL_LIMIT: usize = 1 << 20;

fn launch_linear(
    x: CubeTensor,
    weight: CubeTensor,
    bias: CubeTensor,
    residual: Option<CubeTensor>,
    activation: u32,
) -> CubeTensor {
    let (x, weight) = (into_contiguous(x), into_contiguous(weight));
    let [k, n] = weight.meta.shape.dims();
    let rows = x.meta.shape.num_elements() / k.max(1);
    let out_shape = linear_output_shape(&x.meta.shape, &weight.meta.shape);
    let client = x.client.clone();
    let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
    let with_residual = u32::from(residual.is_some());
    // Without a residual the kernels never read their residual argument: the bias stands in.
    let residual = residual.map_or_else(|| bias.clone(), into_contiguous);

    if rows.saturating_mul(k).saturating_mul(n) > SINGLE_KERNEL_LIMIT {
        let (out_dtype, x) = (x.dtype, reshape(x, Shape::new([rows, k])));
        let product = matmul(x, weight, None, MatmulStrategy::default(), out_dtype)
            .expect("cubecl's matrix product runs on f32 operands of matching sizes");
        let count = rows * n;
        let cube_dim = CubeDim::new(&client, count);
        kernels::epilogue_kernel::launch(
            &client,
            calculate_cube_count_elemwise(&client, count, cube_dim),
            cube_dim,
            product.clone().into_tensor_arg(),
            bias.into_tensor_arg(),
            residual.into_tensor_arg(),
            activation,
            with_residual,
            dtype,
        );
        return reshape(product, out_shape);
    }

    let output =
        empty_device_contiguous_dtype(client.clone(), x.device.clone(), out_shape, x.dtype);
    let cube_count = CubeCount::Static(
        n.div_ceil(TILE_COLUMNS) as u32,
        rows.div_ceil(TILE_ROWS) as u32,
        1,
    );
    let units = [TILE_COLUMNS / UNIT_COLUMNS, TILE_ROWS / UNIT_ROWS].map(|units| units as u32);
    kernels::linear_kernel::launch(
        &client,
        cube_count,
        CubeDim::new_2d(units[0], units[1]),
        x.into_tensor_arg(),
        weight.into_tensor_arg(),
        bias.into_tensor_arg(),
        residual.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        rows,
        activation,
        with_residual,
        dtype,
    );
    output
}

fn launch_attention(
    query: CubeTensor,
    key_value: CubeTensor,
    mask: Option<CubeTensor>,
    heads: usize,
    causal: bool,
) -> CubeTensor {
    let [batch, queries, projected] = query.meta.shape.dims();
    let head_dim = projected / 3 / heads;
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
        key_value.into_tensor_arg(),
        mask.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        scale,
        heads,
        head_dim,
        masked,
        causal,
        [float, mask_type],
    );
    output
}

mod kernels;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{merged_heads, LayerNorm};
    use crate::model::values;
    use crate::pipeline::Backend as Devices;
    use burn::module::Param;
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
        crate::model::max_abs_diff(&values(a).unwrap(), &values(b).unwrap())
    }

    #[test]
    fn layer_norm_matches_burns() {
        let Some(device) = gpu() else { return };
        // Widths below, at and above the workgroup, not multiples of it; offset rows.
        for (width, seed) in [(5, 1), (64, 2), (100, 3), (768, 4)] {
            let x = tensor([3, 7, width], seed, &device) * 3.0 + 1.5;
            let (gamma, beta) = (
                tensor([width], seed + 10, &device),
                tensor([width], seed + 20, &device),
            );
            let norm = LayerNorm {
                gamma: Param::from_tensor(gamma.clone()),
                beta: Some(Param::from_tensor(beta.clone())),
                epsilon: 1e-5,
            };
            let ours = try_layer_norm(&norm, &x).expect("an f32 GPU tensor");
            let want = burn::tensor::module::layer_norm(x, gamma, Some(beta), 1e-5);
            let diff = max_diff(ours, want);
            assert!(diff < 1e-5, "width {width}: max abs diff {diff}");
        }
    }

    /// burn's attention, given the mask expanded to every head (the kernel is tested with both
    /// shapes of mask).
    fn burns(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        mask: Option<Tensor<4, Bool>>,
        causal: bool,
    ) -> Tensor<3> {
        let [batch, heads, queries, _] = q.dims();
        let mask = mask.map(|m| m.expand([batch, heads, queries, k.dims()[2]]));
        merged_heads(q, k, v, mask, causal)
    }

    #[test]
    fn attention_matches_burns() {
        let Some(device) = gpu() else { return };
        let (batch, heads, seq, head_dim) = (2, 3, 7, 8);
        let hidden = heads * head_dim;
        let qkv = tensor([batch, seq, 3 * hidden], 5, &device);
        // burn's attention on the heads split out of the projection.
        let split = |x: &Tensor<3>, part: usize| {
            let [batch, tokens, _] = x.dims();
            x.clone()
                .narrow(2, part * hidden, hidden)
                .reshape([batch, tokens, heads, head_dim])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (split(&qkv, 0), split(&qkv, 1), split(&qkv, 2));
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
            let ours = try_attention(&qkv, &qkv, heads, mask.as_ref(), causal).expect("GPU");
            let want = burns(q.clone(), k.clone(), v.clone(), mask, causal);
            let diff = max_diff(ours, want);
            assert!(diff < 1e-5, "causal {causal}: max abs diff {diff}");
        }
        // One query over all keys from another projection (SigLIP's pooling head), read
        // through a strided view.
        let probe = tensor([batch, 2, 3 * hidden], 6, &device).narrow(1, 1, 1);
        let ours = try_attention(&probe, &qkv, heads, None, false).expect("GPU tensors");
        let diff = max_diff(ours, burns(split(&probe, 0), k, v, None, false));
        assert!(diff < 1e-5, "one query: max abs diff {diff}");
    }

    #[test]
    fn linear_matches_burns() {
        let Some(device) = gpu() else { return };
        // Sizes that fill no tile exactly, one deeper than several tile depths, one above
        // SINGLE_KERNEL_LIMIT (cubecl's product, then the epilogue kernel).
        let sizes = [(21, 100, 70), (3, 5, 130), (70, 300, 40), (40, 600, 200)];
        let single = |&(rows, k, n): &(usize, usize, usize)| rows * k * n <= SINGLE_KERNEL_LIMIT;
        assert!(sizes.iter().any(single) && !sizes.iter().all(single));
        for (seed, (rows, k, n)) in sizes.into_iter().enumerate() {
            let mut dense = Dense::new(k, n, true, &device);
            dense.weight = burn::module::Param::from_tensor(tensor([k, n], seed, &device) * 0.1);
            dense.bias = Some(burn::module::Param::from_tensor(tensor(
                [n],
                seed + 1,
                &device,
            )));
            let bias = dense.bias.as_ref().unwrap().val();
            let burns = |x: Tensor<3>| {
                burn::tensor::module::linear(x, dense.weight.val(), Some(bias.clone()))
            };
            // A strided view as input: the kernel reads it made contiguous.
            let x = tensor([1, rows, k + 3], seed + 2, &device).narrow(2, 1, k);
            let residual = tensor([1, rows, n], seed + 3, &device);
            let cases = [
                (None, None, burns(x.clone())),
                (Some(Activation::QuickGelu), None, burns(x.clone())),
                (Some(Activation::Gelu), None, burns(x.clone())),
                (Some(Activation::GeluTanh), None, burns(x.clone())),
                (None, Some(&residual), burns(x.clone()) + residual.clone()),
            ];
            for (activation, residual, linear) in cases {
                let want = match activation {
                    Some(activation) => crate::model::layers::activate(linear, activation),
                    None => linear,
                };
                let ours = try_linear(&dense, &x, activation, residual).expect("GPU tensors");
                let diff = max_diff(ours, want);
                let case = format!(
                    "{rows}x{k}x{n} {activation:?} residual {}",
                    residual.is_some()
                );
                assert!(diff < 1e-4, "{case}: max abs diff {diff}");
            }
        }
    }

    #[test]
    fn other_devices_keep_burns_path() {
        let cpu = Device::flex();
        let x = Tensor::<3>::ones([1, 2, 6], &cpu);
        assert!(try_attention(&x, &x, 2, None, false).is_none());
        if let Some(gpu) = gpu() {
            let x = Tensor::<3>::ones([1, 2, 6], &gpu.autodiff());
            assert!(try_attention(&x, &x, 2, None, false).is_none());
        }
    }
}

//! The GPU kernels of [`super`], in cubecl's Rust dialect (compiled to WGSL or SPIR-V at their
//! first launch).

use super::{LOWEST_SCORE, TILE_COLUMNS, TILE_DEPTH, TILE_ROWS, UNIT_COLUMNS, UNIT_ROWS};
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

/// One workgroup computes a `TILE_ROWS x TILE_COLUMNS` tile of `x @ weight` (`x`:
/// `[rows, k]`, `weight`: `[k, n]`, both contiguous), staging `TILE_DEPTH`-deep slices of
/// both in shared memory; each invocation keeps `4 x 4` sums in registers, then writes
/// `activation(sum + bias)` (+ `residual`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn linear_kernel<F: Float>(
    x: &Tensor<F>,
    weight: &Tensor<F>,
    bias: &Tensor<F>,
    residual: &Tensor<F>,
    output: &mut Tensor<F>,
    rows: usize,
    activation: u32,
    with_residual: u32,
    #[define(F)] _dtype: ElemType,
) {
    let k = weight.shape(0);
    let n = weight.shape(1);
    let column_units = TILE_COLUMNS / UNIT_COLUMNS;
    let units = column_units * (TILE_ROWS / UNIT_ROWS);
    let (tx, ty) = (UNIT_POS_X as usize, UNIT_POS_Y as usize);
    let unit = ty * column_units + tx;
    let row0 = CUBE_POS_Y as usize * TILE_ROWS;
    let column0 = CUBE_POS_X as usize * TILE_COLUMNS;

    let mut x_tile = Shared::<[F]>::new_slice(TILE_ROWS * TILE_DEPTH);
    let mut w_tile = Shared::<[F]>::new_slice(TILE_DEPTH * TILE_COLUMNS);
    let mut sums = Array::<F>::new(UNIT_ROWS * UNIT_COLUMNS);
    #[unroll]
    for i in 0..UNIT_ROWS * UNIT_COLUMNS {
        sums[i] = F::new(0.0);
    }

    let mut k0 = 0usize;
    while k0 < k {
        // Rows `row0..` of `x` and columns `column0..` of `weight`, depths `k0..` of both.
        stage::<F>(
            x,
            &mut x_tile,
            rows,
            row0,
            k0,
            TILE_ROWS,
            TILE_DEPTH,
            unit,
            units,
        );
        stage::<F>(
            weight,
            &mut w_tile,
            k,
            k0,
            column0,
            TILE_DEPTH,
            TILE_COLUMNS,
            unit,
            units,
        );
        sync_cube();
        #[unroll]
        for depth in 0..TILE_DEPTH {
            #[unroll]
            for i in 0..UNIT_ROWS {
                let a = x_tile[(ty * UNIT_ROWS + i) * TILE_DEPTH + depth];
                #[unroll]
                for j in 0..UNIT_COLUMNS {
                    let b = w_tile[depth * TILE_COLUMNS + tx * UNIT_COLUMNS + j];
                    sums[i * UNIT_COLUMNS + j] += a * b;
                }
            }
        }
        sync_cube();
        k0 += TILE_DEPTH;
    }

    #[unroll]
    for i in 0..UNIT_ROWS {
        let row = row0 + ty * UNIT_ROWS + i;
        #[unroll]
        for j in 0..UNIT_COLUMNS {
            let column = column0 + tx * UNIT_COLUMNS + j;
            if row < rows && column < n {
                let mut value =
                    activate::<F>(sums[i * UNIT_COLUMNS + j] + bias[column], activation);
                if with_residual != 0 {
                    value += residual[row * n + column];
                }
                output[row * n + column] = value;
            }
        }
    }
}

/// Copy the `height x width` block at (`row0`, `column0`) of `matrix` (row-major, `rows` rows)
/// into `tile`, zeros outside the matrix; each of the workgroup's `units` invocations copies
/// every `units`-th value.
#[cube]
#[allow(clippy::too_many_arguments)]
fn stage<F: Float>(
    matrix: &Tensor<F>,
    tile: &mut Shared<[F]>,
    rows: usize,
    row0: usize,
    column0: usize,
    #[comptime] height: usize,
    #[comptime] width: usize,
    unit: usize,
    #[comptime] units: usize,
) {
    let columns = matrix.shape(matrix.rank() - 1);
    #[unroll]
    for part in 0..height * width / units {
        let e = unit + part * units;
        let (row, column) = (row0 + e / width, column0 + e % width);
        let mut value = F::new(0.0);
        if row < rows && column < columns {
            value = matrix[row * columns + column];
        }
        tile[e] = value;
    }
}

/// `activation(product + bias)` (+ `residual`) in place, over a contiguous `[rows, n]`
/// product: the linear kernel's epilogue after cubecl's matrix product.
#[cube(launch)]
pub fn epilogue_kernel<F: Float>(
    product: &mut Tensor<F>,
    bias: &Tensor<F>,
    residual: &Tensor<F>,
    activation: u32,
    with_residual: u32,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i >= product.len() {
        terminate!();
    }
    let mut value = activate::<F>(product[i] + bias[i % bias.len()], activation);
    if with_residual != 0 {
        value += residual[i];
    }
    product[i] = value;
}

/// The activation of [`super::activation_code`] `code`.
#[cube]
fn activate<F: Float>(x: F, code: u32) -> F {
    let mut y = x;
    if code == 1 {
        // QuickGELU: x * sigmoid(1.702 x)
        y = x / (F::new(1.0) + F::exp(F::new(-1.702) * x));
    } else if code == 2 {
        // GELU: x * Phi(x)
        y = F::new(0.5) * x * (F::new(1.0) + F::erf(x * F::new(core::f32::consts::FRAC_1_SQRT_2)));
    } else if code == 3 {
        // tanh-GELU
        let inner = F::new(0.797_884_6) * (x + F::new(0.044715) * x * x * x);
        y = F::new(0.5) * x * (F::new(1.0) + F::tanh(inner));
    }
    y
}

/// One invocation computes one query row of one head: an online softmax over the keys.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn attention_kernel<F: Float, M: Numeric>(
    query: &Tensor<F>,
    key_value: &Tensor<F>,
    mask: &Tensor<M>,
    output: &mut Tensor<F>,
    scale: f32,
    heads: usize,
    #[comptime] head_dim: usize,
    #[comptime] masked: bool,
    #[comptime] causal: bool,
    #[define(F, M)] _dtypes: [ElemType; 2],
) {
    let queries = query.shape(1);
    let keys = key_value.shape(1);
    let row = ABSOLUTE_POS;
    if row >= query.shape(0) * heads * queries {
        terminate!();
    }
    let i = row % queries;
    let head = (row / queries) % heads;
    let b = row / (queries * heads);
    let hidden = heads * head_dim;

    // Column `c` of token `t` of item `b` is at `b * stride(0) + t * stride(1) + c * stride(2)`.
    let q_base = b * query.stride(0) + i * query.stride(1) + head * head_dim * query.stride(2);
    let kv_item = b * key_value.stride(0);
    let k_base = kv_item + (hidden + head * head_dim) * key_value.stride(2);
    let v_base = kv_item + (2 * hidden + head * head_dim) * key_value.stride(2);
    let q_step = query.stride(2);
    let kv_step = key_value.stride(2);
    let kv_token = key_value.stride(1);

    let mut q_row = Array::<F>::new(head_dim);
    let mut acc = Array::<F>::new(head_dim);
    let scale = F::cast_from(scale);
    #[unroll]
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
            let k_row = k_base + j * kv_token;
            let mut score = F::new(0.0);
            #[unroll]
            for d in 0..head_dim {
                score += q_row[d] * key_value[k_row + d * kv_step];
            }
            let new_max = F::max(running_max, score);
            let correction = F::exp(running_max - new_max);
            let weight = F::exp(score - new_max);
            total_weight = total_weight * correction + weight;
            let v_row = v_base + j * kv_token;
            #[unroll]
            for d in 0..head_dim {
                acc[d] = acc[d] * correction + weight * key_value[v_row + d * kv_step];
            }
            running_max = new_max;
        }
    }

    // A row whose keys are all masked has no weight: it is written as zeros.
    let mut inverse = F::new(0.0);
    if total_weight > F::new(0.0) {
        inverse = F::new(1.0) / total_weight;
    }
    let out_base = (b * queries + i) * hidden + head * head_dim;
    #[unroll]
    for d in 0..head_dim {
        output[out_base + d] = acc[d] * inverse;
    }
}

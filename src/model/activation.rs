//! QuickGELU and tanh-GELU (and their derivatives) over slices of f32, written as plain
//! arithmetic (no library calls) so that the compiler vectorizes them: to AVX-512 / AVX2
//! inside the CPU kernels of [`super::panels`], to the baseline's SIMD elsewhere (simd128 in
//! wasm). Exact GELU needs `erf` and stays with burn.

use crate::config::Activation;

/// Apply QuickGELU or tanh-GELU to every value. Each arm is a loop of plain arithmetic over
/// [`exp`], which the compiler vectorizes (the standard `exp` is a scalar library call).
#[inline(always)]
pub fn apply_activation(values: &mut [f32], activation: Activation) {
    match activation {
        Activation::QuickGelu => values.iter_mut().for_each(|v| *v = quick_gelu(*v)),
        Activation::GeluTanh => values.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
        Activation::Gelu => unreachable!("exact GELU is not fused"),
    }
}

/// `grad *= activation'(x)` for every value (the backward pass of [`apply_activation`]).
#[inline(always)]
pub fn activation_backward(x: &[f32], grad: &mut [f32], activation: Activation) {
    let pairs = x.iter().zip(grad.iter_mut());
    match activation {
        Activation::QuickGelu => pairs.for_each(|(x, g)| *g *= quick_gelu_derivative(*x)),
        Activation::GeluTanh => pairs.for_each(|(x, g)| *g *= gelu_tanh_derivative(*x)),
        Activation::Gelu => unreachable!("exact GELU is not fused"),
    }
}

/// `x * sigmoid(1.702 x)`.
#[inline(always)]
fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + exp(-1.702 * x))
}

/// GELU with the tanh approximation: `0.5 x (1 + tanh(y))`, with `1 + tanh(y) = 2 - 2 / (e^2y + 1)`.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    x * (1.0 - 1.0 / (exp(2.0 * y) + 1.0))
}

/// `d/dx x s(x)` with `s(x) = sigmoid(1.702 x)`: `s + 1.702 x s (1 - s)`.
#[inline(always)]
fn quick_gelu_derivative(x: f32) -> f32 {
    let s = 1.0 / (1.0 + exp(-1.702 * x));
    s + 1.702 * x * s * (1.0 - s)
}

/// `d/dx 0.5 x (1 + t)` with `t = tanh(y)`, `y = c (x + 0.044715 x^3)`:
/// `0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2)`.
#[inline(always)]
fn gelu_tanh_derivative(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    let t = 1.0 - 2.0 / (exp(2.0 * y) + 1.0);
    let dy = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044_715 * x * x);
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dy
}

/// `e^x` without branches or library calls, so that loops over it vectorize: `e^x = 2^n e^f`
/// with `n = round(x / ln 2)` (the exponent bits) and `f = x - n ln 2` computed in two parts
/// (Cody and Waite's reduction, so `f` is exact to a few ulps), `e^f` by its Taylor series to
/// degree 7 (`|f| <= 0.35`: truncation below 1e-8). Inputs are clamped to where `e^x` is a
/// finite normal number.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by adding and subtracting 1.5 * 2^23 (plain additions, where `round`
    // would be a library call on baseline x86-64).
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let f = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + f * (1.0
            + f * (1.0 / 2.0
                + f * (1.0 / 6.0
                    + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f / 5040.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulps_of_std() {
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let (ours, std) = (exp(x), x.exp());
            assert!(
                (ours - std).abs() <= 2.5e-7 * std,
                "exp({x}): {ours} vs {std}"
            );
        }
        assert!(exp(-1e9) >= 0.0 && exp(1e9).is_finite());
    }
}

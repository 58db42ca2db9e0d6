//! Multi-head attention for inference on burn's CPU backend (Flex), natively and in wasm.
//!
//! burn-flex's attention takes heads as `[batch, heads, seq, head_dim]`, so every layer copied
//! Q, K and V out of the Q/K/V projection into that layout and the output back into
//! `[batch, seq, hidden]`, and multiplied each head through `gemm` with a scalar `exp` between.
//! Here Q, K and V are read in place from the projection's output and each head's output is
//! written straight into its columns of `[batch, queries, hidden]`, the layout the output
//! projection reads; one work item per (batch item, head), split across threads; the loops are
//! plain arithmetic that the compiler vectorizes (to AVX-512 / AVX2 where the CPU has them).
//!
//! Plain (non-autodiff) f32 Flex tensors with contiguous data only; everything else, training
//! included, takes burn's attention.

use burn::backend::Flex;
use burn::tensor::{Bool, Shape, Tensor, TensorData};
use burn_flex::FlexTensor;

use super::activation::exp;
use super::cpu_linear::{for_each_part, with_f32_values};
use super::layers::attention_fits;

/// Attention as [`super::gpu_kernels::try_attention`] computes it: `query` (`[batch, queries,
/// 3 * hidden]`) gives Q in its first `hidden` columns, `key_value` (`[batch, keys, 3 *
/// hidden]`) K and V in the next two; `mask` (`[batch, 1 or heads, queries, keys]`, true where a
/// key is ignored); `causal`: query `i` sees keys `0..=i`. Returns `[batch, queries, hidden]`;
/// `None` where the tensors are not plain f32 CPU tensors or the sizes disagree
/// ([`attention_fits`]). A query row whose keys are all masked gets zeros, as burn's attention
/// gives it.
pub fn try_attention(
    query: &Tensor<3>,
    key_value: &Tensor<3>,
    heads: usize,
    mask: Option<&Tensor<4, Bool>>,
    causal: bool,
) -> Option<Tensor<3>> {
    let ([batch, queries, projected], [_, keys, _]) = (query.dims(), key_value.dims());
    // (No keys: `gemm` would leave the output unwritten; burn's attention reports it.)
    if !attention_fits(query, key_value, heads, mask, causal) || keys == 0 {
        return None;
    }
    let mask_heads = mask.map_or(0, |m| m.dims()[1]);
    let sizes = Sizes {
        batch,
        queries,
        keys,
        heads,
        head_dim: projected / 3 / heads,
        mask_heads,
        causal,
    };
    let out = with_f32_values(query, |q| {
        with_f32_values(key_value, |kv| {
            // The mask's values: `batch × mask_heads × queries × keys` flags (the text tower
            // passes one mask for every head, so this is small).
            let mask = mask.map(|m| m.clone().into_data().iter::<bool>().collect::<Vec<_>>());
            sizes.attend(q, kv, mask.as_deref())
        })
    })???;
    let out = TensorData::new(out, Shape::from([batch, queries, sizes.hidden()]));
    Some(Tensor::from_primitive::<Flex>(FlexTensor::from_data(out)))
}

/// The sizes of one attention call.
#[derive(Clone, Copy)]
struct Sizes {
    batch: usize,
    queries: usize,
    keys: usize,
    heads: usize,
    head_dim: usize,
    /// 0 without a mask, else 1 (one mask for every head) or `heads`.
    mask_heads: usize,
    causal: bool,
}

impl Sizes {
    fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }

    /// `[batch, queries, hidden]`, or `None` where a slice is shorter than the sizes say.
    fn attend(&self, query: &[f32], key_value: &[f32], mask: Option<&[bool]>) -> Option<Vec<f32>> {
        let projected = 3 * self.hidden();
        let mask_len = self.batch * self.mask_heads * self.queries * self.keys;
        if query.len() != self.batch * self.queries * projected
            || key_value.len() != self.batch * self.keys * projected
            || mask.map_or(0, <[bool]>::len) != mask_len
        {
            return None;
        }
        let mut out = Vec::<f32>::with_capacity(self.batch * self.queries * self.hidden());
        let out_ptr = out.as_mut_ptr() as usize;
        for_each_part(0..self.batch * self.heads, |item| {
            let (b, h) = (item / self.heads, item % self.heads);
            // SAFETY: `out` has room for `batch x queries x hidden` values; item (b, h) writes
            // only head h's columns of batch item b's rows, so the items write disjoint values,
            // and together they write every value.
            unsafe { self.head(query, key_value, mask, b, h, out_ptr as *mut f32) }
        });
        // SAFETY: every value was written above.
        unsafe { out.set_len(self.batch * self.queries * self.hidden()) };
        Some(out)
    }

    /// Head `h` of batch item `b`, on this CPU's widest vector instructions.
    ///
    /// # Safety
    /// The slices have the lengths [`Sizes::attend`] checks; `out` points at `batch x queries x
    /// hidden` writable values.
    unsafe fn head(
        &self,
        query: &[f32],
        key_value: &[f32],
        mask: Option<&[bool]>,
        b: usize,
        h: usize,
        out: *mut f32,
    ) {
        let args = (self, query, key_value, mask, b, h, out);
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return x86::avx512(args);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return x86::avx2(args);
            }
        }
        head_body(args)
    }
}

/// [`Sizes::head`]'s arguments.
type HeadArgs<'a> = (
    &'a Sizes,
    &'a [f32],
    &'a [f32],
    Option<&'a [bool]>,
    usize,
    usize,
    *mut f32,
);

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{head_body, HeadArgs};

    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(args: HeadArgs) {
        head_body(args)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(args: HeadArgs) {
        head_body(args)
    }
}

/// One head of one batch item: the scores `Q K^T` by one matrix product, a softmax along each
/// row (masked keys, and with `causal` later ones, left out), then the output `P V` by a second
/// product written into the head's columns of the output. Both products read Q, K and V in place
/// through strides. Inlined into each instruction set's entry point, so that the softmax's loops
/// vectorize for it.
#[inline(always)]
unsafe fn head_body((sizes, query, key_value, mask, b, h, out): HeadArgs) {
    let Sizes {
        queries,
        keys,
        head_dim,
        mask_heads,
        causal,
        ..
    } = *sizes;
    let hidden = sizes.hidden();
    let projected = 3 * hidden;
    let q = query.as_ptr().add(b * queries * projected + h * head_dim);
    let k = key_value
        .as_ptr()
        .add(b * keys * projected + hidden + h * head_dim);
    let v = key_value
        .as_ptr()
        .add(b * keys * projected + 2 * hidden + h * head_dim);
    let out = out.add(b * queries * hidden + h * head_dim);
    let mut scores = vec![0.0f32; queries * keys];
    let scale = 1.0 / (head_dim as f32).sqrt();
    // scores[queries, keys] = scale * Q @ K^T (K^T read from K's rows through strides).
    gemm::gemm(
        queries,
        keys,
        head_dim,
        scores.as_mut_ptr(),
        1,
        keys as isize,
        false,
        q,
        1,
        projected as isize,
        k,
        projected as isize,
        1,
        0.0,
        scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
    let mask = mask.map(|m| {
        let per_head = queries * keys;
        let at = (b * mask_heads + if mask_heads == 1 { 0 } else { h }) * per_head;
        &m[at..at + per_head]
    });
    for (i, row) in scores.chunks_exact_mut(keys).enumerate() {
        let seen = if causal { i + 1 } else { keys };
        row[seen..].fill(f32::NEG_INFINITY);
        if let Some(mask) = mask {
            for (s, masked) in row.iter_mut().zip(&mask[i * keys..]) {
                if *masked {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
        softmax(row);
    }
    // out[queries, head_dim] = P @ V, rows `hidden` apart.
    gemm::gemm(
        queries,
        head_dim,
        keys,
        out,
        1,
        hidden as isize,
        false,
        scores.as_ptr(),
        1,
        keys as isize,
        v,
        1,
        projected as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// Softmax of one row of scores in place; `-inf` marks a key left out. A row without any key
/// becomes zeros (as burn's attention leaves it). Each pass is a loop the compiler vectorizes
/// (the reductions through [`fold_lanes`]).
#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = fold_lanes(row, f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    for s in row.iter_mut() {
        *s = if *s == f32::NEG_INFINITY {
            0.0
        } else {
            exp(*s - max)
        };
    }
    let inv = 1.0 / fold_lanes(row, 0.0, |a, b| a + b);
    row.iter_mut().for_each(|s| *s *= inv);
}

/// `f` folded over `values` as 16 interleaved partial results, then those folded: a loop the
/// compiler vectorizes (a single running result would chain every step on the previous one).
#[inline(always)]
fn fold_lanes(values: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [init; 16];
    let chunks = values.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, value) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, *value);
        }
    }
    for value in rest {
        lanes[0] = f(lanes[0], *value);
    }
    lanes.into_iter().fold(init, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::merged_heads;
    use crate::model::{max_abs_diff, values};
    use burn::tensor::{Device, Distribution};

    /// Heads `[batch, heads, seq, head_dim]` of `part` (0: Q, 1: K, 2: V) of a projection.
    fn heads_of(x: &Tensor<3>, part: usize, heads: usize) -> Tensor<4> {
        let [batch, seq, projected] = x.dims();
        let hidden = projected / 3;
        x.clone()
            .narrow(2, part * hidden, hidden)
            .reshape([batch, seq, heads, hidden / heads])
            .swap_dims(1, 2)
    }

    #[test]
    fn matches_burns_attention() {
        let device = Device::flex();
        // (batch, queries, keys, heads, head_dim, mask heads (0: no mask), causal)
        for (batch, queries, keys, heads, head_dim, mask_heads, causal) in [
            (2, 5, 5, 2, 4, 0, false),
            (2, 7, 7, 3, 8, 1, true),
            (1, 1, 9, 2, 4, 0, false),
            (3, 6, 6, 2, 16, 2, false),
            (2, 12, 12, 4, 64, 1, true),
            (2, 50, 50, 3, 64, 0, false),
        ] {
            let hidden = heads * head_dim;
            let random = |seq| {
                Tensor::<3>::random(
                    [batch, seq, 3 * hidden],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                )
            };
            let (query, key_value) = (random(queries), random(keys));
            // Scattered masked keys, and in the last batch item a query row with every key
            // masked (zeros, as burn gives it).
            let mask = (mask_heads > 0).then(|| {
                let len = batch * mask_heads * queries * keys;
                let values: Vec<bool> = (0..len)
                    .map(|i| (i * 7) % 5 == 1 || i >= len - keys)
                    .collect();
                Tensor::<4, Bool>::from_data(
                    TensorData::new(values, [batch, mask_heads, queries, keys]),
                    &device,
                )
            });
            let ours = try_attention(&query, &key_value, heads, mask.as_ref(), causal)
                .expect("applies to plain CPU tensors");
            let burns = merged_heads(
                heads_of(&query, 0, heads),
                heads_of(&key_value, 1, heads),
                heads_of(&key_value, 2, heads),
                mask.map(|m| m.expand([batch, heads, queries, keys])),
                causal,
            );
            assert_eq!(ours.dims(), [batch, queries, hidden]);
            let diff = max_abs_diff(&values(ours).unwrap(), &values(burns).unwrap());
            assert!(
                diff < 1e-5,
                "[{batch}, {queries}, {keys}] x {heads} heads of {head_dim}, mask heads \
                 {mask_heads}, causal {causal}: differs by {diff}"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let device = Device::flex();
        let x = Tensor::<3>::zeros([1, 4, 12], &device);
        assert!(
            try_attention(&x, &x, 5, None, false).is_none(),
            "12 is not 3 x 5 heads"
        );
        let no_keys = Tensor::<3>::zeros([1, 0, 12], &device);
        assert!(
            try_attention(&x, &no_keys, 2, None, false).is_none(),
            "no keys"
        );
        let longer = Tensor::<3>::zeros([1, 6, 12], &device);
        assert!(
            try_attention(&x, &longer, 2, None, true).is_none(),
            "causal needs as many queries as keys"
        );
        let mask = Tensor::<4, Bool>::empty([1, 1, 4, 5], &device);
        assert!(
            try_attention(&x, &x, 2, Some(&mask), false).is_none(),
            "the mask's keys disagree"
        );
    }
}

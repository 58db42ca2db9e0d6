//! Weights packed in column panels, and the SIMD kernels that multiply by them (CPU backend,
//! natively and in wasm).
//!
//! A `[k, n]` weight becomes `ceil(n / width)` panels, each the `k` rows of `width` consecutive
//! output columns, stored one after another (the last one padded with zeros). The kernel reads
//! a panel front to back for every few rows of input, so the weights stream through the cache
//! in order, as ONNX Runtime's MLAS does with the weights it packs at load. `gemm`, given the
//! row-major matrix, reads `width`-wide strips `n` floats apart instead, which the hardware
//! prefetches poorly (measured in `docs/performance.md`).

use std::ops::Range;

use super::activation::apply_activation;
use crate::config::Activation;

/// The SIMD instruction set a panel kernel runs on; it fixes the panel width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// x86-64 AVX-512: panels of two 16-lane vectors.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// x86-64 AVX2 with FMA: panels of two 8-lane vectors.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// wasm SIMD: panels of three 4-lane vectors.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

impl Kernel {
    /// Every kernel of this target, the widest first.
    const ALL: &[Kernel] = &[
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2,
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Kernel::Simd128,
    ];

    /// The kernel this CPU runs, if it has one (elsewhere weights stay row-major for `gemm`).
    pub fn detect() -> Option<Kernel> {
        Kernel::ALL
            .iter()
            .copied()
            .find(|kernel| kernel.is_supported())
    }

    /// Whether this CPU has the kernel's instructions.
    fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => true,
        }
    }

    /// The kernel for panels of `width` columns, if this CPU runs it.
    pub fn for_width(width: usize) -> Option<Kernel> {
        Kernel::detect().filter(|kernel| kernel.width() == width)
    }

    /// Output columns per panel.
    pub fn width(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => 32,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => 16,
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => 12,
        }
    }

    /// The columns of `panels` of `product`'s output, written to `out` (`m x n`, row-major).
    ///
    /// # Safety
    /// `product` holds slices of the sizes it documents, its weight packed by [`pack`] with
    /// this kernel's width; `out` points at `m * n` writable values, of which only the
    /// columns of `panels` are written (so that threads can share `out` with disjoint panel
    /// ranges). They may be uninitialized: every value of those columns is written.
    pub unsafe fn run(self, product: &Product, panels: Range<usize>, out: *mut f32) {
        let Product { m, k, n, .. } = *product;
        let width = self.width();
        assert!(
            product.x.len() >= m * k
                && product.packed.len() >= n.div_ceil(width) * k * width
                && product.bias.is_none_or(|b| b.len() == n)
                && panels.end <= n.div_ceil(width),
            "a panel product's sizes disagree"
        );
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => x86::avx512(product, panels, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::avx2(product, panels, out),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => wasm::simd128(product, panels, out),
        }
    }
}

/// `activation(x @ w + bias)` with `w` packed in panels: what [`Kernel::run`] computes.
#[derive(Debug, Clone, Copy)]
pub struct Product<'a> {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// `[m, k]`, row-major.
    pub x: &'a [f32],
    /// `[k, n]` in panels ([`pack`]).
    pub packed: &'a [f32],
    /// `[n]`.
    pub bias: Option<&'a [f32]>,
    /// Applied to each tile right after it is computed, while it is in cache. Not exact GELU.
    pub activation: Option<Activation>,
}

/// A row-major `[k, n]` matrix as panels `width` columns wide (see the module doc). The
/// matrix is read in order, row by row (each row scattered to its panels). `None` where there
/// is nothing to pack, the sizes disagree or the memory for the panels cannot be had (the
/// caller keeps the row-major matrix: packing is an optimization, never a reason to fail).
pub fn pack(k: usize, n: usize, w: &[f32], width: usize) -> Option<Vec<f32>> {
    let panel_len = k.checked_mul(width)?;
    let len = n.div_ceil(width).checked_mul(panel_len)?;
    if n == 0 || k.checked_mul(n) != Some(w.len()) {
        return None;
    }
    let mut packed = Vec::new();
    packed.try_reserve_exact(len).ok()?;
    packed.resize(len, 0.0);
    for (row, values) in w.chunks_exact(n).enumerate() {
        for (panel, part) in values.chunks(width).enumerate() {
            let start = panel * panel_len + row * width;
            packed[start..start + part.len()].copy_from_slice(part);
        }
    }
    Some(packed)
}

/// The row-major `[k, n]` matrix back from its panels.
pub fn unpack(k: usize, n: usize, packed: &[f32], width: usize) -> Vec<f32> {
    let mut w = vec![0.0; k * n];
    for (panel, block) in packed.chunks_exact(k * width).enumerate() {
        let first = panel * width;
        let cols = width.min(n - first);
        for (row, src) in block.chunks_exact(width).enumerate() {
            w[row * n + first..row * n + first + cols].copy_from_slice(&src[..cols]);
        }
    }
    w
}

/// One SIMD vector of f32 lanes: the operations a panel kernel needs.
trait Lanes: Copy {
    const LANES: usize;
    /// Input values read at once, each then broadcast to all lanes: x86 broadcasts straight
    /// from memory (one), wasm loads four and shuffles (a load per value costs more there).
    const GROUP: usize;
    type Group: Copy;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load_group(p: *const f32) -> Self::Group;
    /// Value `j < GROUP` of a group in every lane.
    unsafe fn broadcast(group: Self::Group, j: usize) -> Self;
    /// `self * b + c`.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// Asks for the cache line holding `p` to be loaded ahead of use, into the first-level
    /// cache or (`L1` false) the second (a hint: it never faults, wherever `p` points). A no-op
    /// where the instruction set has no such hint.
    #[inline(always)]
    unsafe fn prefetch<const L1: bool>(_p: *const f32) {}
}

/// How far ahead of the row being multiplied the kernels ask for a panel's next rows. At
/// small row counts a product is bound by how fast the weights stream in from memory, and
/// the hardware's own prefetcher, which stops at every 4 KiB page, falls behind.
const PREFETCH_BYTES: usize = 4096;
/// A cache line.
const LINE_BYTES: usize = 64;

/// The product over a range of panels of `VECTORS` vectors of `V::LANES` columns, in tiles of
/// `ROWS` input rows by `PANELS` adjacent panels (`ROWS x PANELS x VECTORS` accumulators stay
/// in registers; a last panel without a partner goes through a one-panel tile), prefetching
/// into L1 or (`L1` false) L2, and then also, while a group's tiles run, the next group into
/// L2. Inlined into each instruction set's entry point, so that the intrinsics (and the
/// activation's loops) compile for it.
#[inline(always)]
unsafe fn panels_product<
    V: Lanes,
    const VECTORS: usize,
    const PANELS: usize,
    const ROWS: usize,
    const L1: bool,
>(
    product: &Product,
    panels: Range<usize>,
    out: *mut f32,
) {
    let mut panel = panels.start;
    while panel + PANELS <= panels.end {
        panel_group::<V, VECTORS, PANELS, ROWS, L1>(product, panel, panels.end, out);
        panel += PANELS;
    }
    for panel in panel..panels.end {
        panel_group::<V, VECTORS, 1, ROWS, L1>(product, panel, panels.end, out);
    }
}

/// The product at the columns of panels `first_panel..first_panel + PANELS`, the panels after
/// them (up to `end`, as many again) fetched into L2 meanwhile.
#[inline(always)]
unsafe fn panel_group<
    V: Lanes,
    const VECTORS: usize,
    const PANELS: usize,
    const ROWS: usize,
    const L1: bool,
>(
    product: &Product,
    first_panel: usize,
    end: usize,
    out: *mut f32,
) {
    let Product { m, k, n, .. } = *product;
    let width = VECTORS * V::LANES;
    let group = PANELS * width;
    let first = first_panel * width;
    let cols = group.min(n - first);
    let next_panels = PANELS.min(end - first_panel - PANELS);
    let weights = product.packed.as_ptr().add(first_panel * k * width);
    let tiles = Tiles {
        k,
        x: product.x.as_ptr(),
        weights,
        next: (
            weights.add(PANELS * k * width) as *const u8,
            next_panels * k * width * std::mem::size_of::<f32>(),
        ),
        bias: product.bias.map(|b| b[first..].as_ptr()),
        activation: product.activation,
    };
    if cols == group {
        tiles.rows::<V, VECTORS, PANELS, ROWS, L1>(m, out.add(first), n);
    } else {
        // The last panel is narrower than the kernel writes: through a scratch block, with
        // the bias padded to the group's width.
        let mut scratch = vec![0.0f32; m * group];
        let mut bias = vec![0.0f32; group];
        if let Some(b) = product.bias {
            bias[..cols].copy_from_slice(&b[first..]);
        }
        let tiles = Tiles {
            bias: tiles.bias.map(|_| bias.as_ptr()),
            ..tiles
        };
        tiles.rows::<V, VECTORS, PANELS, ROWS, L1>(m, scratch.as_mut_ptr(), group);
        for row in 0..m {
            let dst = out.add(row * n + first);
            std::ptr::copy_nonoverlapping(scratch[row * group..].as_ptr(), dst, cols);
        }
    }
}

/// How `m` rows split into tiles of at most `rows` rows: `(first row, rows)`, as few tiles as
/// that allows, of sizes that differ by at most one (so that each tile's share of the next
/// panels' prefetches comes with as much arithmetic to hide it behind).
fn row_tiles(m: usize, rows: usize) -> impl ExactSizeIterator<Item = (usize, usize)> {
    let tiles = m.div_ceil(rows);
    let size = m.checked_div(tiles).unwrap_or(0);
    let longer = m.checked_rem(tiles).unwrap_or(0);
    (0..tiles).map(move |t| (t * size + t.min(longer), size + usize::from(t < longer)))
}

/// One panel group's share of a [`Product`].
#[derive(Clone, Copy)]
struct Tiles {
    k: usize,
    /// The input's first row.
    x: *const f32,
    /// The group's first panel (the others follow it, `k` rows each).
    weights: *const f32,
    /// The panels after the group, and their length in bytes (0 where this thread has none
    /// left): the group's tiles fetch them into L2 a share each, so that the next group's
    /// first tile finds them there instead of waiting on memory.
    next: (*const u8, usize),
    /// The group's first bias value.
    bias: Option<*const f32>,
    activation: Option<Activation>,
}

impl Tiles {
    /// All `m` rows of the input times the group's panels, in the tiles of [`row_tiles`]
    /// (`ROWS <= 12`). `out` points at the group's first column; its rows are `stride` apart.
    #[inline(always)]
    unsafe fn rows<
        V: Lanes,
        const VECTORS: usize,
        const PANELS: usize,
        const ROWS: usize,
        const L1: bool,
    >(
        self,
        m: usize,
        out: *mut f32,
        stride: usize,
    ) {
        const { assert!(ROWS <= 12, "tiles have at most 12 rows") };
        let row_tiles = row_tiles(m, ROWS);
        let tiles = row_tiles.len();
        // Only where the prefetches go to L2 and several tiles share the panel: a lone tile
        // already streams its panel, and asking for the next one as well measured slower.
        let (next, mut next_len) = self.next;
        if L1 || tiles < 2 {
            next_len = 0;
        }
        for (t, (row, count)) in row_tiles.enumerate() {
            let out = out.add(row * stride);
            // This tile's share of the next panels.
            let from = t * next_len / tiles;
            let share = (next.wrapping_add(from), (t + 1) * next_len / tiles - from);
            let tile = Tiles {
                next: share,
                ..self
            };
            // The guards keep tiles taller than `ROWS` from being compiled at all.
            match count {
                1 => tile.sized::<V, VECTORS, PANELS, 1, L1>(row, out, stride),
                2 => tile.sized::<V, VECTORS, PANELS, 2, L1>(row, out, stride),
                3 => tile.sized::<V, VECTORS, PANELS, 3, L1>(row, out, stride),
                4 => tile.sized::<V, VECTORS, PANELS, 4, L1>(row, out, stride),
                5 if ROWS >= 5 => tile.sized::<V, VECTORS, PANELS, 5, L1>(row, out, stride),
                6 if ROWS >= 6 => tile.sized::<V, VECTORS, PANELS, 6, L1>(row, out, stride),
                7 if ROWS >= 7 => tile.sized::<V, VECTORS, PANELS, 7, L1>(row, out, stride),
                8 if ROWS >= 8 => tile.sized::<V, VECTORS, PANELS, 8, L1>(row, out, stride),
                9 if ROWS >= 9 => tile.sized::<V, VECTORS, PANELS, 9, L1>(row, out, stride),
                10 if ROWS >= 10 => tile.sized::<V, VECTORS, PANELS, 10, L1>(row, out, stride),
                11 if ROWS >= 11 => tile.sized::<V, VECTORS, PANELS, 11, L1>(row, out, stride),
                12 if ROWS >= 12 => tile.sized::<V, VECTORS, PANELS, 12, L1>(row, out, stride),
                _ => unreachable!("row_tiles gives tiles of 1..=ROWS rows"),
            }
        }
    }

    /// [`Tiles::tile`], compiled without the next panels' prefetches where it has no share of
    /// them (they would still cost it registers and a branch per row). [`Tiles::rows`] gives no
    /// shares where `L1`; the test of `L1` here keeps those kernels from compiling the variant.
    #[inline(always)]
    unsafe fn sized<
        V: Lanes,
        const VECTORS: usize,
        const PANELS: usize,
        const R: usize,
        const L1: bool,
    >(
        self,
        first: usize,
        out: *mut f32,
        stride: usize,
    ) {
        if !L1 && self.next.1 > 0 {
            self.tile::<V, VECTORS, PANELS, R, L1, true>(first, out, stride)
        } else {
            self.tile::<V, VECTORS, PANELS, R, L1, false>(first, out, stride)
        }
    }

    /// `out[R rows, group] = activation(x[first..first + R, ..] @ panels + bias)`: the
    /// accumulators start at the bias; for each `k`, one row of each panel is loaded and each
    /// input value broadcast against them.
    #[inline(always)]
    unsafe fn tile<
        V: Lanes,
        const VECTORS: usize,
        const PANELS: usize,
        const R: usize,
        const L1: bool,
        const NEXT: bool,
    >(
        self,
        first: usize,
        out: *mut f32,
        stride: usize,
    ) {
        let Tiles { k, weights, .. } = self;
        let x = self.x.add(first * k);
        let width = VECTORS * V::LANES;
        let panels: [*const f32; PANELS] = std::array::from_fn(|p| weights.add(p * k * width));
        let start: [[V; VECTORS]; PANELS] = match self.bias {
            Some(bias) => std::array::from_fn(|p| {
                std::array::from_fn(|v| V::load(bias.add(p * width + v * V::LANES)))
            }),
            None => [[V::splat(0.0); VECTORS]; PANELS],
        };
        let mut acc = [start; R];
        let row_bytes = width * std::mem::size_of::<f32>();
        // The share of the next panels, spread evenly over the loop below: one line asked for
        // per row of `k`, `next_step` bytes (16.16 fixed point) further each time. The step is
        // at most a line: at least two tiles share the panels, whose rows are two lines wide.
        let (next, next_len) = self.next;
        let next_step = match NEXT {
            true if k > 0 => ((next_len as u64) << 16) / k as u64,
            _ => 0,
        };
        let mut i = 0;
        while i + V::GROUP <= k {
            if NEXT {
                let at = ((i as u64 * next_step) >> 16) as usize;
                V::prefetch::<false>(next.wrapping_add(at) as *const f32);
            }
            for panel in panels {
                for j in 0..V::GROUP {
                    let row = panel.wrapping_byte_add(PREFETCH_BYTES + (i + j) * row_bytes);
                    for line in (0..row_bytes).step_by(LINE_BYTES) {
                        V::prefetch::<L1>(row.wrapping_byte_add(line));
                    }
                }
            }
            let groups: [V::Group; R] = std::array::from_fn(|r| V::load_group(x.add(r * k + i)));
            for j in 0..V::GROUP {
                let w = panels.map(|panel| panel_row::<V, VECTORS>(panel, i + j));
                for (row, group) in acc.iter_mut().zip(&groups) {
                    let value = V::broadcast(*group, j);
                    for (lanes, w) in row.iter_mut().zip(&w) {
                        for (lane, w) in lanes.iter_mut().zip(w) {
                            *lane = value.mul_add(*w, *lane);
                        }
                    }
                }
            }
            i += V::GROUP;
        }
        for i in i..k {
            let w = panels.map(|panel| panel_row::<V, VECTORS>(panel, i));
            for (r, row) in acc.iter_mut().enumerate() {
                let value = V::splat(*x.add(r * k + i));
                for (lanes, w) in row.iter_mut().zip(&w) {
                    for (lane, w) in lanes.iter_mut().zip(w) {
                        *lane = value.mul_add(*w, *lane);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (p, lanes) in row.iter().enumerate() {
                for (v, lane) in lanes.iter().enumerate() {
                    lane.store(out.add(r * stride + p * width + v * V::LANES));
                }
            }
        }
        // Apart from the stores above, so that the accumulators stay in registers.
        if let Some(activation) = self.activation {
            for r in 0..R {
                let values = std::slice::from_raw_parts_mut(out.add(r * stride), PANELS * width);
                apply_activation(values, activation);
            }
        }
    }
}

/// Row `i` of a panel.
#[inline(always)]
unsafe fn panel_row<V: Lanes, const VECTORS: usize>(weights: *const f32, i: usize) -> [V; VECTORS] {
    let row = weights.add(i * VECTORS * V::LANES);
    std::array::from_fn(|v| V::load(row.add(v * V::LANES)))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{panels_product, Lanes, Product};
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// A vector type of `$lanes` f32 over `$inner`, from its intrinsics (one input value
    /// broadcast at a time: x86 broadcasts straight from memory).
    macro_rules! lanes {
        ($name:ident, $inner:ty, $lanes:literal, $load:ident, $store:ident, $set1:ident, $fmadd:ident) => {
            #[derive(Clone, Copy)]
            struct $name($inner);

            impl Lanes for $name {
                const LANES: usize = $lanes;
                const GROUP: usize = 1;
                type Group = f32;
                #[inline(always)]
                unsafe fn load(p: *const f32) -> Self {
                    $name($load(p))
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut f32) {
                    $store(p, self.0)
                }
                #[inline(always)]
                unsafe fn splat(x: f32) -> Self {
                    $name($set1(x))
                }
                #[inline(always)]
                unsafe fn load_group(p: *const f32) -> f32 {
                    *p
                }
                #[inline(always)]
                unsafe fn broadcast(group: f32, _: usize) -> Self {
                    Self::splat(group)
                }
                #[inline(always)]
                unsafe fn mul_add(self, b: Self, c: Self) -> Self {
                    $name($fmadd(self.0, b.0, c.0))
                }
                #[inline(always)]
                unsafe fn prefetch<const L1: bool>(p: *const f32) {
                    if L1 {
                        _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
                    } else {
                        _mm_prefetch::<_MM_HINT_T1>(p as *const i8)
                    }
                }
            }
        };
    }

    lanes!(
        F32x16,
        __m512,
        16,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps
    );
    lanes!(
        F32x8,
        __m256,
        8,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps
    );

    /// Up to this many input rows, tiles of 12 rows by one panel (each weight is loaded once
    /// for 12 rows: few rows wait on the weights streaming in), prefetching into L2 only
    /// (measured faster there: each weight is used by a few tiles at most), the next panel
    /// too while its predecessor's tiles run (image batch 1, 50 rows, 12% faster); above, 6
    /// rows by two panels (the input rows are read once per two panels), prefetching into L1
    /// (the tiles after the first re-read the panel from cache). Measured: at 96 rows (text
    /// batch 8) the few-rows tiles are 4-9% faster, at 400 rows 7% slower.
    const FEW_ROWS: usize = 128;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(product: &Product, panels: Range<usize>, out: *mut f32) {
        if product.m <= FEW_ROWS {
            panels_product::<F32x16, 2, 1, 12, false>(product, panels, out)
        } else {
            panels_product::<F32x16, 2, 2, 6, true>(product, panels, out)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(product: &Product, panels: Range<usize>, out: *mut f32) {
        panels_product::<F32x8, 2, 1, 6, true>(product, panels, out)
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::{panels_product, Lanes, Product};
    use std::arch::wasm32::*;
    use std::ops::Range;

    #[derive(Clone, Copy)]
    struct F32x4(v128);

    impl Lanes for F32x4 {
        const LANES: usize = 4;
        const GROUP: usize = 4;
        type Group = v128;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            F32x4(v128_load(p as *const v128))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            v128_store(p as *mut v128, self.0)
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            F32x4(f32x4_splat(x))
        }
        #[inline(always)]
        unsafe fn load_group(p: *const f32) -> v128 {
            v128_load(p as *const v128)
        }
        #[inline(always)]
        unsafe fn broadcast(group: v128, j: usize) -> Self {
            F32x4(match j {
                0 => i32x4_shuffle::<0, 0, 0, 0>(group, group),
                1 => i32x4_shuffle::<1, 1, 1, 1>(group, group),
                2 => i32x4_shuffle::<2, 2, 2, 2>(group, group),
                _ => i32x4_shuffle::<3, 3, 3, 3>(group, group),
            })
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, c: Self) -> Self {
            // No fused multiply-add without relaxed SIMD.
            F32x4(f32x4_add(f32x4_mul(self.0, b.0), c.0))
        }
    }

    pub unsafe fn simd128(product: &Product, panels: Range<usize>, out: *mut f32) {
        panels_product::<F32x4, 3, 1, 4, true>(product, panels, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_unpack_is_the_identity() {
        for (k, n, width) in [(3, 5, 4), (7, 64, 16), (2, 1, 8), (5, 100, 64)] {
            let w: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
            let packed = pack(k, n, &w, width).unwrap();
            assert_eq!(packed.len(), n.div_ceil(width) * k * width);
            assert_eq!(
                unpack(k, n, &packed, width),
                w,
                "[{k}, {n}] in panels of {width}"
            );
        }
    }

    #[test]
    fn pack_refuses_what_it_cannot_pack() {
        assert!(pack(2, 0, &[], 8).is_none(), "no columns");
        assert!(pack(2, 3, &[0.0; 5], 8).is_none(), "sizes disagree");
        assert!(
            pack(usize::MAX / 2, 3, &[0.0; 6], 8).is_none(),
            "size overflows"
        );
    }

    #[test]
    fn row_tiles_cover_every_row_once_in_as_few_even_tiles_as_fit() {
        for rows in [4, 6, 12] {
            for m in 0..100 {
                let tiles: Vec<_> = row_tiles(m, rows).collect();
                assert_eq!(tiles.len(), m.div_ceil(rows), "{m} rows by {rows}");
                let mut next = 0;
                for &(first, count) in &tiles {
                    assert_eq!(first, next, "{m} rows by {rows}: {tiles:?}");
                    assert!((1..=rows).contains(&count), "{m} rows by {rows}: {tiles:?}");
                    next += count;
                }
                assert_eq!(next, m, "{m} rows by {rows}: {tiles:?}");
                let sizes = tiles.iter().map(|t| t.1);
                let spread = sizes.clone().max().unwrap_or(0) - sizes.min().unwrap_or(0);
                assert!(spread <= 1, "{m} rows by {rows}: {tiles:?}");
            }
        }
    }

    #[test]
    fn every_kernel_of_this_cpu_matches_a_plain_product() {
        for kernel in Kernel::ALL.iter().filter(|kernel| kernel.is_supported()) {
            matches_a_plain_product(*kernel);
        }
    }

    fn matches_a_plain_product(kernel: Kernel) {
        let width = kernel.width();
        // Row counts on both sides of a tile and of the few-rows kernel's limit, widths with
        // and without a partial last panel and with odd panel counts, a depth longer than the
        // prefetch distance.
        for (m, k, n) in [
            (1, 5, 3),
            (6, 16, width),
            (7, 33, 2 * width + 5),
            (12, 20, 3 * width),
            (13, 64, 100),
            (9, 517, width + 3),
            (130, 40, 2 * width + 5),
            (71, 24, 5 * width),
            (50, 19, width + 1),
        ] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let w: Vec<f32> = (0..k * n)
                .map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
            let packed = pack(k, n, &w, width).unwrap();
            for activation in [None, Some(Activation::GeluTanh)] {
                let product = Product {
                    m,
                    k,
                    n,
                    x: &x,
                    packed: &packed,
                    bias: Some(&bias),
                    activation,
                };
                let panels = n.div_ceil(width);
                let mut out = vec![f32::NAN; m * n];
                // Two calls over halves of the panels, as two threads would make them.
                unsafe {
                    kernel.run(&product, 0..panels / 2, out.as_mut_ptr());
                    kernel.run(&product, panels / 2..panels, out.as_mut_ptr());
                }
                for row in 0..m {
                    for col in 0..n {
                        let mut expected = [bias[col]
                            + (0..k).map(|i| x[row * k + i] * w[i * n + col]).sum::<f32>()];
                        if let Some(activation) = activation {
                            apply_activation(&mut expected, activation);
                        }
                        let (got, expected) = (out[row * n + col], expected[0]);
                        assert!(
                            (got - expected).abs() < 1e-4,
                            "{kernel:?} {activation:?}: [{m}, {k}] x [{k}, {n}] at ({row}, {col}): {got} vs {expected}"
                        );
                    }
                }
            }
        }
    }
}

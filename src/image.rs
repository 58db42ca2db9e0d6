//! Image input: decoding, conversion to RGB, and the models' preprocessing (CLIP: shortest-side
//! bicubic resize and center crop; SigLIP: a resize to the exact size; then rescale and
//! normalize), reproducing the Python reference (PIL + torchvision) bit for bit up to the final
//! float arithmetic.

use std::ops::Range;

use crate::config::{CropRounding, PreprocessConfig, Resample, Resize};
use crate::error::{Error, Result};

/// An 8-bit RGB image, row-major, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Bounds on the images webclip accepts, checked before anything is allocated. Over a bound an
/// image is an `E_IMAGE` error naming the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest width or height, in pixels.
    pub max_side: u32,
    /// Largest decoded image, in bytes (also the most a decoder may allocate).
    pub max_bytes: u64,
}

impl Default for ImageLimits {
    /// 16384 pixels a side and 512 MiB.
    fn default() -> Self {
        Self {
            max_side: 16384,
            max_bytes: 512 << 20,
        }
    }
}

impl ImageLimits {
    /// Check a `width x height` image of `bytes_per_pixel` against the limits; returns its
    /// byte size.
    pub fn check(&self, width: usize, height: usize, bytes_per_pixel: usize) -> Result<usize> {
        if width == 0 || height == 0 {
            return Err(Error::Input(format!(
                "the image has zero size ({width}x{height})"
            )));
        }
        let max_side = self.max_side as usize;
        if width > max_side || height > max_side {
            return Err(Error::Image(format!(
                "{width}x{height} pixels exceeds the limit of {max_side} pixels a side"
            )));
        }
        width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(bytes_per_pixel))
            .filter(|&n| n as u64 <= self.max_bytes)
            .ok_or_else(|| {
                Error::Image(format!(
                    "{width}x{height} pixels at {bytes_per_pixel} bytes each exceeds the limit of {} bytes",
                    self.max_bytes
                ))
            })
    }
}

impl RgbImage {
    /// Wrap RGB bytes, checking the size and length.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        let needed = ImageLimits::default().check(width, height, 3)?;
        if data.len() != needed {
            return Err(Error::Input(format!(
                "an RGB image of {width}x{height} needs {needed} bytes, got {}",
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Drop the alpha channel of RGBA bytes (what a canvas or `ImageData` gives), as PIL's
    /// `convert("RGB")` does.
    pub fn from_rgba(width: usize, height: usize, rgba: &[u8]) -> Result<Self> {
        Self::from_rgba_with(width, height, rgba, &ImageLimits::default())
    }

    /// [`RgbImage::from_rgba`] under the given limits.
    pub fn from_rgba_with(
        width: usize,
        height: usize,
        rgba: &[u8],
        limits: &ImageLimits,
    ) -> Result<Self> {
        let needed = limits.check(width, height, 4)?;
        if rgba.len() != needed {
            return Err(Error::Input(format!(
                "an RGBA image of {width}x{height} needs {needed} bytes, got {}",
                rgba.len()
            )));
        }
        let data = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Decode PNG or JPEG bytes and convert to RGB (grey expands, alpha is dropped, 16-bit
    /// samples are reduced to 8), under the default [`ImageLimits`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Self::decode_with(bytes, &ImageLimits::default())
    }

    /// [`RgbImage::decode`] under the given limits: the size in the file's header is checked
    /// before any pixel is decoded.
    pub fn decode_with(bytes: &[u8], limits: &ImageLimits) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::Image("no bytes to decode".into()));
        }
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::Image(e.to_string()))?;
        let mut decoder_limits = image::Limits::default();
        decoder_limits.max_image_width = Some(limits.max_side);
        decoder_limits.max_image_height = Some(limits.max_side);
        decoder_limits.max_alloc = Some(limits.max_bytes);
        reader.limits(decoder_limits);
        let image_error = |e: image::ImageError| match e {
            image::ImageError::Limits(l) => Error::Image(format!(
                "{l} (limits: {} pixels a side, {} bytes)",
                limits.max_side, limits.max_bytes
            )),
            e => Error::Image(e.to_string()),
        };
        // The header is read here; the reader's limits apply to the decoder.
        let decoder = reader.into_decoder().map_err(image_error)?;
        let (width, height) = image::ImageDecoder::dimensions(&decoder);
        // The RGB copy must fit the limits too (the decoder checks only its own buffers).
        limits
            .check(width as usize, height as usize, 3)
            .map_err(|e| match e {
                Error::Input(m) => Error::Image(m),
                e => e,
            })?;
        let image = image::DynamicImage::from_decoder(decoder).map_err(image_error)?;
        let rgb = image.to_rgb8();
        Ok(Self {
            width: rgb.width() as usize,
            height: rgb.height() as usize,
            data: rgb.into_raw(),
        })
    }
}

impl RgbImage {
    /// Encode as PNG.
    pub fn encode_png(&self) -> Result<Vec<u8>> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::write_buffer_with_format(
            &mut out,
            &self.data,
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::Image(format!("encoding a PNG: {e}")))?;
        Ok(out.into_inner())
    }
}

/// Run CLIP's preprocessing; returns `[3, height, width]` floats in channel-major order.
///
/// Only the pixels that survive the crop are resampled, so memory stays bounded by the crop
/// whatever the image's aspect ratio; the values are those of resizing the whole image first.
pub fn preprocess(image: &RgbImage, config: &PreprocessConfig) -> Result<(Vec<f32>, [usize; 3])> {
    let (w, h) = match config.resize {
        Some(Resize::ShortestEdge(edge)) => shortest_side_size(image.width, image.height, edge)?,
        Some(Resize::Exact { height, width }) => (width, height),
        None => (image.width, image.height),
    };
    let (crop_w, crop_h) = config.crop.map_or((w, h), |(ch, cw)| (cw, ch));
    let pixels = ImageLimits::default().check(crop_w, crop_h, 3)? / 3;
    // The crop window in the resized image, and where it lands in the output (zero padding
    // where the crop is larger than the image, as torchvision pads).
    let offset = |size, crop| crop_offset(size, crop, config.crop_rounding);
    let (left, top) = (offset(w, crop_w), offset(h, crop_h));
    let cols = left.max(0) as usize..(left + crop_w as isize).clamp(0, w as isize) as usize;
    let rows = top.max(0) as usize..(top + crop_h as isize).clamp(0, h as isize) as usize;
    let window = resize_window(image, (w, h), config.resample, cols.clone(), rows.clone());

    let scale = config.rescale_factor.unwrap_or(1.0);
    let (mean, std) = config.mean_std.unwrap_or(([0.0; 3], [1.0; 3]));
    let mut out = vec![0.0f32; 3 * pixels];
    for c in 0..3 {
        let pad = -mean[c] / std[c];
        out[c * pixels..(c + 1) * pixels].fill(pad);
    }
    let (x0, y0) = (
        (cols.start as isize - left) as usize,
        (rows.start as isize - top) as usize,
    );
    for (wy, row) in window.data.chunks_exact(cols.len() * 3).enumerate() {
        for (wx, pixel) in row.chunks_exact(3).enumerate() {
            let i = (y0 + wy) * crop_w + x0 + wx;
            for c in 0..3 {
                out[c * pixels + i] = (pixel[c] as f32 * scale - mean[c]) / std[c];
            }
        }
    }
    Ok((out, [3, crop_h, crop_w]))
}

/// A center crop's offset, `(size - crop) / 2` rounded by the reference's rule (negative where
/// the crop is larger than the image).
fn crop_offset(size: usize, crop: usize, rounding: CropRounding) -> isize {
    let half = (size as f64 - crop as f64) / 2.0;
    match rounding {
        CropRounding::Floor => half.floor() as isize,
        CropRounding::HalfEven => half.round_ties_even() as isize,
    }
}

/// torchvision's `Resize(size)` output for an int size: the short side becomes `edge`, the
/// long side `int(edge * long / short)`. A long side past the pixel limit is an error.
pub fn shortest_side_size(width: usize, height: usize, edge: usize) -> Result<(usize, usize)> {
    let (short, long) = (width.min(height), width.max(height));
    let long_out = edge as f64 * long as f64 / short as f64;
    if long_out >= (1u64 << 40) as f64 {
        return Err(Error::Image(format!(
            "resizing {width}x{height} to a shortest side of {edge} gives a side of {long_out} pixels"
        )));
    }
    let long_out = long_out as usize;
    Ok(if width <= height {
        (edge, long_out)
    } else {
        (long_out, edge)
    })
}

/// PIL's `Image.resize(size, BICUBIC)` for 8-bit RGB: two passes (see [`resize_window`] for
/// their order) of a separable bicubic filter (a = -0.5) widened by the scale factor on
/// downscale (antialiasing), with PIL's fixed-point coefficients and rounding to 8 bits after
/// each pass.
pub fn resize_bicubic(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    resize_window(
        image,
        (width, height),
        Resample::Bicubic,
        0..width,
        0..height,
    )
}

/// The columns `cols` and rows `rows` of resizing `image` to `(width, height)` with `filter`,
/// computed without the rest of the resized image. PIL runs the two passes horizontal first,
/// except (since Pillow 13) where the height shrinks by more than twice as many pixels as the
/// width; each pass rounds to 8 bits, so the order shows in the result.
fn resize_window(
    image: &RgbImage,
    (width, height): (usize, usize),
    filter: Resample,
    cols: Range<usize>,
    rows: Range<usize>,
) -> RgbImage {
    let (in_w, in_h) = (image.width as i64, image.height as i64);
    let vertical_first = in_h > height as i64 && in_h - height as i64 > (in_w - width as i64) * 2;
    let data = if vertical_first {
        let tall = vertical_pass(
            &image.data,
            image.width,
            image.height,
            height,
            filter,
            rows.clone(),
        );
        horizontal_pass(&tall, image.width, rows.len(), width, filter, cols.clone())
    } else {
        let wide = horizontal_pass(
            &image.data,
            image.width,
            image.height,
            width,
            filter,
            cols.clone(),
        );
        vertical_pass(
            &wide,
            cols.len(),
            image.height,
            height,
            filter,
            rows.clone(),
        )
    };
    RgbImage {
        width: cols.len(),
        height: rows.len(),
        data,
    }
}

/// PIL's horizontal pass over RGB rows `[in_h, in_w]`: the columns `cols` of resizing the
/// width to `width` (a copy where the width does not change).
fn horizontal_pass(
    data: &[u8],
    in_w: usize,
    in_h: usize,
    width: usize,
    filter: Resample,
    cols: Range<usize>,
) -> Vec<u8> {
    let out_w = cols.len();
    let mut out = vec![0u8; out_w * in_h * 3];
    if width == in_w {
        for y in 0..in_h {
            let src = &data[(y * in_w + cols.start) * 3..(y * in_w + cols.end) * 3];
            out[y * out_w * 3..(y + 1) * out_w * 3].copy_from_slice(src);
        }
        return out;
    }
    let (bounds, weights, ksize) = pil_coefficients(in_w, width, filter, cols);
    for y in 0..in_h {
        let row = &data[y * in_w * 3..(y + 1) * in_w * 3];
        for x in 0..out_w {
            let (xmin, count) = bounds[x];
            let k = &weights[x * ksize..x * ksize + count];
            for c in 0..3 {
                let mut sum = 1i32 << (PRECISION_BITS - 1);
                for (i, &w) in k.iter().enumerate() {
                    sum += row[(xmin + i) * 3 + c] as i32 * w;
                }
                out[(y * out_w + x) * 3 + c] = clip8(sum);
            }
        }
    }
    out
}

/// PIL's vertical pass over RGB rows `[in_h, w]`: the rows `rows` of resizing the height to
/// `height` (a copy where the height does not change).
fn vertical_pass(
    data: &[u8],
    w: usize,
    in_h: usize,
    height: usize,
    filter: Resample,
    rows: Range<usize>,
) -> Vec<u8> {
    let stride = w * 3;
    if height == in_h {
        return data[rows.start * stride..rows.end * stride].to_vec();
    }
    let out_h = rows.len();
    let (bounds, weights, ksize) = pil_coefficients(in_h, height, filter, rows);
    let mut out = vec![0u8; out_h * stride];
    for y in 0..out_h {
        let (ymin, count) = bounds[y];
        let k = &weights[y * ksize..y * ksize + count];
        for x in 0..stride {
            let mut sum = 1i32 << (PRECISION_BITS - 1);
            for (i, &kw) in k.iter().enumerate() {
                sum += data[(ymin + i) * stride + x] as i32 * kw;
            }
            out[y * stride + x] = clip8(sum);
        }
    }
    out
}

/// PIL's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's filter: its support (in input pixels at scale 1) and kernel.
fn pil_filter(filter: Resample) -> (f64, fn(f64) -> f64) {
    match filter {
        Resample::Bilinear => (1.0, triangle),
        Resample::Bicubic => (2.0, bicubic),
    }
}

/// PIL's bilinear (triangle) kernel.
fn triangle(x: f64) -> f64 {
    (1.0 - x.abs()).max(0.0)
}

/// PIL's bicubic kernel with a = -0.5.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for resizing `in_size` to `out_size`,
/// for the output pixels `range`: per output pixel the first input index and tap count, the
/// fixed-point taps (`ksize` per pixel), and `ksize`.
fn pil_coefficients(
    in_size: usize,
    out_size: usize,
    filter: Resample,
    range: Range<usize>,
) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
    let (filter_support, kernel) = pil_filter(filter);
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter_support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(range.len());
    let mut weights = vec![0i32; range.len() * ksize];
    let mut k = vec![0f64; ksize];
    for (slot, xx) in range.enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // PIL truncates toward zero with a C cast.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            let w = kernel((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            total += w;
        }
        for x in 0..count {
            let w = if total != 0.0 { k[x] / total } else { k[x] };
            let fixed = w * (1i64 << PRECISION_BITS) as f64;
            weights[slot * ksize + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, count));
    }
    (bounds, weights, ksize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_follows_torchvision() {
        assert_eq!(shortest_side_size(640, 480, 224).unwrap(), (298, 224));
        assert_eq!(shortest_side_size(37, 61, 32).unwrap(), (32, 52));
    }

    #[test]
    fn resizing_a_flat_image_keeps_its_colour() {
        let image = RgbImage::new(7, 5, [10u8, 200, 90].repeat(35)).unwrap();
        for (w, h) in [(3, 2), (20, 13)] {
            let out = resize_bicubic(&image, w, h);
            assert!(out.data.chunks(3).all(|p| p == [10, 200, 90]));
        }
    }

    #[test]
    fn zero_size_is_an_input_error() {
        assert!(matches!(RgbImage::new(0, 5, vec![]), Err(Error::Input(_))));
        assert!(matches!(
            RgbImage::from_rgba(3, 3, &[0; 5]),
            Err(Error::Input(_))
        ));
    }
}

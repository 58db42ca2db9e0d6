//! Image input: decoding, conversion to RGB, and CLIP's preprocessing (shortest-side bicubic
//! resize, center crop, rescale, normalize), reproducing the Python reference (PIL + torchvision)
//! bit for bit up to the final float arithmetic.

use crate::config::PreprocessConfig;
use crate::error::{Error, Result};

/// An 8-bit RGB image, row-major, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Wrap RGB bytes, checking the length.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        check_size(width, height)?;
        if data.len() != width * height * 3 {
            return Err(Error::Input(format!(
                "an RGB image of {width}x{height} needs {} bytes, got {}",
                width * height * 3,
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
        check_size(width, height)?;
        if rgba.len() != width * height * 4 {
            return Err(Error::Input(format!(
                "an RGBA image of {width}x{height} needs {} bytes, got {}",
                width * height * 4,
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
    /// samples are reduced to 8).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::Image("no bytes to decode".into()));
        }
        let image = image::load_from_memory(bytes).map_err(|e| Error::Image(e.to_string()))?;
        let rgb = image.to_rgb8();
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        check_size(width, height)?;
        Ok(Self {
            width,
            height,
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

fn check_size(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::Input(format!(
            "the image has zero size ({width}x{height})"
        )));
    }
    Ok(())
}

/// Run CLIP's preprocessing; returns `[3, height, width]` floats in channel-major order.
pub fn preprocess(image: &RgbImage, config: &PreprocessConfig) -> (Vec<f32>, [usize; 3]) {
    let resized;
    let mut current = image;
    if let Some(edge) = config.shortest_edge {
        let (w, h) = shortest_side_size(image.width, image.height, edge);
        if (w, h) != (image.width, image.height) {
            resized = resize_bicubic(image, w, h);
            current = &resized;
        }
    }
    let cropped;
    if let Some((crop_h, crop_w)) = config.crop {
        cropped = center_crop(current, crop_w, crop_h);
        current = &cropped;
    }
    let (w, h) = (current.width, current.height);
    let scale = config.rescale_factor.unwrap_or(1.0);
    let (mean, std) = config.mean_std.unwrap_or(([0.0; 3], [1.0; 3]));
    let mut out = vec![0.0f32; 3 * h * w];
    for (i, pixel) in current.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = (pixel[c] as f32 * scale - mean[c]) / std[c];
        }
    }
    (out, [3, h, w])
}

/// torchvision's `Resize(size)` output for an int size: the short side becomes `edge`, the
/// long side `int(edge * long / short)`.
pub fn shortest_side_size(width: usize, height: usize, edge: usize) -> (usize, usize) {
    if width <= height {
        (edge, (edge as f64 * height as f64 / width as f64) as usize)
    } else {
        ((edge as f64 * width as f64 / height as f64) as usize, edge)
    }
}

/// torchvision's `CenterCrop` on a PIL image: offsets `round((size - crop) / 2)` with Python's
/// round-half-to-even, zero padding where the crop is larger than the image.
pub fn center_crop(image: &RgbImage, crop_w: usize, crop_h: usize) -> RgbImage {
    let offset = |size: usize, crop: usize| -> isize {
        let half = (size as f64 - crop as f64) / 2.0;
        half.round_ties_even() as isize
    };
    let (left, top) = (offset(image.width, crop_w), offset(image.height, crop_h));
    let mut data = vec![0u8; crop_w * crop_h * 3];
    for y in 0..crop_h {
        let sy = y as isize + top;
        if sy < 0 || sy >= image.height as isize {
            continue;
        }
        for x in 0..crop_w {
            let sx = x as isize + left;
            if sx < 0 || sx >= image.width as isize {
                continue;
            }
            let src = (sy as usize * image.width + sx as usize) * 3;
            let dst = (y * crop_w + x) * 3;
            data[dst..dst + 3].copy_from_slice(&image.data[src..src + 3]);
        }
    }
    RgbImage {
        width: crop_w,
        height: crop_h,
        data,
    }
}

/// PIL's `Image.resize(size, BICUBIC)` for 8-bit RGB: a horizontal then a vertical pass of a
/// separable bicubic filter (a = -0.5) widened by the scale factor on downscale (antialiasing),
/// with PIL's fixed-point coefficients and rounding to 8 bits after each pass.
pub fn resize_bicubic(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let mut current = image.clone();
    if width != image.width {
        let (bounds, weights, ksize) = pil_coefficients(image.width, width);
        let mut data = vec![0u8; width * image.height * 3];
        for y in 0..image.height {
            let row = &image.data[y * image.width * 3..(y + 1) * image.width * 3];
            for x in 0..width {
                let (xmin, count) = bounds[x];
                let k = &weights[x * ksize..x * ksize + count];
                for c in 0..3 {
                    let mut sum = 1i32 << (PRECISION_BITS - 1);
                    for (i, &w) in k.iter().enumerate() {
                        sum += row[(xmin + i) * 3 + c] as i32 * w;
                    }
                    data[(y * width + x) * 3 + c] = clip8(sum);
                }
            }
        }
        current = RgbImage {
            width,
            height: image.height,
            data,
        };
    }
    if height != image.height {
        let (bounds, weights, ksize) = pil_coefficients(image.height, height);
        let w = current.width;
        let mut data = vec![0u8; w * height * 3];
        for y in 0..height {
            let (ymin, count) = bounds[y];
            let k = &weights[y * ksize..y * ksize + count];
            for x in 0..w * 3 {
                let mut sum = 1i32 << (PRECISION_BITS - 1);
                for (i, &kw) in k.iter().enumerate() {
                    sum += current.data[(ymin + i) * w * 3 + x] as i32 * kw;
                }
                data[y * w * 3 + x] = clip8(sum);
            }
        }
        current = RgbImage {
            width: w,
            height,
            data,
        };
    }
    current
}

/// PIL's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
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

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for resizing `in_size` to `out_size`:
/// per output pixel the first input index and tap count, the fixed-point taps (`ksize` per
/// pixel), and `ksize`.
fn pil_coefficients(in_size: usize, out_size: usize) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // PIL truncates toward zero with a C cast.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            total += w;
        }
        for x in 0..count {
            let w = if total != 0.0 { k[x] / total } else { k[x] };
            let fixed = w * (1i64 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
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
        assert_eq!(shortest_side_size(640, 480, 224), (298, 224));
        assert_eq!(shortest_side_size(37, 61, 32), (32, 52));
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

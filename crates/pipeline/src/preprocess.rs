//! Uploaded image bytes to a normalized input tensor.

use std::io::{self, Cursor};

use image::error::{ImageError, UnsupportedErrorKind};
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbImage};

use crate::{Error, ImageClassificationConfig, Layout, Normalize, ResizeFilter, Result};

/// The largest width and height, in pixels, of an image we agree to decode.
const MAX_DIMENSION: u32 = 16384;

/// The most memory, in bytes, the decoder may allocate for one image.
const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// The formats compiled into the `image` dependency, the only ones accepted.
const ACCEPTED_FORMATS: [ImageFormat; 5] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Gif,
    ImageFormat::Bmp,
    ImageFormat::WebP,
];

/// Keras `caffe` means, in the B, G, R order of the tensor's channels.
const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];

/// Keras/PyTorch ImageNet statistics, in R, G, B order.
const TORCH_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const TORCH_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A batch of one image, ready to be fed to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTensor {
    /// `[1, 3, height, width]` for NCHW or `[1, height, width, 3]` for NHWC.
    pub shape: [usize; 4],
    /// The values in row-major order of `shape`.
    pub data: Vec<f32>,
}

/// Decodes an uploaded image and turns it into the model input described by
/// `cfg`.
///
/// The format is detected from the bytes (JPEG, PNG, GIF (first frame), BMP or
/// WebP) and decoded within fixed limits (16384 pixels a side, 512 MiB), so an
/// oversized image or a decompression bomb is an [`Error::TooLarge`] rather
/// than an exhausted server. A JPEG cut short inside its compressed data is
/// refused rather than padded with grey. The image is converted to RGB (alpha
/// dropped, not blended; grayscale expanded), resized straight to `cfg.size`
/// without cropping, and normalized per channel. As in the Keras tutorial, EXIF
/// orientation is not applied.
///
/// This is CPU-bound work of up to a few hundred milliseconds for large
/// photos; async callers should run it off the runtime's worker threads.
///
/// Errors other than [`Error::InvalidConfig`] (from `cfg.validate()`) are the
/// client's fault and their messages are meant for the client.
pub fn preprocess(bytes: &[u8], cfg: &ImageClassificationConfig) -> Result<ImageTensor> {
    cfg.validate()?;
    let image = decode(bytes)?.into_rgb8();
    let [height, width] = cfg.size;
    let image = if image.dimensions() == (width, height) {
        image
    } else {
        imageops::resize(&image, width, height, filter_type(cfg.resize))
    };
    Ok(to_tensor(
        &image,
        cfg.layout,
        &ChannelTables::new(cfg.normalize),
    ))
}

fn decode(bytes: &[u8]) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(Error::EmptyImage);
    }
    let format = image::guess_format(bytes).map_err(|_| Error::UnsupportedFormat)?;
    if !ACCEPTED_FORMATS.contains(&format) {
        return Err(Error::UnsupportedFormat);
    }
    if format == ImageFormat::Jpeg && !jpeg_reaches_its_end(bytes) {
        return Err(truncated());
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    reader.decode().map_err(decode_error)
}

fn limits() -> Limits {
    // `Limits` is non-exhaustive: start from the defaults and tighten.
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_ALLOC);
    limits
}

fn decode_error(error: ImageError) -> Error {
    match error {
        ImageError::Limits(_) => Error::TooLarge(format!(
            "image is too large: at most {MAX_DIMENSION}x{MAX_DIMENSION} pixels \
             and {} MiB of decoded pixels are accepted",
            MAX_ALLOC / (1024 * 1024)
        )),
        ImageError::Unsupported(e) if matches!(e.kind(), UnsupportedErrorKind::Format(_)) => {
            Error::UnsupportedFormat
        }
        ImageError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => truncated(),
        other => Error::Decode(other.to_string()),
    }
}

fn truncated() -> Error {
    Error::Decode("the image data ends too early; the file may be truncated".to_owned())
}

/// Whether a JPEG stream whose headers are well formed goes on to its
/// end-of-image marker.
///
/// The JPEG decoder pads a stream cut inside the compressed data with grey
/// instead of failing, which would have us classify a half-grey picture. A
/// stream whose headers cannot be walked is left for the decoder to reject.
fn jpeg_reaches_its_end(bytes: &[u8]) -> bool {
    match jpeg_scan_start(bytes) {
        // Inside compressed data a 0xFF byte is always followed by 0x00 or a
        // restart marker, so 0xFF 0xD9 there is the end-of-image marker.
        Some(start) => bytes
            .get(start..)
            .is_some_and(|scan| scan.windows(2).any(|w| w == [0xFF, 0xD9])),
        None => true,
    }
}

/// The offset of the first start-of-scan marker, found by walking the marker
/// segments after start-of-image, or `None` if they are not well formed.
fn jpeg_scan_start(bytes: &[u8]) -> Option<usize> {
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        match *bytes.get(at + 1)? {
            // Fill byte before a marker.
            0xFF => at += 1,
            // Start of scan.
            0xDA => return Some(at),
            // Markers without a length: TEM, RST0 to RST7.
            0x01 | 0xD0..=0xD7 => at += 2,
            _ => {
                let length = bytes.get(at + 2..at + 4)?;
                at += 2 + usize::from(u16::from_be_bytes([length[0], length[1]]));
            }
        }
    }
}

fn filter_type(filter: ResizeFilter) -> FilterType {
    match filter {
        ResizeFilter::Nearest => FilterType::Nearest,
        ResizeFilter::Bilinear => FilterType::Triangle,
        ResizeFilter::Bicubic => FilterType::CatmullRom,
        ResizeFilter::Gaussian => FilterType::Gaussian,
        ResizeFilter::Lanczos3 => FilterType::Lanczos3,
    }
}

/// The normalization as lookup tables: output channel `c` of a pixel `p` is
/// `values[c][p[source[c]]]`. Inputs are bytes, so 3 x 256 values cover every
/// case, each computed with its preset's own formula.
struct ChannelTables {
    /// Which RGB channel feeds each output channel.
    source: [usize; 3],
    values: [[f32; 256]; 3],
}

impl ChannelTables {
    fn new(normalize: Normalize) -> Self {
        let source = match normalize {
            Normalize::Caffe => [2, 1, 0],
            _ => [0, 1, 2],
        };
        let mut values = [[0.0; 256]; 3];
        for (c, table) in values.iter_mut().enumerate() {
            for (x, value) in (0..=u8::MAX).zip(table.iter_mut()) {
                *value = normalized(normalize, c, f32::from(x));
            }
        }
        Self { source, values }
    }

    fn pixel(&self, rgb: [u8; 3]) -> [f32; 3] {
        [0, 1, 2].map(|c| self.values[c][usize::from(rgb[self.source[c]])])
    }
}

/// The value of output channel `c` for raw value `x` (0 to 255) of the RGB
/// channel that feeds it.
fn normalized(normalize: Normalize, c: usize, x: f32) -> f32 {
    match normalize {
        Normalize::Caffe => x - CAFFE_MEAN_BGR[c],
        Normalize::Torch => (x / 255.0 - TORCH_MEAN[c]) / TORCH_STD[c],
        Normalize::Tf => x / 127.5 - 1.0,
        Normalize::None => x,
        Normalize::Custom { scale, mean, std } => (x * scale - mean[c]) / std[c],
    }
}

fn to_tensor(image: &RgbImage, layout: Layout, tables: &ChannelTables) -> ImageTensor {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let plane = width * height;
    let mut data = vec![0.0; 3 * plane];
    let pixels = image.pixels().map(|p| tables.pixel(p.0));
    let shape = match layout {
        Layout::Nchw => {
            let (first, rest) = data.split_at_mut(plane);
            let (second, third) = rest.split_at_mut(plane);
            for (((a, b), c), [x, y, z]) in first
                .iter_mut()
                .zip(second.iter_mut())
                .zip(third.iter_mut())
                .zip(pixels)
            {
                (*a, *b, *c) = (x, y, z);
            }
            [1, 3, height, width]
        }
        Layout::Nhwc => {
            for (out, values) in data.chunks_exact_mut(3).zip(pixels) {
                out.copy_from_slice(&values);
            }
            [1, height, width, 3]
        }
    };
    ImageTensor { shape, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caffe_tables_read_blue_first_and_subtract_bgr_means() {
        let tables = ChannelTables::new(Normalize::Caffe);
        let [b, g, r] = tables.pixel([10, 20, 30]);
        assert_eq!(b, 30.0 - 103.939);
        assert_eq!(g, 20.0 - 116.779);
        assert_eq!(r, 10.0 - 123.68);
    }

    #[test]
    fn tables_cover_both_ends_of_the_byte_range() {
        let tables = ChannelTables::new(Normalize::Tf);
        assert_eq!(tables.pixel([0, 255, 51]), [-1.0, 1.0, 51.0 / 127.5 - 1.0]);
        let tables = ChannelTables::new(Normalize::None);
        assert_eq!(tables.pixel([0, 255, 7]), [0.0, 255.0, 7.0]);
    }

    #[test]
    fn custom_tables_apply_scale_mean_and_std_per_channel() {
        let tables = ChannelTables::new(Normalize::Custom {
            scale: 2.0,
            mean: [1.0, 2.0, 3.0],
            std: [2.0, 4.0, 8.0],
        });
        // (x * 2 - mean) / std for x = 5, 6, 7.
        assert_eq!(tables.pixel([5, 6, 7]), [4.5, 2.5, 1.375]);
    }

    #[test]
    fn every_filter_has_its_own_resampler() {
        let filters = [
            ResizeFilter::Nearest,
            ResizeFilter::Bilinear,
            ResizeFilter::Bicubic,
            ResizeFilter::Gaussian,
            ResizeFilter::Lanczos3,
        ]
        .map(filter_type);
        for (i, a) in filters.iter().enumerate() {
            for b in &filters[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(filter_type(ResizeFilter::Bilinear), FilterType::Triangle);
        assert_eq!(filter_type(ResizeFilter::Bicubic), FilterType::CatmullRom);
    }

    #[test]
    fn jpeg_walk_skips_segments_and_finds_the_end_marker() {
        // SOI, an APP1 segment holding a thumbnail's end marker, fill bytes,
        // SOS with its header, compressed data with a stuffed 0xFF, EOI.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0xAB, 0xCD];
        jpeg.extend_from_slice(&[0xFF, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34]);
        assert_eq!(jpeg_scan_start(&jpeg), Some(11));
        assert!(!jpeg_reaches_its_end(&jpeg));
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        assert!(jpeg_reaches_its_end(&jpeg));
        // Headers that cannot be walked are left to the decoder.
        assert_eq!(jpeg_scan_start(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]), None);
        assert_eq!(jpeg_scan_start(&[0xFF, 0xD8, 0x12]), None);
    }

    #[test]
    fn limit_errors_become_too_large() {
        let error = ImageError::Limits(image::error::LimitError::from_kind(
            image::error::LimitErrorKind::InsufficientMemory,
        ));
        assert!(matches!(decode_error(error), Error::TooLarge(_)));
    }
}

//! End-to-end tests of the pipeline on real encoded images: every supported
//! format, every normalization preset, both layouts, hostile inputs, and the
//! tutorial's photo.

use std::io::Cursor;

use image::codecs::gif::GifEncoder;
use image::{
    DynamicImage, Frame, GrayAlphaImage, GrayImage, ImageFormat, LumaA, Rgb, RgbImage, Rgba,
    RgbaImage,
};
use mofang_pipeline::{
    Error, ImageClassificationConfig, ImageTensor, Layout, Normalize, ResizeFilter, Softmax,
    parse_labels, preprocess, top_k,
};

const DOG_JPG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/dog.jpg");

// ---------------------------------------------------------------- helpers

/// A config that keeps pixel values untouched: `none`, nearest, NCHW.
fn config(height: u32, width: u32) -> ImageClassificationConfig {
    ImageClassificationConfig {
        input: None,
        output: None,
        size: [height, width],
        layout: Layout::Nchw,
        normalize: Normalize::None,
        softmax: Softmax::Auto,
        top_k: 5,
        resize: ResizeFilter::Nearest,
        labels: None,
        label_offset: 0,
    }
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, format)
        .unwrap_or_else(|e| panic!("encoding a test image as {format:?}: {e}"));
    bytes.into_inner()
}

fn run(bytes: &[u8], cfg: &ImageClassificationConfig) -> ImageTensor {
    preprocess(bytes, cfg).unwrap_or_else(|e| panic!("preprocess failed: {e}"))
}

/// A `width` x `height` image (at most 6 x 4) whose pixels all differ:
/// (x, y) has red 5 + 10x + 60y, green 5 + x + 2y, blue 250 - 30y.
fn distinct_pixels(width: u32, height: u32) -> RgbImage {
    assert!(
        width <= 6 && height <= 4,
        "channel values must stay below 256"
    );
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (5 + 10 * x + 60 * y) as u8,
            (5 + x + 2 * y) as u8,
            (250 - 30 * y) as u8,
        ])
    })
}

/// The value at channel `c`, row `y`, column `x` of a batch-of-one tensor,
/// located from its shape and layout.
fn at(tensor: &ImageTensor, layout: Layout, c: usize, y: usize, x: usize) -> f32 {
    let index = match layout {
        Layout::Nchw => {
            let [_, _, h, w] = tensor.shape;
            (c * h + y) * w + x
        }
        Layout::Nhwc => {
            let [_, _, w, channels] = tensor.shape;
            (y * w + x) * channels + c
        }
    };
    tensor.data[index]
}

fn assert_close(actual: &[f32], expected: &[f64], tolerance: f64) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (f64::from(a) - e).abs() <= tolerance,
            "element {i}: got {a}, expected {e} (all: {actual:?})"
        );
    }
}

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320) as used by PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let length = u32::try_from(data.len()).expect("test chunks are small");
    out.extend_from_slice(&length.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A PNG built by hand: the header claims `width` x `height` 8-bit pixels of
/// `color_type` (2 = RGB, 6 = RGBA), and the image data is a single
/// uncompressed scanline `[filter 0, samples...]`, which is all of the image
/// for a 1-pixel-high image and far too little for anything bigger.
fn handmade_png(width: u32, height: u32, color_type: u8, samples: &[u8]) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();

    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, color_type, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &header);

    let mut scanline = vec![0u8];
    scanline.extend_from_slice(samples);
    let length = u16::try_from(scanline.len()).expect("test scanlines are small");
    // zlib header, then one final stored deflate block, then the checksum.
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend_from_slice(&length.to_le_bytes());
    zlib.extend_from_slice(&(!length).to_le_bytes());
    zlib.extend_from_slice(&scanline);
    zlib.extend_from_slice(&adler32(&scanline).to_be_bytes());
    png_chunk(&mut png, b"IDAT", &zlib);

    png_chunk(&mut png, b"IEND", &[]);
    png
}

// ---------------------------------------------------------------- formats

#[test]
fn every_format_decodes_to_the_configured_shape() {
    let image = DynamicImage::ImageRgb8(distinct_pixels(6, 4));
    for format in [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::WebP,
    ] {
        let bytes = encode(&image, format);
        for (layout, shape) in [(Layout::Nchw, [1, 3, 4, 6]), (Layout::Nhwc, [1, 4, 6, 3])] {
            let cfg = ImageClassificationConfig {
                layout,
                ..config(4, 6)
            };
            let tensor = run(&bytes, &cfg);
            assert_eq!(tensor.shape, shape, "{format:?} {layout:?}");
            assert_eq!(tensor.data.len(), 72, "{format:?} {layout:?}");
        }
        // Resized to another size, the shape follows the config, not the file.
        let tensor = run(&bytes, &config(3, 5));
        assert_eq!(tensor.shape, [1, 3, 3, 5], "{format:?}");
        assert_eq!(tensor.data.len(), 45, "{format:?}");
    }
}

#[test]
fn lossless_formats_keep_every_pixel_in_place() {
    let source = distinct_pixels(6, 4);
    let image = DynamicImage::ImageRgb8(source.clone());
    // GIF is lossless here because the image has fewer than 256 colours.
    for format in [
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::WebP,
    ] {
        let tensor = run(&encode(&image, format), &config(4, 6));
        for (x, y, pixel) in source.enumerate_pixels() {
            for c in 0..3 {
                assert_eq!(
                    at(&tensor, Layout::Nchw, c, y as usize, x as usize),
                    f32::from(pixel.0[c]),
                    "{format:?} pixel ({x}, {y}) channel {c}"
                );
            }
        }
    }
}

#[test]
fn jpeg_keeps_a_solid_colour_within_compression_error() {
    let colour = [200u8, 100, 50];
    let image = DynamicImage::ImageRgb8(RgbImage::from_pixel(16, 16, Rgb(colour)));
    let tensor = run(&encode(&image, ImageFormat::Jpeg), &config(16, 16));
    assert_eq!(tensor.shape, [1, 3, 16, 16]);
    for (c, (plane, expected)) in tensor.data.chunks(256).zip(colour).enumerate() {
        for &value in plane {
            assert!(
                (value - f32::from(expected)).abs() <= 4.0,
                "channel {c}: {value}, expected about {expected}"
            );
        }
    }
}

#[test]
fn gif_uses_the_first_frame() {
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut bytes);
        encoder
            .encode_frames([
                Frame::new(RgbaImage::from_pixel(3, 2, Rgba([0, 0, 255, 255]))),
                Frame::new(RgbaImage::from_pixel(3, 2, Rgba([255, 0, 0, 255]))),
            ])
            .expect("encoding an animated GIF");
    }
    let tensor = run(&bytes, &config(2, 3));
    // Blue everywhere: zero red and green planes, a full blue plane.
    assert_eq!(tensor.shape, [1, 3, 2, 3]);
    assert_eq!(tensor.data[..6], [0.0; 6]);
    assert_eq!(tensor.data[6..12], [0.0; 6]);
    assert_eq!(tensor.data[12..], [255.0; 6]);
}

// ---------------------------------------------------------------- colour

#[test]
fn alpha_is_dropped_without_blending() {
    let image = RgbaImage::from_fn(2, 1, |x, _| {
        if x == 0 {
            Rgba([200, 100, 50, 0])
        } else {
            Rgba([10, 20, 30, 128])
        }
    });
    let bytes = encode(&DynamicImage::ImageRgba8(image), ImageFormat::Png);
    let tensor = run(&bytes, &config(1, 2));
    assert_eq!(tensor.shape, [1, 3, 1, 2]);
    assert_eq!(tensor.data, [200.0, 10.0, 100.0, 20.0, 50.0, 30.0]);
}

#[test]
fn grayscale_is_expanded_to_three_equal_channels() {
    let gray = GrayImage::from_fn(2, 1, |x, _| image::Luma([if x == 0 { 100 } else { 7 }]));
    let gray_alpha = GrayAlphaImage::from_fn(2, 1, |x, _| LumaA([if x == 0 { 100 } else { 7 }, 9]));
    for image in [
        DynamicImage::ImageLuma8(gray),
        DynamicImage::ImageLumaA8(gray_alpha),
    ] {
        let tensor = run(&encode(&image, ImageFormat::Png), &config(1, 2));
        assert_eq!(tensor.data, [100.0, 7.0, 100.0, 7.0, 100.0, 7.0]);
    }
}

// ---------------------------------------------------------------- normalization

/// Each preset applied to one pixel, from the formulas in its documentation,
/// in f64. Output channels are RGB except for caffe (BGR).
fn expected(normalize: Normalize, [r, g, b]: [u8; 3]) -> [f64; 3] {
    let rgb = [f64::from(r), f64::from(g), f64::from(b)];
    match normalize {
        Normalize::Tf => rgb.map(|x| x / 127.5 - 1.0),
        Normalize::Torch => [
            (rgb[0] / 255.0 - 0.485) / 0.229,
            (rgb[1] / 255.0 - 0.456) / 0.224,
            (rgb[2] / 255.0 - 0.406) / 0.225,
        ],
        Normalize::Caffe => [rgb[2] - 103.939, rgb[1] - 116.779, rgb[0] - 123.68],
        Normalize::None => rgb,
        Normalize::Custom { scale, mean, std } => {
            [0, 1, 2].map(|c| (rgb[c] * f64::from(scale) - f64::from(mean[c])) / f64::from(std[c]))
        }
    }
}

fn solid_png(colour: [u8; 3]) -> Vec<u8> {
    let image = RgbImage::from_pixel(3, 3, Rgb(colour));
    encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png)
}

#[test]
fn pure_red_matches_the_documented_examples() {
    let bytes = solid_png([255, 0, 0]);
    let first_pixel = |normalize| {
        let tensor = run(
            &bytes,
            &ImageClassificationConfig {
                normalize,
                ..config(3, 3)
            },
        );
        [0, 1, 2].map(|c| at(&tensor, Layout::Nchw, c, 0, 0))
    };
    assert_eq!(first_pixel(Normalize::Tf), [1.0, -1.0, -1.0]);
    assert_eq!(first_pixel(Normalize::None), [255.0, 0.0, 0.0]);
    // Caffe: blue first, each channel minus its ImageNet mean.
    assert_close(
        &first_pixel(Normalize::Caffe),
        &[-103.939, -116.779, 255.0 - 123.68],
        1e-4,
    );
}

#[test]
fn every_preset_matches_its_formula_on_solid_colours() {
    let custom = Normalize::Custom {
        scale: 1.0 / 255.0,
        mean: [0.5, 0.25, 0.125],
        std: [0.5, 2.0, 4.0],
    };
    for colour in [
        [255, 0, 0],
        [0, 255, 0],
        [12, 200, 77],
        [255, 255, 255],
        [0, 0, 0],
    ] {
        let bytes = solid_png(colour);
        for normalize in [
            Normalize::Tf,
            Normalize::Torch,
            Normalize::Caffe,
            Normalize::None,
            custom,
        ] {
            for layout in [Layout::Nchw, Layout::Nhwc] {
                let cfg = ImageClassificationConfig {
                    normalize,
                    layout,
                    ..config(3, 3)
                };
                let tensor = run(&bytes, &cfg);
                let want = expected(normalize, colour);
                for y in 0..3 {
                    for x in 0..3 {
                        let got = [0, 1, 2].map(|c| at(&tensor, layout, c, y, x));
                        assert_close(&got, &want, 1e-5);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- layout

#[test]
fn nchw_and_nhwc_place_each_value_where_expected() {
    // 2x2 pixels, all twelve channel values distinct:
    //   (0,0) = 1 2 3     (1,0) = 4 5 6
    //   (0,1) = 7 8 9     (1,1) = 10 11 12
    let image = RgbImage::from_fn(2, 2, |x, y| {
        let first = (3 * (2 * y + x) + 1) as u8;
        Rgb([first, first + 1, first + 2])
    });
    let bytes = encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png);

    let nchw = run(&bytes, &config(2, 2));
    assert_eq!(nchw.shape, [1, 3, 2, 2]);
    #[rustfmt::skip]
    assert_eq!(nchw.data, [
        1.0, 4.0, 7.0, 10.0, // red plane, row by row
        2.0, 5.0, 8.0, 11.0, // green plane
        3.0, 6.0, 9.0, 12.0, // blue plane
    ]);

    let cfg = ImageClassificationConfig {
        layout: Layout::Nhwc,
        ..config(2, 2)
    };
    let nhwc = run(&bytes, &cfg);
    assert_eq!(nhwc.shape, [1, 2, 2, 3]);
    let in_order: Vec<f32> = (1..=12).map(|v| v as f32).collect();
    assert_eq!(nhwc.data, in_order);
}

#[test]
fn non_square_images_keep_height_and_width_apart() {
    // 3 wide, 2 high: a transposed reading would misplace values.
    let source = distinct_pixels(3, 2);
    let bytes = encode(&DynamicImage::ImageRgb8(source.clone()), ImageFormat::Png);
    for (layout, shape) in [(Layout::Nchw, [1, 3, 2, 3]), (Layout::Nhwc, [1, 2, 3, 3])] {
        let cfg = ImageClassificationConfig {
            layout,
            ..config(2, 3)
        };
        let tensor = run(&bytes, &cfg);
        assert_eq!(tensor.shape, shape);
        for (x, y, pixel) in source.enumerate_pixels() {
            let got = [0, 1, 2].map(|c| at(&tensor, layout, c, y as usize, x as usize));
            assert_eq!(got, pixel.0.map(f32::from), "{layout:?} ({x}, {y})");
        }
    }
}

// ---------------------------------------------------------------- resizing

#[test]
fn resizing_is_straight_without_crop() {
    // 8x2: left half black, right half white. Squeezed to 2x2, a crop would
    // lose one side; a straight resize keeps one column of each.
    let image = RgbImage::from_fn(8, 2, |x, _| if x < 4 { Rgb([0; 3]) } else { Rgb([255; 3]) });
    let bytes = encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png);
    let tensor = run(&bytes, &config(2, 2));
    assert_eq!(tensor.shape, [1, 3, 2, 2]);
    for c in 0..3 {
        for y in 0..2 {
            assert_eq!(at(&tensor, Layout::Nchw, c, y, 0), 0.0);
            assert_eq!(at(&tensor, Layout::Nchw, c, y, 1), 255.0);
        }
    }
}

#[test]
fn every_filter_keeps_a_solid_colour() {
    let colour = [200u8, 100, 50];
    let image = RgbImage::from_pixel(7, 5, Rgb(colour));
    let bytes = encode(&DynamicImage::ImageRgb8(image), ImageFormat::Png);
    for resize in [
        ResizeFilter::Nearest,
        ResizeFilter::Bilinear,
        ResizeFilter::Bicubic,
        ResizeFilter::Gaussian,
        ResizeFilter::Lanczos3,
    ] {
        for size in [[3, 4], [11, 13]] {
            let cfg = ImageClassificationConfig {
                resize,
                ..config(size[0], size[1])
            };
            let tensor = run(&bytes, &cfg);
            let [h, w] = size.map(|s| s as usize);
            assert_eq!(tensor.shape, [1, 3, h, w]);
            for (c, plane) in tensor.data.chunks(h * w).enumerate() {
                for &value in plane {
                    assert!(
                        (value - f32::from(colour[c])).abs() <= 1.0,
                        "{resize:?} {size:?} channel {c}: {value}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------- errors

fn error(bytes: &[u8]) -> Error {
    match preprocess(bytes, &config(4, 4)) {
        Ok(tensor) => panic!("accepted {} bytes as {:?}", bytes.len(), tensor.shape),
        Err(e) => e,
    }
}

#[test]
fn empty_body_is_an_empty_image() {
    assert_eq!(error(&[]), Error::EmptyImage);
    assert_eq!(Error::EmptyImage.to_string(), "empty image");
}

#[test]
fn unknown_bytes_are_an_unsupported_format() {
    // Deterministic noise from a linear congruential generator.
    let mut state = 0x2545_F491_u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    assert_eq!(error(&noise), Error::UnsupportedFormat);
    assert_eq!(error(b"hello, world"), Error::UnsupportedFormat);
    // TIFF is recognised by `image` but not compiled in.
    assert_eq!(
        error(b"II*\0\x08\0\0\0\0\0\0\0\0\0\0\0"),
        Error::UnsupportedFormat
    );
    assert_eq!(
        Error::UnsupportedFormat.to_string(),
        "unsupported or unrecognised image format; expected JPEG, PNG, GIF, BMP or WebP"
    );
}

#[test]
fn truncated_jpeg_is_a_decode_error() {
    let image = RgbImage::from_fn(32, 32, |x, y| {
        Rgb([(8 * x) as u8, (8 * y) as u8, (x * y) as u8])
    });
    let jpeg = encode(&DynamicImage::ImageRgb8(image), ImageFormat::Jpeg);
    assert_eq!(run(&jpeg, &config(32, 32)).shape, [1, 3, 32, 32]);
    // Cut anywhere after the 3-byte signature: in the headers, inside the
    // compressed data, or just before the final end-of-image marker.
    for length in 3..jpeg.len() {
        match error(&jpeg[..length]) {
            Error::Decode(message) => assert!(!message.is_empty()),
            other => panic!("{length} bytes: expected a decode error, got {other:?}"),
        }
    }
}

#[test]
fn a_jpeg_cut_inside_its_compressed_data_says_it_is_truncated() {
    let image = DynamicImage::ImageRgb8(distinct_pixels(6, 4));
    let jpeg = encode(&image, ImageFormat::Jpeg);
    let message = error(&jpeg[..jpeg.len() - 10]).to_string();
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn a_png_signature_followed_by_garbage_is_a_decode_error() {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(b"this is not a chunk at all");
    assert!(matches!(error(&bytes), Error::Decode(_)));
}

#[test]
fn handmade_png_is_valid_at_small_sizes() {
    // The check value of CRC-32/ISO-HDLC.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    // From the Adler-32 definition: a = 1 + 97 + 98 + 99, b = 98 + 196 + 295.
    assert_eq!(adler32(b"abc"), (589 << 16) | 295);
    // The control for the limit tests below: the same construction decodes
    // when the claimed size matches the data.
    let tensor = run(&handmade_png(1, 1, 2, &[9, 99, 199]), &config(1, 1));
    assert_eq!(tensor.data, [9.0, 99.0, 199.0]);
    let tensor = run(
        &handmade_png(2, 1, 6, &[1, 2, 3, 0, 4, 5, 6, 255]),
        &config(1, 2),
    );
    assert_eq!(tensor.data, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
}

#[test]
fn png_claiming_100000_by_100000_is_too_large() {
    match error(&handmade_png(100_000, 100_000, 2, &[0, 0, 0])) {
        Error::TooLarge(message) => assert!(message.contains("too large"), "{message}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn png_within_the_dimension_limit_but_over_the_memory_limit_is_too_large() {
    // 16000 x 16000 RGBA is about 1 GiB of pixels, over the 512 MiB budget.
    assert!(matches!(
        error(&handmade_png(16_000, 16_000, 6, &[0, 0, 0, 0])),
        Error::TooLarge(_)
    ));
}

#[test]
fn a_wide_but_short_png_over_the_side_limit_is_too_large() {
    // 20000 x 1 is tiny in memory but wider than 16384 pixels.
    let samples = vec![0u8; 3 * 20_000];
    assert!(matches!(
        error(&handmade_png(20_000, 1, 2, &samples)),
        Error::TooLarge(_)
    ));
}

#[test]
fn invalid_config_is_refused_before_decoding() {
    let bytes = solid_png([1, 2, 3]);
    for size in [[0, 224], [224, 8193]] {
        let cfg = ImageClassificationConfig {
            size,
            ..config(1, 1)
        };
        assert!(matches!(
            preprocess(&bytes, &cfg),
            Err(Error::InvalidConfig(_))
        ));
    }
}

// ---------------------------------------------------------------- the tutorial's photo

#[test]
fn dog_photo_becomes_a_224_tensor_in_tf_range() {
    let bytes = std::fs::read(DOG_JPG).unwrap_or_else(|e| panic!("reading {DOG_JPG}: {e}"));
    let cfg = ImageClassificationConfig {
        normalize: Normalize::Tf,
        resize: ResizeFilter::Bilinear,
        ..config(224, 224)
    };
    let tensor = run(&bytes, &cfg);
    assert_eq!(tensor.shape, [1, 3, 224, 224]);
    assert_eq!(tensor.data.len(), 3 * 224 * 224);
    assert!(tensor.data.iter().all(|v| (-1.0..=1.0).contains(v)));
    // A photo, not a blank: the values spread over most of the range.
    let (min, max) = tensor
        .data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    assert!(max - min > 1.0, "range {min}..{max}");

    // The same photo in NHWC holds the same values, interleaved.
    let nhwc = run(
        &bytes,
        &ImageClassificationConfig {
            layout: Layout::Nhwc,
            ..cfg
        },
    );
    assert_eq!(nhwc.shape, [1, 224, 224, 3]);
    for (c, y, x) in [(0, 0, 0), (1, 100, 37), (2, 223, 223), (0, 150, 200)] {
        assert_eq!(
            at(&nhwc, Layout::Nhwc, c, y, x),
            at(&tensor, Layout::Nchw, c, y, x)
        );
    }
}

// ---------------------------------------------------------------- end to end

#[test]
fn config_labels_and_scores_give_labelled_predictions() {
    let cfg: ImageClassificationConfig = serde_yaml::from_str(
        "size: [8, 8]\nnormalize: torch\ntop_k: 2\nlabels: labels.txt\nlabel_offset: 1\n",
    )
    .unwrap_or_else(|e| panic!("parsing the config: {e}"));
    assert_eq!(cfg.validate(), Ok(()));
    let tensor = run(&solid_png([10, 20, 30]), &cfg);
    assert_eq!(tensor.shape, [1, 3, 8, 8]);

    let labels = parse_labels("tench\r\ngoldfish\r\nwhite shark\r\n");
    // Logits for background, tench, goldfish, white shark.
    let logits = [0.0, 1.0, 3.0, 2.0];
    let predictions = top_k(&logits, &cfg, Some(&labels));
    let denominator: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
    let got: Vec<(usize, &str)> = predictions
        .iter()
        .map(|p| (p.index, p.label.as_str()))
        .collect();
    assert_eq!(got, [(2, "goldfish"), (3, "white shark")]);
    assert_close(
        &[predictions[0].probability, predictions[1].probability],
        &[3.0_f64.exp() / denominator, 2.0_f64.exp() / denominator],
        1e-6,
    );
}

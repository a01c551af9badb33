//! The `pipeline:` section of a model's configuration file.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};

use crate::{Error, Result};

/// The largest accepted side of [`ImageClassificationConfig::size`].
const MAX_SIDE: u32 = 8192;

/// How an uploaded image becomes a model input, and how the model's scores
/// become labelled predictions.
///
/// This is the body of the `kind: image_classification` variant of a model's
/// `pipeline:` section; the `kind` tag itself belongs to the enclosing enum.
/// Call [`ImageClassificationConfig::validate`] after deserializing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageClassificationConfig {
    /// Name of the model input that receives the image tensor.
    /// When absent, the model's first input is used.
    pub input: Option<String>,

    /// Name of the model output that holds the class scores.
    /// When absent, the model's first output is used.
    pub output: Option<String>,

    /// `[height, width]` the image is resized to, straight, without cropping
    /// or preserving the aspect ratio. Each side must be between 1 and 8192.
    pub size: [u32; 2],

    /// Order of the dimensions of the input tensor. Defaults to `NCHW`.
    #[serde(default)]
    pub layout: Layout,

    /// How pixel values (0 to 255) are turned into the floats the model was
    /// trained on. Required: a wrong choice silently ruins the predictions.
    pub normalize: Normalize,

    /// Whether the model's scores are passed through a softmax. Defaults to
    /// `auto`.
    #[serde(default)]
    pub softmax: Softmax,

    /// How many predictions to return, best first. Defaults to 5.
    #[serde(default = "default_top_k")]
    pub top_k: usize,

    /// The resampling filter used to resize the image. Defaults to
    /// `bilinear`.
    #[serde(default)]
    pub resize: ResizeFilter,

    /// Path of the labels file (one label per line), relative to the model
    /// directory. Without it, predictions are labelled by their index.
    pub labels: Option<String>,

    /// Index in the model's output that corresponds to the first line of the
    /// labels file, e.g. 1 for 1001-class models whose index 0 is
    /// "background". Defaults to 0.
    #[serde(default)]
    pub label_offset: usize,
}

fn default_top_k() -> usize {
    5
}

impl ImageClassificationConfig {
    /// Checks the values that deserialization alone cannot: `size` between 1
    /// and 8192 on each side, `top_k` at least 1, and finite custom
    /// normalization constants with non-zero `std`.
    pub fn validate(&self) -> Result<()> {
        let [height, width] = self.size;
        if !(1..=MAX_SIDE).contains(&height) || !(1..=MAX_SIDE).contains(&width) {
            return Err(invalid(format!(
                "`size` is [height, width] with each side between 1 and {MAX_SIDE}, \
                 got [{height}, {width}]"
            )));
        }
        if self.top_k == 0 {
            return Err(invalid("`top_k` must be at least 1".to_owned()));
        }
        if let Normalize::Custom { scale, mean, std } = self.normalize {
            if !scale.is_finite() {
                return Err(invalid(format!(
                    "`normalize.scale` must be a finite number, got {scale}"
                )));
            }
            if mean.iter().any(|m| !m.is_finite()) {
                return Err(invalid(format!(
                    "`normalize.mean` must hold finite numbers, got {mean:?}"
                )));
            }
            if std.iter().any(|s| !s.is_finite() || *s == 0.0) {
                return Err(invalid(format!(
                    "`normalize.std` must hold finite non-zero numbers, got {std:?}"
                )));
            }
        }
        Ok(())
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidConfig(message)
}

/// Order of the dimensions of the image tensor (batch, channels, height,
/// width).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Layout {
    /// `[1, 3, height, width]`: one plane per channel (PyTorch, most ONNX
    /// exports).
    #[default]
    #[serde(rename = "NCHW", alias = "nchw")]
    Nchw,
    /// `[1, height, width, 3]`: channels interleaved per pixel (TensorFlow,
    /// Keras).
    #[serde(rename = "NHWC", alias = "nhwc")]
    Nhwc,
}

/// How 8-bit RGB pixel values `x` become model inputs, per channel.
///
/// In YAML, either a preset name (`caffe`, `torch`, `tf`, `none`) or a
/// mapping `{scale, mean, std}` for [`Normalize::Custom`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalize {
    /// Keras `preprocess_input` in `caffe` mode: channels reordered to BGR,
    /// then the ImageNet means `[103.939, 116.779, 123.68]` (B, G, R)
    /// subtracted, without scaling.
    Caffe,
    /// Keras `torch` mode: `x / 255`, then the ImageNet mean
    /// `[0.485, 0.456, 0.406]` subtracted and the result divided by the
    /// standard deviation `[0.229, 0.224, 0.225]` (R, G, B).
    Torch,
    /// Keras `tf` mode: `x / 127.5 - 1`, a range of -1 to 1.
    Tf,
    /// The raw values 0 to 255, as floats.
    None,
    /// `(x * scale - mean[c]) / std[c]` for channel `c` in RGB order. In
    /// YAML each key is optional: `scale` defaults to 1, `mean` to zeros and
    /// `std` to ones.
    Custom {
        /// Factor applied to the raw value first, e.g. `1/255`.
        scale: f32,
        /// Subtracted after scaling, per channel (R, G, B).
        mean: [f32; 3],
        /// Divisor applied last, per channel (R, G, B).
        std: [f32; 3],
    },
}

const NORMALIZE_PRESETS: &[&str] = &["caffe", "torch", "tf", "none"];

/// The YAML form of [`Normalize::Custom`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomNormalize {
    #[serde(default = "default_scale")]
    scale: f32,
    #[serde(default)]
    mean: [f32; 3],
    #[serde(default = "default_std")]
    std: [f32; 3],
}

fn default_scale() -> f32 {
    1.0
}

fn default_std() -> [f32; 3] {
    [1.0; 3]
}

impl<'de> Deserialize<'de> for Normalize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NormalizeVisitor;

        impl<'de> Visitor<'de> for NormalizeVisitor {
            type Value = Normalize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "one of `caffe`, `torch`, `tf`, `none`, \
                     or a mapping with `scale`, `mean` and `std`",
                )
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Normalize, E> {
                match value {
                    "caffe" => Ok(Normalize::Caffe),
                    "torch" => Ok(Normalize::Torch),
                    "tf" => Ok(Normalize::Tf),
                    "none" => Ok(Normalize::None),
                    other => Err(E::unknown_variant(other, NORMALIZE_PRESETS)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Normalize, A::Error> {
                let CustomNormalize { scale, mean, std } =
                    CustomNormalize::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Normalize::Custom { scale, mean, std })
            }
        }

        deserializer.deserialize_any(NormalizeVisitor)
    }
}

/// Whether the model's scores go through a softmax before ranking.
///
/// In YAML: `auto`, `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Softmax {
    /// Apply a softmax unless the scores already look like probabilities:
    /// all between 0 and 1 and summing to 1 within 1e-3.
    #[default]
    Auto,
    /// Always apply a softmax (the model outputs logits).
    Always,
    /// Never apply a softmax (the model outputs probabilities).
    Never,
}

impl<'de> Deserialize<'de> for Softmax {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SoftmaxVisitor;

        impl Visitor<'_> for SoftmaxVisitor {
            type Value = Softmax;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`auto`, `true` or `false`")
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Softmax, E> {
                Ok(if value {
                    Softmax::Always
                } else {
                    Softmax::Never
                })
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Softmax, E> {
                match value {
                    "auto" => Ok(Softmax::Auto),
                    "true" => Ok(Softmax::Always),
                    "false" => Ok(Softmax::Never),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
        }

        deserializer.deserialize_any(SoftmaxVisitor)
    }
}

/// The resampling filter used to resize the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// Nearest neighbour.
    Nearest,
    /// Linear interpolation (a triangle filter).
    #[default]
    #[serde(alias = "triangle")]
    Bilinear,
    /// Cubic interpolation (Catmull-Rom).
    #[serde(alias = "catmull_rom")]
    Bicubic,
    /// Gaussian filter.
    Gaussian,
    /// Lanczos with a window of 3.
    Lanczos3,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ImageClassificationConfig, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    #[test]
    fn minimal_config_takes_the_documented_defaults() -> Result<(), serde_yaml::Error> {
        let cfg = parse("size: [224, 200]\nnormalize: tf\n")?;
        assert_eq!(
            cfg,
            ImageClassificationConfig {
                input: None,
                output: None,
                size: [224, 200],
                layout: Layout::Nchw,
                normalize: Normalize::Tf,
                softmax: Softmax::Auto,
                top_k: 5,
                resize: ResizeFilter::Bilinear,
                labels: None,
                label_offset: 0,
            }
        );
        assert_eq!(cfg.validate(), Ok(()));
        Ok(())
    }

    #[test]
    fn full_config_is_read_field_by_field() -> Result<(), serde_yaml::Error> {
        let cfg = parse(
            "input: images\n\
             output: logits\n\
             size: [300, 400]\n\
             layout: NHWC\n\
             normalize: caffe\n\
             softmax: false\n\
             top_k: 3\n\
             resize: lanczos3\n\
             labels: labels.txt\n\
             label_offset: 1\n",
        )?;
        assert_eq!(cfg.input.as_deref(), Some("images"));
        assert_eq!(cfg.output.as_deref(), Some("logits"));
        assert_eq!(cfg.size, [300, 400]);
        assert_eq!(cfg.layout, Layout::Nhwc);
        assert_eq!(cfg.normalize, Normalize::Caffe);
        assert_eq!(cfg.softmax, Softmax::Never);
        assert_eq!(cfg.top_k, 3);
        assert_eq!(cfg.resize, ResizeFilter::Lanczos3);
        assert_eq!(cfg.labels.as_deref(), Some("labels.txt"));
        assert_eq!(cfg.label_offset, 1);
        Ok(())
    }

    #[test]
    fn every_preset_and_softmax_spelling_parses() -> Result<(), serde_yaml::Error> {
        for (text, expected) in [
            ("caffe", Normalize::Caffe),
            ("torch", Normalize::Torch),
            ("tf", Normalize::Tf),
            ("none", Normalize::None),
        ] {
            let cfg = parse(&format!("size: [1, 1]\nnormalize: {text}\n"))?;
            assert_eq!(cfg.normalize, expected, "normalize: {text}");
        }
        for (text, expected) in [
            ("auto", Softmax::Auto),
            ("true", Softmax::Always),
            ("false", Softmax::Never),
            ("'true'", Softmax::Always),
        ] {
            let cfg = parse(&format!("size: [1, 1]\nnormalize: tf\nsoftmax: {text}\n"))?;
            assert_eq!(cfg.softmax, expected, "softmax: {text}");
        }
        for (text, expected) in [
            ("nearest", ResizeFilter::Nearest),
            ("bilinear", ResizeFilter::Bilinear),
            ("triangle", ResizeFilter::Bilinear),
            ("bicubic", ResizeFilter::Bicubic),
            ("gaussian", ResizeFilter::Gaussian),
            ("lanczos3", ResizeFilter::Lanczos3),
        ] {
            let cfg = parse(&format!("size: [1, 1]\nnormalize: tf\nresize: {text}\n"))?;
            assert_eq!(cfg.resize, expected, "resize: {text}");
        }
        for (text, expected) in [
            ("NCHW", Layout::Nchw),
            ("nchw", Layout::Nchw),
            ("NHWC", Layout::Nhwc),
        ] {
            let cfg = parse(&format!("size: [1, 1]\nnormalize: tf\nlayout: {text}\n"))?;
            assert_eq!(cfg.layout, expected, "layout: {text}");
        }
        Ok(())
    }

    #[test]
    fn custom_normalization_fills_in_defaults_and_accepts_integers() -> Result<(), serde_yaml::Error>
    {
        let cfg = parse("size: [1, 1]\nnormalize: {scale: 0.5}\n")?;
        assert_eq!(
            cfg.normalize,
            Normalize::Custom {
                scale: 0.5,
                mean: [0.0; 3],
                std: [1.0; 3]
            }
        );
        let cfg = parse(
            "size: [1, 1]\nnormalize:\n  mean: [124, 117, 104]\n  std: [58.4, 57.1, 57.4]\n",
        )?;
        assert_eq!(
            cfg.normalize,
            Normalize::Custom {
                scale: 1.0,
                mean: [124.0, 117.0, 104.0],
                std: [58.4, 57.1, 57.4]
            }
        );
        Ok(())
    }

    #[test]
    fn malformed_configs_are_rejected_when_parsed() {
        for yaml in [
            // `size` and `normalize` are required.
            "normalize: tf\n",
            "size: [224, 224]\n",
            // Unknown keys, at the top and inside a custom normalization.
            "size: [1, 1]\nnormalize: tf\ncrop: center\n",
            "size: [1, 1]\nnormalize: {scale: 1, mena: [0, 0, 0]}\n",
            // Means and standard deviations have exactly three channels.
            "size: [1, 1]\nnormalize: {mean: [1, 2]}\n",
            "size: [1, 1]\nnormalize: {std: [1, 2, 3, 4]}\n",
            // Unknown names.
            "size: [1, 1]\nnormalize: imagenet\n",
            "size: [1, 1]\nnormalize: tf\nsoftmax: maybe\n",
            "size: [1, 1]\nnormalize: tf\nlayout: CHW\n",
            "size: [1, 1]\nnormalize: tf\nresize: cubic\n",
            // `size` is two numbers.
            "size: [224]\nnormalize: tf\n",
            "size: 224\nnormalize: tf\n",
        ] {
            assert!(parse(yaml).is_err(), "accepted:\n{yaml}");
        }
    }

    #[test]
    fn unknown_preset_error_lists_the_presets() {
        let message = match parse("size: [1, 1]\nnormalize: imagenet\n") {
            Ok(cfg) => panic!("accepted {cfg:?}"),
            Err(e) => e.to_string(),
        };
        assert!(message.contains("imagenet"), "{message}");
        assert!(message.contains("caffe"), "{message}");
    }

    /// The server embeds this struct in an internally tagged enum; the tag
    /// must not trip `deny_unknown_fields`.
    #[test]
    fn works_inside_an_internally_tagged_enum() -> Result<(), serde_yaml::Error> {
        #[derive(Debug, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        enum Pipeline {
            ImageClassification(ImageClassificationConfig),
        }
        let Pipeline::ImageClassification(cfg) = serde_yaml::from_str(
            "kind: image_classification\n\
             size: [224, 224]\n\
             normalize: {scale: 0.00392, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}\n\
             softmax: true\n",
        )?;
        assert_eq!(cfg.size, [224, 224]);
        assert_eq!(cfg.softmax, Softmax::Always);
        assert_eq!(
            cfg.normalize,
            Normalize::Custom {
                scale: 0.00392,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225]
            }
        );
        let unknown: Result<Pipeline, _> = serde_yaml::from_str(
            "kind: image_classification\nsize: [1, 1]\nnormalize: tf\nsizes: 1\n",
        );
        assert!(unknown.is_err());
        Ok(())
    }

    fn valid() -> ImageClassificationConfig {
        ImageClassificationConfig {
            input: None,
            output: None,
            size: [224, 224],
            layout: Layout::Nchw,
            normalize: Normalize::Tf,
            softmax: Softmax::Auto,
            top_k: 5,
            resize: ResizeFilter::Bilinear,
            labels: None,
            label_offset: 0,
        }
    }

    #[test]
    fn validate_accepts_the_bounds() {
        for size in [[1, 1], [8192, 8192], [1, 8192]] {
            let cfg = ImageClassificationConfig { size, ..valid() };
            assert_eq!(cfg.validate(), Ok(()), "size {size:?}");
        }
    }

    #[test]
    fn validate_rejects_each_bad_value() {
        let custom = |scale: f32, mean: [f32; 3], std: [f32; 3]| ImageClassificationConfig {
            normalize: Normalize::Custom { scale, mean, std },
            ..valid()
        };
        let cases = [
            (
                "size",
                ImageClassificationConfig {
                    size: [0, 224],
                    ..valid()
                },
            ),
            (
                "size",
                ImageClassificationConfig {
                    size: [224, 0],
                    ..valid()
                },
            ),
            (
                "size",
                ImageClassificationConfig {
                    size: [8193, 224],
                    ..valid()
                },
            ),
            (
                "size",
                ImageClassificationConfig {
                    size: [224, 8193],
                    ..valid()
                },
            ),
            (
                "top_k",
                ImageClassificationConfig {
                    top_k: 0,
                    ..valid()
                },
            ),
            ("normalize.std", custom(1.0, [0.0; 3], [1.0, 0.0, 1.0])),
            ("normalize.std", custom(1.0, [0.0; 3], [1.0, 1.0, f32::NAN])),
            (
                "normalize.mean",
                custom(1.0, [0.0, f32::INFINITY, 0.0], [1.0; 3]),
            ),
            ("normalize.scale", custom(f32::NAN, [0.0; 3], [1.0; 3])),
        ];
        for (field, cfg) in cases {
            match cfg.validate() {
                Err(Error::InvalidConfig(message)) => {
                    assert!(message.contains(field), "{field}: {message}");
                }
                other => panic!("{field}: expected an InvalidConfig error, got {other:?}"),
            }
        }
    }
}

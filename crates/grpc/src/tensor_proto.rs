//! `tensorflow.TensorProto` ⇄ [`Tensor`], following TensorFlow's own `Tensor::FromProto` and
//! `Tensor::AsProtoField`.
//!
//! Decoding reads `tensor_content` (little-endian raw elements; strings as TensorFlow's string
//! list: every length as a varint, then the bytes) when it is non-empty, else the typed field
//! of the dtype: `float_val`, `double_val`, `int_val` (int8, int16, int32, uint8, uint16),
//! `int64_val`, `uint32_val`, `uint64_val`, `bool_val`, `half_val` (16-bit patterns) and
//! `string_val`. As in TensorFlow, typed values shorter than the shape are padded with the
//! last value (so one value fills any shape), no values give zeros, and extra values are
//! ignored. Encoding always writes the typed field, as TF Serving's Predict does.

use half::f16;
use mofang_backend::{DataType, Tensor, TensorData, element_count};

use crate::pb::tensorflow::{
    DataType as TfType, TensorProto, TensorShapeProto, tensor_shape_proto::Dim,
};

/// TensorFlow's enum value for a dtype.
pub(crate) fn tf_type(dtype: DataType) -> TfType {
    match dtype {
        DataType::Bool => TfType::DtBool,
        DataType::U8 => TfType::DtUint8,
        DataType::U16 => TfType::DtUint16,
        DataType::U32 => TfType::DtUint32,
        DataType::U64 => TfType::DtUint64,
        DataType::I8 => TfType::DtInt8,
        DataType::I16 => TfType::DtInt16,
        DataType::I32 => TfType::DtInt32,
        DataType::I64 => TfType::DtInt64,
        DataType::F16 => TfType::DtHalf,
        DataType::F32 => TfType::DtFloat,
        DataType::F64 => TfType::DtDouble,
        DataType::Bytes => TfType::DtString,
    }
}

fn from_tf_type(value: i32) -> Result<DataType, String> {
    let tf = TfType::try_from(value).map_err(|_| format!("unknown dtype {value}"))?;
    Ok(match tf {
        TfType::DtBool => DataType::Bool,
        TfType::DtUint8 => DataType::U8,
        TfType::DtUint16 => DataType::U16,
        TfType::DtUint32 => DataType::U32,
        TfType::DtUint64 => DataType::U64,
        TfType::DtInt8 => DataType::I8,
        TfType::DtInt16 => DataType::I16,
        TfType::DtInt32 => DataType::I32,
        TfType::DtInt64 => DataType::I64,
        TfType::DtHalf => DataType::F16,
        TfType::DtFloat => DataType::F32,
        TfType::DtDouble => DataType::F64,
        TfType::DtString => DataType::Bytes,
        other => return Err(format!("dtype {} is not supported", other.as_str_name())),
    })
}

/// A shape as TensorShapeProto dims (sizes only, names empty).
pub(crate) fn shape_proto(dims: impl IntoIterator<Item = i64>) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|size| Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

/// What a decoded tensor of `n` elements of `dtype` costs in memory, roughly.
fn decoded_bytes(dtype: DataType, n: usize) -> usize {
    n.saturating_mul(
        dtype
            .element_size()
            .unwrap_or(std::mem::size_of::<Vec<u8>>()),
    )
}

/// `n` values from TensorFlow's typed field: padded with the last value, zeros when empty,
/// extra values ignored.
fn fill<S: Copy, T: Default + Clone>(values: &[S], n: usize, convert: impl Fn(S) -> T) -> Vec<T> {
    let mut out: Vec<T> = values.iter().take(n).map(|v| convert(*v)).collect();
    let pad = out.last().cloned().unwrap_or_default();
    out.resize(n, pad);
    out
}

/// Decodes one tensor. `max_bytes` bounds the decoded size (a single value broadcast to a huge
/// shape must not exhaust memory). Errors say what was wrong, without the input's name.
pub(crate) fn decode(proto: &TensorProto, max_bytes: usize) -> Result<Tensor, String> {
    let dtype = from_tf_type(proto.dtype)?;
    let shape = match &proto.tensor_shape {
        None => Vec::new(),
        Some(s) if s.unknown_rank => return Err("the tensor_shape has an unknown rank".into()),
        Some(s) => s
            .dim
            .iter()
            .map(|d| usize::try_from(d.size))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| {
                let dims: Vec<i64> = s.dim.iter().map(|d| d.size).collect();
                format!("tensor_shape {dims:?} has a negative dimension")
            })?,
    };
    let n = element_count(&shape);
    let cost = decoded_bytes(dtype, n);
    if cost > max_bytes {
        return Err(format!(
            "shape {shape:?} of {dtype} needs {cost} bytes, more than the limit of {max_bytes}"
        ));
    }
    let data = if !proto.tensor_content.is_empty() {
        from_content(dtype, &proto.tensor_content, n)?
    } else {
        from_fields(proto, dtype, n, max_bytes)?
    };
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

fn from_content(dtype: DataType, raw: &[u8], n: usize) -> Result<TensorData, String> {
    if dtype != DataType::Bytes {
        return TensorData::from_le_bytes(dtype, raw, n)
            .map_err(|e| format!("tensor_content: {e}"));
    }
    // TensorFlow's string list: n varint32 lengths, then the strings back to back.
    let mut rest = raw;
    let mut lengths = Vec::with_capacity(n.min(raw.len()));
    for _ in 0..n {
        let (len, used) = varint(rest).ok_or("tensor_content: truncated string length")?;
        lengths.push(len);
        rest = &rest[used..];
    }
    let mut out = Vec::with_capacity(lengths.len());
    for len in lengths {
        if rest.len() < len {
            return Err("tensor_content: a string runs past the end".into());
        }
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(format!(
            "tensor_content: {} bytes follow the {n} strings",
            rest.len()
        ));
    }
    Ok(TensorData::Bytes(out))
}

/// A base-128 varint of at most 32 bits: (value, bytes used).
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().take(5).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return usize::try_from(u32::try_from(value).ok()?)
                .ok()
                .map(|v| (v, i + 1));
        }
    }
    None
}

fn from_fields(
    p: &TensorProto,
    dtype: DataType,
    n: usize,
    max_bytes: usize,
) -> Result<TensorData, String> {
    Ok(match dtype {
        DataType::F32 => TensorData::F32(fill(&p.float_val, n, |v| v)),
        DataType::F64 => TensorData::F64(fill(&p.double_val, n, |v| v)),
        // TensorFlow copies int_val into narrower types with a C++ cast (truncating).
        DataType::I32 => TensorData::I32(fill(&p.int_val, n, |v| v)),
        DataType::I16 => TensorData::I16(fill(&p.int_val, n, |v| v as i16)),
        DataType::I8 => TensorData::I8(fill(&p.int_val, n, |v| v as i8)),
        DataType::U8 => TensorData::U8(fill(&p.int_val, n, |v| v as u8)),
        DataType::U16 => TensorData::U16(fill(&p.int_val, n, |v| v as u16)),
        DataType::I64 => TensorData::I64(fill(&p.int64_val, n, |v| v)),
        DataType::U32 => TensorData::U32(fill(&p.uint32_val, n, |v| v)),
        DataType::U64 => TensorData::U64(fill(&p.uint64_val, n, |v| v)),
        DataType::Bool => TensorData::Bool(fill(&p.bool_val, n, |v| v)),
        DataType::F16 => TensorData::F16(fill(&p.half_val, n, |v| f16::from_bits(v as u16))),
        DataType::Bytes => {
            let given: usize = p.string_val.iter().take(n).map(Vec::len).sum();
            let last = p.string_val.iter().take(n).next_back().map_or(0, Vec::len);
            let padded = n.saturating_sub(p.string_val.len());
            let cost = given.saturating_add(padded.saturating_mul(last));
            if cost > max_bytes {
                return Err(format!(
                    "{n} strings need {cost} bytes, more than the limit of {max_bytes}"
                ));
            }
            let mut out: Vec<Vec<u8>> = p.string_val.iter().take(n).cloned().collect();
            let pad = out.last().cloned().unwrap_or_default();
            out.resize(n, pad);
            TensorData::Bytes(out)
        }
    })
}

/// Encodes a tensor the way TF Serving's Predict answers: dtype, shape and the typed field.
pub(crate) fn encode(tensor: &Tensor) -> TensorProto {
    let mut p = TensorProto {
        dtype: tf_type(tensor.dtype()) as i32,
        tensor_shape: Some(shape_proto(tensor.shape().iter().map(|d| *d as i64))),
        ..TensorProto::default()
    };
    match tensor.data() {
        TensorData::F32(v) => p.float_val = v.clone(),
        TensorData::F64(v) => p.double_val = v.clone(),
        TensorData::I32(v) => p.int_val = v.clone(),
        TensorData::I16(v) => p.int_val = v.iter().map(|x| i32::from(*x)).collect(),
        TensorData::I8(v) => p.int_val = v.iter().map(|x| i32::from(*x)).collect(),
        TensorData::U8(v) => p.int_val = v.iter().map(|x| i32::from(*x)).collect(),
        TensorData::U16(v) => p.int_val = v.iter().map(|x| i32::from(*x)).collect(),
        TensorData::I64(v) => p.int64_val = v.clone(),
        TensorData::U32(v) => p.uint32_val = v.clone(),
        TensorData::U64(v) => p.uint64_val = v.clone(),
        TensorData::Bool(v) => p.bool_val = v.clone(),
        TensorData::F16(v) => p.half_val = v.iter().map(|x| i32::from(x.to_bits())).collect(),
        TensorData::Bytes(v) => p.string_val = v.clone(),
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn proto(dtype: TfType, dims: &[i64]) -> TensorProto {
        TensorProto {
            dtype: dtype as i32,
            tensor_shape: Some(shape_proto(dims.iter().copied())),
            ..TensorProto::default()
        }
    }

    #[test]
    fn typed_values_pad_with_the_last_and_extra_ones_are_ignored_as_tensorflow_does() {
        let mut p = proto(TfType::DtFloat, &[2, 2]);
        p.float_val = vec![1.5];
        let t = decode(&p, LIMIT).expect("one value fills the shape");
        assert_eq!(t.data(), &TensorData::F32(vec![1.5; 4]));
        p.float_val = vec![1.0, 2.0];
        let t = decode(&p, LIMIT).expect("short values are padded");
        assert_eq!(t.data(), &TensorData::F32(vec![1.0, 2.0, 2.0, 2.0]));
        p.float_val = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        let t = decode(&p, LIMIT).expect("extra values are ignored");
        assert_eq!(t.data(), &TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
        p.float_val = Vec::new();
        let t = decode(&p, LIMIT).expect("no values are zeros");
        assert_eq!(t.data(), &TensorData::F32(vec![0.0; 4]));
    }

    #[test]
    fn narrow_integers_come_from_int_val_and_round_trip() {
        let cases = [
            (TfType::DtInt8, TensorData::I8(vec![-128, 127])),
            (TfType::DtInt16, TensorData::I16(vec![-300, 300])),
            (TfType::DtUint8, TensorData::U8(vec![0, 255])),
            (TfType::DtUint16, TensorData::U16(vec![0, 65535])),
            (TfType::DtInt32, TensorData::I32(vec![i32::MIN, i32::MAX])),
        ];
        for (tf, data) in cases {
            let t = Tensor::new(vec![2], data.clone()).expect("valid");
            let p = encode(&t);
            assert_eq!(p.dtype, tf as i32);
            assert_eq!(p.int_val.len(), 2, "{tf:?} goes to int_val");
            assert_eq!(decode(&p, LIMIT).expect("decodes"), t);
        }
    }

    #[test]
    fn every_dtype_round_trips_through_typed_fields_and_tensor_content() {
        let cases = vec![
            TensorData::F32(vec![0.25, -1.0]),
            TensorData::F64(vec![1e300, -0.5]),
            TensorData::I64(vec![i64::MIN, i64::MAX]),
            TensorData::U32(vec![0, u32::MAX]),
            TensorData::U64(vec![0, u64::MAX]),
            TensorData::Bool(vec![true, false]),
            TensorData::F16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
            TensorData::Bytes(vec![b"ab".to_vec(), Vec::new()]),
        ];
        for data in cases {
            let t = Tensor::new(vec![2, 1], data.clone()).expect("valid");
            let typed = encode(&t);
            assert_eq!(decode(&typed, LIMIT).expect("typed"), t, "{data:?}");
            if data.dtype() != DataType::Bytes {
                let mut raw = proto(tf_type(data.dtype()), &[2, 1]);
                raw.tensor_content = data.to_le_bytes().into();
                assert_eq!(decode(&raw, LIMIT).expect("content"), t, "{data:?}");
            }
        }
    }

    #[test]
    fn strings_in_tensor_content_use_tensorflows_varint_string_list() {
        let mut p = proto(TfType::DtString, &[2]);
        let mut raw = vec![3u8, 200, 1];
        raw.extend_from_slice(b"abc");
        raw.extend(std::iter::repeat_n(b'x', 200));
        p.tensor_content = raw.into();
        let t = decode(&p, LIMIT).expect("string list");
        assert_eq!(
            t.data(),
            &TensorData::Bytes(vec![b"abc".to_vec(), vec![b'x'; 200]])
        );
    }

    #[test]
    fn hostile_shapes_and_bad_content_are_errors_not_allocations() {
        let mut p = proto(TfType::DtFloat, &[1 << 40, 1 << 40]);
        p.float_val = vec![1.0];
        assert!(decode(&p, LIMIT).expect_err("huge").contains("limit"));
        let p = proto(TfType::DtFloat, &[-1, 4]);
        assert!(
            decode(&p, LIMIT)
                .expect_err("negative")
                .contains("negative")
        );
        let mut p = proto(TfType::DtFloat, &[2]);
        p.tensor_content = vec![0u8; 7].into();
        assert!(
            decode(&p, LIMIT)
                .expect_err("short")
                .contains("expected 8 bytes")
        );
        let p = proto(TfType::DtComplex64, &[1]);
        assert!(
            decode(&p, LIMIT)
                .expect_err("complex")
                .contains("DT_COMPLEX64")
        );
        let mut p = proto(TfType::DtString, &[1 << 20]);
        p.string_val = vec![vec![b'x'; 1024]];
        assert!(decode(&p, LIMIT).expect_err("broadcast").contains("limit"));
    }

    #[test]
    fn a_missing_shape_is_a_scalar() {
        let p = TensorProto {
            dtype: TfType::DtInt64 as i32,
            int64_val: vec![7],
            ..TensorProto::default()
        };
        let t = decode(&p, LIMIT).expect("scalar");
        assert_eq!(t.shape(), &[] as &[usize]);
        assert_eq!(t.data(), &TensorData::I64(vec![7]));
    }
}

//! Tensors as the backends exchange them: a shape and a flat, row-major buffer of one dtype.

use std::fmt;

use half::f16;

use crate::{Error, Result};

/// Element type of a tensor. Names follow the KServe V2 datatype names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
    F64,
    /// Variable-length byte strings (ONNX `string`, TF `DT_STRING`, V2 `BYTES`).
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// The KServe V2 / Open Inference Protocol name (`FP32`, `INT64`, `BYTES`, ...).
    pub fn v2_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    pub fn from_v2_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.v2_name() == name)
    }

    /// The TensorFlow `DataType` enum name (`DT_FLOAT`, `DT_INT64`, `DT_STRING`, ...).
    pub fn tf_name(self) -> &'static str {
        match self {
            DataType::Bool => "DT_BOOL",
            DataType::U8 => "DT_UINT8",
            DataType::U16 => "DT_UINT16",
            DataType::U32 => "DT_UINT32",
            DataType::U64 => "DT_UINT64",
            DataType::I8 => "DT_INT8",
            DataType::I16 => "DT_INT16",
            DataType::I32 => "DT_INT32",
            DataType::I64 => "DT_INT64",
            DataType::F16 => "DT_HALF",
            DataType::F32 => "DT_FLOAT",
            DataType::F64 => "DT_DOUBLE",
            DataType::Bytes => "DT_STRING",
        }
    }

    /// The config-file spelling (`float32`, `int64`, `string`, ...), numpy style.
    pub fn short_name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U8 => "uint8",
            DataType::U16 => "uint16",
            DataType::U32 => "uint32",
            DataType::U64 => "uint64",
            DataType::I8 => "int8",
            DataType::I16 => "int16",
            DataType::I32 => "int32",
            DataType::I64 => "int64",
            DataType::F16 => "float16",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
            DataType::Bytes => "string",
        }
    }

    pub fn from_short_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.short_name() == name)
    }

    /// Size of one element in bytes in the raw (little-endian) encoding; `None` for `Bytes`.
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 | DataType::F16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// A flat, row-major buffer of one element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Runs `$body` with `$v` bound to the inner `Vec` of any variant.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::TensorData::Bool($v) => $body,
            $crate::TensorData::U8($v) => $body,
            $crate::TensorData::U16($v) => $body,
            $crate::TensorData::U32($v) => $body,
            $crate::TensorData::U64($v) => $body,
            $crate::TensorData::I8($v) => $body,
            $crate::TensorData::I16($v) => $body,
            $crate::TensorData::I32($v) => $body,
            $crate::TensorData::I64($v) => $body,
            $crate::TensorData::F16($v) => $body,
            $crate::TensorData::F32($v) => $body,
            $crate::TensorData::F64($v) => $body,
            $crate::TensorData::Bytes($v) => $body,
        }
    };
}

/// Builds the same variant as `$like` from an expression producing a `Vec` of its element type.
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::U64($v) => TensorData::U64($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

impl TensorData {
    pub fn dtype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::U16(_) => DataType::U16,
            TensorData::U32(_) => DataType::U32,
            TensorData::U64(_) => DataType::U64,
            TensorData::I8(_) => DataType::I8,
            TensorData::I16(_) => DataType::I16,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F16(_) => DataType::F16,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer of the given type with room for `capacity` elements.
    pub fn with_capacity(dtype: DataType, capacity: usize) -> TensorData {
        match dtype {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::U8 => TensorData::U8(Vec::with_capacity(capacity)),
            DataType::U16 => TensorData::U16(Vec::with_capacity(capacity)),
            DataType::U32 => TensorData::U32(Vec::with_capacity(capacity)),
            DataType::U64 => TensorData::U64(Vec::with_capacity(capacity)),
            DataType::I8 => TensorData::I8(Vec::with_capacity(capacity)),
            DataType::I16 => TensorData::I16(Vec::with_capacity(capacity)),
            DataType::I32 => TensorData::I32(Vec::with_capacity(capacity)),
            DataType::I64 => TensorData::I64(Vec::with_capacity(capacity)),
            DataType::F16 => TensorData::F16(Vec::with_capacity(capacity)),
            DataType::F32 => TensorData::F32(Vec::with_capacity(capacity)),
            DataType::F64 => TensorData::F64(Vec::with_capacity(capacity)),
            DataType::Bytes => TensorData::Bytes(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `other` (which must have the same dtype) to `self`.
    fn extend_from(&mut self, other: &TensorData) -> Result<()> {
        macro_rules! ext {
            ($($var:ident),*) => {
                match (self, other) {
                    $((TensorData::$var(a), TensorData::$var(b)) => a.extend_from_slice(b),)*
                    (a, b) => {
                        return Err(Error::InvalidInput(format!(
                            "cannot join tensors of types {} and {}",
                            a.dtype(),
                            b.dtype()
                        )))
                    }
                }
            };
        }
        ext!(
            Bool, U8, U16, U32, U64, I8, I16, I32, I64, F16, F32, F64, Bytes
        );
        Ok(())
    }

    fn slice(&self, start: usize, end: usize) -> TensorData {
        map_data!(self, v => v[start..end].to_vec())
    }

    /// Little-endian raw bytes (KServe binary extension / TensorProto `tensor_content` layout).
    /// `Bytes` elements are each prefixed with their length as a little-endian u32.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        fn pack<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            let mut out = Vec::with_capacity(v.len() * N);
            for x in v {
                out.extend_from_slice(&f(*x));
            }
            out
        }
        match self {
            TensorData::Bool(v) => v.iter().map(|b| u8::from(*b)).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::U16(v) => pack(v, u16::to_le_bytes),
            TensorData::U32(v) => pack(v, u32::to_le_bytes),
            TensorData::U64(v) => pack(v, u64::to_le_bytes),
            TensorData::I8(v) => pack(v, i8::to_le_bytes),
            TensorData::I16(v) => pack(v, i16::to_le_bytes),
            TensorData::I32(v) => pack(v, i32::to_le_bytes),
            TensorData::I64(v) => pack(v, i64::to_le_bytes),
            TensorData::F16(v) => pack(v, f16::to_le_bytes),
            TensorData::F32(v) => pack(v, f32::to_le_bytes),
            TensorData::F64(v) => pack(v, f64::to_le_bytes),
            TensorData::Bytes(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|s| s.len() + 4).sum());
                for s in v {
                    // An element longer than 4 GiB cannot be produced by any request we accept.
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s);
                }
                out
            }
        }
    }

    /// Decodes the layout written by [`TensorData::to_le_bytes`]. `count` is the number of
    /// elements the shape calls for; the buffer must hold exactly that many.
    pub fn from_le_bytes(dtype: DataType, raw: &[u8], count: usize) -> Result<TensorData> {
        if let Some(size) = dtype.element_size()
            && size.checked_mul(count) != Some(raw.len())
        {
            return Err(Error::InvalidInput(format!(
                "expected {} bytes for {count} {dtype} elements, got {}",
                size.saturating_mul(count),
                raw.len()
            )));
        }
        fn unpack<T, const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            raw.chunks_exact(N)
                .map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    f(a)
                })
                .collect()
        }
        Ok(match dtype {
            DataType::Bool => TensorData::Bool(raw.iter().map(|b| *b != 0).collect()),
            DataType::U8 => TensorData::U8(raw.to_vec()),
            DataType::U16 => TensorData::U16(unpack(raw, u16::from_le_bytes)),
            DataType::U32 => TensorData::U32(unpack(raw, u32::from_le_bytes)),
            DataType::U64 => TensorData::U64(unpack(raw, u64::from_le_bytes)),
            DataType::I8 => TensorData::I8(unpack(raw, i8::from_le_bytes)),
            DataType::I16 => TensorData::I16(unpack(raw, i16::from_le_bytes)),
            DataType::I32 => TensorData::I32(unpack(raw, i32::from_le_bytes)),
            DataType::I64 => TensorData::I64(unpack(raw, i64::from_le_bytes)),
            DataType::F16 => TensorData::F16(unpack(raw, f16::from_le_bytes)),
            DataType::F32 => TensorData::F32(unpack(raw, f32::from_le_bytes)),
            DataType::F64 => TensorData::F64(unpack(raw, f64::from_le_bytes)),
            DataType::Bytes => {
                // Never trust `count` for the allocation: every element needs 4 bytes of prefix.
                let mut out = Vec::with_capacity(count.min(raw.len() / 4));
                let mut rest = raw;
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(Error::InvalidInput(
                            "truncated length prefix in BYTES tensor data".into(),
                        ));
                    }
                    let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    rest = &rest[4..];
                    if rest.len() < n {
                        return Err(Error::InvalidInput(format!(
                            "BYTES element of {n} bytes runs past the end of the tensor data"
                        )));
                    }
                    out.push(rest[..n].to_vec());
                    rest = &rest[n..];
                }
                if out.len() != count {
                    return Err(Error::InvalidInput(format!(
                        "expected {count} BYTES elements, got {}",
                        out.len()
                    )));
                }
                TensorData::Bytes(out)
            }
        })
    }
}

/// A dense tensor. Invariant: the product of `shape` equals the number of elements in `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor> {
        let expected = element_count(&shape);
        if expected != data.len() {
            return Err(Error::InvalidInput(format!(
                "shape {shape:?} needs {expected} elements but {} were given",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Joins tensors along axis 0. All must share dtype and the dimensions after the first.
    pub fn concat(parts: &[&Tensor]) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| Error::InvalidInput("nothing to concatenate".into()))?;
        if first.shape.is_empty() {
            return Err(Error::InvalidInput("cannot concatenate scalars".into()));
        }
        let tail = &first.shape[1..];
        let mut rows = 0;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut data = TensorData::with_capacity(first.dtype(), total);
        for p in parts {
            if p.shape.len() != first.shape.len() || &p.shape[1..] != tail {
                return Err(Error::InvalidInput(format!(
                    "cannot concatenate shapes {:?} and {:?}",
                    first.shape, p.shape
                )));
            }
            rows += p.shape[0];
            data.extend_from(&p.data)?;
        }
        let mut shape = first.shape.clone();
        shape[0] = rows;
        Tensor::new(shape, data)
    }

    /// Splits along axis 0 into pieces of the given row counts (which must add up to `shape[0]`).
    pub fn split(&self, rows: &[usize]) -> Result<Vec<Tensor>> {
        if self.shape.is_empty() || rows.iter().sum::<usize>() != self.shape[0] {
            return Err(Error::Inference(format!(
                "cannot split shape {:?} into {rows:?} rows",
                self.shape
            )));
        }
        let row_len: usize = self.shape[1..].iter().product();
        let mut out = Vec::with_capacity(rows.len());
        let mut start = 0;
        for &r in rows {
            let mut shape = self.shape.clone();
            shape[0] = r;
            let end = start + r * row_len;
            out.push(Tensor {
                shape,
                data: self.data.slice(start, end),
            });
            start = end;
        }
        Ok(out)
    }
}

/// The number of elements a shape holds; saturates at `usize::MAX` (which no buffer can match),
/// so a hostile shape can never wrap around to a small count.
pub fn element_count(shape: &[usize]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .unwrap_or(usize::MAX)
}

/// What a model declares for one of its inputs or outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DataType,
    /// One entry per dimension; `None` where the dimension is dynamic.
    pub shape: Vec<Option<usize>>,
}

impl TensorSpec {
    /// The shape as TF Serving and KServe print it: `-1` for dynamic dimensions.
    pub fn signed_shape(&self) -> Vec<i64> {
        self.shape
            .iter()
            .map(|d| d.map_or(-1, |v| v as i64))
            .collect()
    }

    /// Checks a tensor offered for this input. The message names the input and the shape expected.
    pub fn check(&self, tensor: &Tensor) -> Result<()> {
        if tensor.dtype() != self.dtype {
            return Err(Error::InvalidInput(format!(
                "input `{}` expects dtype {} but got {}",
                self.name,
                self.dtype,
                tensor.dtype()
            )));
        }
        let fits = tensor.shape().len() == self.shape.len()
            && tensor
                .shape()
                .iter()
                .zip(&self.shape)
                .all(|(have, want)| want.is_none_or(|w| w == *have));
        if !fits {
            return Err(Error::InvalidInput(format!(
                "input `{}` expects shape {:?} but got {:?}",
                self.name,
                self.signed_shape(),
                tensor.shape()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_then_split_round_trips() {
        let a = Tensor::new(vec![1, 2], TensorData::F32(vec![1.0, 2.0])).expect("valid");
        let b = Tensor::new(vec![2, 2], TensorData::F32(vec![3.0, 4.0, 5.0, 6.0])).expect("valid");
        let joined = Tensor::concat(&[&a, &b]).expect("same tail shape");
        assert_eq!(joined.shape(), &[3, 2]);
        let parts = joined.split(&[1, 2]).expect("rows add up");
        assert_eq!(parts, vec![a, b]);
    }

    #[test]
    fn concat_refuses_mixed_shapes_and_types() {
        let a = Tensor::new(vec![1, 2], TensorData::F32(vec![1.0, 2.0])).expect("valid");
        let b = Tensor::new(vec![1, 3], TensorData::F32(vec![1.0, 2.0, 3.0])).expect("valid");
        let c = Tensor::new(vec![1, 2], TensorData::I32(vec![1, 2])).expect("valid");
        assert!(Tensor::concat(&[&a, &b]).is_err());
        assert!(Tensor::concat(&[&a, &c]).is_err());
    }

    #[test]
    fn raw_bytes_round_trip_every_dtype() {
        let cases = vec![
            TensorData::Bool(vec![true, false]),
            TensorData::U16(vec![1, 65535]),
            TensorData::I64(vec![-3, i64::MAX]),
            TensorData::F16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
            TensorData::F64(vec![0.25, -1e300]),
            TensorData::Bytes(vec![b"ab".to_vec(), Vec::new()]),
        ];
        for data in cases {
            let raw = data.to_le_bytes();
            let back = TensorData::from_le_bytes(data.dtype(), &raw, data.len()).expect("decodes");
            assert_eq!(back, data);
        }
    }

    #[test]
    fn raw_bytes_with_wrong_length_is_an_input_error() {
        let err = TensorData::from_le_bytes(DataType::F32, &[0, 0, 0], 1).expect_err("too short");
        assert!(err.to_string().contains("expected 4 bytes"), "{err}");
        let err =
            TensorData::from_le_bytes(DataType::Bytes, &[5, 0, 0, 0, 1], 1).expect_err("short");
        assert!(err.to_string().contains("runs past the end"), "{err}");
    }

    #[test]
    fn spec_check_names_input_and_expected_shape() {
        let spec = TensorSpec {
            name: "x".into(),
            dtype: DataType::F32,
            shape: vec![None, Some(4)],
        };
        let t = Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 6])).expect("valid");
        let err = spec.check(&t).expect_err("wrong shape").to_string();
        assert!(err.contains("`x`") && err.contains("[-1, 4]"), "{err}");
        let ok = Tensor::new(vec![5, 4], TensorData::F32(vec![0.0; 20])).expect("valid");
        spec.check(&ok).expect("dynamic batch fits");
    }
}

//! JSON values ↔ tensors, shared by the TF Serving and KServe V2 codecs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use half::f16;
use mofang_backend::{DataType, Tensor, TensorData};
use serde_json::Value;

/// Reads one nested JSON value as a tensor of `dtype`: the shape comes from the nesting (the
/// first element at each level), every list at a level must have that length.
pub fn tensor_from_nested(value: &Value, dtype: DataType, what: &str) -> Result<Tensor, String> {
    let mut shape = Vec::new();
    let mut probe = value;
    while let Value::Array(items) = probe {
        shape.push(items.len());
        match items.first() {
            Some(first) => probe = first,
            None => break,
        }
    }
    let mut data =
        TensorData::with_capacity(dtype, mofang_backend::element_count(&shape).min(1 << 16));
    push_nested(value, &shape, 0, &mut data, what)?;
    Tensor::new(shape, data).map_err(|e| format!("{what}: {e}"))
}

fn push_nested(
    value: &Value,
    shape: &[usize],
    level: usize,
    out: &mut TensorData,
    what: &str,
) -> Result<(), String> {
    match value {
        Value::Array(items) => {
            let Some(&expected) = shape.get(level) else {
                return Err(format!(
                    "{what}: list at level {level}, deeper than the rank {} of the first element",
                    shape.len()
                ));
            };
            if items.len() != expected {
                return Err(format!(
                    "{what}: list of size {} at level {level}, expected size {expected}",
                    items.len()
                ));
            }
            for item in items {
                push_nested(item, shape, level + 1, out, what)?;
            }
            Ok(())
        }
        scalar => {
            if level != shape.len() {
                return Err(format!(
                    "{what}: value {scalar} at level {level}, expected a list (rank {})",
                    shape.len()
                ));
            }
            push_scalar(scalar, out, what)
        }
    }
}

/// Appends every leaf of `value` (any nesting) to `out`: the KServe V2 `data` field.
pub fn push_flat(value: &Value, out: &mut TensorData, what: &str) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| push_flat(v, out, what)),
        scalar => push_scalar(scalar, out, what),
    }
}

fn type_error(v: &Value, dtype: DataType, what: &str) -> String {
    format!("{what}: value {v} is not of type {dtype}")
}

/// Appends one JSON scalar converted to the buffer's dtype. Integers must be integral and in
/// range; floats take any number; strings take a JSON string or `{"b64": "..."}`.
pub fn push_scalar(v: &Value, out: &mut TensorData, what: &str) -> Result<(), String> {
    let dtype = out.dtype();
    macro_rules! int {
        ($vec:expr, $t:ty) => {{
            let n = v
                .as_i64()
                .and_then(|n| <$t>::try_from(n).ok())
                .or_else(|| v.as_u64().and_then(|n| <$t>::try_from(n).ok()))
                .ok_or_else(|| type_error(v, dtype, what))?;
            $vec.push(n);
        }};
    }
    match out {
        TensorData::Bool(d) => d.push(v.as_bool().ok_or_else(|| type_error(v, dtype, what))?),
        TensorData::U8(d) => int!(d, u8),
        TensorData::U16(d) => int!(d, u16),
        TensorData::U32(d) => int!(d, u32),
        TensorData::U64(d) => int!(d, u64),
        TensorData::I8(d) => int!(d, i8),
        TensorData::I16(d) => int!(d, i16),
        TensorData::I32(d) => int!(d, i32),
        TensorData::I64(d) => int!(d, i64),
        TensorData::F16(d) => d.push(f16::from_f64(number(v, dtype, what)?)),
        TensorData::F32(d) => d.push(number(v, dtype, what)? as f32),
        TensorData::F64(d) => d.push(number(v, dtype, what)?),
        TensorData::Bytes(d) => d.push(bytes(v, what)?),
    }
    Ok(())
}

fn number(v: &Value, dtype: DataType, what: &str) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| type_error(v, dtype, what)),
        // Non-finite values cannot be JSON numbers; accept their usual spellings as strings.
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(type_error(v, dtype, what)),
        },
        _ => Err(type_error(v, dtype, what)),
    }
}

fn bytes(v: &Value, what: &str) -> Result<Vec<u8>, String> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Object(map) if map.len() == 1 => match map.get("b64") {
            Some(Value::String(encoded)) => B64
                .decode(encoded)
                .map_err(|e| format!("{what}: cannot base64-decode {{\"b64\": ...}} value: {e}")),
            _ => Err(format!(
                "{what}: expected a string or {{\"b64\": \"...\"}}, got {v}"
            )),
        },
        _ => Err(format!(
            "{what}: expected a string or {{\"b64\": \"...\"}}, got {v}"
        )),
    }
}

/// Writes one element of `data` as JSON text. Floats print in their shortest round-trip form
/// (`0.1` for an f32 0.1); non-finite floats as the bare tokens `NaN`, `Infinity`, `-Infinity`
/// as TF Serving and Triton do. `b64` writes strings as `{"b64": "..."}`.
pub fn write_element(out: &mut String, data: &TensorData, i: usize, b64: bool) {
    fn float<F: ryu::Float>(out: &mut String, x: F, finite: bool, nan: bool, neg: bool) {
        if finite {
            out.push_str(ryu::Buffer::new().format_finite(x));
        } else if nan {
            out.push_str("NaN");
        } else if neg {
            out.push_str("-Infinity");
        } else {
            out.push_str("Infinity");
        }
    }
    macro_rules! int {
        ($x:expr) => {
            out.push_str(itoa::Buffer::new().format($x))
        };
    }
    match data {
        TensorData::Bool(d) => out.push_str(if d[i] { "true" } else { "false" }),
        TensorData::U8(d) => int!(d[i]),
        TensorData::U16(d) => int!(d[i]),
        TensorData::U32(d) => int!(d[i]),
        TensorData::U64(d) => int!(d[i]),
        TensorData::I8(d) => int!(d[i]),
        TensorData::I16(d) => int!(d[i]),
        TensorData::I32(d) => int!(d[i]),
        TensorData::I64(d) => int!(d[i]),
        TensorData::F16(d) => {
            let x = d[i].to_f32();
            float(out, x, x.is_finite(), x.is_nan(), x < 0.0)
        }
        TensorData::F32(d) => float(out, d[i], d[i].is_finite(), d[i].is_nan(), d[i] < 0.0),
        TensorData::F64(d) => float(out, d[i], d[i].is_finite(), d[i].is_nan(), d[i] < 0.0),
        TensorData::Bytes(d) => {
            if b64 {
                out.push_str("{\"b64\":");
                write_str(out, &B64.encode(&d[i]));
                out.push('}');
            } else {
                write_str(out, &String::from_utf8_lossy(&d[i]));
            }
        }
    }
}

/// A JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    // serde_json's escaping; writing into a String cannot fail.
    out.push_str(&serde_json::Value::String(s.to_string()).to_string());
}

/// Writes elements `[start, start + product(shape))` nested according to `shape`.
pub fn write_nested(out: &mut String, data: &TensorData, shape: &[usize], start: usize, b64: bool) {
    match shape.split_first() {
        None => write_element(out, data, start, b64),
        Some((&n, rest)) => {
            let stride: usize = rest.iter().product();
            out.push('[');
            for k in 0..n {
                if k > 0 {
                    out.push(',');
                }
                write_nested(out, data, rest, start + k * stride, b64);
            }
            out.push(']');
        }
    }
}

/// Writes all elements as one flat JSON list.
pub fn write_flat(out: &mut String, data: &TensorData, b64: bool) {
    out.push('[');
    for i in 0..data.len() {
        if i > 0 {
            out.push(',');
        }
        write_element(out, data, i, b64);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_values_keep_their_shape() {
        let t = tensor_from_nested(&json!([[1, 2, 3], [4, 5, 6]]), DataType::I64, "x").expect("ok");
        assert_eq!(t.shape(), &[2, 3]);
        let mut s = String::new();
        write_nested(&mut s, t.data(), t.shape(), 0, false);
        assert_eq!(s, "[[1,2,3],[4,5,6]]");
    }

    #[test]
    fn ragged_lists_and_wrong_types_are_named() {
        let e = tensor_from_nested(&json!([[1, 2], [3]]), DataType::F32, "input `x`")
            .expect_err("ragged");
        assert!(
            e.contains("input `x`") && e.contains("expected size 2"),
            "{e}"
        );
        let e = tensor_from_nested(&json!([1.5]), DataType::I32, "input `x`")
            .expect_err("float for int");
        assert!(e.contains("1.5") && e.contains("int32"), "{e}");
        let e = tensor_from_nested(&json!([300]), DataType::U8, "in").expect_err("out of range");
        assert!(e.contains("uint8"), "{e}");
    }

    #[test]
    fn b64_objects_decode_and_encode() {
        let t = tensor_from_nested(&json!([{"b64": "aGVsbG8="}, "x"]), DataType::Bytes, "s")
            .expect("ok");
        assert_eq!(
            t.data(),
            &TensorData::Bytes(vec![b"hello".to_vec(), b"x".to_vec()])
        );
        let mut s = String::new();
        write_flat(&mut s, t.data(), true);
        assert_eq!(s, r#"[{"b64":"aGVsbG8="},{"b64":"eA=="}]"#);
    }

    #[test]
    fn floats_print_shortest_and_non_finite_as_tokens() {
        let mut s = String::new();
        write_flat(
            &mut s,
            &TensorData::F32(vec![0.1, 3.0, f32::NAN, f32::NEG_INFINITY]),
            false,
        );
        assert_eq!(s, "[0.1,3.0,NaN,-Infinity]");
    }
}

#!/usr/bin/env python3
"""Reference outputs from onnxruntime (one intra-op thread), for comparing mofang against.

Tensor mode:
    ort_reference.py MODEL.onnx < request.json
  stdin:  {"inputs":  {"NAME": {"dtype": "float32", "shape": [2, 3], "data": [flat, row-major]}}}
  stdout: {"outputs": {"NAME": {"dtype": "float32", "shape": [2, 3], "data": [flat, row-major]}}}
  dtypes: float32 float64 int8 int16 int32 int64 uint8 bool string. Floats are written as JSON
  numbers (a float32 widened to a Python float, so exact); NaN and infinities, which JSON
  cannot hold, are written as the strings "NaN", "Infinity" and "-Infinity".

Image mode:
    ort_reference.py MODEL.onnx --image PATH --size H W --layout NCHW|NHWC
                     --preset tf|torch|caffe|none [--top-k 5] [--labels FILE] [--softmax]
  Decodes the image with Pillow, converts it to RGB, resizes it straight to WxH (bilinear),
  builds a float32 batch of one:
    tf     x / 127.5 - 1
    torch  x / 255, then (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]   (RGB)
    caffe  RGB -> BGR, then x - [103.939, 116.779, 123.68]                    (BGR, no scaling)
    none   x in 0..255
  runs the model's first input -> first output, optionally applies softmax, and prints
  {"predictions": [{"index": i, "label": "..." or null, "probability": p}, ...]} best first.
"""

import argparse
import json
import math
import sys

import numpy as np

DTYPES = {
    "float32": np.float32,
    "float64": np.float64,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "bool": np.bool_,
    "string": object,
}

PRESETS = ("tf", "torch", "caffe", "none")
TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


class UsageError(Exception):
    """The request or the command line was wrong (exit status 2)."""


class RunError(Exception):
    """onnxruntime refused to load or run the model (exit status 1)."""


def run(sess, output_names, feeds):
    try:
        return sess.run(output_names, feeds)
    except Exception as e:  # onnxruntime raises its own pybind exception types
        raise RunError(str(e).strip()) from None


def session(model_path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise RunError(str(e).strip()) from None


# ---------------------------------------------------------------------------------------------
# Tensor mode
# ---------------------------------------------------------------------------------------------


def decode_tensor(name, spec):
    if not isinstance(spec, dict):
        raise UsageError(f"input {name!r}: expected an object with dtype, shape and data")
    dtype = spec.get("dtype")
    if dtype not in DTYPES:
        raise UsageError(f"input {name!r}: unsupported dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise UsageError(f"input {name!r}: shape must be a list of non-negative integers")
    data = spec.get("data")
    if not isinstance(data, list):
        raise UsageError(f"input {name!r}: data must be a flat list")
    expected = math.prod(shape)
    if len(data) != expected:
        raise UsageError(f"input {name!r}: shape {shape} needs {expected} values, got {len(data)}")
    if dtype == "string":
        if not all(isinstance(v, str) for v in data):
            raise UsageError(f"input {name!r}: string data must be a list of strings")
        array = np.empty(len(data), dtype=object)
        array[:] = data
        return array.reshape(shape)
    if dtype == "bool":
        if not all(isinstance(v, bool) for v in data):
            raise UsageError(f"input {name!r}: bool data must be a list of true/false")
    try:
        return np.array(data, dtype=DTYPES[dtype]).reshape(shape)
    except (TypeError, ValueError, OverflowError) as e:
        raise UsageError(f"input {name!r}: cannot convert data to {dtype}: {e}") from None


def json_float(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def encode_tensor(array):
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind in "US":
        dtype = "string"
        data = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
    else:
        dtype = "bool" if array.dtype == np.bool_ else array.dtype.name
        data = array.reshape(-1).tolist()
        if array.dtype.kind == "f":
            data = [json_float(v) for v in data]
    return {"dtype": dtype, "shape": list(array.shape), "data": data}


def tensor_mode(model_path):
    try:
        request = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        raise UsageError(f"stdin is not JSON: {e}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), dict):
        raise UsageError('stdin must be {"inputs": {"NAME": {"dtype": ..., "shape": [...], "data": [...]}}}')
    feeds = {name: decode_tensor(name, spec) for name, spec in request["inputs"].items()}
    sess = session(model_path)
    wanted = {i.name for i in sess.get_inputs()}
    missing = sorted(wanted - feeds.keys())
    unknown = sorted(feeds.keys() - wanted)
    if missing or unknown:
        raise UsageError(f"model inputs are {sorted(wanted)}; missing {missing}, unknown {unknown}")
    names = [o.name for o in sess.get_outputs()]
    results = run(sess, names, feeds)
    return {"outputs": {name: encode_tensor(value) for name, value in zip(names, results)}}


# ---------------------------------------------------------------------------------------------
# Image mode
# ---------------------------------------------------------------------------------------------


def image_tensor(path, height, width, layout, preset):
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((width, height), Image.BILINEAR)
    x = np.asarray(rgb, dtype=np.float32)  # H, W, 3 in RGB, values 0..255
    if preset == "tf":
        x = x / 127.5 - 1.0
    elif preset == "torch":
        x = (x / 255.0 - TORCH_MEAN) / TORCH_STD
    elif preset == "caffe":
        x = x[..., ::-1] - CAFFE_MEAN_BGR
    x = x.astype(np.float32)
    if layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


def softmax(v):
    z = np.exp(v - v.max())
    return z / z.sum()


def image_mode(model_path, args):
    labels = None
    if args.labels:
        with open(args.labels, encoding="utf-8") as f:
            labels = [line.rstrip("\r\n") for line in f]
    height, width = args.size
    x = image_tensor(args.image, height, width, args.layout, args.preset)
    sess = session(model_path)
    first_in = sess.get_inputs()[0].name
    first_out = sess.get_outputs()[0].name
    (out,) = run(sess, [first_out], {first_in: x})
    scores = np.asarray(out, dtype=np.float64).reshape(-1)
    if args.softmax:
        scores = softmax(scores)
    top = np.argsort(-scores, kind="stable")[: args.top_k]
    predictions = []
    for i in top:
        i = int(i)
        label = labels[i] if labels is not None and i < len(labels) else None
        predictions.append({"index": i, "label": label, "probability": json_float(float(scores[i]))})
    return {"predictions": predictions}


def main():
    parser = argparse.ArgumentParser(
        description="Run a model in onnxruntime and print its outputs as JSON.",
        epilog="Without --image, reads the input tensors as JSON from stdin.",
    )
    parser.add_argument("model", help="path to the .onnx file")
    parser.add_argument("--image", help="classify this image instead of reading JSON from stdin")
    parser.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=[224, 224])
    parser.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW")
    parser.add_argument("--preset", choices=PRESETS, default="none")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--labels", help="text file with one class name per line, in index order")
    parser.add_argument("--softmax", action="store_true", help="apply softmax to the output first")
    args = parser.parse_args()
    try:
        if args.image is not None:
            result = image_mode(args.model, args)
        else:
            result = tensor_mode(args.model)
    except UsageError as e:
        print(f"ort_reference.py: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"ort_reference.py: onnxruntime: {e}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, allow_nan=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

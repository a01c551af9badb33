#!/usr/bin/env python3
"""Build the small ONNX models that mofang's backend and server tests run.

Every model uses opset 13 and IR version 8 (loadable by onnxruntime 1.31 and tract 0.23) and
has a symbolic batch dimension named `batch` as dim 0 of every input and output. Weights are
pseudo-random with fixed seeds, so the files are the same on every machine. Each model is
checked with onnxruntime (one run, compared against numpy where that is simple).

  add_mul.onnx      a, b float32 [batch,3] -> sum = a+b, prod = a*b
  tiny.onnx         x float32 [batch,4] -> y = x @ W + c   (W [4,2], c [2])
  dtypes.onnx       f32 f64 i8 i16 i32 i64 u8 [batch,2] -> <name>_out = input + 1;
                    flag bool [batch,2] -> flag_out = Not(flag)
  strings.onnx      text string [batch] -> text_out = text
  image_nchw.onnx   input float32 [batch,3,32,32] -> logits float32 [batch,10]
  image_nhwc.onnx   input float32 [batch,32,32,3] -> logits float32 [batch,10]
  resnet50.onnx     data float32 [batch,3,224,224] -> softmax float32 [batch,1000]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, version_converter

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO / "target" / "test-models"

OPSET = 13
IR_VERSION = 8
BATCH = "batch"


def make_model(name, nodes, inputs, outputs, initializers=(), doc=""):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mofang scripts/make_test_models.py",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def const(name, array):
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def value(name, elem_type, shape):
    return helper.make_tensor_value_info(name, elem_type, shape)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def add_mul():
    model = make_model(
        "add_mul",
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["prod"])],
        [value("a", TensorProto.FLOAT, [BATCH, 3]), value("b", TensorProto.FLOAT, [BATCH, 3])],
        [value("sum", TensorProto.FLOAT, [BATCH, 3]), value("prod", TensorProto.FLOAT, [BATCH, 3])],
        doc="sum = a + b, prod = a * b",
    )
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((2, 3)).astype(np.float32)
    return model, {"a": a, "b": b}, {"sum": a + b, "prod": a * b}


def tiny():
    rng = np.random.default_rng(20240601)
    w = rng.standard_normal((4, 2)).astype(np.float32)
    c = rng.standard_normal(2).astype(np.float32)
    model = make_model(
        "tiny",
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "c"], ["y"])],
        [value("x", TensorProto.FLOAT, [BATCH, 4])],
        [value("y", TensorProto.FLOAT, [BATCH, 2])],
        [const("W", w), const("c", c)],
        doc="y = x @ W + c with fixed pseudo-random W [4,2] and c [2] (numpy seed 20240601)",
    )
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    return model, {"x": x}, {"y": x @ w + c}


# (input name, ONNX type, numpy type) of the numeric inputs of dtypes.onnx
DTYPES = [
    ("f32", TensorProto.FLOAT, np.float32),
    ("f64", TensorProto.DOUBLE, np.float64),
    ("i8", TensorProto.INT8, np.int8),
    ("i16", TensorProto.INT16, np.int16),
    ("i32", TensorProto.INT32, np.int32),
    ("i64", TensorProto.INT64, np.int64),
    ("u8", TensorProto.UINT8, np.uint8),
]
# onnxruntime's CPU Add has no kernel for these types (measured with 1.31.1: "Type
# 'tensor(int8)' of input parameter ... of operator (Add) ... is invalid"). Rather than fall back
# to Identity, they go Cast(int32) -> Add 1 -> Cast(back), so every numeric output is input + 1.
# Overflow (127 + 1 for int8, 255 + 1 for uint8) is left to Cast; tests should avoid the limits.
WIDEN_FOR_ADD = {TensorProto.INT8, TensorProto.INT16, TensorProto.UINT8}


def dtypes():
    nodes, inputs, outputs, inits = [], [], [], []
    feeds, expected = {}, {}
    for name, onnx_type, np_type in DTYPES:
        inputs.append(value(name, onnx_type, [BATCH, 2]))
        outputs.append(value(f"{name}_out", onnx_type, [BATCH, 2]))
        if onnx_type in WIDEN_FOR_ADD:
            inits.append(const(f"{name}_one", np.array(1, dtype=np.int32)))
            nodes += [
                helper.make_node("Cast", [name], [f"{name}_wide"], to=TensorProto.INT32),
                helper.make_node("Add", [f"{name}_wide", f"{name}_one"], [f"{name}_wide_plus"]),
                helper.make_node("Cast", [f"{name}_wide_plus"], [f"{name}_out"], to=onnx_type),
            ]
        else:
            inits.append(const(f"{name}_one", np.array(1, dtype=np_type)))
            nodes.append(helper.make_node("Add", [name, f"{name}_one"], [f"{name}_out"]))
        feeds[name] = np.array([[1, 2], [3, 4]], dtype=np_type)
        expected[f"{name}_out"] = feeds[name] + np_type(1)
    inputs.append(value("flag", TensorProto.BOOL, [BATCH, 2]))
    outputs.append(value("flag_out", TensorProto.BOOL, [BATCH, 2]))
    nodes.append(helper.make_node("Not", ["flag"], ["flag_out"]))
    feeds["flag"] = np.array([[True, False], [False, True]])
    expected["flag_out"] = ~feeds["flag"]
    model = make_model(
        "dtypes", nodes, inputs, outputs, inits,
        doc="<name>_out = <name> + 1 in the input's own type; flag_out = Not(flag)",
    )
    return model, feeds, expected


def strings():
    model = make_model(
        "strings",
        [helper.make_node("Identity", ["text"], ["text_out"])],
        [value("text", TensorProto.STRING, [BATCH])],
        [value("text_out", TensorProto.STRING, [BATCH])],
        doc="text_out = text",
    )
    text = np.array(["hello", "魔方", ""], dtype=object)
    return model, {"text": text}, {"text_out": text}


def image_classifier(layout):
    """3x32x32 image -> Conv 8x3x3 (pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm 10."""
    rng = np.random.default_rng(7)  # same weights for both layouts
    conv_w = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    conv_b = (rng.standard_normal(8) * 0.1).astype(np.float32)
    fc_w = (rng.standard_normal((10, 8)) * 0.5).astype(np.float32)
    fc_b = (rng.standard_normal(10) * 0.1).astype(np.float32)
    nodes = []
    if layout == "NHWC":
        shape = [BATCH, 32, 32, 3]
        nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
        conv_in = "nchw"
    else:
        shape = [BATCH, 3, 32, 32]
        conv_in = "input"
    nodes += [
        helper.make_node("Conv", [conv_in, "conv.weight", "conv.bias"], ["conv"],
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1),
    ]
    model = make_model(
        f"image_{layout.lower()}",
        nodes,
        [value("input", TensorProto.FLOAT, shape)],
        [value("logits", TensorProto.FLOAT, [BATCH, 10])],
        [const("conv.weight", conv_w), const("conv.bias", conv_b),
         const("fc.weight", fc_w), const("fc.bias", fc_b)],
        doc=f"toy 10-class image classifier, {layout} float32 input (numpy seed 7)",
    )
    x = np.random.default_rng(8).uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    feed = x if layout == "NCHW" else x.transpose(0, 2, 3, 1).copy()
    return model, {"input": feed}, {"logits": reference_image_logits(x, conv_w, conv_b, fc_w, fc_b)}


def reference_image_logits(x, conv_w, conv_b, fc_w, fc_b):
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, conv_w.shape[0], h, w), dtype=np.float64)
    for dy in range(3):
        for dx in range(3):
            patch = padded[:, :, dy:dy + h, dx:dx + w]
            out += np.einsum("nchw,oc->nohw", patch, conv_w[:, :, dy, dx])
    out += conv_b[None, :, None, None]
    pooled = np.maximum(out, 0).mean(axis=(2, 3))
    return (pooled @ fc_w.T + fc_b).astype(np.float32)


LIGHT_RESNET50 = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"


def resnet50():
    """ResNet-50 from the onnx wheel's light_resnet50.onnx (Caffe2 export, opset 9).

    The "light" model keeps the graph but replaces most weights with ConstantOfShape(0.02)
    nodes fed by `<name>__SHAPE` initializers (a few batch-norm tensors are kept). Here every
    weight becomes a concrete seeded initializer (He-normal convolutions, batch norm close to
    identity with small scales on the last batch norm of each residual branch so activations
    stay finite, a small-variance classifier), the weight graph inputs of the IR 3 file are
    dropped, the fixed [1, 2048] Reshape becomes Flatten, the input/output are renamed to
    `data`/`softmax` with a symbolic batch dimension, and the opset is converted to 13.
    """
    if not LIGHT_RESNET50.is_file():
        raise FileNotFoundError(f"{LIGHT_RESNET50} is not in the installed onnx wheel")
    src = onnx.load(str(LIGHT_RESNET50))
    g = src.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    # which operator input slot each tensor feeds decides how to initialise it
    role = {}
    for node in g.node:
        for slot, name in enumerate(node.input):
            role.setdefault(name, (node.op_type, slot))

    rng = np.random.default_rng(50)
    new_inits, nodes = [], []
    in_name, out_name = g.input[0].name, g.output[0].name
    rename = {in_name: "data", out_name: "softmax"}

    def weight(name, shape):
        op, slot = role[name]
        if op == "Conv" and slot == 1:
            fan_in = int(np.prod(shape[1:]))
            return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        if op == "BatchNormalization":
            channels = shape[0]
            if slot == 1:  # scale
                base = 0.2 if "branch2c" in name else 1.0
                return base * rng.uniform(0.8, 1.2, channels)
            if slot == 2:  # bias
                return rng.uniform(-0.1, 0.1, channels)
            if slot == 3:  # running mean
                return rng.uniform(-0.1, 0.1, channels)
            if slot == 4:  # running variance
                return rng.uniform(0.5, 1.5, channels)
        if op == "Gemm" and slot == 1:
            return rng.standard_normal(shape) / np.sqrt(shape[1])
        if op == "Gemm" and slot == 2:
            return rng.uniform(-0.1, 0.1, shape)
        raise ValueError(f"no initialiser rule for {name} ({op} input {slot})")

    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            name = node.output[0]
            shape = [int(d) for d in inits[node.input[0]]]
            new_inits.append(const(name, weight(name, shape).astype(np.float32)))
        elif node.op_type == "Reshape":
            # the Caffe2 export reshapes to a fixed [1, 2048]; Flatten keeps the batch free
            nodes.append(helper.make_node("Flatten", [node.input[0]], list(node.output),
                                          name=node.name, axis=1))
        else:
            node = onnx.NodeProto.FromString(node.SerializeToString())
            node.input[:] = [rename.get(n, n) for n in node.input]
            node.output[:] = [rename.get(n, n) for n in node.output]
            nodes.append(node)
    used = {n for node in nodes for n in node.input}
    for name, array in inits.items():
        if name in used and not name.endswith("__SHAPE"):
            new_inits.append(const(name, weight(name, list(array.shape)).astype(np.float32)))

    graph = helper.make_graph(
        nodes, "resnet50",
        [value("data", TensorProto.FLOAT, [BATCH, 3, 224, 224])],
        [value("softmax", TensorProto.FLOAT, [BATCH, 1000])],
        initializer=new_inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 9)],
        producer_name="mofang scripts/make_test_models.py",
        doc_string="ResNet-50 graph from onnx's light_resnet50.onnx with seeded random weights "
                   "(numpy seed 50); NOT a trained model.",
    )
    model.ir_version = 4
    model = version_converter.convert_version(model, OPSET)
    model.ir_version = IR_VERSION
    for node in model.graph.node:  # tract reports graph outputs by node name
        if node.output[0] == "softmax":
            node.name = "softmax"
    del model.graph.value_info[:]  # the converter's inferred shapes; keep the file minimal
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(51).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    return model, {"data": x}, None


MODELS = [
    ("add_mul", add_mul),
    ("tiny", tiny),
    ("dtypes", dtypes),
    ("strings", strings),
    ("image_nchw", lambda: image_classifier("NCHW")),
    ("image_nhwc", lambda: image_classifier("NHWC")),
    ("resnet50", resnet50),
]


# ---------------------------------------------------------------------------------------------
# Checking and reporting
# ---------------------------------------------------------------------------------------------


def describe(values):
    parts = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_param or str(d.dim_value) for d in t.shape.dim]
        parts.append(f"{v.name} {helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type != TensorProto.STRING else 'string'} [{','.join(dims)}]")
    return ", ".join(parts)


def check(name, path, feeds, expected):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for v in list(session.get_inputs()) + list(session.get_outputs()):
        if not v.shape or v.shape[0] != BATCH:
            raise AssertionError(f"{name}: {v.name} has shape {v.shape}, expected symbolic {BATCH!r} first")
    out_names = [o.name for o in session.get_outputs()]
    start = time.perf_counter()
    results = dict(zip(out_names, session.run(out_names, feeds)))
    elapsed = time.perf_counter() - start
    if expected is not None:
        for key, want in expected.items():
            got = results[key]
            if got.dtype != want.dtype or got.shape != want.shape:
                raise AssertionError(f"{name}.{key}: got {got.dtype}{got.shape}, want {want.dtype}{want.shape}")
            if want.dtype.kind == "f":
                ok = np.allclose(got, want, rtol=1e-4, atol=1e-5)
            else:
                ok = np.array_equal(got, want)
            if not ok:
                raise AssertionError(f"{name}.{key}: got {got!r}, want {want!r}")
    for key, got in results.items():
        if got.dtype.kind == "f" and not np.all(np.isfinite(got)):
            raise AssertionError(f"{name}.{key}: non-finite output")
    return session, results, elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="directory for the .onnx files (default: %(default)s)")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    for name, build in MODELS:
        model, feeds, expected = build()
        path = args.out_dir / f"{name}.onnx"
        tmp = path.with_name(f".{name}.tmp.onnx")
        onnx.save(model, str(tmp))
        tmp.replace(path)
        _, results, elapsed = check(name, path, feeds, expected)
        print(f"{name}.onnx: {describe(model.graph.input)} -> {describe(model.graph.output)}")
        if name == "resnet50":
            # one more run now that the session is warm
            session, _, _ = check(name, path, feeds, None)
            start = time.perf_counter()
            session.run(None, feeds)
            warm = time.perf_counter() - start
            probs = results["softmax"][0]
            print(f"  {path.stat().st_size / 1e6:.1f} MB; batch 1 on 1 thread: first run "
                  f"{elapsed * 1000:.0f} ms, warm run {warm * 1000:.0f} ms; "
                  f"top-1 {int(probs.argmax())} p={probs.max():.3f} (random weights)")
    print(f"wrote {len(MODELS)} models to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

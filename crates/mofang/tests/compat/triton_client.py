#!/usr/bin/env python3
"""Drives a running `mofang serve` with Triton's own Python client, tritonclient (HTTP and gRPC).

Run by crates/mofang/tests/compat.rs with the interpreter of .venv-compat:
    triton_client.py --http HOST:PORT --grpc HOST:PORT < plan.json > results.json

The plan is a JSON list of calls; the result is a JSON list with one entry per call. Nothing is
checked here: the Rust test compares what the client saw with onnxruntime's reference outputs.

Calls:
  {"call": "server_live" | "server_ready", "protocol": "http"|"grpc"}
  {"call": "model_ready", "protocol": ..., "model": NAME, "version": "1" (optional)}
  {"call": "server_metadata" | "model_metadata", "protocol": ..., "model": NAME}
  {"call": "infer", "protocol": ..., "model": NAME, "version": "" (optional),
   "inputs": {NAME: {"dtype": "float32", "shape": [...], "data": [flat]}},
   "binary": true|false        (inputs as binary data / raw_input_contents, or JSON / typed contents),
   "outputs": [NAME, ...]      (optional: request only these),
   "binary_outputs": true|false}
Tensors in results use the same {"dtype", "shape", "data"} form; an error is
{"error": {"status": "...", "message": "..."}}.
"""

import argparse
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

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


def to_numpy(t):
    dtype = NUMPY[t["dtype"]]
    if t["dtype"] == "string":
        flat = np.array([s.encode("utf-8") for s in t["data"]], dtype=np.object_)
    else:
        flat = np.array(t["data"], dtype=dtype)
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


def client_for(call, args):
    if call["protocol"] == "http":
        return httpclient, httpclient.InferenceServerClient(url=args.http)
    return grpcclient, grpcclient.InferenceServerClient(url=args.grpc)


def as_json(value):
    if hasattr(value, "DESCRIPTOR"):
        return json_format.MessageToDict(value, preserving_proto_field_name=True)
    return value


def infer(call, args):
    module, client = client_for(call, args)
    binary = call.get("binary", True)
    inputs = []
    for name, t in call["inputs"].items():
        array = to_numpy(t)
        inp = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        if module is httpclient:
            inp.set_data_from_numpy(array, binary_data=binary)
        else:
            # tritonclient.grpc always sends raw_input_contents; typed contents are built by hand
            if binary:
                inp.set_data_from_numpy(array)
            else:
                inp = typed_grpc_input(name, array)
        inputs.append(inp)
    outputs = None
    if "outputs" in call:
        if module is httpclient:
            outputs = [
                httpclient.InferRequestedOutput(n, binary_data=call.get("binary_outputs", True))
                for n in call["outputs"]
            ]
        else:
            outputs = [grpcclient.InferRequestedOutput(n) for n in call["outputs"]]
    result = client.infer(call["model"], inputs, model_version=call.get("version", ""), outputs=outputs)
    response = result.get_response()
    if module is httpclient:
        names = [o["name"] for o in response["outputs"]]
    else:
        names = [o.name for o in response.outputs]
    return {
        "model_name": response["model_name"] if module is httpclient else response.model_name,
        "model_version": response.get("model_version") if module is httpclient else response.model_version,
        "outputs": {n: from_numpy(result.as_numpy(n)) for n in names},
    }


class TypedInput:
    """A grpc InferInput whose data goes in the typed `contents` field, not raw_input_contents."""

    def __init__(self, tensor):
        self._input = tensor

    def _get_tensor(self):
        return self._input

    def _get_content(self):
        return None


def typed_grpc_input(name, array):
    from tritonclient.grpc import service_pb2

    tensor = service_pb2.ModelInferRequest.InferInputTensor()
    tensor.name = name
    tensor.datatype = np_to_triton_dtype(array.dtype)
    tensor.shape.extend(array.shape)
    flat = array.reshape(-1)
    kind = array.dtype
    if kind == np.bool_:
        tensor.contents.bool_contents.extend(bool(x) for x in flat)
    elif kind in (np.int8, np.int16, np.int32):
        tensor.contents.int_contents.extend(int(x) for x in flat)
    elif kind == np.int64:
        tensor.contents.int64_contents.extend(int(x) for x in flat)
    elif kind in (np.uint8, np.uint16, np.uint32):
        tensor.contents.uint_contents.extend(int(x) for x in flat)
    elif kind == np.uint64:
        tensor.contents.uint64_contents.extend(int(x) for x in flat)
    elif kind == np.float32:
        tensor.contents.fp32_contents.extend(float(x) for x in flat)
    elif kind == np.float64:
        tensor.contents.fp64_contents.extend(float(x) for x in flat)
    elif kind == np.object_:
        tensor.contents.bytes_contents.extend(flat.tolist())
    else:
        raise ValueError(f"no typed contents field for {kind}")
    return TypedInput(tensor)


def perform(call, args):
    kind = call["call"]
    if kind == "infer":
        return infer(call, args)
    module, client = client_for(call, args)
    if kind == "server_live":
        return {"value": client.is_server_live()}
    if kind == "server_ready":
        return {"value": client.is_server_ready()}
    if kind == "model_ready":
        return {"value": client.is_model_ready(call["model"], call.get("version", ""))}
    if kind == "server_metadata":
        return {"value": as_json(client.get_server_metadata())}
    if kind == "model_metadata":
        return {"value": as_json(client.get_model_metadata(call["model"], call.get("version", "")))}
    raise ValueError(f"unknown call {kind!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", required=True, help="HOST:PORT of the REST port")
    parser.add_argument("--grpc", required=True, help="HOST:PORT of the gRPC port")
    args = parser.parse_args()
    results = []
    for call in json.load(sys.stdin):
        try:
            results.append(perform(call, args))
        except InferenceServerException as e:
            results.append({"error": {"status": str(e.status()), "message": e.message()}})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()

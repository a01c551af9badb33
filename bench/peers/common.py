"""What the Python peer servers share: the ONNX Runtime session and the request handlers.

Each peer (Flask, gunicorn, FastAPI) is a thin web layer over these functions, so they all do
exactly the same work per request:

  infer(...)    the KServe V2 `POST /v2/models/<model>/infer` endpoint, JSON tensors or the
                binary tensor data extension (JSON header of `Inference-Header-Content-Length`
                bytes, then raw little-endian tensor bytes); answers in the same format mofang
                does (binary outputs appended after the JSON header when asked for).
  predict(...)  the Keras-tutorial `POST /predict` image upload: decode with Pillow, RGB, resize
                to 224x224 bilinear, x/127.5-1, NCHW, run, softmax, top-5 with labels.

Configuration comes from the environment, so that the same module works under every server:

  PEER_MODEL      path of the .onnx file (required)
  PEER_MODEL_NAME model name in URLs and answers (default: the file's stem)
  PEER_INTRA_OP   ONNX Runtime intra-op threads per process (default 1)
  PEER_LABELS     labels.txt for /predict (one label per line)
"""

import io
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

HEADER = "Inference-Header-Content-Length"

# KServe V2 datatype <-> numpy
DTYPES = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "BOOL": np.bool_,
}
V2_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


class BadRequest(Exception):
    pass


class Model:
    def __init__(self):
        path = os.environ["PEER_MODEL"]
        self.name = os.environ.get("PEER_MODEL_NAME") or Path(path).stem
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("PEER_INTRA_OP", "1"))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.labels = None
        labels = os.environ.get("PEER_LABELS")
        if labels:
            self.labels = Path(labels).read_text().splitlines()

    # -- KServe V2 infer ------------------------------------------------------------------------

    def infer(self, header_length, body):
        """Returns (status, content_type, extra_headers, body_bytes)."""
        try:
            return self._infer(header_length, body)
        except BadRequest as e:
            return 400, "application/json", {}, json.dumps({"error": str(e)}).encode()

    def _infer(self, header_length, body):
        if header_length is not None:
            try:
                n = int(header_length)
            except ValueError:
                raise BadRequest(f"Unable to parse {HEADER}, got: {header_length!r}")
            if not 0 < n <= len(body):
                raise BadRequest(f"inference header size should be in range (0, {len(body)}]")
        else:
            n = len(body)
        try:
            request = json.loads(body[:n])
        except ValueError as e:
            raise BadRequest(f"invalid JSON: {e}")
        binary = memoryview(body)[n:]
        offset = 0
        feeds = {}
        for spec in request.get("inputs") or []:
            name, shape = spec["name"], spec["shape"]
            dtype = DTYPES.get(spec.get("datatype"))
            if dtype is None:
                raise BadRequest(f"input '{name}': unsupported datatype {spec.get('datatype')}")
            size = (spec.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                array = np.frombuffer(binary[offset : offset + size], dtype=dtype)
                offset += size
            else:
                array = np.asarray(spec["data"], dtype=dtype)
            try:
                feeds[name] = array.reshape(shape)
            except ValueError as e:
                raise BadRequest(f"input '{name}': {e}")
        if offset != len(binary):
            raise BadRequest("binary data that no input claims")
        if sorted(feeds) != sorted(self.input_names):
            raise BadRequest(f"expected inputs {self.input_names}, got {sorted(feeds)}")
        default_binary = bool((request.get("parameters") or {}).get("binary_data_output"))
        wanted = [
            (o["name"], bool((o.get("parameters") or {}).get("binary_data")))
            for o in request.get("outputs") or []
        ] or [(name, default_binary) for name in self.output_names]
        for name, _ in wanted:
            if name not in self.output_names:
                raise BadRequest(f"unexpected inference output '{name}'")
        results = self.session.run([name for name, _ in wanted], feeds)
        outputs, blobs = [], []
        for (name, as_binary), value in zip(wanted, results):
            out = {"name": name, "datatype": V2_NAMES[value.dtype], "shape": list(value.shape)}
            if as_binary:
                raw = np.ascontiguousarray(value).tobytes()
                out["parameters"] = {"binary_data_size": len(raw)}
                blobs.append(raw)
            else:
                out["data"] = value.ravel().tolist()
            outputs.append(out)
        answer = {"model_name": self.name, "model_version": "1", "outputs": outputs}
        if "id" in request:
            answer["id"] = request["id"]
        head = json.dumps(answer, separators=(",", ":")).encode()
        if not blobs:
            return 200, "application/json", {}, head
        return 200, "application/octet-stream", {HEADER: str(len(head))}, head + b"".join(blobs)

    # -- image upload ---------------------------------------------------------------------------

    def predict(self, image_bytes, top_k=5):
        """Returns (status, answer dict)."""
        from PIL import Image

        if image_bytes is None:
            return 400, {"success": False, "error": "no `image` field in the form"}
        try:
            image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
        except Exception as e:  # noqa: BLE001 - any decoding failure is the client's
            return 400, {"success": False, "error": f"cannot decode the image: {e}"}
        image = image.resize((224, 224), Image.BILINEAR)
        x = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[np.newaxis])
        (logits,) = self.session.run([self.output_names[0]], {self.input_names[0]: x})
        scores = logits[0].astype(np.float64)
        scores = np.exp(scores - scores.max())
        scores /= scores.sum()
        best = np.argsort(-scores)[:top_k]
        predictions = [
            {
                "label": self.labels[i] if self.labels and i < len(self.labels) else str(i),
                "probability": round(float(scores[i]), 4),
            }
            for i in best
        ]
        return 200, {"predictions": predictions, "success": True}

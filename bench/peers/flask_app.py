"""Flask + ONNX Runtime peer: the endpoints mofang serves, written the way a tutorial would.

  POST /v2/models/<model>/infer   KServe V2 infer (JSON tensors or the binary extension)
  POST /predict                   multipart `image` upload -> top-5 labels (needs PEER_LABELS)
  GET  /v2/health/ready           readiness

Configured by the environment (see common.py). Run it
  with Flask's own server:  python flask_app.py PORT          (threaded, one process)
  with gunicorn:            gunicorn -w 2 -b 127.0.0.1:PORT flask_app:app   (sync workers)
Each process loads its own session (gunicorn without --preload: one per worker).
"""

import logging
import sys

from flask import Flask, Response, jsonify, request

from common import HEADER, Model

model = Model()
app = Flask(__name__)


@app.get("/v2/health/ready")
def ready():
    return ""


@app.post("/v2/models/<name>/infer")
def infer(name):
    if name != model.name:
        return jsonify(error=f"unknown model '{name}'"), 404
    status, content_type, headers, body = model.infer(request.headers.get(HEADER), request.get_data())
    return Response(body, status=status, content_type=content_type, headers=headers)


@app.post("/predict")
def predict():
    upload = request.files.get("image")
    status, answer = model.predict(upload.read() if upload else None)
    return jsonify(answer), status


if __name__ == "__main__":
    # Flask's development server, one thread per connection. Its per-request log line is
    # silenced: none of the other servers writes one.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)

"""FastAPI + ONNX Runtime peer: the same endpoints as flask_app.py, served by uvicorn.

  POST /v2/models/{model}/infer   KServe V2 infer (JSON tensors or the binary extension)
  POST /predict                   multipart `image` upload -> top-5 labels (needs PEER_LABELS)
  GET  /v2/health/ready           readiness

  uvicorn --host 127.0.0.1 --port PORT --workers N fastapi_app:app

The handlers read the body asynchronously and run the model inline on the event loop: with one
inference at a time per worker process that is the fastest arrangement (a thread hop per request
costs more than it saves when every worker has its own cores' share); see bench/README.md.
"""

from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from common import HEADER, Model

model = Model()
app = FastAPI()


@app.get("/v2/health/ready")
async def ready():
    return Response()


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    if name != model.name:
        return JSONResponse({"error": f"unknown model '{name}'"}, status_code=404)
    body = await request.body()
    status, content_type, headers, out = model.infer(request.headers.get(HEADER), body)
    return Response(out, status_code=status, media_type=content_type, headers=headers)


@app.post("/predict")
async def predict(image: UploadFile | None = None):
    status, answer = model.predict(await image.read() if image else None)
    return JSONResponse(answer, status_code=status)

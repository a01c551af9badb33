"""The limit: the model run in-process with ONNX Runtime's Python API, no server, no HTTP.

Tries every batch size in --batches with every (streams x intra-op threads) arrangement that fits
the core budget: one session run by one caller with 1 or 2 intra-op threads, or by 2 callers
at once (Python threads; ONNX Runtime releases the GIL while it runs) with 1 intra-op thread
each, which is how a server with 2 instances of 1 thread uses 2 cores. Each arrangement runs for
--seconds after one warm-up run per caller. Prints one JSON object: the grid and the best.

  python limit.py MODEL.onnx --input data --shape 3,224,224 [--seconds 5] [--cores 2]
"""

import argparse
import json
import threading
import time

import numpy as np
import onnxruntime as ort


def session(path, intra_op):
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def measure(sess, feed, streams, seconds):
    sess.run(None, feed)  # warm-up
    counts = [0] * streams
    deadline = time.perf_counter() + seconds

    def loop(k):
        while time.perf_counter() < deadline:
            sess.run(None, feed)
            counts[k] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(k,)) for k in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--input", required=True, help="graph input name")
    p.add_argument("--shape", required=True, help="one row's shape without the batch dimension, e.g. 3,224,224")
    p.add_argument("--batches", default="1,2,4,8")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per arrangement")
    p.add_argument("--cores", type=int, default=2, help="core budget: streams x threads <= cores")
    args = p.parse_args()

    row = [int(d) for d in args.shape.split(",")]
    rng = np.random.default_rng(0)
    arrangements = [(s, t) for s in (1, 2) for t in (1, 2) if s * t <= args.cores]
    grid = []
    for streams, threads in arrangements:
        sess = session(args.model, threads)
        for batch in (int(b) for b in args.batches.split(",")):
            feed = {args.input: rng.standard_normal([batch] + row).astype(np.float32)}
            runs, elapsed = measure(sess, feed, streams, args.seconds)
            grid.append(
                {
                    "streams": streams,
                    "intra_op": threads,
                    "batch": batch,
                    "rows_per_s": runs * batch / elapsed,
                    "ms_per_run": 1e3 * elapsed * streams / max(runs, 1),
                }
            )
        del sess
    best = max(grid, key=lambda g: g["rows_per_s"])
    print(json.dumps({"best": best, "grid": grid}))


if __name__ == "__main__":
    main()

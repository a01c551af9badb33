"""Runs mofang's benchmark: bench/run.sh sets things up, then runs this with the venv's python.

For each model (ResNet-50 over the KServe V2 binary extension, the tiny model over KServe V2
JSON) it starts each server in turn on a free loopback port, checks one answer against ONNX
Runtime in-process, then drives it with mofang-loadgen at each concurrency (warm-up, then a
fixed window), recording throughput, latency, errors, peak RSS and CPU. It then measures the
in-process limit (peers/limit.py), the image-upload comparison (POST /predict), and prints one
Markdown report, also written to bench-results/latest.md (raw numbers in latest.json).

Every knob is an environment variable; see bench/README.md (and `print_settings` below).
"""

import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PEERS = BENCH / "peers"
VENV_BIN = REPO / ".venv" / "bin"
MOFANG = REPO / "target" / "release" / "mofang"
LOADGEN = REPO / "target" / "release" / "mofang-loadgen"
TEST_MODELS = REPO / "target" / "test-models"
EXAMPLE = REPO / "examples" / "model-repository" / "efficientnet_lite0"
DOG = (REPO / "examples" / "data" / "dog.jpg").resolve()
OUT_DIR = REPO / "bench-results"
HEADER = "Inference-Header-Content-Length"
BOUNDARY = "----mofangbench0b7c4f2e9a1d"


def env(name, default):
    return os.environ.get(name, default)


def env_int(name, default):
    return int(env(name, str(default)))


def env_list(name, default):
    return [x.strip() for x in env(name, default).split(",") if x.strip()]


SECONDS = float(env("BENCH_SECONDS", "10"))
WARMUP = float(env("BENCH_WARMUP", "2"))
TIMEOUT = float(env("BENCH_TIMEOUT", "30"))
CONCURRENCY = [int(c) for c in env_list("BENCH_CONCURRENCY", "1,8,64")]
IMAGE_CONCURRENCY = [int(c) for c in env_list("BENCH_IMAGE_CONCURRENCY", "1,8")]
LIMIT_SECONDS = float(env("BENCH_LIMIT_SECONDS", str(max(2.0, SECONDS / 2))))
LOADGEN_THREADS = env_int("BENCH_LOADGEN_THREADS", 1)
MODELS = env_list("BENCH_MODELS", "resnet50,tiny")
SERVERS = env_list("BENCH_SERVERS", "mofang,mofang-tract,flask,gunicorn,uvicorn")
RUN_IMAGE = env("BENCH_IMAGE", "1") != "0"
RUN_LIMIT = env("BENCH_LIMIT", "1") != "0"
QUIET_WAIT = float(env("BENCH_QUIET_WAIT", "30"))  # seconds to wait for other processes to go idle
BUSY_MARK = 20.0  # other processes' CPU (% of a core) above which a measurement is marked †

SERVER_TITLES = {
    "mofang": "mofang (ORT)",
    "mofang-tract": "mofang (tract)",
    "flask": "Flask dev server",
    "gunicorn": "Flask + gunicorn",
    "uvicorn": "FastAPI + uvicorn",
}
PEER_SERVERS = ["flask", "gunicorn", "uvicorn"]
MODEL_TITLES = {"resnet50": "ResNet-50", "tiny": "tiny", "efficientnet_lite0": "EfficientNet-Lite0 /predict"}


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------------


def mofang_setting(model, key, default):
    """BENCH_MOFANG_<MODEL>_<KEY> overrides BENCH_MOFANG_<KEY>."""
    specific = f"BENCH_MOFANG_{model.upper()}_{key}"
    return os.environ.get(specific, env(f"BENCH_MOFANG_{key}", str(default)))


def mofang_config(model, backend, batching):
    lines = [
        f"backend: {backend}",
        f"instances: {mofang_setting(model, 'INSTANCES', 2)}",
        "threads: {intra_op: %s, inter_op: %s}"
        % (mofang_setting(model, "INTRA_OP", 1), mofang_setting(model, "INTER_OP", 1)),
    ]
    if batching:
        lines += [
            "batching:",
            f"  max_batch_size: {mofang_setting(model, 'MAX_BATCH', 8)}",
            f"  max_queue_delay_micros: {mofang_setting(model, 'QUEUE_DELAY_US', 0)}",
            f"  max_queue_size: {mofang_setting(model, 'MAX_QUEUE', 1024)}",
        ]
        allowed = mofang_setting(model, "ALLOWED_BATCH_SIZES", "")
        if allowed:
            lines.append(f"  allowed_batch_sizes: [{allowed}]")
    return "\n".join(lines) + "\n"


def batching_mode(model):
    """auto | on | off. The image models (ResNet-50, EfficientNet-Lite0) run unbatched unless
    asked: on 2 CPU cores ONNX Runtime's cost per image does not fall with the batch size, so
    batches only add waiting (measured at c=8, p99: ResNet-50 0.7 s unbatched vs 1.0-1.3 s with
    batches of up to 8, /predict 129 ms vs 191 ms at the same r/s; see docs/benchmarks.md)."""
    default = "auto" if model == "tiny" else "off"
    return mofang_setting(model, "BATCHING", default)


PEER_SETTINGS = {
    # server: (processes, ORT intra-op threads per process); processes x threads = 2 cores
    "flask": (1, env_int("BENCH_FLASK_INTRA_OP", 2)),
    "gunicorn": (env_int("BENCH_GUNICORN_WORKERS", 2), env_int("BENCH_GUNICORN_INTRA_OP", 1)),
    "uvicorn": (env_int("BENCH_UVICORN_WORKERS", 2), env_int("BENCH_UVICORN_INTRA_OP", 1)),
}


# ------------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------------

PGID_FILE = Path(os.environ["BENCH_PGID_FILE"]) if os.environ.get("BENCH_PGID_FILE") else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of():
    """ppid -> [pid] for every process."""
    tree = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def proc_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def system_busy_ticks():
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


class Server:
    def __init__(self, name, model, argv, workdir, env_extra, port=None, address_file=None):
        self.name, self.model = name, model
        self.log_path = workdir / f"{name}-{model}.log"
        self.port, self.address_file = port, address_file
        self.proc = subprocess.Popen(
            argv,
            cwd=PEERS,
            env={**os.environ, **env_extra},
            stdin=subprocess.DEVNULL,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killed as a whole
        )
        if PGID_FILE:
            with PGID_FILE.open("a") as f:
                f.write(f"{self.proc.pid}\n")

    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def wait_listening(self, deadline):
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if self.port is None and self.address_file and self.address_file.exists():
                text = self.address_file.read_text().strip()
                if text:
                    self.port = int(text.rsplit(":", 1)[1])
            if self.port is not None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen in time; see {self.log_path}")

    def pids(self):
        tree, out, todo = children_of(), [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(tree.get(pid, []))
        return out

    def reset_peak_rss(self):
        for pid in self.pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS
            except OSError:
                pass

    def peak_rss_mb(self):
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def cpu_ticks(self):
        total = 0
        for pid in self.pids():
            try:
                total += proc_ticks(pid)
            except OSError:
                pass
        return total

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers (workers) too
        except ProcessLookupError:
            pass
        self.proc.wait()


def http(method, url, body=None, headers=None, timeout=60):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# ------------------------------------------------------------------------------------------------
# workloads
# ------------------------------------------------------------------------------------------------


class Workload:
    """One request, identical for every server, and how to check its answer."""

    def __init__(self, model, workdir):
        self.model = model
        rng = np.random.default_rng(0)
        if model == "resnet50":
            self.onnx = TEST_MODELS / "resnet50.onnx"
            self.path = "/v2/models/resnet50/infer"
            self.x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
            head = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "data",
                            "shape": [1, 3, 224, 224],
                            "datatype": "FP32",
                            "parameters": {"binary_data_size": self.x.nbytes},
                        }
                    ],
                    "outputs": [{"name": "softmax", "parameters": {"binary_data": True}}],
                },
                separators=(",", ":"),
            ).encode()
            self.body = head + self.x.tobytes()
            self.headers = {"Content-Type": "application/octet-stream", HEADER: str(len(head))}
            self.check = '"softmax"'
            self.feed, self.output = {"data": self.x}, "softmax"
        elif model == "tiny":
            self.onnx = TEST_MODELS / "tiny.onnx"
            self.path = "/v2/models/tiny/infer"
            self.x = np.array([[0.5, -1.25, 2.0, 0.75]], dtype=np.float32)
            self.body = json.dumps(
                {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": self.x.ravel().tolist()}]},
                separators=(",", ":"),
            ).encode()
            self.headers = {"Content-Type": "application/json"}
            self.check = '"y"'
            self.feed, self.output = {"x": self.x}, "y"
        elif model == "efficientnet_lite0":
            self.onnx = EXAMPLE / "1" / "model.onnx"
            self.path = "/predict"
            image = DOG.read_bytes()
            self.body = (
                (
                    f"--{BOUNDARY}\r\n"
                    'Content-Disposition: form-data; name="image"; filename="dog.jpg"\r\n'
                    "Content-Type: image/jpeg\r\n\r\n"
                ).encode()
                + image
                + f"\r\n--{BOUNDARY}--\r\n".encode()
            )
            self.headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
            self.check = "beagle"
        else:
            raise ValueError(f"unknown model {model}")
        self.body_file = workdir / f"{model}.body"
        self.body_file.write_bytes(self.body)
        self.expected = None
        if model != "efficientnet_lite0":
            sess = ort.InferenceSession(str(self.onnx), providers=["CPUExecutionProvider"])
            self.expected = sess.run([self.output], self.feed)[0]

    def verify(self, server):
        """One request by hand: the answer must match ONNX Runtime in-process."""
        status, headers, body = http("POST", server.base_url() + self.path, self.body, self.headers)
        if status != 200:
            raise RuntimeError(f"{server.name}: HTTP {status}: {body[:300]!r}")
        if self.model == "efficientnet_lite0":
            answer = json.loads(body)
            top = answer["predictions"][0]
            if top["label"] != "beagle":
                raise RuntimeError(f"{server.name}: top-1 is {top}, expected beagle")
            return f"top-1 {top['label']} {top['probability']}"
        length = {k.lower(): v for k, v in headers.items()}.get(HEADER.lower())
        n = int(length) if length else len(body)
        out = json.loads(body[:n])["outputs"][0]
        if "data" in out:
            got = np.asarray(out["data"], dtype=np.float32)
        else:
            got = np.frombuffer(body[n:], dtype=np.float32)
        got = got.reshape(out["shape"])
        diff = float(np.max(np.abs(got - self.expected)))
        if got.shape != self.expected.shape or diff > 1e-4:
            raise RuntimeError(f"{server.name}: answer differs from ONNX Runtime (max |diff| {diff})")
        return f"max |diff| vs ORT {diff:.1e}"


# ------------------------------------------------------------------------------------------------
# starting servers
# ------------------------------------------------------------------------------------------------


def peer_env(workload, intra_op):
    extra = {
        "PEER_MODEL": str(workload.onnx),
        "PEER_MODEL_NAME": workload.model,
        "PEER_INTRA_OP": str(intra_op),
        "PYTHONPATH": str(PEERS),
    }
    if workload.model == "efficientnet_lite0":
        extra["PEER_LABELS"] = str(EXAMPLE / "labels.txt")
    return extra


def start_peer(name, workload, workdir):
    port = free_port()
    workers, intra_op = PEER_SETTINGS[name]
    if name == "flask":
        argv = [str(VENV_BIN / "python"), str(PEERS / "flask_app.py"), str(port)]
    elif name == "gunicorn":
        argv = [
            str(VENV_BIN / "gunicorn"),
            f"--workers={workers}",
            "--worker-class=sync",
            f"--bind=127.0.0.1:{port}",
            "--backlog=2048",
            "--timeout=120",
            "--no-control-socket",
            "flask_app:app",
        ]
    elif name == "uvicorn":
        argv = [
            str(VENV_BIN / "uvicorn"),
            "fastapi_app:app",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--workers={workers}",
            "--loop=uvloop",
            "--http=httptools",
            "--no-access-log",
            "--log-level=warning",
            "--backlog=2048",
        ]
    else:
        raise ValueError(name)
    server = Server(name, workload.model, argv, workdir, peer_env(workload, intra_op), port=port)
    server.settings = f"{workers} process(es) x {intra_op} ORT intra-op thread(s)"
    wait_ready(server, "/v2/health/ready")
    return server


def wait_ready(server, path, seconds=120):
    deadline = time.monotonic() + seconds
    server.wait_listening(deadline)
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited; see {server.log_path}")
        try:
            status, _, _ = http("GET", server.base_url() + path, timeout=5)
            if status == 200:
                # every gunicorn/uvicorn worker must have loaded the model, not just the first
                time.sleep(0.5 if server.name in ("gunicorn", "uvicorn") else 0)
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready after {seconds} s; see {server.log_path}")


def model_error(server, model):
    """The model's load error from the TF Serving status, if any."""
    try:
        _, _, body = http("GET", f"{server.base_url()}/v1/models/{model}", timeout=5)
        for v in json.loads(body).get("model_version_status", []):
            message = (v.get("status") or {}).get("error_message")
            if message:
                return message
    except (OSError, ValueError):
        pass
    return None


def start_mofang(name, workload, workdir):
    backend = "tract" if name == "mofang-tract" else "onnxruntime"
    mode = batching_mode(workload.model)
    attempts = [True, False] if mode == "auto" else [mode == "on"]
    for batching in attempts:
        repo = workdir / f"repo-{name}-{workload.model}"
        shutil.rmtree(repo, ignore_errors=True)
        version = repo / workload.model / "1"
        version.mkdir(parents=True)
        (version / "model.onnx").symlink_to(workload.onnx)
        config = mofang_config(workload.model, backend, batching)
        if workload.model == "efficientnet_lite0":
            (repo / workload.model / "labels.txt").symlink_to(EXAMPLE / "labels.txt")
            config = (EXAMPLE / "config.yaml").read_text() + config
        (repo / workload.model / "config.yaml").write_text(config)
        address = workdir / f"{name}-{workload.model}.address"
        address.unlink(missing_ok=True)
        argv = [
            str(MOFANG),
            "serve",
            f"--model-repository={repo}",
            "--host=127.0.0.1",
            "--rest-port=0",
            f"--address-file={address}",
            "--poll-interval=0",
        ]
        server = Server(name, workload.model, argv, workdir, {}, address_file=address)
        deadline = time.monotonic() + 180
        server.wait_listening(deadline)
        while time.monotonic() < deadline:
            status, _, _ = http("GET", f"{server.base_url()}/v2/models/{workload.model}/ready", timeout=5)
            if status == 200:
                break
            error = model_error(server, workload.model)
            if not error and "unknown field" in server.log_path.read_text(errors="replace"):
                error = "unknown field in config.yaml (see the server log)"
            if error:
                break
            time.sleep(0.2)
        else:
            error = "not ready in time"
        if status == 200:
            server.settings = ("batching on: " if batching else "batching off: ") + " ".join(
                line.strip() for line in mofang_config(workload.model, backend, batching).splitlines()
            )
            server.batching = batching
            return server
        server.stop()
        if batching and mode == "auto":
            log(f"{name}: config with `batching:` rejected ({error}); running without batching")
            continue
        raise RuntimeError(f"{name}: model {workload.model} did not load: {error}; see {server.log_path}")
    raise AssertionError("unreachable")


def start(name, workload, workdir):
    if name.startswith("mofang"):
        return start_mofang(name, workload, workdir)
    return start_peer(name, workload, workdir)


# ------------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------------


def foreign_compilers():
    """Names of compiler processes running now (a build skews any measurement)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if comm in ("rustc", "cc1", "cc1plus", "ld", "cargo"):
                found.add(comm)
    return found


def wait_quiet(server=None):
    """Waits (at most QUIET_WAIT s) until processes other than `server` use < 15 % of a core."""
    hz = os.sysconf("SC_CLK_TCK")
    deadline, said = time.monotonic() + QUIET_WAIT, False
    while True:
        busy, own = system_busy_ticks(), server.cpu_ticks() if server else 0
        time.sleep(1)
        other = (system_busy_ticks() - busy - ((server.cpu_ticks() if server else 0) - own)) / hz
        if other < 0.15 or time.monotonic() >= deadline:
            if said:
                log(f"  ... {'quiet now' if other < 0.15 else 'still busy, measuring anyway'}")
            return
        if not said:
            log(f"  waiting up to {QUIET_WAIT:g} s for other processes to go idle ({100 * other:.0f} % of a core busy)")
            said = True


def measure(server, workload, concurrency):
    argv = [
        str(LOADGEN),
        server.base_url() + workload.path,
        f"--concurrency={concurrency}",
        f"--duration={SECONDS}",
        f"--warmup={WARMUP}",
        f"--timeout={TIMEOUT}",
        f"--body-file={workload.body_file}",
        f"--check-substring={workload.check}",
        f"--threads={LOADGEN_THREADS}",
    ]
    for k, v in workload.headers.items():
        argv.append(f"--header={k}: {v}")
    wait_quiet(server)
    compilers = foreign_compilers()
    server.reset_peak_rss()
    server_ticks, busy = server.cpu_ticks(), system_busy_ticks()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic()
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=WARMUP + SECONDS + TIMEOUT + 60, check=False
    )
    wall = time.monotonic() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    hz = os.sysconf("SC_CLK_TCK")
    server_cpu = (server.cpu_ticks() - server_ticks) / hz
    loadgen_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    system_cpu = (system_busy_ticks() - busy) / hz
    if done.returncode != 0:
        raise RuntimeError(f"mofang-loadgen failed: {done.stderr.strip()}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    compilers |= foreign_compilers()
    result.update(
        peak_rss_mb=server.peak_rss_mb(),
        server_cpu_pct=100 * server_cpu / wall,
        loadgen_cpu_pct=100 * loadgen_cpu / wall,
        other_cpu_pct=max(0.0, 100 * (system_cpu - server_cpu - loadgen_cpu) / wall),
        compilers_running=sorted(compilers),
    )
    return result


def scrape_metrics(server, workdir):
    try:
        status, _, body = http("GET", server.base_url() + "/metrics", timeout=5)
    except OSError:
        return None
    if status != 200:
        return None
    path = OUT_DIR / f"metrics-{server.name}-{server.model}.txt"
    path.write_bytes(body)
    return str(path.relative_to(REPO))


def run_limit(workload):
    shape = {"resnet50": "3,224,224", "tiny": "4"}[workload.model]
    name = {"resnet50": "data", "tiny": "x"}[workload.model]
    argv = [
        str(VENV_BIN / "python"),
        str(PEERS / "limit.py"),
        str(workload.onnx),
        f"--input={name}",
        f"--shape={shape}",
        f"--seconds={LIMIT_SECONDS}",
    ]
    wait_quiet()
    compilers = foreign_compilers()
    busy = system_busy_ticks()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
    wall = time.monotonic() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    other = (system_busy_ticks() - busy) / os.sysconf("SC_CLK_TCK") - own
    if done.returncode != 0:
        raise RuntimeError(f"limit.py failed: {done.stderr.strip()}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["compilers_running"] = sorted(compilers | foreign_compilers())
    result["other_cpu_pct"] = max(0.0, 100 * other / wall)
    return result


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------


def fmt_num(x):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def busy_mark(r):
    return "†" if r.get("compilers_running") or r.get("other_cpu_pct", 0) > BUSY_MARK else ""


def cell(r):
    if r is None:
        return "-"
    if "failed" in r:
        return "failed"
    mark = busy_mark(r)
    if r["ok"] == 0:
        return f"no answer in the window ({r['errors']} err, {r['unfinished']} in flight){mark}"
    return (
        f"{fmt_num(r['rps'])} r/s · {fmt_num(r['p50_ms'])} / {fmt_num(r['p99_ms'])} ms"
        f" · {r['errors']} err · {r['peak_rss_mb']:.0f} MB{mark}"
    )


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}×"


def ok_result(r):
    return r is not None and "failed" not in r and r["ok"] > 0


def report(results, limits, image, meta):
    out = []
    out.append("## Throughput and latency\n")
    out.append(
        f"Each cell: requests/s · p50 / p99 latency · errors · peak RSS of the server's processes"
        f" (VmHWM summed), over {SECONDS:g} s after a {WARMUP:g} s warm-up, closed loop"
        f" (each of C connections sends its next request when the previous answer arrives)."
        f" † = other processes (a build, tests) used more than {BUSY_MARK:g} % of a core during that"
        " measurement: treat it with suspicion.\n"
    )
    servers = [s for s in SERVERS if any((m, s) in results for m in MODELS)]
    out.append("| scenario | " + " | ".join(SERVER_TITLES[s] for s in servers) + " |")
    out.append("|---" * (len(servers) + 1) + "|")
    for model in MODELS:
        for c in CONCURRENCY:
            row = [cell(results.get((model, s), {}).get(c)) for s in servers]
            out.append(f"| {MODEL_TITLES[model]} c={c} | " + " | ".join(row) + " |")
    if limits:
        out.append("")
        for model, lim in limits.items():
            b = lim["best"]
            unit = "images/s" if model == "resnet50" else "rows/s"
            mark = " †" if busy_mark(lim) else ""
            out.append(
                f"In-process limit, {MODEL_TITLES[model]}: **{fmt_num(b['rows_per_s'])} {unit}**"
                f" (ONNX Runtime Python API, batch {b['batch']}, {b['streams']} caller(s) ×"
                f" {b['intra_op']} intra-op thread(s); best of {len(lim['grid'])} arrangements){mark}."
                + (" For reference only: each request carries one row." if model != "resnet50" else "")
            )
    out.append("\n## Ratios: mofang (ORT) / peer\n")
    out.append("rps ratio > 1 and p99 ratio < 1 mean mofang is ahead.\n")
    peers = [s for s in servers if s in PEER_SERVERS]
    out.append(
        "| scenario | " + " | ".join(f"vs {SERVER_TITLES[p]} (rps, p99)" for p in peers) + " | share of the limit (rps) |"
    )
    out.append("|---" * (len(peers) + 2) + "|")
    for model in MODELS:
        for c in CONCURRENCY:
            m = results.get((model, "mofang"), {}).get(c)
            cells = []
            for p in peers:
                r = results.get((model, p), {}).get(c)
                if ok_result(m) and ok_result(r):
                    cells.append(f"{fmt_ratio(ratio(m['rps'], r['rps']))}, {fmt_ratio(ratio(m['p99_ms'], r['p99_ms']))}")
                else:
                    cells.append("-")
            lim = limits.get(model) if model == "resnet50" else None
            vs_limit = (
                f"{100 * m['rps'] / lim['best']['rows_per_s']:.0f} %" if ok_result(m) and lim else "-"
            )
            out.append(f"| {MODEL_TITLES[model]} c={c} | " + " | ".join(cells) + f" | {vs_limit} |")
    out.append("\n## Targets (from the issue)\n")
    out.extend(targets(results, limits))
    if image:
        out.append("\n## Image upload: POST /predict (multipart dog.jpg → top-5)\n")
        names = [s for s in ("mofang", "flask", "gunicorn") if s in image]
        out.append("| scenario | " + " | ".join(SERVER_TITLES[s] for s in names) + " | mofang / best peer (rps, p99) |")
        out.append("|---" * (len(names) + 2) + "|")
        for c in IMAGE_CONCURRENCY:
            row = [cell(image[s].get(c)) for s in names]
            m = image.get("mofang", {}).get(c)
            peer_results = [image[s].get(c) for s in names if s != "mofang" and ok_result(image[s].get(c))]
            best = max(peer_results, key=lambda r: r["rps"], default=None)
            rel = (
                f"{fmt_ratio(ratio(m['rps'], best['rps']))}, {fmt_ratio(ratio(m['p99_ms'], best['p99_ms']))}"
                if ok_result(m) and best
                else "-"
            )
            out.append(f"| /predict c={c} | " + " | ".join(row) + f" | {rel} |")
    out.append("\n## Settings\n")
    for line in meta["settings"]:
        out.append(f"- {line}")
    out.append("\n## CPU use (% of one core, during warm-up + measurement)\n")
    out.append(
        "server / load generator / everything else on the machine, in % of one core (200 % = both"
        " cores); then the server's CPU time per answered request (its CPU % over its requests/s):"
        " the cost of one request, which other load on the machine disturbs much less than rps.\n"
    )
    out.append("| scenario | " + " | ".join(SERVER_TITLES[s] for s in servers) + " |")
    out.append("|---" * (len(servers) + 1) + "|")
    for model in MODELS:
        for c in CONCURRENCY:
            row = []
            for s in servers:
                r = results.get((model, s), {}).get(c)
                if r and "failed" not in r:
                    per_request = (
                        f" · {fmt_num(10_000 * r['server_cpu_pct'] / r['rps'])} µs/req" if r["rps"] > 0 else ""
                    )
                    row.append(
                        f"{r['server_cpu_pct']:.0f} / {r['loadgen_cpu_pct']:.0f} / {r['other_cpu_pct']:.0f}{per_request}"
                    )
                else:
                    row.append("-")
            out.append(f"| {MODEL_TITLES[model]} c={c} | " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


def targets(results, limits):
    lines = []

    def get(model, server, c):
        r = results.get((model, server), {}).get(c)
        return r if ok_result(r) else None

    if "tiny" in MODELS and 64 in CONCURRENCY:
        m = get("tiny", "mofang", 64)
        peers = [(p, get("tiny", p, 64)) for p in PEER_SERVERS]
        peers = [(p, r) for p, r in peers if r]
        if m and peers:
            p, best = max(peers, key=lambda pr: pr[1]["rps"])
            rr, pr = m["rps"] / best["rps"], m["p99_ms"] / best["p99_ms"]
            verdict = "met" if rr >= 10 and pr <= 0.2 else "NOT met"
            lines.append(
                f"- tiny, c=64: mofang ≥ 10× the best Python peer's rps and ≤ 1/5 of its p99 —"
                f" **{verdict}**: {rr:.1f}× the rps and {pr:.2f}× the p99 of {SERVER_TITLES[p]}."
            )
    if "resnet50" in MODELS:
        lim = limits.get("resnet50")
        ms = [(c, get("resnet50", "mofang", c)) for c in CONCURRENCY]
        ms = [(c, r) for c, r in ms if r]
        if lim and ms:
            c, best = max(ms, key=lambda cr: cr[1]["rps"])
            share = best["rps"] / lim["best"]["rows_per_s"]
            verdict = "met" if share >= 0.95 else "NOT met"
            lines.append(
                f"- ResNet-50 over the binary extension: ≥ 95 % of the in-process limit —"
                f" **{verdict}**: {100 * share:.0f} % (best at c={c}:"
                f" {best['rps']:.1f} vs {lim['best']['rows_per_s']:.1f} images/s)."
            )
        if 8 in CONCURRENCY:
            m = get("resnet50", "mofang", 8)
            peers = [(p, get("resnet50", p, 8)) for p in PEER_SERVERS]
            if m and any(r for _, r in peers):
                behind = [
                    SERVER_TITLES[p]
                    for p, r in peers
                    if r and (r["rps"] >= m["rps"] or r["p99_ms"] <= m["p99_ms"])
                ]
                verdict = "met" if not behind else "NOT met (not ahead of " + ", ".join(behind) + ")"
                lines.append(f"- ResNet-50, c=8: ahead of every peer in rps and p99 — **{verdict}**.")
    return lines or ["- (not enough scenarios ran to judge the targets)"]


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "commit": commit or "unknown",
    }


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------


def main():
    started = time.monotonic()
    OUT_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="mofang-bench-"))
    log(f"work files and server logs in {workdir}")
    if foreign_compilers():
        log("WARNING: a compiler is running on this machine; numbers will be skewed (marked †)")
    results, limits, image, running = {}, {}, {}, []
    settings = [
        f"load generator: mofang-loadgen, {LOADGEN_THREADS} thread(s), keep-alive HTTP/1.1 (reconnects when the"
        f" server closes), per-request timeout {TIMEOUT:g} s",
        f"measurement {SECONDS:g} s after {WARMUP:g} s warm-up per scenario; limit: {LIMIT_SECONDS:g} s per arrangement",
    ]
    for peer, (procs, intra) in PEER_SETTINGS.items():
        if peer in SERVERS:
            settings.append(f"{SERVER_TITLES[peer]}: {procs} process(es) × {intra} ORT intra-op thread(s)")

    def bench_server(name, workload, concurrencies, into):
        server = None
        try:
            server = start(name, workload, workdir)
            running.append(server)
            note = workload.verify(server)
            log(f"{name} / {workload.model}: ready ({server.settings}); {note}")
            into.setdefault("_settings", {})[(name, workload.model)] = server.settings
            for c in concurrencies:
                try:
                    r = measure(server, workload, c)
                except Exception as e:  # noqa: BLE001 - recorded, the run goes on
                    r = {"failed": str(e)}
                into.setdefault(name, {})[c] = r
                log(
                    f"{name} / {workload.model} / c={c}: "
                    + (cell(r) + f" · cpu {r['server_cpu_pct']:.0f}%/{r['loadgen_cpu_pct']:.0f}%"
                       if "failed" not in r else f"FAILED {r['failed']}")
                )
            metrics = scrape_metrics(server, workdir)
            if metrics:
                log(f"{name} / {workload.model}: /metrics saved to {metrics}")
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on
            log(f"{name} / {workload.model}: FAILED: {e}")
            for c in concurrencies:
                into.setdefault(name, {}).setdefault(c, {"failed": str(e)})
        finally:
            if server:
                server.stop()
                running.remove(server)

    server_settings = {}
    try:
        for model in MODELS:
            workload = Workload(model, workdir)
            for name in SERVERS:
                per_server = {}
                bench_server(name, workload, CONCURRENCY, per_server)
                results[(model, name)] = per_server.get(name, {})
                server_settings.update(per_server.get("_settings", {}))
            if RUN_LIMIT:
                log(f"limit / {model}: in-process ONNX Runtime, {LIMIT_SECONDS:g} s per arrangement")
                try:
                    limits[model] = run_limit(workload)
                    b = limits[model]["best"]
                    log(f"limit / {model}: {b['rows_per_s']:.1f} rows/s (batch {b['batch']}, {b['streams']}x{b['intra_op']})")
                except Exception as e:  # noqa: BLE001
                    log(f"limit / {model}: FAILED: {e}")
        if RUN_IMAGE:
            workload = Workload("efficientnet_lite0", workdir)
            for name in ("mofang", "flask", "gunicorn"):
                if name in SERVERS:
                    bench_server(name, workload, IMAGE_CONCURRENCY, image)
            server_settings.update(image.pop("_settings", {}))
    finally:
        for server in running:
            server.stop()

    for (name, model), s in sorted(server_settings.items()):
        if name.startswith("mofang"):
            settings.append(f"{SERVER_TITLES[name]}, {model}: {s}")
    elapsed = time.monotonic() - started
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": os.environ.get("BENCH_COMMAND", "bench/run.sh"),
        "machine": machine(),
        "settings": settings,
        "elapsed_s": elapsed,
    }
    table = report(results, limits, image, meta)
    mach = meta["machine"]
    header = (
        "# mofang benchmark\n\n"
        f"- date: {meta['date']}; commit {mach['commit']}\n"
        f"- command: `{meta['command']}`\n"
        f"- machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory_gib']} GiB memory, Linux {mach['kernel']};"
        f" Python {mach['python']}, onnxruntime {mach['onnxruntime']}\n"
        f"- benchmark took {elapsed / 60:.1f} min\n\n"
    )
    print(table)
    (OUT_DIR / "latest.md").write_text(header + table)
    raw = {
        "meta": meta,
        "results": {f"{m}/{s}": v for (m, s), v in results.items()},
        "limits": limits,
        "image": image,
    }
    (OUT_DIR / "latest.json").write_text(json.dumps(raw, indent=1, default=str))
    log(f"report written to {(OUT_DIR / 'latest.md').relative_to(REPO)} (raw: latest.json); took {elapsed:.0f} s")
    if "failed" in json.dumps(raw):
        log(f"some measurements failed: server logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def terminate(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the servers


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, terminate)
    main()

"""End to end in a real ComfyUI (CPU): the pack loads, /object_info lists our nodes, every API workflow runs
through POST /prompt to a decodable video, /interrupt cancels a run without leaving a file, and POST /free
gives back the memory of the models our loaders hold (measured as the server's RSS).

Needs ``COMFYUI_DIR`` (a ComfyUI checkout; its python is ``COMFYUI_PYTHON``, else
``$COMFYUI_DIR/venv/bin/python``, else this interpreter). The server runs on 127.0.0.1 on a free port,
with our pack, models, input and output folders in a temporary directory (nothing written into the
ComfyUI install).
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch

from vidcore.data import EXAMPLE_VIDEO
from vidcore.io.video import read_video

from ._node_fixtures import INPUT_VIDEO, make_captioner, make_models_root

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-VidCore"
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(
    not COMFYUI_DIR, reason="COMFYUI_DIR is not set: no ComfyUI checkout to run the end-to-end test against"
)
START_TIMEOUT_S = 240
RUN_TIMEOUT_S = 300
MIB = 2**20


def _python() -> str:
    if os.environ.get("COMFYUI_PYTHON"):
        return os.environ["COMFYUI_PYTHON"]
    venv = Path(COMFYUI_DIR or ".") / "venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(
        self, url: str, proc: subprocess.Popen, log: Path, output: Path, models: Path, started_s: float
    ):
        self.url, self.proc, self.log, self.output, self.started_s = url, proc, log, output, started_s
        self.models = models

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def post(self, path: str, payload) -> tuple[int, dict]:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                body = r.read()
                return r.status, (json.loads(body) if body else {})
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def submit(self, prompt: dict) -> str:
        status, body = self.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        assert status == 200 and not body.get("node_errors"), body
        return body["prompt_id"]

    def wait(self, prompt_id: str) -> dict:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id]["status"].get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"]["status_str"] in ("success", "error"):
                    return entry
            assert self.proc.poll() is None, "ComfyUI exited:\n" + self.log.read_text()[-3000:]
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {RUN_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy")
    models = make_models_root(base / "models")
    make_captioner(models)
    (base / "packs").mkdir()
    (base / "packs" / PACK_NAME).symlink_to(ROOT, target_is_directory=True)
    for sub in ("input", "output", "user", "temp"):
        (base / sub).mkdir()
    # input/ stays empty: the pack copies its example clip there on start-up (first run).
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(
        "vidcore_e2e:\n"
        f"  base_path: {models}\n"
        f"  custom_nodes: {base / 'packs'}\n"
        "  vidcore: vidcore\n  text_encoders: text_encoders\n  LLM: LLM\n"
    )
    port = _free_port()
    log = base / "comfyui.log"
    cmd = [
        _python(), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
        "--extra-model-paths-config", str(yaml), "--input-directory", str(base / "input"),
        "--output-directory", str(base / "output"), "--temp-directory", str(base / "temp"),
        "--user-directory", str(base / "user"), "--database-url", "sqlite:///:memory:",
        "--preview-method", "latent2rgb",  # our samplers then send latent -> RGB previews every step
    ]  # fmt: skip
    env = {**os.environ, "DO_NOT_TRACK": "1", "COMFY_NO_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    # glibc's malloc raises its mmap threshold (up to 32 MiB) after the first large free, so later tensors
    # land on the heap, whose freed pages stay in RSS. A fixed threshold maps every tensor over 1 MiB on its
    # own and unmaps it when freed: the memory test's RSS then follows the live tensors.
    env["MALLOC_MMAP_THRESHOLD_"] = str(MIB)
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=COMFYUI_DIR, stdout=fh, stderr=subprocess.STDOUT, env=env)
    srv = Server(f"http://127.0.0.1:{port}", proc, log, base / "output", models, 0.0)
    srv.input = base / "input"
    try:
        while True:
            assert proc.poll() is None, "ComfyUI exited during start:\n" + log.read_text()[-3000:]
            assert time.monotonic() - t0 < START_TIMEOUT_S, "ComfyUI did not answer /object_info in time"
            try:
                srv.get("/object_info/VidCoreSampler")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        srv.started_s = time.monotonic() - t0
        print(f"\nComfyUI ready in {srv.started_s:.1f} s on {srv.url} (pid {proc.pid}, log {log})")
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pack_loads_and_lists_every_node(server):
    from nodes import NODE_CLASS_MAPPINGS

    info = server.get("/object_info")
    ours = {k: v for k, v in info.items() if k.startswith("VidCore")}
    assert set(ours) == set(NODE_CLASS_MAPPINGS)
    assert all(v["python_module"] == f"custom_nodes.{PACK_NAME}" for v in ours.values())
    assert "tiny" in ours["VidCoreLoadModel"]["input"]["required"]["model_name"][0]
    video = ours["VidCoreLoadVideo"]["input"]["required"]["video"]
    assert INPUT_VIDEO in video[0] and video[1]["video_upload"] is True
    # first run: the shipped example clip was copied into the empty input folder
    assert (server.input / INPUT_VIDEO).read_bytes() == EXAMPLE_VIDEO.read_bytes()
    log = server.log.read_text()
    assert "IMPORT FAILED" not in log, log[-3000:]
    assert f"/extensions/{PACK_NAME}/vidcore.js" in server.get("/extensions")
    templates = server.get("/workflow_templates")
    assert {"text_to_video_tiny", "score_video"} <= set(templates.get(PACK_NAME, [])), templates


def _needs_user_weights() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location(
        "_vidcore_make_workflows", ROOT / "workflows" / "make_workflows.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.NEEDS_USER_WEIGHTS)


@pytest.mark.parametrize(
    "name",
    # Workflows that need the user's own weights (LTX-Video, Wan) run offline in test_workflows.py.
    sorted(
        p.stem for p in (ROOT / "workflows" / "api").glob("*.json") if p.stem not in _needs_user_weights()
    ),
)
def test_api_workflow_runs_in_comfyui(server, name):
    prompt = json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text())
    log_start = len(server.log.read_text())
    t0 = time.monotonic()
    entry = server.wait(server.submit(prompt))
    seconds = time.monotonic() - t0
    log = server.log.read_text()[log_start:]
    assert "Traceback" not in log and "!!! Exception" not in log and "Failed to validate" not in log, log
    assert "previews turned off" not in log, log
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[-3000:]
    saved = [e for out in entry["outputs"].values() for e in out.get("vidcore_videos", [])]
    assert saved, entry["outputs"]
    for e in saved:
        path = server.output / e["subfolder"] / e["filename"]
        frames, fps = read_video(path)
        assert frames.shape[0] == e["frame_count"] and fps == pytest.approx(e["fps"])
        served = server.get(f"/view?filename={e['filename']}&subfolder={e['subfolder']}&type=output")
        assert served == path.read_bytes()
        print(f"\n{name}: {seconds:.2f} s, {e['filename']} {tuple(frames.shape)} at {fps} fps")
    if name == "score_video":
        assert any("vidcore_metrics" in out for out in entry["outputs"].values())


def test_missing_captioner_is_a_node_error_saying_where_to_put_it(server):
    prompt = json.loads((ROOT / "workflows" / "api" / "caption_refine_regenerate.json").read_text())
    (nid,) = [k for k, v in prompt.items() if v["class_type"] == "VidCoreLoadCaptioner"]
    prompt[nid]["inputs"]["model_name"] = "SmolVLM2-2.2B-Instruct"
    status, body = server.post("/prompt", {"prompt": prompt, "client_id": "t"})
    text = json.dumps(body)
    assert status == 400 and "put a SmolVLM2 folder" in text and "models/LLM/" in text, body


def test_bad_input_is_a_node_error_not_a_crash(server):
    prompt = json.loads((ROOT / "workflows" / "api" / "score_video.json").read_text())
    prompt["1"]["inputs"]["video"] = "../outside.mp4"
    status, body = server.post("/prompt", {"prompt": prompt, "client_id": "t"})
    assert status == 400 and "outside the folder" in json.dumps(body), body
    prompt = json.loads((ROOT / "workflows" / "api" / "text_to_video_tiny.json").read_text())
    prompt["4"]["inputs"]["num_frames"] = 16
    entry = server.wait(server.submit(prompt))
    assert entry["status"]["status_str"] == "error"
    assert "num_frames=16 must be 1 + 4k" in json.dumps(entry["status"]["messages"])


def test_interrupt_stops_the_run_and_leaves_no_file(server):
    prompt = json.loads((ROOT / "workflows" / "api" / "text_to_video_tiny.json").read_text())
    prompt["5"]["inputs"]["steps"] = 1000
    prompt["7"]["inputs"]["filename_prefix"] = "cancelled/run"
    prompt_id = server.submit(prompt)
    deadline = time.monotonic() + 60
    while not server.get("/queue")["queue_running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)
    t0 = time.monotonic()
    server.post("/interrupt", {})
    entry = server.wait(prompt_id)
    print(f"\ninterrupt -> finished in {time.monotonic() - t0:.2f} s")
    assert entry["status"]["status_str"] == "error"
    assert "execution_interrupted" in json.dumps(entry["status"]["messages"])
    assert not (server.output / "cancelled").exists() or not list((server.output / "cancelled").iterdir())


# ------------------------------------------------------------------------------------------ model memory

BIG_MODEL = "big"  # models/vidcore/big: the tiny model with a 2048-wide DiT (435 MiB of float32 weights)


def _make_big_model(models: Path) -> int:
    """A copy of the tiny model folder with a large random DiT; returns the DiT's float32 size in bytes."""
    from vidcore.models.dit import DiTConfig, SpacetimeDiT

    tiny, folder = models / "vidcore" / "tiny", models / "vidcore" / BIG_MODEL
    text_dim = SpacetimeDiT.from_checkpoint(tiny / "dit.safetensors").config.text_dim
    torch.manual_seed(0)
    dit = SpacetimeDiT(
        DiTConfig(in_channels=4, out_channels=4, width=2048, depth=1, heads=16, text_dim=text_dim, patch_s=1)
    )
    size = sum(p.numel() * p.element_size() for p in dit.parameters())
    if not (folder / "pipeline.json").is_file():
        folder.mkdir(parents=True)
        with torch.no_grad():
            for p in dit.parameters():  # random values: every page of every tensor is really written
                p.normal_(0.0, 0.02)
        dit.save(folder / "dit.safetensors")
        (folder / "vae.safetensors").write_bytes((tiny / "vae.safetensors").read_bytes())
        config = json.loads((tiny / "pipeline.json").read_text())
        (folder / "pipeline.json").write_text(json.dumps({**config, "name": BIG_MODEL}))
    return size


def _rss(pid: int) -> int:
    """Resident set size of a process in bytes (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status")


def _settled_rss(server, timeout_s: float = 30.0) -> int:
    """The server's RSS once the queue is idle and RSS has stopped moving for a second."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = _rss(server.proc.pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        queue = server.get("/queue")
        now = _rss(server.proc.pid)
        if queue["queue_running"] or queue["queue_pending"] or abs(now - last) > 4 * MIB:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= 1.0:
            return now
    return _rss(server.proc.pid)


def _free(server) -> int:
    """POST /free with unload_models + free_memory (the UI's "Unload Models and Execution Cache")."""
    status, _ = server.post("/free", {"unload_models": True, "free_memory": True})
    assert status == 200
    return _settled_rss(server)


def _generate(server, model_name: str, precision: str, seed: int = 0) -> int:
    """Run text-to-video with ``model_name`` at ``precision`` (small and short: the DiT's weights, not its
    activations, dominate memory); returns the settled RSS afterwards (the loader output stays cached)."""
    prompt = json.loads((ROOT / "workflows" / "api" / "text_to_video_tiny.json").read_text())
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "VidCoreLoadModel":
            inputs.update(model_name=model_name, precision=precision)
        elif node["class_type"] == "VidCoreEmptyVideoLatent":
            inputs.update(width=16, height=16, num_frames=5)
        elif node["class_type"] == "VidCoreSampler":  # flow: a 16x16 video is too small for the pyramid
            inputs.update(steps=2, seed=seed, schedule="flow")
        elif node["class_type"] == "VidCoreSaveVideo":
            inputs.update(filename_prefix="memory/run")
    entry = server.wait(server.submit(prompt))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[-3000:]
    return _settled_rss(server)


def test_free_gives_back_our_models_memory_and_a_precision_change_keeps_one_copy(server):
    size = _make_big_model(server.models)
    _generate(server, "tiny", "fp32")  # imports and first-run allocations, so they do not count below
    base = _free(server)
    fp32 = _generate(server, BIG_MODEL, "fp32")
    # The UI's "Unload Models" alone: ComfyUI unloads (on a GPU: offloads) the models; the loader output
    # stays in the execution cache, and the next run (another seed) places the same weights again.
    status, _ = server.post("/free", {"unload_models": True})
    assert status == 200
    kept = _generate(server, BIG_MODEL, "fp32", seed=1)
    freed = _free(server)
    again = _generate(server, BIG_MODEL, "fp32")
    bf16 = _generate(server, BIG_MODEL, "bf16")  # replaces the fp32 copy (loader input changed)
    end = _free(server)
    mib = lambda b: f"{b / MIB:.0f} MiB"  # noqa: E731
    print(
        f"\nDiT {mib(size)} fp32: RSS base {mib(base)}, after load fp32 {mib(fp32)}, after unload_models "
        f"and a new run {mib(kept)}, after /free {mib(freed)}, fp32 again {mib(again)}, then bf16 "
        f"{mib(bf16)}, after /free {mib(end)}"
    )
    assert fp32 - base > 0.8 * size, "the fp32 model should be resident after the run"
    assert abs(kept - fp32) < 0.25 * size, "unload_models alone keeps (reuses) the cached loader output"
    assert kept - freed > 0.8 * size, "POST /free (unload_models + free_memory) must give its memory back"
    # One copy: bf16 holds half the fp32 bytes; keeping the fp32 copy too would add a full fp32 size on top.
    assert bf16 - base < 0.5 * size + 0.25 * size, "after a precision change only the bf16 copy may remain"
    assert bf16 - end > 0.4 * size, "POST /free must give the bf16 copy back as well"


def _tiny_latents(server, **load_inputs) -> torch.Tensor:
    """The sampler's latents of the tiny text-to-video graph (4 steps, saved with core SaveLatent)."""
    from safetensors.torch import load_file

    prompt = json.loads((ROOT / "workflows" / "api" / "text_to_video_tiny.json").read_text())
    prompt["1"]["inputs"].update(load_inputs)
    prompt["5"]["inputs"]["steps"] = 4
    for nid in ("6", "7"):
        del prompt[nid]
    prefix = f"vidcore_test/latent_{uuid.uuid4().hex[:8]}"
    prompt["8"] = {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": prefix}}
    entry = server.wait(server.submit(prompt))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[-3000:]
    (saved,) = entry["outputs"]["8"]["latents"]
    return load_file(str(server.output / saved["subfolder"] / saved["filename"]))["latent_tensor"]


def _spawned_workers(pid: int) -> set[int]:
    """Pids of the multiprocessing-spawned children of ``pid`` (not its resource tracker), from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmd:
            found.add(int(stat.parent.name))
    return found


def test_parallel_load_model_samples_on_worker_processes_like_one_process(server):
    one = _tiny_latents(server)
    before = _spawned_workers(server.proc.pid)
    two = _tiny_latents(server, parallel="cfg=2", devices="cpu")
    workers = _spawned_workers(server.proc.pid) - before
    assert len(workers) == 1, "cfg=2 runs rank 0 in the server and one spawned worker"
    again = _tiny_latents(server, parallel="cfg=2", devices="cpu")  # the same pool serves the next run
    assert workers <= _spawned_workers(server.proc.pid)
    # Rank 0 runs with ComfyUI's thread count, the worker with torch's default: last-bit differences only.
    assert one.shape == two.shape and float((two - one).abs().max()) < 1e-4
    assert torch.equal(two, again)
    status, body = server.post(
        "/prompt",
        {
            "prompt": {
                **json.loads((ROOT / "workflows" / "api" / "text_to_video_tiny.json").read_text()),
                "1": {
                    "class_type": "VidCoreLoadModel",
                    "inputs": {
                        "model_name": "tiny",
                        "precision": "auto",
                        "parallel": "cfg=2",
                        "devices": "cuda:7",
                    },
                },
            },
            "client_id": "t",
        },
    )
    assert status == 400 and "names 1 devices but the parallel run has 2 ranks" in json.dumps(body), body

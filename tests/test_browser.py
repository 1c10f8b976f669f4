"""The real ComfyUI frontend in headless Chromium: every UI workflow in ``workflows/`` that runs on the
built-in (or test-provided tiny) models loads into the graph with no missing node types and no red (error)
nodes, runs from the frontend's queue, and its Save Video node shows a preview that plays (``<video>``:
``readyState >= 2`` and advancing) or has loaded (``<img>``). One screenshot per workflow is saved in the
test's tmp folder.

Needs ``COMFYUI_DIR`` (see test_comfyui_e2e.py, whose server fixture this test reuses) and Debian's
``chromium`` + ``chromium-driver`` (``chromium`` and ``chromedriver`` on PATH, or ``CHROMIUM`` /
``CHROMEDRIVER`` naming them). Chromedriver is driven through the W3C WebDriver HTTP protocol with urllib,
so no Python browser package is needed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
_MISSING = [
    what
    for what, ok in (
        ("COMFYUI_DIR is not set (no ComfyUI checkout)", os.environ.get("COMFYUI_DIR")),
        ("chromium is not installed (Debian package chromium)", CHROMIUM),
        ("chromedriver is not installed (Debian package chromium-driver)", CHROMEDRIVER),
    )
    if not ok
]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason="browser test: " + "; ".join(_MISSING))

if not _MISSING:
    # The module-scoped ComfyUI server (our pack, tiny models, the tiny captioner, a temporary
    # input/output tree) from the end-to-end test; imported only when it will be used.
    from .test_comfyui_e2e import _needs_user_weights, server  # noqa: F401

    WORKFLOWS = sorted(
        p.stem for p in (ROOT / "workflows").glob("*.json") if p.stem not in _needs_user_weights()
    )
else:
    WORKFLOWS = []

PAGE_TIMEOUT_S = 120
RUN_TIMEOUT_S = 120
PLAY_TIMEOUT_S = 30
WINDOW = (1600, 1000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Defined in every script run in the page: the nodes the frontend draws red, i.e. a load error (has_errors),
# a validation error from POST /prompt (lastNodeErrors, keyed by node id) or the node of the last
# execution error.
PRELUDE_JS = """
const redNodes = (app) => app.graph.nodes.filter((n) => n.has_errors || app.lastNodeErrors?.[n.id] ||
  String(app.lastExecutionError?.node_id) === String(n.id)).map((n) => `${n.id} ${n.type}`);
"""


class WebDriverError(RuntimeError):
    pass


class Browser:
    """A minimal W3C WebDriver client for one chromedriver session."""

    def __init__(self, url: str, session: str):
        self.url, self.session = url, session

    @staticmethod
    def _call(method: str, url: str, payload=None, timeout: float = 60):
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            value = json.loads(e.read() or b"{}").get("value", {})
            raise WebDriverError(f"{method} {url}: {value.get('error')}: {value.get('message')}") from None

    def cmd(self, method: str, path: str, payload=None, timeout: float = 60):
        return self._call(method, f"{self.url}/session/{self.session}{path}", payload, timeout)

    def js(self, body: str, *args, timeout: float = 60):
        """Run ``body`` as an async function body in the page; its (awaited) return value comes back."""
        script = f"return (async function () {{\n{PRELUDE_JS}\n{body}\n}}).apply(null, arguments);"
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)}, timeout=timeout)

    def wait_js(self, body: str, *args, timeout: float, what: str):
        """Poll ``body`` until it returns something truthy; raise with ``what`` and the last value."""
        deadline, value = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            value = self.js(body, *args)
            if value and not (isinstance(value, dict) and not value.get("ok", True)):
                return value
            time.sleep(0.25)
        raise TimeoutError(f"{what} not reached in {timeout} s; last state: {value}")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):  # noqa: F811 (the imported fixture)
    # No "Get Started with a Template" modal on first load.
    status, _ = server.post("/settings/Comfy.TutorialCompleted", True)
    assert status == 200
    port = _free_port()
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [CHROMEDRIVER, f"--port={port}", f"--log-path={log}"], stdout=fh, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    session = None
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "chromedriver exited:\n" + log.read_text()[-2000:]
            try:
                if Browser._call("GET", url + "/status", timeout=5)["ready"]:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "chromedriver did not answer /status in 30 s"
            time.sleep(0.2)
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
        ]  # fmt: skip
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}}
        session = Browser._call("POST", url + "/session", caps, timeout=60)["sessionId"]
        b = Browser(url, session)
        b.cmd("POST", "/timeouts", {"script": 60_000, "pageLoad": 60_000})
        t0 = time.monotonic()
        b.cmd("POST", "/url", {"url": server.url})
        b.wait_js(
            """
            const app = window.app;
            const marker = document.body.dataset.vidcoreExtension ?? null;
            return {ok: !!(app && app.graph && app.canvas && marker === "loaded"), app: !!app, marker};
            """,
            timeout=PAGE_TIMEOUT_S,
            what="the ComfyUI frontend with the VidCore extension",
        )
        print(f"\nfrontend loaded in {time.monotonic() - t0:.1f} s")
        yield b
    finally:
        if session:
            try:
                Browser._call("DELETE", f"{url}/session/{session}", timeout=30)
            except (WebDriverError, urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


LOAD_JS = """
const [workflow] = arguments;
const app = window.app;
const LG = window.LiteGraph ?? window.comfyAPI?.litegraph?.LiteGraph;
await app.loadGraphData(workflow, true, true, null);
await new Promise((r) => setTimeout(r, 300));
const registered = LG ? Object.keys(LG.registered_node_types) : null;
const types = workflow.nodes.map((n) => n.type);
const dialogs = [...document.querySelectorAll(".p-dialog")].map((d) => d.innerText.slice(0, 300));
return {
  registered_ok: !!registered,
  missing_types: registered ? [...new Set(types.filter((t) => !registered.includes(t)))] : types,
  graph_types: app.graph.nodes.map((n) => n.type),
  error_nodes: redNodes(app),
  missing_nodes_dialog: !!document.querySelector(".comfy-missing-nodes"),
  dialogs,
};
"""

QUEUE_JS = """
const app = window.app;
await app.queuePrompt(0, 1);
const errors = app.lastNodeErrors ?? window.comfyAPI?.app?.app?.lastNodeErrors ?? null;
return {
  last_node_errors: errors && Object.keys(errors).length ? errors : null,
  error_nodes: redNodes(app),
};
"""

PREVIEW_JS = """
const app = window.app;
const node = app.graph.nodes.find((n) => n.type === "VidCoreSaveVideo");
if (!node) return {ok: false, why: "no VidCoreSaveVideo node in the graph"};
const el = node.widgets?.find((w) => w.name === "vidcore_video")?.element?.querySelector(".vidcore-video");
if (!el) return {ok: false, why: "no preview element on the Save Video node yet"};
const state = {tag: el.tagName, src: el.src, connected: el.isConnected,
               error_nodes: redNodes(app)};
if (el.tagName === "VIDEO") {
  Object.assign(state, {readyState: el.readyState, paused: el.paused, currentTime: el.currentTime,
                        width: el.videoWidth, height: el.videoHeight, error: el.error?.code ?? null});
  if (el.isConnected && el.readyState >= 2 && el.paused) await el.play().catch(() => {});
  state.ok = el.isConnected && el.readyState >= 2 && !el.paused && el.currentTime > 0 && el.videoWidth > 0;
} else {
  Object.assign(state, {complete: el.complete, width: el.naturalWidth, height: el.naturalHeight});
  state.ok = el.isConnected && el.complete && el.naturalWidth > 0;
}
return state;
"""

FOCUS_JS = """
const app = window.app;
const node = app.graph.nodes.find((n) => n.type === "VidCoreSaveVideo");
app.canvas.selectNode?.(node);
app.canvas.centerOnNode?.(node);
app.canvas.setDirty(true, true);
app.canvas.draw?.(true, true);
"""


def _new_history_entry(server, known: set[str]) -> tuple[str, dict]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        hist = server.get("/history")
        for prompt_id, entry in hist.items():
            if prompt_id not in known and entry["status"].get("completed") is not None:
                if entry["status"]["status_str"] in ("success", "error"):
                    return prompt_id, entry
        assert server.proc.poll() is None, "ComfyUI exited:\n" + server.log.read_text()[-3000:]
        time.sleep(0.25)
    raise TimeoutError(f"no finished prompt in /history after {RUN_TIMEOUT_S} s")


@pytest.mark.parametrize("name", WORKFLOWS)
def test_ui_workflow_runs_in_the_frontend(server, browser, name, tmp_path):  # noqa: F811
    workflow = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    t0 = time.monotonic()
    loaded = browser.js(LOAD_JS, workflow)
    assert loaded["registered_ok"], "LiteGraph's registered node types are not reachable from the page"
    assert not loaded["missing_types"], f"node types unknown to the frontend: {loaded['missing_types']}"
    assert not loaded["missing_nodes_dialog"], loaded["dialogs"]
    assert sorted(loaded["graph_types"]) == sorted(n["type"] for n in workflow["nodes"]), loaded
    assert not loaded["error_nodes"], f"red nodes after loading: {loaded['error_nodes']}"
    assert not loaded["dialogs"], f"a dialog opened on load: {loaded['dialogs']}"
    t_load = time.monotonic() - t0

    # Drop the execution cache (and models): each workflow runs from scratch, not from an earlier one's nodes.
    assert server.post("/free", {"unload_models": True, "free_memory": True})[0] == 200
    known = set(server.get("/history"))
    log_start = len(server.log.read_text())
    queued = browser.js(QUEUE_JS)
    assert not queued["last_node_errors"], (
        f"validation errors: {json.dumps(queued['last_node_errors'])[:3000]}"
    )
    assert not queued["error_nodes"], f"red nodes after queueing: {queued['error_nodes']}"
    prompt_id, entry = _new_history_entry(server, known)
    t_run = time.monotonic() - t0 - t_load
    log = server.log.read_text()[log_start:]
    assert entry["status"]["status_str"] == "success", (
        json.dumps(entry["status"], indent=1)[-3000:] + log[-2000:]
    )
    saved = [e for out in entry["outputs"].values() for e in out.get("vidcore_videos", [])]
    assert saved, entry["outputs"]

    preview = browser.wait_js(
        PREVIEW_JS, timeout=PLAY_TIMEOUT_S, what=f"{name}: a playing Save Video preview"
    )
    assert saved[-1]["filename"] in preview["src"], (preview, saved)
    assert not preview["error_nodes"], f"red nodes after the run: {preview['error_nodes']}"
    t_preview = time.monotonic() - t0 - t_load - t_run
    browser.js(FOCUS_JS)
    time.sleep(0.3)
    shot = tmp_path / f"{name}.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(
        f"\n{name}: load {t_load:.2f} s, run {t_run:.2f} s, preview {t_preview:.2f} s; "
        f"{preview['tag'].lower()} {preview['width']}x{preview['height']} "
        f"(readyState {preview.get('readyState', '-')}); prompt {prompt_id}; screenshot {shot}"
    )


CLOSE_DIALOGS_JS = """
for (const b of document.querySelectorAll(".p-dialog .p-dialog-close-button")) b.click();
await new Promise((r) => setTimeout(r, 300));
return document.querySelectorAll(".p-dialog").length;
"""


def test_the_checks_see_missing_types_and_red_nodes(server, browser, tmp_path):  # noqa: F811
    """The detectors above can fail: an unknown node type is reported (type list and the frontend's
    missing-nodes dialog), and a prompt the server rejects marks the offending node red."""
    workflow = json.loads((ROOT / "workflows" / "score_video.json").read_text())
    broken = json.loads(json.dumps(workflow))
    broken["nodes"][0]["type"] = "VidCoreNoSuchNode"
    loaded = browser.js(LOAD_JS, broken)
    assert loaded["missing_types"] == ["VidCoreNoSuchNode"], loaded
    assert loaded["missing_nodes_dialog"] and any("VidCoreNoSuchNode" in d for d in loaded["dialogs"]), loaded
    assert browser.js(CLOSE_DIALOGS_JS) == 0

    bad = json.loads(json.dumps(workflow))
    (load_video,) = [n for n in bad["nodes"] if n["type"] == "VidCoreLoadVideo"]
    load_video["widgets_values"][0] = "../outside.mp4"
    loaded = browser.js(LOAD_JS, bad)
    assert not loaded["missing_types"] and not loaded["error_nodes"], loaded
    known = set(server.get("/history"))
    queued = browser.js(QUEUE_JS)
    assert queued["last_node_errors"] and f"{load_video['id']} VidCoreLoadVideo" in queued["error_nodes"], (
        queued
    )
    assert "outside the folder" in json.dumps(queued["last_node_errors"])
    assert set(server.get("/history")) == known, "a rejected prompt must not run"
    browser.screenshot(tmp_path / "red_node.png")
    browser.js(CLOSE_DIALOGS_JS)

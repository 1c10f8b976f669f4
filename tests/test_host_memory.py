"""Model memory in nodes/_host.py against a fake ComfyUI (``comfy.model_management`` and
``comfy.model_patcher`` injected into sys.modules, recording what our code calls), and its behaviour
without ComfyUI. The real ComfyUI is exercised in test_comfyui_e2e.py (POST /free, measured RSS)."""

import gc
import logging
import sys
import types
import weakref

import pytest
import torch

from nodes import _host

OFFLOAD = {"unet": torch.device("meta"), "text": torch.device("cpu"), "vae": torch.device("meta")}


class FakePatcher:
    """The parts of Comfy-Org/ComfyUI comfy/model_patcher.py ModelPatcher our code relies on."""

    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        self.detached = 0

    def detach(self, unpatch_all=True):
        self.detached += 1
        return self.model


class FakeModelManagement(types.ModuleType):
    """Records load_models_gpu calls; like Comfy-Org/ComfyUI comfy/model_management.py it only keeps weak
    references to the loaded patchers (LoadedModel._model), and unload_all_models detaches them."""

    def __init__(self) -> None:
        super().__init__("comfy.model_management")
        self.calls: list[dict] = []
        self.current_loaded_models: list[weakref.ref] = []

    def get_torch_device(self):
        return torch.device("cpu")

    def unet_offload_device(self):
        return OFFLOAD["unet"]

    def text_encoder_offload_device(self):
        return OFFLOAD["text"]

    def vae_offload_device(self):
        return OFFLOAD["vae"]

    def load_models_gpu(self, models, memory_required=0, force_patch_weights=False, **kwargs):
        # ids only: a recorder holding the patchers would keep our models alive
        self.calls.append({"models": [id(m) for m in models], "memory_required": memory_required, **kwargs})
        for m in models:
            if all(r() is not m for r in self.current_loaded_models):
                self.current_loaded_models.append(weakref.ref(m))

    def unload_all_models(self):
        for r in self.current_loaded_models:
            if r() is not None:
                r().detach(True)
        self.current_loaded_models.clear()


@pytest.fixture
def comfy(monkeypatch):
    """A fake ComfyUI runtime for _host (and a fresh global cache)."""
    mm = FakeModelManagement()
    patcher_mod = types.ModuleType("comfy.model_patcher")
    patcher_mod.ModelPatcher = FakePatcher
    pkg = types.ModuleType("comfy")
    pkg.__path__ = []
    pkg.model_management, pkg.model_patcher = mm, patcher_mod
    monkeypatch.setitem(sys.modules, "comfy", pkg)
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    monkeypatch.setitem(sys.modules, "comfy.model_patcher", patcher_mod)
    return mm


@pytest.fixture
def no_comfy(monkeypatch):
    for name in [n for n in sys.modules if n == "comfy" or n.startswith("comfy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "comfy", None)  # `import comfy...` raises ImportError


class Pipe:
    """A handle like vidcore's pipelines: several modules behind components()."""

    def __init__(self, dtype=torch.float32):
        self.dit = torch.nn.Linear(8, 8, dtype=dtype)
        self.vae = torch.nn.Conv1d(2, 2, 1, dtype=dtype)
        self.text_encoder = Encoder(torch.nn.Embedding(4, 8, dtype=dtype))

    def components(self):
        return {"dit": self.dit, "vae": self.vae, **self.text_encoder.components()}


class Encoder:
    def __init__(self, model):
        self.model = model

    def components(self):
        return {"text_encoder": self.model}


def patcher_of(module):
    return module.__dict__[_host._PATCHER_ATTR]


@pytest.fixture
def path(tmp_path):
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    return f


def test_get_wraps_each_module_in_a_patcher_on_its_offload_device(comfy, path):
    cache = _host.ModelCache()
    pipe = cache.get("pipeline", path, torch.device("cpu"), torch.float32, Pipe)
    for name, module, offload in (
        ("dit", pipe.dit, OFFLOAD["unet"]),
        ("vae", pipe.vae, OFFLOAD["vae"]),
        ("text_encoder", pipe.text_encoder.model, OFFLOAD["text"]),
    ):
        p = patcher_of(module)
        assert isinstance(p, FakePatcher), name
        assert p.load_device == torch.device("cpu") and p.offload_device == offload, name
        assert all(t.device == offload for t in module.parameters()), f"{name} is not on {offload}"
        # ModelPatcher manages a container (its bookkeeping attributes land there), named for the logs.
        assert isinstance(p.model, _host._Weights) and p.model.module is module
        assert type(p.model).__name__ == f"VidCore{type(module).__name__}"
    assert comfy.calls == []  # registered, not loaded: use() loads
    (vae,) = [cache.get("vae", path, torch.device("cpu"), torch.float32, lambda: torch.nn.Linear(2, 2))]
    assert patcher_of(vae).offload_device == OFFLOAD["vae"]  # a bare module's role comes from the kind


def test_use_loads_the_patchers_through_load_models_gpu(comfy, path):
    pipe = _host.ModelCache().get("pipeline", path, torch.device("cpu"), torch.float32, Pipe)
    _host.use(pipe, None, memory_required=1234)
    (call,) = comfy.calls
    want = {id(patcher_of(m)) for m in (pipe.dit, pipe.vae, pipe.text_encoder.model)}
    assert set(call["models"]) == want and len(call["models"]) == 3
    assert call["memory_required"] == 1234 and call["force_full_load"] is True
    # A handle handed out by the loader (the pipeline's text encoder) shares the pipeline's patcher.
    _host.use(pipe.text_encoder, pipe.text_encoder)
    assert comfy.calls[-1]["models"] == [id(patcher_of(pipe.text_encoder.model))]
    _host.use(None)
    assert len(comfy.calls) == 2  # nothing to load, no call
    # A module that never went through the cache is registered on first use.
    loose = torch.nn.Linear(2, 2)
    _host.use(loose)
    assert comfy.calls[-1]["models"] == [id(patcher_of(loose))]
    with pytest.raises(ValueError, match="memory_required=-1 must be an int >= 0"):
        _host.use(pipe, memory_required=-1)


def test_unload_and_cache_reset_free_the_model(comfy, path):
    """What POST /free {"unload_models": true, "free_memory": true} does: unload_all_models detaches our
    patchers, the execution cache (the only strong owner of the loader's output) is reset, gc runs."""
    cache, loads = _host.ModelCache(), []
    pipe = cache.get("pipeline", path, torch.device("cpu"), torch.float32, lambda: loads.append(1) or Pipe())
    _host.use(pipe)
    dit, patcher = weakref.ref(pipe.dit), patcher_of(pipe.dit)
    assert cache.get("pipeline", path, torch.device("cpu"), torch.float32, lambda: 1 / 0) is pipe
    comfy.unload_all_models()
    assert patcher.detached == 1
    del pipe, patcher  # the execution cache forgets the loader output
    gc.collect()
    assert dit() is None, "the cache must not keep a model alive that ComfyUI has let go"
    assert len(cache) == 0
    cache.get("pipeline", path, torch.device("cpu"), torch.float32, lambda: loads.append(1) or Pipe())
    assert len(loads) == 2  # loaded again from disk


def test_a_model_never_run_is_freed_too(comfy, path):
    cache = _host.ModelCache()
    pipe = cache.get("pipeline", path, torch.device("cpu"), torch.float32, Pipe)
    dit = weakref.ref(pipe.dit)
    del pipe
    gc.collect()
    assert dit() is None and len(cache) == 0


@pytest.mark.parametrize("inside", [True, False], ids=["comfyui", "no-comfyui"])
def test_a_precision_change_keeps_one_copy(request, inside, path, caplog):
    request.getfixturevalue("comfy" if inside else "no_comfy")
    cache = _host.ModelCache()
    fp32 = cache.get("pipeline", path, torch.device("cpu"), torch.float32, Pipe)
    old = weakref.ref(fp32.dit)
    del fp32  # ComfyUI drops the loader's old output before the node runs again with the new input
    bf16 = cache.get("pipeline", path, torch.device("cpu"), torch.bfloat16, lambda: Pipe(torch.bfloat16))
    assert old() is None, "the fp32 copy must be freed (before the bf16 one loads)"
    assert len(cache) == 1
    # Still used elsewhere (another loader node in the graph): both live, the cache holds only the new one.
    with caplog.at_level(logging.INFO, logger="vidcore"):
        fp32 = cache.get("pipeline", path, torch.device("cpu"), torch.float32, Pipe)
    assert "still used elsewhere" in caplog.text
    assert bf16.dit.weight.dtype == torch.bfloat16 and fp32.dit.weight.dtype == torch.float32
    assert len(cache) == 1
    assert cache.get("pipeline", path, torch.device("cpu"), torch.float32, lambda: 1 / 0) is fp32


def test_outside_comfyui_use_is_a_noop_and_the_cache_is_an_lru(no_comfy, path):
    cache, loads = _host.ModelCache(size=2), []
    pipe = cache.get("pipeline", path, torch.device("cpu"), torch.float32, lambda: loads.append(1) or Pipe())
    dit = weakref.ref(pipe.dit)
    _host.use(pipe)  # nothing to do: no ComfyUI
    assert _host._PATCHER_ATTR not in pipe.dit.__dict__
    assert pipe.dit.weight.device == torch.device("cpu")
    del pipe
    gc.collect()
    assert dit() is not None  # strong references outside ComfyUI: cached across runs
    assert cache.get("pipeline", path, torch.device("cpu"), torch.float32, lambda: 1 / 0).dit is dit()
    cache.get("vae", path, torch.device("cpu"), torch.float32, object)
    cache.get("text", path, torch.device("cpu"), torch.float32, object)
    assert len(cache) == 2 and dit() is None  # LRU bound: the pipeline went first
    assert _host.weights_device() == torch.device("cpu") == _host.weights_device("text")


def test_weights_device_inside_comfyui(comfy):
    assert _host.weights_device() == OFFLOAD["unet"]
    assert _host.weights_device("text") == OFFLOAD["text"] and _host.weights_device("vae") == OFFLOAD["vae"]
    with pytest.raises(ValueError, match="role='unet' must be one of"):
        _host.weights_device("unet")


def test_components_of_handles():
    m = torch.nn.Linear(2, 2)
    assert _host.components(m) == {"model": m}
    pipe = Pipe()
    parts = {"dit": pipe.dit, "vae": pipe.vae, "text_encoder": pipe.text_encoder.model}
    assert _host.components(pipe) == parts
    bundle = types.SimpleNamespace(model=m, tokenizer=object(), image_size=224)  # e.g. vidcore's ClipBundle
    assert _host.components(bundle) == {"model": m}
    assert _host.components(("not", "an", "object")) == {}

    class Bad:
        def components(self):
            return {"dit": m, "tokenizer": "t5"}

    with pytest.raises(TypeError, match=r"Bad.components\(\) must map names to torch.nn.Module.*'tokenizer'"):
        _host.components(Bad())

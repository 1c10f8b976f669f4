"""The one place that touches ComfyUI's runtime: progress, interruption, devices, model/input/output folders,
and model memory (our models registered with ComfyUI's model management: :class:`ModelCache`, :func:`use`).

Every ComfyUI import is lazy and guarded, so the nodes import and run without ComfyUI (tests, scripts):
progress then goes to tqdm, nothing interrupts (unless a test installs a hook), the device is the CPU,
models stay where they were loaded (cached with strong references) and folders come from environment
variables (``VIDCORE_MODELS_DIR``, ``VIDCORE_INPUT_DIR``, ``VIDCORE_OUTPUT_DIR``) or from :func:`set_folders`.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vidcore.devices import resolve_dtype

log = logging.getLogger("vidcore")

# Model folder names we add to ComfyUI's folder_paths (Comfy-Org/ComfyUI folder_paths.py): our model
# folders and HF-style LLM/VLM folders (the name other packs use too).
MODEL_FOLDER = "vidcore"
LLM_FOLDER = "LLM"
# CLIP transformers folders for the metrics (CLIP-SIM / CLIP-TC): subfolders of ComfyUI's core clip_vision
# and text_encoders (which includes models/clip) folders. Both names are built into ComfyUI, so nothing is
# registered for them; outside ComfyUI they come from set_folders / VIDCORE_MODELS_DIR like the others.
CLIP_FOLDERS = ("clip_vision", "text_encoders")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_fallback_folders: dict[str, list[str]] = {}
_interrupt_hook: Callable[[], None] | None = None
_preview_hook: Callable[[int, int, Any], None] | None = None
PREVIEW_MIN_SIZE = 256  # latent-resolution sheets are enlarged (whole factors) to about this many pixels


def _folder_paths() -> Any | None:
    """ComfyUI's ``folder_paths`` module when running inside ComfyUI, else None."""
    try:
        import folder_paths  # noqa: PLC0415 - only exists inside ComfyUI
    except ImportError:
        return None
    return folder_paths


def _model_management() -> Any | None:
    try:
        import comfy.model_management as mm  # noqa: PLC0415
    except ImportError:
        return None
    return mm


# ------------------------------------------------------------------------------------------------ folders


def register_model_folders() -> None:
    """Register ``models/vidcore``, ``models/LLM`` and the model folders every registered vidcore family
    searches (``models/<kind>`` for kinds ComfyUI does not know yet) with ComfyUI (idempotent; no-op outside
    ComfyUI)."""
    fp = _folder_paths()
    if fp is None:
        return
    from vidcore.pipelines import families

    kinds = (MODEL_FOLDER, LLM_FOLDER, *(kind for family in families() for kind in family.folders))
    for name in dict.fromkeys(kinds):
        default = os.path.join(fp.models_dir, name)
        try:
            known = fp.get_folder_paths(name)
        except KeyError:  # ComfyUI raises for a kind nobody has registered yet (the usual case)
            known = []
        if default not in known:
            fp.add_model_folder_path(name, default)


def set_folders(
    models: dict[str, list[str | os.PathLike]] | None = None,
    input_dir: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
) -> None:
    """Outside ComfyUI: set the model folders per kind and the input/output folders (tests, scripts)."""
    if models is not None:
        _fallback_folders.clear()
        _fallback_folders.update({k: [str(p) for p in v] for k, v in models.items()})
    for key, value in (("input", input_dir), ("output", output_dir)):
        if value is not None:
            _fallback_folders[f"__{key}__"] = [str(value)]


def model_folders(kind: str) -> list[Path]:
    """Existing folders registered for a model kind (``vidcore``, ``LLM``, ``diffusion_models``, ...)."""
    fp = _folder_paths()
    if fp is not None:
        try:
            paths = fp.get_folder_paths(kind)
        except KeyError:
            paths = []
    elif kind in _fallback_folders:
        paths = _fallback_folders[kind]
    else:
        env = os.environ.get("VIDCORE_MODELS_DIR")
        paths = [os.path.join(env, kind)] if env else []
    return [Path(p) for p in paths if os.path.isdir(p)]


def config_model_type(folder: Path) -> str | None:
    """``model_type`` from a transformers folder's config.json (None when unreadable)."""
    try:
        value = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def list_model_dirs(
    kinds: tuple[str, ...], marker: str, model_types: tuple[str, ...] | None = None
) -> dict[str, Path]:
    """Subfolders (one level) holding ``marker`` in the folders of ``kinds``: {shown name: path}.

    ``model_types``: offer only transformers folders whose config.json names one of them (models/LLM and
    models/text_encoders are shared with other packs). Earlier folders win a name clash, as in ComfyUI's
    own lookups.
    """
    found: dict[str, Path] = {}
    for kind in kinds:
        for root in model_folders(kind):
            for child in sorted(root.iterdir()):
                if not (child.is_dir() and (child / marker).is_file()):
                    continue
                if model_types is not None and config_model_type(child) not in model_types:
                    continue
                found.setdefault(child.name, child)
    return found


def _special_dir(kind: str) -> Path:
    fp = _folder_paths()
    if fp is not None:
        return Path(fp.get_input_directory() if kind == "input" else fp.get_output_directory())
    if f"__{kind}__" in _fallback_folders:
        return Path(_fallback_folders[f"__{kind}__"][0])
    env = os.environ.get(f"VIDCORE_{kind.upper()}_DIR")
    return Path(env) if env else Path.cwd() / kind


def input_dir() -> Path:
    """ComfyUI's input folder (outside ComfyUI: ``VIDCORE_INPUT_DIR``, else ./input)."""
    return _special_dir("input")


def output_dir() -> Path:
    """ComfyUI's output folder (outside ComfyUI: ``VIDCORE_OUTPUT_DIR``, else ./output)."""
    return _special_dir("output")


def example_inputs() -> list[Path]:
    """Files the example workflows load from the input folder, shipped with vidcore (vidcore/data)."""
    from vidcore.data import EXAMPLE_VIDEO

    return [EXAMPLE_VIDEO]


def install_example_inputs(folder: str | os.PathLike | None = None) -> list[Path]:
    """Copy the shipped example inputs into the input folder (default :func:`input_dir`) so the example
    workflows run on a fresh install. A file of the same name is never replaced, whatever it holds; each
    copy is atomic (no partial file). Returns the paths written; problems (a read-only folder) are logged,
    never raised: the pack must load anyway."""
    from vidcore.io.atomic import write_bytes

    target = Path(folder) if folder is not None else input_dir()
    written = []
    for source in example_inputs():
        dest = target / source.name
        if os.path.lexists(dest):
            continue
        try:
            target.mkdir(parents=True, exist_ok=True)
            written.append(write_bytes(dest, source.read_bytes(), overwrite=False))
        except FileExistsError:  # appeared meanwhile: someone else's file, left alone
            continue
        except OSError as e:
            log.warning("vidcore: could not copy the example %s into %s: %s", source.name, target, e)
    return written


def install_example_inputs_in_comfyui() -> list[Path]:
    """At start-up inside ComfyUI: :func:`install_example_inputs` into its input folder (nothing outside)."""
    return install_example_inputs() if _folder_paths() is not None else []


def folder_hint(kinds: tuple[str, ...]) -> str:
    """Where files of ``kinds`` go, for messages: ``models/<kind>/`` plus every folder registered for them."""
    places = [f"models/{k}/" for k in kinds]
    fp = _folder_paths()
    for kind in kinds:
        if fp is not None:
            try:
                places += [str(p) for p in fp.get_folder_paths(kind)]
            except KeyError:
                pass
        else:
            places += [str(p) for p in _fallback_folders.get(kind, [])]
    return ", ".join(dict.fromkeys(places))


def pick_model(choices: dict, name: str, what: str, put: str, kinds: tuple[str, ...]) -> Any:
    """``choices[name]``, or an error that says what to put where: ``"{what}='x' was not found: put {put}
    in models/<kind>/ (...); found: [...]"``."""
    if name not in choices:
        raise ValueError(missing_model(choices, name, what, put, kinds))
    return choices[name]


def missing_model(choices: dict, name: str, what: str, put: str, kinds: tuple[str, ...]) -> str:
    listed = sorted(choices) or ["(nothing)"]
    return f"{what}={name!r} was not found: put {put} in {folder_hint(kinds)}; found: {listed}"


def pick(choices: dict, name: str, what: str, where: str) -> Any:
    """``choices[name]``, or an error naming the value, where it was searched and what is available."""
    if name not in choices:
        listed = sorted(choices) or ["(none found)"]
        raise ValueError(f"{what}={name!r} was not found in {where}; available: {listed}")
    return choices[name]


def inside(root: Path, name: str, what: str) -> Path:
    """``root / name`` resolved, refusing absolute paths and anything that resolves outside ``root``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what}={name!r} must be a non-empty file name inside {str(root)!r}")
    if os.path.isabs(name):
        raise ValueError(f"{what}={name!r} is an absolute path; give a name inside {str(root)!r}")
    base = root.resolve()
    path = (base / name).resolve()
    if path != base and base not in path.parents:
        raise ValueError(f"{what}={name!r} points outside the folder {str(base)!r}; that is not allowed")
    return path


# ------------------------------------------------------------------------------------------- devices


def torch_device() -> torch.device:
    """ComfyUI's chosen device (honours --cpu etc.); the CPU outside ComfyUI."""
    mm = _model_management()
    return torch.device(mm.get_torch_device()) if mm is not None else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where LATENT / IMAGE values live between nodes (ComfyUI keeps them on the CPU by default)."""
    mm = _model_management()
    return torch.device(mm.intermediate_device()) if mm is not None else torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Node precision choice -> dtype; "auto" is bf16 on CUDA GPUs with native bf16 (Ampere and newer) and
    fp32 elsewhere (CPU, MPS, older GPUs, where bf16 would be emulated and slow)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} must be one of {list(PRECISIONS)}")
    if precision == "auto":
        native_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native_bf16 else torch.float32
    return resolve_dtype(precision)  # vidcore's one reading of dtype names


# ------------------------------------------------------------------------------ progress / interruption


def set_interrupt_hook(hook: Callable[[], None] | None) -> None:
    """Outside ComfyUI: a callable run at every progress tick that raises to cancel (tests)."""
    global _interrupt_hook
    _interrupt_hook = hook


def check_interrupted() -> None:
    """Raise ComfyUI's interruption exception when the user pressed Cancel (or the test hook's)."""
    mm = _model_management()
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()
    if _interrupt_hook is not None:
        _interrupt_hook()


def set_preview_hook(hook: Callable[[int, int, Any], None] | None) -> None:
    """Outside ComfyUI: a callable ``hook(value, total, image)`` that receives each sampling preview (a PIL
    image) instead of ComfyUI's progress bar (tests); None turns previews off again."""
    global _preview_hook
    _preview_hook = hook


def previews_enabled() -> bool:
    """Whether sampler previews are wanted: inside ComfyUI unless it runs with --preview-method none (its
    default, as for core samplers; any other method gets our latent -> RGB projection); outside ComfyUI
    when a preview hook is set."""
    try:
        from comfy.cli_args import LatentPreviewMethod, args  # noqa: PLC0415
    except ImportError:
        return _preview_hook is not None
    return args.preview_method != LatentPreviewMethod.NoPreviews


def _preview_payload(frames: torch.Tensor) -> tuple[Any, Any]:
    """(what ComfyUI's ProgressBar takes as ``preview``: ("JPEG", PIL image, max size) as in Comfy-Org/ComfyUI
    latent_preview.py, the PIL image) for frames ``[T, H, W, 3]`` in 0..1, shown as a contact sheet."""
    from vidcore.preview import contact_sheet, to_pil

    image = to_pil(contact_sheet(frames), min_size=PREVIEW_MIN_SIZE)
    try:
        from comfy.cli_args import args  # noqa: PLC0415

        max_size = int(args.preview_size)
    except ImportError:
        max_size = 512
    return ("JPEG", image, max_size), image


class Progress:
    """ComfyUI progress bar (or tqdm); every tick first checks for interruption, which is what cancels."""

    def __init__(self, total: int, desc: str = "vidcore", node_id: str | None = None) -> None:
        self.total = max(1, int(total))
        self.value = 0
        self._bar: Any = None
        self._tqdm: Any = None
        try:
            import comfy.utils  # noqa: PLC0415

            self._bar = comfy.utils.ProgressBar(self.total, node_id=node_id)
        except ImportError:
            from tqdm.auto import tqdm  # noqa: PLC0415

            self._tqdm = tqdm(total=self.total, desc=desc, leave=False, disable=None)

    def set(self, value: int, total: int | None = None, preview: torch.Tensor | None = None) -> None:
        """Move to ``value`` of ``total`` (raises if the run was cancelled); ``preview``: frames
        ``[T, H, W, 3]`` in 0..1 to show on the node (ComfyUI's sampler preview)."""
        check_interrupted()
        if total is not None and int(total) != self.total:
            self.total = max(1, int(total))
            if self._tqdm is not None:
                self._tqdm.total = self.total
        value = min(int(value), self.total)
        payload = image = None
        if preview is not None:
            payload, image = _preview_payload(preview)
        if self._bar is not None:
            self._bar.update_absolute(value, self.total, payload)
        elif self._tqdm is not None:
            self._tqdm.update(value - self.value)
        if image is not None and _preview_hook is not None and self._bar is None:
            _preview_hook(value, self.total, image)
        self.value = value

    def sampler_callback(
        self, preview: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> Callable[[dict[str, Any]], None]:
        """A vidcore sampler callback: one tick per step (info["i"] is the 0-based step just done). With
        ``preview`` (latents -> frames ``[T, H, W, 3]`` in 0..1, e.g. a pipeline's ``latent_preview``) and
        previews enabled (:func:`previews_enabled`), each step also shows the x0 prediction; a preview that
        fails is logged once and turned off, never failing the run."""
        state = {"preview": preview if preview is not None and previews_enabled() else None}

        def callback(info: dict[str, Any]) -> None:
            frames = None
            project = state["preview"]
            if project is not None and info.get("denoised") is not None:
                try:
                    frames = project(info["denoised"])
                except Exception as e:  # noqa: BLE001 - a preview must never stop sampling
                    log.warning("vidcore: sampling previews turned off: %s", e)
                    state["preview"] = None
            self.set(int(info["i"]) + 1, info.get("total"), frames)

        return callback

    def chunk_callback(self) -> Callable[[int, int], None]:
        """A vidcore VAE callback ``(done, total)``: one tick per chunk."""
        return lambda done, total: self.set(done, total)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------- model memory
#
# Inside ComfyUI our models are known to its model management, the way core registers the plain
# nn.Modules of its text encoders and VAEs (Comfy-Org/ComfyUI comfy/sd.py, CLIP and VAE wrap them in a
# comfy.model_patcher.ModelPatcher):
#   * ModelCache.get loads a handle, moves each of its modules to ComfyUI's offload device for the
#     module's role (where idle weights live: the CPU unless --highvram / --gpu-only) and wraps it in a
#     ModelPatcher(load_device, offload_device). The patcher is stored on the module itself, so it lives
#     exactly as long as the weights do.
#   * use(*handles), called by a node right before it runs models, calls model_management.load_models_gpu:
#     ComfyUI frees memory for them (offloading other models, ours included), puts them on its device and
#     lists them in current_loaded_models. From then on POST /free {"unload_models": true} (the UI's
#     "Unload Models"), memory pressure from a later load_models_gpu (free_memory) and an OOM move their
#     weights back to the offload device (ModelPatcher.detach / partially_unload).
#   * Inside ComfyUI the cache holds its handles weakly. As with core's loaders, a model lives as long as
#     ComfyUI's execution cache keeps the loader node's output: POST /free {"free_memory": true} (which
#     resets that cache, Comfy-Org/ComfyUI main.py prompt_worker), a changed graph or a changed precision
#     drop it and the memory comes back. The cache only makes equal requests share one live object.
# Outside ComfyUI nothing is wrapped, use() does nothing and the cache keeps strong references (LRU).

_PATCHER_ATTR = "_vidcore_comfy_patcher"  # where a module keeps its ModelPatcher (see _manage)
# Role of a component (by its components() name) -> which offload device ComfyUI uses for it.
_ROLES = {"vae": "vae", "text_encoder": "text", "captioner": "text", "clip": "text"}
# Role of a bare nn.Module handle, from the cache kind (the text of the kind before any ":").
_KIND_ROLES = {"vae": "vae", "text": "text", "captioner": "text", "clip": "text", "clip+text": "text"}


def components(handle: Any) -> dict[str, torch.nn.Module]:
    """The torch modules a model handle runs: ``{"model": handle}`` for an nn.Module, ``handle.components()``
    for vidcore's pipelines, text encoders, captioners and VAE wrappers, else the handle's nn.Module
    attributes (e.g. ``ClipBundle.model``)."""
    if isinstance(handle, torch.nn.Module):
        return {"model": handle}
    parts = getattr(handle, "components", None)
    if callable(parts):
        found = dict(parts())
        bad = {k: type(v).__name__ for k, v in found.items() if not isinstance(v, torch.nn.Module)}
        if bad:
            raise TypeError(
                f"{type(handle).__name__}.components() must map names to torch.nn.Module, got {bad}"
            )
        return found
    try:
        attrs = vars(handle)
    except TypeError:  # no __dict__ (a tuple, a slotted object): nothing we can manage
        return {}
    return {k: v for k, v in attrs.items() if isinstance(v, torch.nn.Module)}


def _role(name: str, kind: str = "") -> str:
    """Role of a component ("diffusion", "text" or "vae") from its name (bare modules: the cache kind)."""
    if name in _ROLES:
        return _ROLES[name]
    return _KIND_ROLES.get(kind.split(":", 1)[0], "diffusion")


def _offload_device(mm: Any, role: str) -> torch.device:
    """ComfyUI's device for idle weights of a role (Comfy-Org/ComfyUI comfy/model_management.py)."""
    if role == "text":
        return torch.device(mm.text_encoder_offload_device())
    if role == "vae":
        return torch.device(mm.vae_offload_device())
    return torch.device(mm.unet_offload_device())


def weights_device(role: str = "diffusion") -> torch.device:
    """Where a loader should put freshly loaded weights: inside ComfyUI its offload device for the role
    ("diffusion", "text", "vae"; the CPU unless --highvram / --gpu-only), since :func:`use` moves them to
    the compute device when a node runs them; outside ComfyUI the compute device (:func:`torch_device`)."""
    if role not in ("diffusion", "text", "vae"):
        raise ValueError(f"role={role!r} must be one of ['diffusion', 'text', 'vae']")
    mm = _model_management()
    return _offload_device(mm, role) if mm is not None else torch_device()


def _on(t: torch.Tensor, device: torch.device) -> bool:
    return t.device.type == device.type and (device.index is None or t.device.index == device.index)


class _Weights(torch.nn.Module):
    """The nn.Module a ModelPatcher manages for one of our modules: a container, so that ModelPatcher's
    bookkeeping attributes (``device``, ``model_loaded_weight_memory``, ... set in ModelPatcher.__init__ and
    ModelPatcher.load, Comfy-Org/ComfyUI comfy/model_patcher.py) land on it rather than on our module, where a
    transformers model's read-only ``device`` property would refuse them."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.module = module
        self.device = device


_weights_classes: dict[str, type[_Weights]] = {}


def _weights_class(module: torch.nn.Module) -> type[_Weights]:
    """A _Weights subclass named after the module's class, so ComfyUI's log says what it (un)loads
    ("Requested to load VidCoreSpacetimeDiT")."""
    name = f"VidCore{type(module).__name__}"
    if name not in _weights_classes:
        _weights_classes[name] = type(name, (_Weights,), {"__module__": __name__})
    return _weights_classes[name]


def _manage(mm: Any, module: torch.nn.Module, role: str, load_device: torch.device) -> Any:
    """The module's ModelPatcher, created on first use: the weights move to the role's offload device."""
    patcher = module.__dict__.get(_PATCHER_ATTR)
    if patcher is not None:
        return patcher
    from comfy.model_patcher import ModelPatcher  # noqa: PLC0415 - only exists inside ComfyUI

    offload = _offload_device(mm, role)
    tensors = [*module.parameters(), *module.buffers()]
    if not all(_on(t, offload) for t in tensors):
        module.to(offload)
    patcher = ModelPatcher(
        _weights_class(module)(module, offload), load_device=torch.device(load_device), offload_device=offload
    )
    # Kept on the module (not through nn.Module.__setattr__: it is no submodule): the patcher, its _Weights
    # and the module are freed together, and ComfyUI only holds weak references to the patcher (LoadedModel).
    module.__dict__[_PATCHER_ATTR] = patcher
    return patcher


_PINNED_ATTR = "_vidcore_pinned"  # modules ComfyUI's model management must not move (see pin)


def pin(handle: Any) -> None:
    """Keep the denoisers of a handle where they are: a parallel run's rank 0 (vidcore WorkerPool) has
    them on its own device, maybe sharded over the ranks, so :func:`use` must not offload or move them."""
    for name, module in components(handle).items():
        if name in ("dit", "transformer_2", "model"):
            module.__dict__[_PINNED_ATTR] = True


def _register(mm: Any, handle: Any, kind: str, load_device: torch.device) -> list[Any]:
    """ModelPatchers for every module of a handle (one per module, shared between handles; pinned
    modules have none)."""
    patchers: dict[int, Any] = {}
    for name, module in components(handle).items():
        if module.__dict__.get(_PINNED_ATTR):
            continue
        patcher = _manage(mm, module, _role(name, kind), load_device)
        patchers.setdefault(id(patcher), patcher)
    return list(patchers.values())


def use(*handles: Any, memory_required: int = 0) -> None:
    """Call right before a node runs models (sampling, text encoding, VAE encode/decode, captioning).

    Inside ComfyUI: ``comfy.model_management.load_models_gpu`` with every module of the handles (None is
    skipped), fully loaded on ComfyUI's device (our modules cannot run with weights split across devices);
    ComfyUI frees memory for them first by offloading other models. ``memory_required``: bytes the run needs
    besides the weights (ComfyUI keeps at least its minimum inference memory free anyway). Outside ComfyUI:
    nothing (the models already are on the requested device).
    """
    mm = _model_management()
    if mm is None:
        return
    if isinstance(memory_required, bool) or not isinstance(memory_required, int) or memory_required < 0:
        raise ValueError(f"memory_required={memory_required!r} must be an int >= 0 (bytes)")
    device = torch_device()
    patchers: dict[int, Any] = {}
    for handle in handles:
        if handle is not None:
            for p in _register(mm, handle, "", device):
                patchers.setdefault(id(p), p)
    if patchers:
        mm.load_models_gpu(list(patchers.values()), memory_required=memory_required, force_full_load=True)


def _weakly_referenceable(value: Any) -> bool:
    try:
        weakref.ref(value)
    except TypeError:
        return False
    return True


class _Entry:
    """One cached handle (strong outside ComfyUI, weak inside it: ComfyUI owns the lifetime) and weak
    references to its modules (which can outlive a weak handle until the garbage collector runs)."""

    __slots__ = ("ident", "parts", "_strong", "_weak")

    def __init__(self, ident: tuple, value: Any, weak: bool) -> None:
        self.ident = ident
        self.parts = tuple(weakref.ref(m) for m in components(value).values())
        self._strong = None if weak else value
        self._weak = weakref.ref(value) if weak else None

    def value(self) -> Any:
        return self._strong if self._weak is None else self._weak()


class ModelCache:
    """Loaded models shared across runs: one entry per (kind, path). A request for other file contents
    (sizes, mtimes), another device or another dtype replaces the entry, so the cache never holds two
    copies of one model. Outside ComfyUI the entries are strong references, the least recently used beyond
    ``size`` dropped; inside ComfyUI they are weak and every module is registered with ComfyUI's model
    management (see the comment above :func:`components`)."""

    def __init__(self, size: int = 4) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size={size!r} must be an int >= 1")
        self.size = size
        self._items: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def stamp(path: str | os.PathLike) -> tuple:
        """Identity of a file or folder's contents: each file's (name, size, mtime_ns), one level deep."""
        p = Path(path)
        if p.is_file():
            st = p.stat()
            return ((p.name, st.st_size, st.st_mtime_ns),)
        if p.is_dir():
            return tuple(
                (c.name, c.stat().st_size, c.stat().st_mtime_ns) for c in sorted(p.iterdir()) if c.is_file()
            )
        return ()

    def _lookup(self, slot: tuple[str, str], ident: tuple) -> tuple[Any, tuple[weakref.ref, ...]]:
        """(the live cached value for ``ident`` or None, weak references to the modules of the entry this
        request replaces)."""
        with self._lock:
            entry = self._items.get(slot)
            if entry is not None:
                value = entry.value()
                if value is not None and entry.ident == ident:
                    self._items.move_to_end(slot)
                    return value, ()
                del self._items[slot]
            for key in [k for k, e in self._items.items() if e.value() is None]:
                del self._items[key]  # weak entries whose handle ComfyUI has freed
            return None, () if entry is None else entry.parts

    def get(
        self,
        kind: str,
        path: str | os.PathLike,
        device: torch.device,
        dtype: Any,
        load: Callable[[], Any],
    ) -> Any:
        """The handle for (kind, path, device, dtype), calling ``load()`` unless a live one is cached.

        Inside ComfyUI the loaded modules are moved to ComfyUI's offload device and registered with its
        model management, ``device`` being the device :func:`use` loads them on.
        """
        slot, ident = (str(kind), str(path)), (self.stamp(path), str(device), str(dtype))
        value, old = self._lookup(slot, ident)
        if value is not None:
            return value
        if any(r() is not None for r in old):
            # Free the replaced copy before loading the new one. A module and its ModelPatcher form a
            # reference cycle, so inside ComfyUI only the garbage collector frees them.
            gc.collect()
            if any(r() is not None for r in old):
                log.info(
                    "vidcore: %s %s is still used elsewhere with other settings; loading %s %s beside it",
                    kind,
                    path,
                    device,
                    dtype,
                )
        mm = _model_management()
        value = load()
        weak = mm is not None
        if weak:
            _register(mm, value, kind, torch.device(device))
        if weak and not _weakly_referenceable(value):  # a tuple, a slotted object: ComfyUI owns it alone
            log.debug("vidcore: %s handles cannot be weakly referenced; not cached", type(value).__name__)
            return value
        entry = _Entry(ident, value, weak)
        with self._lock:
            self._items[slot] = entry
            self._items.move_to_end(slot)
            while not weak and sum(e._weak is None for e in self._items.values()) > self.size:
                oldest = next(k for k, e in self._items.items() if e._weak is None)
                del self._items[oldest]
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        """Entries whose model is still alive."""
        with self._lock:
            return sum(e.value() is not None for e in self._items.values())


MODELS = ModelCache()

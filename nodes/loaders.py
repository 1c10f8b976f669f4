"""Loader nodes: VidCore model folders, VAE checkpoints, text encoders, captioners (cached across runs)."""

from __future__ import annotations

from pathlib import Path

from . import _host

PRECISION_TIP = "Weights dtype. auto = bf16 on CUDA GPUs with native bf16 (Ampere+), else fp32."
AUTO_TEXT_ENCODER = "auto"
CHECKPOINT_SUFFIXES = (".safetensors", ".sft")
_detected: dict[tuple, bool] = {}  # (family, path, contents stamp) -> detect() (headers are read once)


def _detect(family, path: Path) -> bool:
    key = (family.name, str(path), _host.ModelCache.stamp(path))
    if key not in _detected:
        _detected[key] = family.detect(path)
    return _detected[key]


def model_choices() -> dict[str, Path]:
    """Loadable models of every registered family: its checkpoints in its ComfyUI model folders (folders
    one level down, .safetensors files at any depth), then its built-in models; earlier families and
    folders win a name clash."""
    from vidcore.pipelines import families

    listed: dict[str, list[tuple[str, Path]]] = {}  # folder kind -> (shown name, path), walked once

    def candidates(kind: str) -> list[tuple[str, Path]]:
        if kind not in listed:
            listed[kind] = []
            for root in _host.model_folders(kind):
                listed[kind] += [(c.name, c) for c in sorted(root.iterdir()) if c.is_dir()]
                files = sorted(f for suffix in CHECKPOINT_SUFFIXES for f in root.rglob(f"*{suffix}"))
                listed[kind] += [(f.relative_to(root).as_posix(), f) for f in files if f.is_file()]
        return listed[kind]

    found: dict[str, Path] = {}
    for family in families():
        for kind in family.folders:
            for name, path in candidates(kind):
                if _detect(family, path):
                    found.setdefault(name, path)
        for name, path in family.builtins().items():
            found.setdefault(name, path)
    return found


def _is_vidcore_vae(path: Path) -> bool:
    """Whether a safetensors file's header says it is a VidCore VAE (models/vae also holds SD/Flux VAEs)."""
    from vidcore.io.checkpoint import METADATA_KIND, read_metadata
    from vidcore.models.vae import VAE_KIND

    try:
        return read_metadata(path).get(METADATA_KIND) == VAE_KIND
    except Exception:  # noqa: BLE001 - an unreadable file is simply not offered
        return False


def vae_choices() -> dict[str, Path]:
    """VidCore VAE checkpoints: ``<model>/vae.safetensors`` of every model, and VidCore VAE files in
    models/vae (other VAEs there, e.g. SD or Flux, are not listed: this loader cannot read them)."""
    found = {f"{name}/vae.safetensors": p / "vae.safetensors" for name, p in model_choices().items()}
    for root in _host.model_folders("vae"):
        for f in sorted(root.rglob("*.safetensors")):
            if _is_vidcore_vae(f):
                found.setdefault(f.relative_to(root).as_posix(), f)
    return {k: v for k, v in found.items() if v.is_file()}


def text_encoder_choices() -> dict[str, Path | str]:
    """Built-in encoders ("minilm") and transformers folders in models/text_encoders and models/LLM."""
    from vidcore.text import BUILTINS
    from vidcore.text.loading import MODEL_TYPES

    found: dict[str, Path | str] = dict(
        _host.list_model_dirs(("text_encoders", _host.LLM_FOLDER), "config.json", MODEL_TYPES)
    )
    for name in BUILTINS:
        found.setdefault(name, name)
    return found


def part_choices(part: str) -> dict[str, Path]:
    """Files and folders (one level) in the model folders where families look for a separately given
    ``part`` ("vae", "image_encoder"), offered only when a family's detector reads them."""
    from vidcore.pipelines import families

    found: dict[str, Path] = {}
    for family in families():
        kinds, detect = family.part_files.get(part, ((), None))
        for kind in kinds:
            for root in _host.model_folders(kind):
                for entry in sorted(root.iterdir()):
                    key = (f"{family.name}:{part}", str(entry), _host.ModelCache.stamp(entry))
                    if key not in _detected:
                        _detected[key] = bool(detect(entry))
                    if _detected[key]:
                        found.setdefault(entry.name, entry)
    return found


def model_text_encoder_choices() -> dict[str, Path]:
    """Text encoder folders in models/text_encoders of the types that families taking a separate text
    encoder accept (T5 / UMT5 for LTX-Video)."""
    from vidcore.pipelines import families

    types = tuple(t for f in families() for t in f.text_encoder_types)
    return _host.list_model_dirs(("text_encoders",), "config.json", types) if types else {}


def captioner_choices() -> dict[str, Path]:
    """SmolVLM2 / Idefics3 folders (config.json + weights) in models/LLM."""
    from vidcore.caption.smolvlm import MODEL_TYPES

    return _host.list_model_dirs((_host.LLM_FOLDER,), "config.json", MODEL_TYPES)


CAPTIONER_HINT = (
    "a SmolVLM2 folder (e.g. SmolVLM2-256M-Video-Instruct from HuggingFaceTB/SmolVLM2-256M-Video-Instruct: "
    "config.json, model.safetensors, tokenizer and processor files)"
)
TEXT_ENCODER_HINT = (
    "a T5-v1.1-XXL / umT5-XXL transformers folder (config.json, *.safetensors, tokenizer files)"
)


def missing_model_message(name: str, found: dict) -> str:
    """What to put where for a model name that is not there, for every registered family."""
    from vidcore.pipelines import families

    where = "; ".join(
        f"{f.capabilities.family}: {f.describe}, in {_host.folder_hint(f.folders)}" for f in families()
    )
    return (
        f"model_name={name!r} was not found. Put the model where its family looks ({where}); found: "
        + str(sorted(found) or ["(nothing)"])
    )


def _check_model_inputs(model_name, text_encoder_name, vae_name, clip_vision_name) -> dict:
    """The paths of the Load Model inputs, or ValueError saying which folder to put what in."""
    found = model_choices()
    if model_name not in found:
        raise ValueError(missing_model_message(model_name, found))
    parts = {"path": found[model_name], "text_encoder": None, "vae": None, "image_encoder": None}
    if text_encoder_name not in (None, AUTO_TEXT_ENCODER):
        parts["text_encoder"] = _host.pick_model(
            model_text_encoder_choices(),
            text_encoder_name,
            "text_encoder_name",
            TEXT_ENCODER_HINT,
            ("text_encoders",),
        )
    if vae_name not in (None, AUTO_TEXT_ENCODER):
        parts["vae"] = _host.pick_model(
            part_choices("vae"),
            vae_name,
            "vae_name",
            "the Wan VAE file (e.g. wan_2.1_vae.safetensors)",
            ("vae",),
        )
    if clip_vision_name not in (None, AUTO_TEXT_ENCODER):
        parts["image_encoder"] = _host.pick_model(
            part_choices("image_encoder"),
            clip_vision_name,
            "clip_vision_name",
            "the CLIP vision encoder of Wan I2V (e.g. clip_vision_h.safetensors)",
            ("clip_vision",),
        )
    return parts


PARALLEL_TIP = (
    "Run the sampler on several processes, e.g. 'cfg=2' (CFG branches on two devices), 'ulysses=2' or "
    "'ulysses=2,ring=2' (sequence parallel), add ',fsdp' to shard weights. Worker processes are started "
    "once per model and kept. Empty = this process only."
)
DEVICES_TIP = (
    "With parallel: one device per process, e.g. 'cuda:0,cuda:1', or 'cuda' / 'cpu' for all of them. "
    "Empty = ComfyUI's device kind."
)


def _parallel_devices(parallel: str | None, devices: str | None) -> tuple[str, str] | None:
    """(parallel, devices) of a Load Model run on several processes, None for one process; ValueError for
    a bad spec or devices this machine lacks."""
    from vidcore.distributed import as_parallel_config, parse_devices

    parallel, devices = (parallel or "").strip(), (devices or "").strip()
    if not parallel:
        if devices:
            raise ValueError(
                f"devices={devices!r} is only used with parallel (e.g. parallel='cfg=2'); clear devices to "
                "run on ComfyUI's device"
            )
        return None
    config = as_parallel_config(parallel)
    devices = devices or _host.torch_device().type
    parse_devices(devices, config.world_size)
    return parallel, devices


def _device_dtype(precision: str):
    device = _host.torch_device()
    return device, _host.resolve_precision(precision, device)


class VidCoreLoadModel:
    DESCRIPTION = (
        "Load a text-to-video model of any VidCore family: a VidCore model folder (pipeline.json + "
        "dit.safetensors + vae.safetensors) from models/vidcore or models/diffusion_models, a built-in model "
        "such as 'tiny', or an LTX-Video checkpoint (single .safetensors with transformer + VAE, or a "
        "diffusers folder) from models/checkpoints or models/diffusion_models with a T5 text encoder. "
        "Outputs the diffusion transformer, its VAE and its text encoder. Loaded models are cached across "
        "runs and managed by ComfyUI's model management (Unload models frees them)."
    )
    CATEGORY = "VidCore/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("VIDCORE_MODEL", "VIDCORE_VAE", "VIDCORE_TEXT_ENCODER")
    RETURN_NAMES = ("model", "vae", "text_encoder")
    OUTPUT_TOOLTIPS = (
        "The video diffusion transformer.",
        "The model's video VAE.",
        "The model's text encoder.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        names = sorted(model_choices())
        return {
            "required": {
                "model_name": (
                    names,
                    {
                        "tooltip": "Model folder (models/vidcore, models/diffusion_models) "
                        "or built-in model name."
                    },
                ),
                "precision": (list(_host.PRECISIONS), {"default": "auto", "tooltip": PRECISION_TIP}),
            },
            # Appended (optional, so saved workflows without it still validate).
            "optional": {
                "text_encoder_name": (
                    [AUTO_TEXT_ENCODER, *sorted(model_text_encoder_choices())],
                    {
                        "default": AUTO_TEXT_ENCODER,
                        "tooltip": "LTX-Video / Wan: T5-v1.1-XXL or umT5-XXL folder in models/text_encoders "
                        "(config.json, safetensors, tokenizer). auto = the diffusers folder's own "
                        "text_encoder/.",
                    },
                ),
                "vae_name": (
                    [AUTO_TEXT_ENCODER, *sorted(part_choices("vae"))],
                    {
                        "default": AUTO_TEXT_ENCODER,
                        "tooltip": "Single-file Wan transformers: their VAE in models/vae. auto = the "
                        "checkpoint's own (diffusers folders).",
                    },
                ),
                "clip_vision_name": (
                    [AUTO_TEXT_ENCODER, *sorted(part_choices("image_encoder"))],
                    {
                        "default": AUTO_TEXT_ENCODER,
                        "tooltip": "Single-file Wan 2.1 I2V / FLF2V transformers: the CLIP vision encoder in "
                        "models/clip_vision. auto = the checkpoint's own (diffusers folders).",
                    },
                ),
                "parallel": ("STRING", {"default": "", "tooltip": PARALLEL_TIP}),
                "devices": ("STRING", {"default": "", "tooltip": DEVICES_TIP}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(
        cls,
        model_name,
        text_encoder_name=None,
        vae_name=None,
        clip_vision_name=None,
        parallel=None,
        devices=None,
    ):
        # Replaces ComfyUI's "value not in list" for these combos with what to put in which folder.
        try:
            _check_model_inputs(model_name, text_encoder_name, vae_name, clip_vision_name)
            _parallel_devices(parallel, devices)
        except ValueError as e:
            return str(e)
        return True

    def load(
        self,
        model_name: str,
        precision: str,
        text_encoder_name: str | None = None,
        vae_name: str | None = None,
        clip_vision_name: str | None = None,
        parallel: str | None = None,
        devices: str | None = None,
    ):
        from vidcore.pipelines import load_pipeline

        parts = _check_model_inputs(model_name, text_encoder_name, vae_name, clip_vision_name)
        path = parts.pop("path")
        device, dtype = _device_dtype(precision)
        spread = _parallel_devices(parallel, devices)
        if spread is not None:  # ranks 1.. in worker processes kept for later runs; this process is rank 0
            from vidcore.distributed import shared_pool

            pool = shared_pool(path, spread[0], spread[1], dtype=dtype, **parts).start()
            _host.pin(pool.pipeline)
            pipe = pool.pooled()
            return (pipe, pipe.vae, pipe.text_encoder)
        kind = "pipeline" + "".join(f":{k}={v}" for k, v in parts.items() if v is not None)
        pipe = _host.MODELS.get(
            kind, path, device, dtype, lambda: load_pipeline(path, _host.weights_device(), dtype, **parts)
        )
        # vae: the VAE over the latents this model samples (LTX-Video: normalised latents).
        return (pipe, pipe.vae, pipe.text_encoder)


class VidCoreLoadVAE:
    DESCRIPTION = (
        "Load a VidCore causal video VAE checkpoint on its own (a model folder's vae.safetensors or a "
        "file in models/vae), e.g. to swap the VAE of a model. Cached across runs."
    )
    CATEGORY = "VidCore/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("VIDCORE_VAE",)
    RETURN_NAMES = ("vae",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae_name": (sorted(vae_choices()), {"tooltip": "VidCore VAE checkpoint (safetensors)."}),
                "precision": (list(_host.PRECISIONS), {"default": "auto", "tooltip": PRECISION_TIP}),
            }
        }

    def load(self, vae_name: str, precision: str):
        from vidcore.models.vae import CausalVAE3D

        path = _host.pick(vae_choices(), vae_name, "vae_name", "model folders and models/vae")
        device, dtype = _device_dtype(precision)
        vae = _host.MODELS.get(
            "vae",
            path,
            device,
            dtype,
            lambda: CausalVAE3D.from_checkpoint(path, device=_host.weights_device("vae"), dtype=dtype),
        )
        return (vae,)


class VidCoreLoadTextEncoder:
    DESCRIPTION = (
        "Load a text encoder (T5 / UMT5 / CLIP-text / BERT transformers folder from models/text_encoders or "
        "models/LLM, or the built-in 'minilm'). Cached across runs."
    )
    CATEGORY = "VidCore/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("VIDCORE_TEXT_ENCODER",)
    RETURN_NAMES = ("text_encoder",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "encoder_name": (
                    sorted(text_encoder_choices()),
                    {"tooltip": "Text encoder folder or built-in."},
                ),
                "precision": (list(_host.PRECISIONS), {"default": "auto", "tooltip": PRECISION_TIP}),
            }
        }

    def load(self, encoder_name: str, precision: str):
        from vidcore.text import load_text_encoder

        target = _host.pick(
            text_encoder_choices(), encoder_name, "encoder_name", "models/text_encoders, models/LLM"
        )
        device, dtype = _device_dtype(precision)
        enc = _host.MODELS.get(
            "text",
            target,
            device,
            dtype,
            lambda: load_text_encoder(target, device=_host.weights_device("text"), dtype=dtype),
        )
        return (enc,)


class VidCoreLoadCaptioner:
    DESCRIPTION = (
        "Load a SmolVLM2 video captioner from a folder in models/LLM (config.json, safetensors, tokenizer). "
        "Offline only; cached across runs."
    )
    CATEGORY = "VidCore/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("VIDCORE_CAPTIONER",)
    RETURN_NAMES = ("captioner",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (sorted(captioner_choices()), {"tooltip": "SmolVLM2 folder in models/LLM."}),
                "precision": (list(_host.PRECISIONS), {"default": "auto", "tooltip": PRECISION_TIP}),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        # Replaces ComfyUI's "value not in list" with what to put in which folder.
        if model_name not in captioner_choices():
            return _host.missing_model(
                captioner_choices(), model_name, "model_name", CAPTIONER_HINT, ("LLM",)
            )
        return True

    def load(self, model_name: str, precision: str):
        from vidcore.caption import load_captioner

        path = _host.pick_model(captioner_choices(), model_name, "model_name", CAPTIONER_HINT, ("LLM",))
        device, dtype = _device_dtype(precision)
        cap = _host.MODELS.get(
            "captioner",
            path,
            device,
            dtype,
            lambda: load_captioner(path, _host.weights_device("text"), dtype),
        )
        return (cap,)

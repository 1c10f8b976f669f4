"""The one pipeline contract every model family implements, its sampling options and capabilities.

Modules and checkpoint loading of a family live in ``vidcore.models.<family>``, its pipeline (text ->
latents -> video) in ``vidcore.pipelines.<family>``, and one ``register_family`` call
(:mod:`vidcore.pipelines.registry`) makes it loadable by ``load_pipeline``, the ``vidcore`` CLI and the
ComfyUI nodes, none of which knows a concrete pipeline class. Shape of the API after diffusers'
``DiffusionPipeline`` (one object per checkpoint, plain ``nn.Module`` components) and flux's
``SamplingOptions`` (one frozen bag of sampling settings instead of long positional argument lists).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ConfigMixin, check_choice, check_positive_int
from ..io.frames import check_frames, frames_to_video, video_to_frames
from ..sampling import SAMPLERS, SCHEDULES, CFGDenoiser, sample_pyramidal, shifted_sigmas, split_steps
from ..sampling.flow import Denoiser
from ..sampling.loop import Callback

log = logging.getLogger("vidcore")


def check_seed(seed: object) -> None:
    """Seeds are integers in [0, 2**64); floats and bools are refused rather than truncated."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise ValueError(f"seed={seed!r} must be an integer in [0, 2**64)")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r} must be a number, got {type(value).__name__}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class SamplingOptions(ConfigMixin):
    """How to sample, validated once. ``guidance`` is the usual CFG scale g (``(1+w)·v_c - w·v_u`` with
    ``w = g - 1``; 1 = off), ``guidance_2`` that of the low-noise expert of two-expert models (Wan 2.2 A14B;
    None = ``guidance``), ``guidance_rescale`` phi of Lin et al. (2023), ``shift`` the SD3 timestep shift
    (Esser et al. 2024, Eq. 23), ``denoise`` < 1 starts from noised input latents (SDEdit, Meng et al.
    2021), ``pyramid_stages`` the number of resolution stages of ``schedule="pyramidal"``.

    Unknown option names are errors: ``SamplingOptions.from_dict`` and :meth:`replace` name them."""

    steps: int = 20
    guidance: float = 4.0
    guidance_2: float | None = None
    guidance_rescale: float = 0.0
    shift: float = 1.0
    schedule: str = "flow"
    sampler: str = "euler"
    pyramid_stages: int = 3
    denoise: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int("steps", self.steps)
        check_positive_int("pyramid_stages", self.pyramid_stages)
        check_seed(self.seed)
        for name in ("guidance", "guidance_rescale", "shift", "denoise"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))
        if not math.isfinite(self.guidance) or self.guidance < 1.0:
            finite = "" if math.isfinite(self.guidance) else "a finite number "
            raise ValueError(
                f"guidance={self.guidance!r} must be {finite}>= 1 (1 = no guidance; CFG w = guidance - 1)"
            )
        if self.guidance_2 is not None:
            object.__setattr__(self, "guidance_2", _number("guidance_2", self.guidance_2))
            if not math.isfinite(self.guidance_2) or self.guidance_2 < 1.0:
                raise ValueError(
                    f"guidance_2={self.guidance_2!r} must be a finite number >= 1 (None = guidance)"
                )
        if not 0.0 <= self.guidance_rescale <= 1.0:
            raise ValueError(f"guidance_rescale={self.guidance_rescale!r} must be in [0, 1]")
        if not (math.isfinite(self.shift) and self.shift > 0):
            raise ValueError(f"shift={self.shift!r} must be a finite number > 0")
        if not 0.0 < self.denoise <= 1.0:
            raise ValueError(f"denoise={self.denoise!r} must be in (0, 1]")
        check_choice("schedule", self.schedule, tuple(SCHEDULES))
        check_choice("sampler", self.sampler, tuple(SAMPLERS))
        if self.schedule == "pyramidal":
            if self.sampler != "euler":
                raise ValueError(
                    f"sampler={self.sampler!r}: schedule='pyramidal' integrates each stage with 'euler' only"
                )
            if self.denoise != 1.0:
                raise ValueError(
                    f"denoise={self.denoise!r}: video-to-video (init_frames / denoise < 1) "
                    "needs schedule='flow'"
                )

    def replace(self, **changes: Any) -> SamplingOptions:
        """A copy with ``changes`` applied and validated; unknown option names raise ValueError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(
                f"unknown SamplingOptions option(s) {unknown}; known options are {sorted(names)}"
            )
        return dataclasses.replace(self, **changes)

    def with_overrides(self, **values: Any) -> SamplingOptions:
        """:meth:`replace` with the entries that are not None (unset arguments keep these values)."""
        return self.replace(**{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What a family can do; every refusal of an option is worded here, from these fields."""

    family: str  # display name used in messages, e.g. "LTX-Video"
    schedules: tuple[str, ...] = ("flow",)
    samplers: tuple[str, ...] = tuple(SAMPLERS)
    fixed_shift: bool = True  # False: the family's schedule computes its own shift
    video_to_video: bool = False
    image_conditioning: bool = False  # takes a first-frame image (image-to-video)
    last_image_conditioning: bool = False  # also a last-frame image (first-last-frame-to-video)
    requires_image: bool = False  # an image-to-video model that cannot run without one
    image_hint: str = ""  # which models take an image, for the refusal when this one cannot
    tiling: bool = False  # spatial VAE tiling
    external_text_encoder: bool = False  # takes a separately given text encoder (text_encoder=)
    external_vae: bool = False  # takes a separately given VAE (vae=)
    external_image_encoder: bool = False  # takes a separately given image encoder (image_encoder=)
    fps_conditioning: bool = False  # the denoiser is conditioned on the frame rate
    expert_guidance: bool = False  # two experts with their own CFG scales (guidance_2)

    def __post_init__(self) -> None:
        for name in self.schedules:
            check_choice(f"{self.family} capabilities schedule", name, tuple(SCHEDULES))
        for name in self.samplers:
            check_choice(f"{self.family} capabilities sampler", name, tuple(SAMPLERS))

    def check(
        self,
        options: SamplingOptions,
        init_frames: bool = False,
        image: bool = False,
        last_image: bool = False,
    ) -> None:
        """Raise ValueError naming the first option this family cannot honour and what it supports."""
        who = f"{self.family} models"
        hint = f"; {self.image_hint}" if self.image_hint else ""
        if last_image and not image:
            raise ValueError("last_image needs image (the first frame) as well")
        if image and not self.image_conditioning:
            raise ValueError(f"image (image-to-video) is not supported by {who}{hint}")
        if last_image and not self.last_image_conditioning:
            raise ValueError(f"last_image (first-last-frame-to-video) is not supported by {who}{hint}")
        if self.requires_image and not image:
            raise ValueError(f"{who} are image-to-video: pass image= (CLI: --image FIRST.png)")
        if options.schedule not in self.schedules:
            raise ValueError(
                f"schedule={options.schedule!r} is not supported by {who}; supported: {list(self.schedules)}"
            )
        if options.sampler not in self.samplers:
            raise ValueError(
                f"sampler={options.sampler!r} is not supported by {who}; supported: {list(self.samplers)}"
            )
        if options.guidance_2 is not None and not self.expert_guidance:
            raise ValueError(
                f"guidance_2={options.guidance_2!r} is only for two-expert models (Wan 2.2 A14B); {who} "
                "take one guidance scale"
            )
        if not self.fixed_shift and options.shift != 1.0:
            raise ValueError(
                f"shift={options.shift!r} is not supported by {who}: their schedule computes its own shift "
                "(from the token count); leave shift at 1.0"
            )
        if not self.video_to_video:
            if options.denoise != 1.0:
                raise ValueError(
                    f"denoise={options.denoise!r}: video-to-video (denoise < 1) is not supported by {who}; "
                    "use denoise=1.0"
                )
            if init_frames:
                raise ValueError(f"init_frames (video-to-video) is not supported by {who}")

    def check_tiling(self, tile_size: int | None, tile_overlap: int | None) -> None:
        """Refuse spatial tiling by name when the family's VAE has none (never ignore it)."""
        if self.tiling:
            return
        for name, value in (("tile_size", tile_size), ("tile_overlap", tile_overlap)):
            if value is not None:
                raise ValueError(
                    f"{name}={value!r}: the {self.family} VAE has no spatial tiling (leave it unset / 0)"
                )


@dataclass
class TextConditioning:
    """Text embeddings ``[B, L, D]``, bool mask ``[B, L]`` and pooled sentence vectors ``[B, D]``."""

    embeddings: Tensor
    mask: Tensor
    pooled: Tensor | None = None

    def model_kwargs(self, device: torch.device | None = None) -> dict[str, Tensor]:
        """Denoiser keyword arguments (``context``, ``context_mask`` and ``pooled`` when present)."""
        out = {"context": self.embeddings, "context_mask": self.mask}
        if self.pooled is not None:
            out["pooled"] = self.pooled
        return out if device is None else {k: v.to(device) for k, v in out.items()}


@dataclass
class ImageConditioning:
    """What a family makes of a first (and last) frame image: clean ``latents`` held where ``mask`` is 1
    (``[B, C, T', H', W']`` and ``[B, 1, T', H', W']``, e.g. LTX-Video's first latent frame), and/or
    denoiser keyword arguments shared by both CFG branches (e.g. Wan I2V's CLIP tokens and ``y``)."""

    latents: Tensor | None = None
    mask: Tensor | None = None
    model_kwargs: dict[str, Tensor] = field(default_factory=dict)

    def mix(self, x: Tensor) -> Tensor:
        """``x`` with the given latents put back where the mask is 1 (nothing to do without a mask)."""
        if self.mask is None or self.latents is None:
            return x
        return self.latents.to(x) * self.mask.to(x) + x * (1 - self.mask.to(x))


class LatentVAE:
    """Base of the VAE handles families give the ComfyUI nodes (``pipe.vae``): vidcore's VAE interface over
    a VAE module in the latents the denoiser sees (families normalise them their own way in ``encode`` /
    ``decode``)."""

    def __init__(self, vae: nn.Module) -> None:
        self.vae = vae

    @property
    def config(self) -> Any:
        return self.vae.config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def parameters(self) -> Any:
        return self.vae.parameters()

    def components(self) -> dict[str, nn.Module]:
        """The torch modules this handle runs (what a host such as ComfyUI moves and frees)."""
        return {"vae": self.vae}

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', H', W') of the latents of a ``num_frames x height x width`` video; raises if not valid."""
        return self.vae.latent_shape(num_frames, height, width)


@dataclass
class Prepared:
    """Initial state of a run: float32 noise (already mixed with any held image latents), the generator
    the rest of the run draws from, and the image conditioning."""

    noise: Tensor
    generator: torch.Generator
    image: ImageConditioning | None = None


def image_video(image: Tensor, name: str, height: int, width: int) -> Tensor:
    """A conditioning image (frames ``[1, H, W, 3]`` or ``[H, W, 3]`` in 0..1, a ComfyUI IMAGE) as video
    ``[1, 3, 1, H, W]`` in -1..1; its size must be the video's (never resized silently)."""
    if isinstance(image, Tensor) and image.ndim == 3:
        image = image[None]
    frames = check_frames(image, name)
    if frames.shape[0] != 1:
        raise ValueError(f"{name} holds {frames.shape[0]} frames; give one image [1, H, W, 3]")
    if tuple(frames.shape[1:3]) != (height, width):
        raise ValueError(
            f"{name} is {frames.shape[2]}x{frames.shape[1]} (WxH) but the video is {width}x{height}: resize "
            "the image, or generate at its size (unset height/width take the image's size)"
        )
    return frames_to_video(frames)


def needs_uncond(options: SamplingOptions) -> bool:
    """Whether any step of a run with ``options`` evaluates the unconditional branch."""
    return options.guidance != 1.0 or options.guidance_2 not in (None, 1.0)


def initial_noise(shape: tuple[int, ...], seed: int) -> tuple[Tensor, torch.Generator]:
    """Float32 standard noise drawn on the CPU from ``seed`` (the same noise on every device), and the
    generator, which then feeds stochastic samplers and noise-injecting decoders."""
    check_seed(seed)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32), generator


class Pipeline(ABC):
    """The contract the CLI, the ComfyUI nodes and scripts rely on, whatever the family.

    Attributes: ``dit`` (the denoising network), ``vae`` (vidcore's VAE interface over the latents the
    denoiser sees: ``encode(video) -> latents``, ``decode(latents, temporal_chunk=None) -> video``),
    ``text_encoder`` (``encode(prompts) -> (emb, mask)``), ``config`` (generation defaults: ``num_frames``,
    ``height``, ``width``, ``fps``, ...) and the class attribute ``capabilities``.

    Shared here: prompt encoding with the unconditional branch, seeded noise, CFG + sampler dispatch,
    video-to-video and ``generate``. A family supplies its modules, ``text_dim``, ``latent_channels`` and
    :meth:`denoiser`; it overrides :meth:`latent_shape`, :meth:`flow_sigmas`, :meth:`decode` and
    :meth:`default_options` where the defaults (the VAE's own shape rule, shifted sigmas, a plain VAE
    decode, sampling defaults read from ``config``) do not fit. A class that cannot inherit may
    ``Pipeline.register`` itself after implementing the same methods.
    """

    capabilities: Capabilities
    config: Any
    dit: nn.Module
    vae: Any
    text_encoder: Any

    # ---- properties every family shares -------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.dit.parameters()).dtype

    @property
    @abstractmethod
    def text_dim(self) -> int:
        """Width of the text embeddings the denoiser takes."""

    @property
    def pooled_text(self) -> bool:
        """Whether the denoiser also takes the pooled sentence vector."""
        return False

    @property
    @abstractmethod
    def latent_channels(self) -> int:
        """Channels of the latents the denoiser takes."""

    def components(self) -> dict[str, nn.Module]:
        """The torch modules this handle runs (what a host such as ComfyUI moves between devices and
        frees); text encoders without modules (test doubles) contribute none."""
        out: dict[str, nn.Module] = {"dit": self.dit}
        vae = self.vae if isinstance(self.vae, nn.Module) else getattr(self.vae, "vae", None)
        if isinstance(vae, nn.Module):
            out["vae"] = vae
        encoder_parts = getattr(self.text_encoder, "components", None)
        if callable(encoder_parts):
            out.update(encoder_parts())
        return out

    # ---- family hooks ---------------------------------------------------------------------------------

    def default_options(self) -> SamplingOptions:
        """The model's own sampling defaults: the fields of ``config`` that name a sampling option."""
        names = [f.name for f in dataclasses.fields(SamplingOptions)]
        return SamplingOptions(**{n: getattr(self.config, n) for n in names if hasattr(self.config, n)})

    def latent_shape(
        self, num_frames: int, height: int, width: int, *, pyramid_stages: int = 1, vae: Any = None
    ) -> tuple[int, int, int, int]:
        """Latent ``(C, T', H', W')`` of a clip (with ``vae``, default the model's own); raises listing
        valid sizes when the model cannot take it."""
        if pyramid_stages != 1:
            raise ValueError(f"pyramid_stages={pyramid_stages}: {self.capabilities.family} models have none")
        return (self.vae if vae is None else vae).latent_shape(num_frames, height, width)

    def flow_sigmas(self, steps: int, latent_shape: tuple[int, ...], options: SamplingOptions) -> Tensor:
        """The family's ``schedule="flow"`` noise levels for ``steps`` steps (``steps + 1`` values); by
        default the SD3 shifted schedule with ``options.shift``."""
        return shifted_sigmas(steps, options.shift)

    @abstractmethod
    def denoiser(
        self,
        options: SamplingOptions,
        latent_shape: tuple[int, ...],
        fps: float | None = None,
        image: ImageConditioning | None = None,
    ) -> Denoiser:
        """The network as a velocity denoiser ``model(x, sigma, **text_kwargs)`` on float32 latents of
        ``latent_shape`` (the full resolution, also during pyramid stages); with ``image``, it holds the
        given latents (``image.mix``) and gives their tokens the timestep the family uses for them."""

    def guidance_schedule(self, options: SamplingOptions) -> Callable[[Tensor], float] | None:
        """A CFG scale per step (from the step's sigma), or None for ``options.guidance`` throughout."""
        return None

    def encode_image(
        self,
        image: Tensor,
        last_image: Tensor | None,
        latent_shape: tuple[int, ...],
        generator: torch.Generator,
    ) -> ImageConditioning:
        """Conditioning from first (and last) frame videos ``[1, 3, 1, H, W]`` in -1..1; families with
        ``capabilities.image_conditioning`` implement it (may draw from ``generator``)."""
        raise NotImplementedError(f"{type(self).__name__} has no image conditioning")

    def prepare_latents(
        self,
        shape: tuple[int, ...],
        seed: int,
        *,
        image: Tensor | None = None,
        last_image: Tensor | None = None,
        latents: Tensor | None = None,
    ) -> Prepared:
        """Seeded initial state for latents of ``shape`` ``[B, C, T', H', W']``: the image conditioning is
        encoded first (some families sample the VAE posterior from the generator, as their reference
        pipelines do), then the noise is drawn; ``latents`` replaces the drawn noise."""
        self.capabilities.check(SamplingOptions(), image=image is not None, last_image=last_image is not None)
        check_seed(seed)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        cond = None
        if image is not None:
            h, w = self.pixel_size(shape)
            first = image_video(image, "image", h, w)
            last = None if last_image is None else image_video(last_image, "last_image", h, w)
            with torch.no_grad():
                cond = self.encode_image(first, last, tuple(shape), generator)
        noise = torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
        if latents is not None:
            if tuple(latents.shape) != tuple(shape):
                raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {tuple(shape)}")
            noise = latents.float()
        if cond is not None:
            noise = cond.mix(noise)
        return Prepared(noise, generator, cond)

    def pixel_size(self, latent_shape: tuple[int, ...]) -> tuple[int, int]:
        """(height, width) in pixels of latents of ``latent_shape`` (for checking conditioning images)."""
        s = self.vae_spatial_ratio
        return latent_shape[-2] * s, latent_shape[-1] * s

    @property
    def vae_spatial_ratio(self) -> int:
        """Pixels per latent cell along height and width."""
        raise NotImplementedError(f"{type(self).__name__} does not say its VAE's spatial ratio")

    def decode(
        self,
        latents: Tensor,
        *,
        generator: torch.Generator | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Latents (as sampled) -> video ``[B, 3, T, H, W]`` in about -1..1 (``callback(done, total)`` per
        chunk); ``generator`` feeds decoders that inject noise."""
        return self.vae.decode(latents.to(self.vae.dtype), callback=callback)

    # ---- shared steps ---------------------------------------------------------------------------------

    def encode_text(self, prompts: list[str]) -> TextConditioning:
        """Embeddings, mask and (when the denoiser takes it) pooled vector of ``prompts``, on the model's
        device and in its dtype."""
        emb, mask = self.text_encoder.encode(prompts)
        if emb.ndim != 3 or emb.shape[-1] != self.text_dim:
            raise ValueError(
                f"text encoder gives embeddings {tuple(emb.shape)} but the {self.capabilities.family} model "
                f"expects width {self.text_dim}"
            )
        pooled = self.text_encoder.encode_pooled(prompts) if self.pooled_text else None
        return TextConditioning(
            emb.to(self.device, self.dtype),
            mask.to(self.device),
            None if pooled is None else pooled.to(self.device, self.dtype),
        )

    def encode_prompts(
        self, prompt: str, negative_prompt: str = "", batch: int = 1
    ) -> tuple[TextConditioning, TextConditioning]:
        """(conditional, unconditional) branch, encoded as one batch so both have one length and CFG runs
        as one batched forward."""
        both = self.encode_text([negative_prompt] * batch + [prompt] * batch)

        def part(sl: slice) -> TextConditioning:
            pooled = None if both.pooled is None else both.pooled[sl]
            return TextConditioning(both.embeddings[sl], both.mask[sl], pooled)

        return part(slice(batch, None)), part(slice(0, batch))

    @torch.no_grad()
    def sample(
        self,
        noise: Tensor,
        cond: TextConditioning,
        uncond: TextConditioning | None,
        options: SamplingOptions,
        *,
        init_latents: Tensor | None = None,
        generator: torch.Generator | None = None,
        fps: float | None = None,
        image: ImageConditioning | None = None,
        callback: Callback | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Clean latents from ``noise`` ``[B, C, T', H', W']`` (and ``init_latents`` for video-to-video,
        noised to the first kept sigma when ``options.denoise`` < 1; ``image`` from :meth:`prepare_latents`
        for image-to-video). The sampler state is float32 on the model's device whatever the model's
        dtype; the network runs in its own dtype inside."""
        if not isinstance(options, SamplingOptions):
            raise TypeError(f"options must be SamplingOptions, got {type(options).__name__}")
        self.capabilities.check(options, image=image is not None)
        if uncond is None and needs_uncond(options):
            raise ValueError("guidance != 1 needs the unconditional (negative prompt) conditioning")
        c = self.latent_channels
        if not isinstance(noise, Tensor) or noise.ndim != 5 or noise.shape[1] != c:
            got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
            raise ValueError(f"noise must be latents [B, {c}, T', H', W'], got {got}")
        x = noise.to(self.device, torch.float32)
        shape = tuple(x.shape)
        base = self.denoiser(options, shape, fps, image)
        model = CFGDenoiser(
            base,
            cond.model_kwargs(self.device),
            uncond.model_kwargs(self.device) if uncond is not None else {},
            options.guidance,
            options.guidance_rescale,
            scale_fn=self.guidance_schedule(options),
        )
        disable = not progress
        # Image tensors shared by both CFG branches (e.g. Wan I2V's CLIP tokens) travel as extra_args.
        extra = {} if image is None else {k: v.to(self.device) for k, v in image.model_kwargs.items()}
        if options.schedule == "pyramidal":
            if init_latents is not None:
                raise ValueError("video-to-video (init_latents / denoise < 1) needs schedule='flow'")
            stage_steps = split_steps(options.steps, options.pyramid_stages)
            return sample_pyramidal(
                model,
                x,
                stage_steps,
                shift=options.shift,
                extra_args=extra,
                generator=generator,
                callback=callback,
                disable=disable,
                velocity="global",
            )
        steps, denoise = options.steps, options.denoise
        total = int(math.ceil(steps / denoise)) if denoise < 1 else steps
        sigmas = self.flow_sigmas(total, shape, options)[-(steps + 1) :]
        if init_latents is not None:
            if tuple(init_latents.shape) != shape:
                raise ValueError(f"init_latents {tuple(init_latents.shape)} must match the noise {shape}")
            s0 = float(sigmas[0])
            x = (1 - s0) * init_latents.to(self.device, torch.float32) + s0 * x
        elif denoise != 1.0:
            raise ValueError("denoise < 1 needs init_latents (the latents of the input video)")
        solver = SAMPLERS[options.sampler]
        out = solver(
            model, x, sigmas.to(x.device), extra, callback=callback, disable=disable, generator=generator
        )
        return out if image is None else image.mix(out)

    def generate(
        self,
        prompt: str,
        negative_prompt: str | None = None,
        *,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        guidance_2: float | None = None,
        seed: int | None = None,
        schedule: str | None = None,
        shift: float | None = None,
        sampler: str | None = None,
        guidance_rescale: float | None = None,
        init_frames: Tensor | None = None,
        denoise: float | None = None,
        fps: float | None = None,
        image: Tensor | None = None,
        last_image: Tensor | None = None,
        options: SamplingOptions | None = None,
        latents: Tensor | None = None,
        callback: Callback | None = None,
        decode_callback: Callable[[int, int], None] | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Frames ``[T, H, W, 3]`` in [0, 1] (on the CPU) for ``prompt``.

        Sampling settings come from ``options`` (default: the model's :meth:`default_options`), then from
        the keyword arguments that are not None. ``fps`` is the rate the video will play at (families
        with ``fps_conditioning`` condition on it). ``image`` / ``last_image`` (``[1, H, W, 3]`` or
        ``[H, W, 3]`` in 0..1) condition image-to-video families on the first / last frame; unset
        ``height`` / ``width`` then take the image's size. ``latents`` replaces the seeded initial noise.
        The empty prompt is allowed (unconditional generation). Same seed, same machine -> same frames.
        """
        if negative_prompt is None:
            # The model's own default negative prompt (Wan has one), else the empty prompt.
            negative_prompt = getattr(self.config, "negative_prompt", "")
        if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
            raise TypeError("prompt and negative_prompt must be strings")
        if prompt.strip() == "":
            log.info("vidcore: empty prompt -> unconditional generation")
        base = self.default_options() if options is None else options
        if not isinstance(base, SamplingOptions):
            raise TypeError(f"options must be SamplingOptions, got {type(base).__name__}")
        opts = base.with_overrides(
            steps=steps,
            guidance=guidance,
            guidance_2=guidance_2,
            seed=seed,
            schedule=schedule,
            shift=shift,
            sampler=sampler,
            guidance_rescale=guidance_rescale,
            denoise=denoise,
        )
        self.capabilities.check(
            opts,
            init_frames=init_frames is not None,
            image=image is not None,
            last_image=last_image is not None,
        )
        cfg = self.config
        if image is not None and isinstance(image, Tensor) and image.ndim in (3, 4):
            # The image's size is the video's unless given (checked against the latent grid below).
            height = image.shape[-3] if height is None else height
            width = image.shape[-2] if width is None else width
        levels = opts.pyramid_stages if opts.schedule == "pyramidal" else 1
        shape = self.latent_shape(
            cfg.num_frames if num_frames is None else num_frames,
            cfg.height if height is None else height,
            cfg.width if width is None else width,
            pyramid_stages=levels,
        )
        prep = self.prepare_latents(
            (1, *shape), opts.seed, image=image, last_image=last_image, latents=latents
        )
        noise, generator = prep.noise, prep.generator
        with torch.no_grad():
            cond, uncond = self.encode_prompts(prompt, negative_prompt)
            init_latents = None
            if init_frames is not None:
                video = frames_to_video(init_frames).to(self.device, self.vae.dtype)
                init_latents = self.vae.encode(video).float()
            out = self.sample(
                noise,
                cond,
                uncond if needs_uncond(opts) else None,
                opts,
                init_latents=init_latents,
                generator=generator,
                fps=fps,
                image=prep.image,
                callback=callback,
                progress=progress,
            )
            video = self.decode(out, generator=generator, callback=decode_callback)
        return video_to_frames(video)[0].cpu()

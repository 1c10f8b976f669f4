"""The one pipeline contract every model family implements (its options and capabilities:
:mod:`.options`; text / image conditioning and the initial state: :mod:`.conditioning`).

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
from typing import Any

import torch
from torch import Tensor, nn

from ..io.frames import frames_to_video, video_to_frames
from ..resources import MemoryEstimate, available_memory, generation_memory, gib
from ..sampling import (
    PYRAMIDAL_SAMPLERS,
    SAMPLERS,
    CFGDenoiser,
    sample_pyramidal,
    shifted_sigmas,
    split_steps,
)
from ..sampling.flow import Denoiser
from ..sampling.loop import Callback
from .conditioning import (
    ImageConditioning,
    LatentVAE,
    Prepared,
    TextConditioning,
    image_video,
)
from .options import Capabilities, SamplingOptions, check_request, check_seed, needs_uncond

__all__ = [
    "Capabilities",
    "ImageConditioning",
    "LatentVAE",
    "Pipeline",
    "Prepared",
    "SamplingOptions",
    "TextConditioning",
    "check_seed",
    "needs_uncond",
]

log = logging.getLogger("vidcore")


def _flow_instead(
    base: SamplingOptions, steps: int | None, sigmas: Any, sampler: str | None, video_to_video: bool
) -> tuple[int, str] | None:
    """(log level, what) when a request is one a default schedule other than flow cannot sample, else None:
    info where the request names something only flow does, a warning where it only differs in steps."""
    if video_to_video:
        return logging.INFO, "video-to-video"
    if sigmas is not None:
        return logging.INFO, "an explicit noise-level list"
    if sampler is not None and base.schedule == "pyramidal" and sampler not in PYRAMIDAL_SAMPLERS:
        return logging.INFO, f"sampler={sampler!r}"
    if steps is not None and base.schedule == "pyramidal" and steps < base.pyramid_stages:
        return logging.WARNING, f"steps={steps} is fewer than its {base.pyramid_stages} pyramid stages"
    return None


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
    # vidcore.distributed.ParallelRun when loaded with load_pipeline(..., parallel=...), else one process.
    parallel: Any = None

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
        if isinstance(self.vae, nn.Module):
            out["vae"] = self.vae
        elif isinstance(self.vae, LatentVAE):
            out.update(self.vae.components())
        encoder_parts = getattr(self.text_encoder, "components", None)
        if callable(encoder_parts):
            out.update(encoder_parts())
        return out

    # ---- family hooks ---------------------------------------------------------------------------------

    def default_options(self) -> SamplingOptions:
        """The model's own sampling defaults: the fields of ``config`` that name a sampling option."""
        names = [f.name for f in dataclasses.fields(SamplingOptions)]
        values = {n: getattr(self.config, n) for n in names if hasattr(self.config, n)}
        # A step-distilled model's own noise levels for its default step count (config ``step_sigmas``).
        own = self.model_sigmas(values["steps"]) if "steps" in values else None
        if own is not None:
            values["sigmas"] = own
        return SamplingOptions(**values)

    def model_sigmas(self, steps: int) -> tuple[float, ...] | None:
        """A step-distilled model's own noise levels for ``steps`` steps (config ``step_sigmas``) or None."""
        lists = [s for s in getattr(self.config, "step_sigmas", ()) if len(s) - 1 == steps]
        return tuple(lists[0]) if lists else None

    def default_schedule(
        self,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        sigmas: Any = None,
        video_to_video: bool = False,
        size: tuple[int, int, int] | None = None,
    ) -> str:
        """The schedule the model's defaults sample a request with: its own (``default_options().schedule``;
        the built-in tiny's is pyramidal) where that can run it, else flow, saying why in the log (info for
        video-to-video, an explicit noise-level list or a flow-only ``sampler``; a warning for fewer
        ``steps`` than pyramid stages or a ``size`` (frames, height, width) the pyramid cannot halve; once per
        pipeline and reason, so an evaluation loop is not flooded).
        ``generate`` uses it when neither ``schedule`` nor ``options`` is given, the Sampler node for
        ``schedule="default"``."""
        own = self.default_options()
        if own.schedule == "flow":
            return "flow"
        why = _flow_instead(own, steps, sigmas, sampler, video_to_video)
        if why is None and size is not None and own.schedule == "pyramidal":
            try:
                self.latent_shape(*size, pyramid_stages=own.pyramid_stages)
            except ValueError as err:
                try:
                    self.latent_shape(*size)
                except ValueError:
                    return "flow"  # no schedule takes this size: flow's refusal names the valid ones
                why = logging.WARNING, str(err)
        if why is None:
            return own.schedule
        noted = self.__dict__.setdefault("_schedule_notes", set())  # once per pipeline and reason
        if why[1] not in noted:
            noted.add(why[1])
            log.log(
                why[0],
                "vidcore: %s: sampling with schedule 'flow' (the model's default is %r)",
                why[1],
                own.schedule,
            )
        return "flow"

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

    def _warn_distilled(self, options: SamplingOptions) -> None:
        """Step- and guidance-distilled models (config ``step_sigmas`` / ``guidance_distilled``) run with
        other settings too, with a warning naming the step counts they declare noise levels for (once per
        pipeline and setting: an evaluation loop is not flooded)."""
        warned = self.__dict__.setdefault("_distill_warnings", set())
        trained = sorted(len(s) - 1 for s in getattr(self.config, "step_sigmas", ()))
        if trained and options.sigmas is None and ("steps", options.steps) not in warned:
            warned.add(("steps", options.steps))
            log.warning(
                "vidcore: %s declares its own noise levels for %s step(s); %d steps use the flow schedule "
                "instead",
                getattr(self.config, "name", "this model"),
                trained,
                options.steps,
            )
        guided = getattr(self.config, "guidance_distilled", False) and options.guidance != 1.0
        if guided and ("guidance", options.guidance) not in warned:
            warned.add(("guidance", options.guidance))
            log.warning(
                "vidcore: guidance=%s on a guidance-distilled model (CFG was distilled in; 1 = as trained)",
                options.guidance,
            )

    def guidance_schedule(self, options: SamplingOptions) -> Callable[[Tensor], float] | None:
        """A CFG scale per step (from the step's sigma), or None for ``options.guidance`` throughout: by
        default ``guidance`` at noise levels at or above ``guidance_boundary`` and ``guidance_2`` below."""
        if options.guidance_boundary is None or options.guidance_2 is None:
            return None
        high, low, boundary = options.guidance, options.guidance_2, options.guidance_boundary

        def scale(sigma: Tensor) -> float:
            return high if float(sigma.reshape(-1)[0]) >= boundary else low

        return scale

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
        self.capabilities.check_images(image is not None, last_image is not None)
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

    def latent_rgb(self) -> Any:
        """The family's linear latent -> RGB preview map (a ``vidcore.preview.LatentRGB``)."""
        raise NotImplementedError(f"{type(self).__name__} has no latent preview factors")

    def latent_preview(self, latents: Tensor) -> Tensor:
        """A cheap look at latents as sampled (e.g. the sampler's x0 prediction, any resolution): frames
        ``[T, H, W, 3]`` float32 in 0..1 at latent resolution, of the first batch item; for live
        previews, not output (a linear map per latent pixel, no VAE)."""
        return self.latent_rgb().project(latents)

    # ---- validation before work ---------------------------------------------------------------------

    def denoiser_profile(self) -> tuple[int, int, int, float]:
        """(patch volume in latent cells, width, heads, MLP ratio) of the denoiser for memory estimates, read
        from its config under the names the families use (vidcore DiT, LTX-Video, Wan); (0, 0, 0, 0) when
        the config says none of them (the estimate then leaves the denoiser out)."""
        cfg = getattr(self.dit, "config", None)

        def first(*names: str) -> Any:
            return next((getattr(cfg, n) for n in names if isinstance(getattr(cfg, n, None), int)), None)

        width = first("width", "inner_dim", "dim")
        heads = first("heads", "num_attention_heads", "num_heads")
        if cfg is None or width is None or heads is None:
            return 0, 0, 0, 0.0
        if width == heads and isinstance(getattr(cfg, "attention_head_dim", None), int):
            width = heads * cfg.attention_head_dim
        if isinstance(getattr(cfg, "patch", None), tuple):
            volume = math.prod(cfg.patch)
        else:
            p_t = first("patch_t", "patch_size_t") or 1
            p_s = first("patch_s", "patch_size") or 1
            volume = p_t * p_s * p_s
        ffn = first("ffn_dim")
        ratio = getattr(cfg, "mlp_ratio", None)
        ratio = float(ratio) if isinstance(ratio, (int, float)) else (ffn / width if ffn else 4.0)
        return volume, width, heads, ratio

    def memory_estimate(
        self, size: tuple[int, int, int], latent_shape: tuple[int, ...], options: SamplingOptions
    ) -> MemoryEstimate:
        """:class:`vidcore.resources.MemoryEstimate` of generating a clip of ``size`` (frames, height,
        width) whose latents are ``latent_shape`` ``(C, T', H', W')``."""
        volume, width, heads, ratio = self.denoiser_profile()
        cells = math.prod(latent_shape[1:])
        tokens = cells // volume if volume else 0
        return generation_memory(
            tuple(latent_shape),
            size,
            tokens=tokens,
            width=width,
            heads=heads,
            mlp_ratio=ratio,
            cfg=needs_uncond(options),
        )

    def check_memory(
        self, size: tuple[int, int, int], latent_shape: tuple[int, ...], options: SamplingOptions
    ) -> None:
        """Refuse a clip whose estimated memory (:meth:`memory_estimate`) exceeds what the device has free,
        naming the largest height x width at this aspect ratio and frame count that fits."""
        if self.parallel is not None:  # activations are split over the ranks; each rank checks its share
            return
        free = available_memory(self.device)
        if free is None:
            return
        need = self.memory_estimate(size, latent_shape, options)
        if need.total <= free:
            return
        n, height, width = size
        levels = options.pyramid_stages if options.schedule == "pyramidal" else 1
        fit = self._largest_fitting(size, levels, options, free)
        hint = (
            f"the largest size that fits at this aspect ratio is height={fit[0]}, width={fit[1]}"
            if fit
            else f"no size fits with num_frames={n}; use fewer frames"
        )
        raise ValueError(
            f"num_frames={n}, height={height}, width={width} need about {gib(need.total)} of memory "
            f"({need.describe()}) but {gib(free)} is free on {self.device}; {hint}"
        )

    def _largest_fitting(
        self, size: tuple[int, int, int], levels: int, options: SamplingOptions, free: int
    ) -> tuple[int, int] | None:
        n, height, width = size
        longest = max(height, width)

        def valid(value: int, name: str) -> int | None:
            # The largest value <= ``value`` this model accepts for one side (the other at its default).
            for v in range(value, max(0, value - 512), -1):
                h, w = (v, self.config.width) if name == "height" else (self.config.height, v)
                try:
                    self.latent_shape(n, h, w, pyramid_stages=levels)
                    return v
                except ValueError:
                    continue
            return None

        def candidate(side: int) -> tuple[int, int] | None:
            h = valid(max(1, height * side // longest), "height")
            w = valid(max(1, width * side // longest), "width")
            if h is None or w is None:
                return None
            try:
                shape = self.latent_shape(n, h, w, pyramid_stages=levels)
            except ValueError:
                return None
            return (h, w) if self.memory_estimate((n, h, w), shape, options).total <= free else None

        best, lo, hi = None, 1, longest
        while lo <= hi:
            mid = (lo + hi) // 2
            got = candidate(mid)
            if got is not None:
                best, lo = got, mid + 1
            else:
                hi = mid - 1
        return best

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
        if self.parallel is not None:  # every rank runs this job; the forward is split over the ranks
            job = dict(options=options, noise=x, cond=cond, uncond=uncond, init_latents=init_latents)
            base = self.parallel.denoiser(base, image=image, **job)
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
                sampler=options.sampler,
                stage_range=options.pyramid_stage_range,
            )
        steps, denoise = options.steps, options.denoise
        total = int(math.ceil(steps / denoise)) if denoise < 1 else steps
        if options.sigmas is not None:  # an explicit list (distilled students' own timesteps)
            sigmas = torch.tensor(options.sigmas, dtype=torch.float32)
        else:
            sigmas = self.flow_sigmas(total, shape, options)[-(steps + 1) :]
        if init_latents is not None:
            if tuple(init_latents.shape) != shape:
                raise ValueError(f"init_latents {tuple(init_latents.shape)} must match the noise {shape}")
            s0 = float(sigmas[0])
            x = (1 - s0) * init_latents.to(self.device, torch.float32) + s0 * x
        elif denoise != 1.0:
            raise ValueError("denoise < 1 needs init_latents (the latents of the input video)")
        elif options.sigmas is not None and float(sigmas[0]) < 1.0:
            # A list that starts below pure noise (rCM: t0 = sigma_max / (1 + sigma_max)) starts from the
            # noisy sample at t0 with the data term taken as 0: t0 * noise (TurboDiffusion: noise * t0).
            x = x * float(sigmas[0])
            x = x if image is None else image.mix(x)
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
        guidance_boundary: float | None = None,
        seed: int | None = None,
        schedule: str | None = None,
        shift: float | None = None,
        sampler: str | None = None,
        guidance_rescale: float | None = None,
        init_frames: Tensor | None = None,
        denoise: float | None = None,
        sigmas: tuple[float, ...] | list[float] | None = None,
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
        ``guidance`` given alone replaces a default that steps the scale down at low noise (``guidance_2``
        below ``guidance_boundary``) with that one scale throughout. Without ``schedule`` and ``options`` the
        schedule is :meth:`default_schedule`'s (the model's own where it can run the request, else flow).
        """
        if negative_prompt is None:
            # The model's own default negative prompt (Wan has one), else the empty prompt.
            negative_prompt = getattr(self.config, "negative_prompt", "")
        if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
            raise TypeError("prompt and negative_prompt must be strings")
        if prompt.strip() == "":
            log.info("vidcore: empty prompt -> unconditional generation")
        check_request(num_frames, height, width)  # model-independent bounds, before anything runs
        base = self.default_options() if options is None else options
        if not isinstance(base, SamplingOptions):
            raise TypeError(f"options must be SamplingOptions, got {type(base).__name__}")
        if image is not None and isinstance(image, Tensor) and image.ndim in (3, 4):
            # The image's size is the video's unless given (checked against the latent grid below).
            height = image.shape[-3] if height is None else height
            width = image.shape[-2] if width is None else width
        cfg = self.config
        size = (
            cfg.num_frames if num_frames is None else num_frames,
            cfg.height if height is None else height,
            cfg.width if width is None else width,
        )
        if options is None and schedule is None:
            # The model's own schedule where it can run (the built-in tiny's pyramid), else flow; a schedule
            # asked for by name, or in options, is kept and refused by name instead.
            schedule = self.default_schedule(
                steps=steps,
                sampler=sampler,
                sigmas=sigmas,
                video_to_video=init_frames is not None or (denoise is not None and denoise < 1),
                size=size,
            )
        if sigmas is not None and steps is None:
            steps = len(sigmas) - 1
        if steps is not None and sigmas is None and (base.sigmas is None or steps != len(base.sigmas) - 1):
            # Another step count than the options' list: the model's own list for it (a distilled model may
            # have one per step count), else the family's flow schedule.
            own = self.model_sigmas(steps)
            flow = (schedule or base.schedule) == "flow" and (denoise or base.denoise) == 1.0
            if own is not None and flow:
                sigmas = own
            elif base.sigmas is not None:
                base = base.replace(sigmas=None)
        if (
            guidance is not None
            and guidance_2 is None
            and guidance_boundary is None
            and base.guidance_boundary
        ):
            # One scale asked for: it holds at every step, not only above the default's boundary (a
            # two-expert model's guidance_2 default stays: its boundary is the model's).
            base = base.replace(guidance_2=None, guidance_boundary=None)
        opts = base.with_overrides(
            sigmas=sigmas,
            steps=steps,
            guidance=guidance,
            guidance_2=guidance_2,
            guidance_boundary=guidance_boundary,
            seed=seed,
            schedule=schedule,
            shift=shift,
            sampler=sampler,
            guidance_rescale=guidance_rescale,
            denoise=denoise,
        )
        self._warn_distilled(opts)
        self.capabilities.check(
            opts,
            init_frames=init_frames is not None,
            image=image is not None,
            last_image=last_image is not None,
        )
        levels = opts.pyramid_stages if opts.schedule == "pyramidal" else 1
        shape = self.latent_shape(*size, pyramid_stages=levels)
        self.check_memory(size, shape, opts)  # before any encoding or sampling
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

"""Sampling options and model capabilities: what a run asks for, and what a family can honour (every
refusal of an option is worded in :class:`Capabilities`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..config import ConfigMixin, check_choice, check_positive_int
from ..sampling import PYRAMIDAL_SAMPLERS, SAMPLERS, SCHEDULES, check_sigma_list

# Sanity bounds checked before any work: beyond them a run is a typo or cannot finish, and the failure
# would otherwise come late (an allocation error, NaN at step 1). Memory is checked per model and size
# separately (vidcore.resources).
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_FRAMES = 10_000
MAX_SIDE = 16_384  # pixels, height or width


def check_seed(seed: object) -> None:
    """Seeds are integers in [0, 2**64); floats and bools are refused rather than truncated."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise ValueError(f"seed={seed!r} must be an integer in [0, 2**64)")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r} must be a number, got {type(value).__name__}")
    return float(value)


def _bounded_int(name: str, value: object, high: int, why: str) -> None:
    check_positive_int(name, value)
    if value > high:  # type: ignore[operator]
        raise ValueError(f"{name}={value!r} must be an integer in [1, {high}] ({why})")


def _guidance(name: str, value: object, none: str) -> float:
    g = _number(name, value)
    if math.isfinite(g) and g > MAX_GUIDANCE:
        raise ValueError(
            f"{name}={value!r} is beyond the sane maximum {MAX_GUIDANCE:g}: CFG at such scales overflows to "
            "NaN at the first step (usual: 1-15)"
        )
    if not (math.isfinite(g) and g >= 1.0):
        finite = "" if math.isfinite(g) and name == "guidance" else "a finite number "
        raise ValueError(f"{name}={value!r} must be {finite}>= 1 ({none}) and <= {MAX_GUIDANCE:g}")
    return g


def check_request(num_frames: int | None = None, height: int | None = None, width: int | None = None) -> None:
    """Model-independent bounds of a clip size (the unset ones are the model's defaults, not checked here);
    each model's own size rule and the memory it needs are checked once it is loaded."""
    if num_frames is not None:
        _bounded_int("num_frames", num_frames, MAX_FRAMES, "a longer clip is out of reach of any model here")
    for name, value in (("height", height), ("width", width)):
        if value is not None:
            _bounded_int(name, value, MAX_SIDE, "pixels")


def check_option(name: str, value: object) -> Any:
    """Check one :class:`SamplingOptions` field alone (no cross-field rules) and return it normalised;
    what ``SamplingOptions.__post_init__`` runs per field, and what a caller can run before loading a
    model, whose defaults fill in the rest."""
    if name == "steps":
        _bounded_int("steps", value, MAX_STEPS, "a bound against typos; 4-100 is usual")
        return value
    if name == "pyramid_stages":
        check_positive_int(name, value)
        return value
    if name == "pyramid_stage_range":
        return None if value is None else check_stage_range(value)
    if name == "seed":
        check_seed(value)
        return value
    if name == "guidance":
        return _guidance(name, value, "1 = no guidance; CFG w = guidance - 1")
    if name == "guidance_2":
        return None if value is None else _guidance(name, value, "None = guidance")
    if name == "guidance_boundary":
        if value is None:
            return None
        v = _number(name, value)
        if not 0.0 < v < 1.0:
            raise ValueError(
                f"guidance_boundary={value!r} must be a noise level in (0, 1): steps at or above it use "
                "guidance, the steps below it guidance_2"
            )
        return v
    if name in ("guidance_rescale", "shift", "denoise"):
        v = _number(name, value)
        if name == "guidance_rescale" and not 0.0 <= v <= 1.0:
            raise ValueError(f"guidance_rescale={value!r} must be in [0, 1]")
        if name == "shift" and not (math.isfinite(v) and v > 0):
            raise ValueError(f"shift={value!r} must be a finite number > 0")
        if name == "denoise" and not 0.0 < v <= 1.0:
            raise ValueError(f"denoise={value!r} must be in (0, 1]")
        return v
    if name == "schedule":
        check_choice("schedule", value, tuple(SCHEDULES))
        return value
    if name == "sampler":
        check_choice("sampler", value, tuple(SAMPLERS))
        return value
    if name == "sigmas":
        return None if value is None else check_sigma_list(value)
    raise ValueError(f"unknown SamplingOptions option {name!r}")


def check_stage_range(value: object, name: str = "pyramid_stage_range") -> tuple[float, ...]:
    """Pyramid stage boundaries as fractions of the noise schedule: increasing numbers from 0 to 1, one
    more than the stages (Pyramid Flow's ``stage_range``; stage k covers the fractions [r_k, r_k+1] of the
    schedule from pure noise)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name}={value!r} must be a list of numbers from 0 to 1")
    values = tuple(_number(name, v) for v in value)  # type: ignore[attr-defined]
    increasing = all(b > a for a, b in zip(values, values[1:], strict=False))
    if len(values) < 2 or values[0] != 0 or values[-1] != 1 or not increasing:
        raise ValueError(
            f"{name}={list(values)!r} must be increasing numbers from 0 to 1, one more than the stages "
            "(e.g. [0, 0.05, 0.2, 1] for 3 stages)"
        )
    return values


def check_options(**values: Any) -> None:
    """:func:`check_option` over the given values that are not None (e.g. a command line before loading)."""
    for name, value in values.items():
        if value is not None:
            check_option(name, value)


@dataclass(frozen=True, kw_only=True)
class SamplingOptions(ConfigMixin):
    """How to sample, validated once. ``guidance`` is the usual CFG scale g (``(1+w)·v_c - w·v_u`` with
    ``w = g - 1``; 1 = off), ``guidance_2`` the scale of the low-noise steps: below ``guidance_boundary``
    (a noise level sigma; steps whose sigma is at or above it use ``guidance``), or below the expert switch
    of two-expert models (Wan 2.2 A14B, whose boundary is the model's; None = ``guidance``). A scale that
    steps down at low noise is a guidance schedule in the sense of Kynkäänniemi et al. 2024 (arXiv
    2404.07724: guidance in a limited interval). ``guidance_rescale`` phi of Lin et al. (2023), ``shift``
    the SD3 timestep shift (Esser et al. 2024, Eq. 23), ``denoise`` < 1 starts from noised input latents
    (SDEdit, Meng et al. 2021), ``pyramid_stages`` the number of resolution stages of
    ``schedule="pyramidal"`` and ``pyramid_stage_range`` where they change (:func:`check_stage_range`; None =
    even thirds etc.), ``sigmas`` an explicit noise-level list (distilled few-step models: N + 1 values
    ending in 0, ``steps`` = N).

    Unknown option names are errors: ``SamplingOptions.from_dict`` and :meth:`replace` name them."""

    steps: int = 20
    guidance: float = 4.0
    guidance_2: float | None = None
    guidance_boundary: float | None = None
    guidance_rescale: float = 0.0
    shift: float = 1.0
    schedule: str = "flow"
    sampler: str = "euler"
    pyramid_stages: int = 3
    pyramid_stage_range: tuple[float, ...] | None = None
    denoise: float = 1.0
    seed: int = 0
    sigmas: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_option(f.name, getattr(self, f.name)))
        if self.sigmas is not None:
            if self.steps != len(self.sigmas) - 1:
                raise ValueError(
                    f"steps={self.steps} does not match sigmas={list(self.sigmas)} ({len(self.sigmas) - 1} "
                    "steps); give the list with its own step count"
                )
            if self.schedule != "flow" or self.denoise != 1.0:
                raise ValueError(
                    f"sigmas={list(self.sigmas)} (an explicit noise-level list) needs schedule='flow' and "
                    f"denoise=1 (got schedule={self.schedule!r}, denoise={self.denoise!r})"
                )
        if self.guidance_boundary is not None and self.guidance_2 is None:
            raise ValueError(
                f"guidance_boundary={self.guidance_boundary!r} needs guidance_2 (the CFG scale of the steps "
                "below it)"
            )
        rng = self.pyramid_stage_range
        if rng is not None and len(rng) != self.pyramid_stages + 1:
            raise ValueError(
                f"pyramid_stage_range={list(rng)} has {len(rng)} values; {self.pyramid_stages} pyramid "
                f"stages need {self.pyramid_stages + 1} (or None for an even split)"
            )
        if self.schedule == "pyramidal":
            if self.sampler not in PYRAMIDAL_SAMPLERS:
                raise ValueError(
                    f"sampler={self.sampler!r}: schedule='pyramidal' integrates each stage with one of "
                    f"{list(PYRAMIDAL_SAMPLERS)}"
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
        self.check_images(image, last_image)
        if options.schedule not in self.schedules:
            raise ValueError(
                f"schedule={options.schedule!r} is not supported by {who}; supported: {list(self.schedules)}"
            )
        if options.sampler not in self.samplers:
            raise ValueError(
                f"sampler={options.sampler!r} is not supported by {who}; supported: {list(self.samplers)}"
            )
        if self.expert_guidance and options.guidance_boundary is not None:
            raise ValueError(
                f"guidance_boundary={options.guidance_boundary!r}: {who} switch from guidance to guidance_2 "
                "at their expert boundary; leave guidance_boundary unset"
            )
        if not self.expert_guidance and options.guidance_2 is not None and options.guidance_boundary is None:
            raise ValueError(
                f"guidance_2={options.guidance_2!r} needs guidance_boundary (the noise level below which it "
                f"replaces guidance) on {who}; only two-expert models (Wan 2.2 A14B) switch at their own "
                "boundary"
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

    def check_images(self, image: bool, last_image: bool) -> None:
        """Refuse conditioning images this family cannot take, or their absence when it needs one."""
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

    def check_tiling(self, tile_size: int | None, tile_overlap: int | None) -> None:
        """Refuse spatial tiling by name when the family's VAE has none (never ignore it)."""
        if self.tiling:
            return
        for name, value in (("tile_size", tile_size), ("tile_overlap", tile_overlap)):
            if value is not None:
                raise ValueError(
                    f"{name}={value!r}: the {self.family} VAE has no spatial tiling (leave it unset / 0)"
                )


def needs_uncond(options: SamplingOptions) -> bool:
    """Whether any step of a run with ``options`` evaluates the unconditional branch."""
    return options.guidance != 1.0 or options.guidance_2 not in (None, 1.0)

"""VAE and denoiser (DiT or 3D U-Net) training on procedural shape videos: AdamW, EMA, gradient clipping,
resumable state, a progress bar with the loss and a line of mean losses every ``log_every`` steps.
``vidcore train {vae,dit,unet} --config FILE``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigMixin, check_choice, check_positive, resolve_shipped_config
from ..io.atomic import write_text
from ..io.checkpoint import read_config, save_checkpoint
from ..models.dit import KIND as DIT_KIND
from ..models.dit import DiTConfig, SpacetimeDiT
from ..models.unet3d import KIND as UNET_KIND
from ..models.unet3d import UNet3D, UNet3DConfig
from ..models.vae import VAE_KIND, CausalVAE3D, VAEConfig
from ..sampling.flow import add_noise, velocity_target, x0_from_velocity
from ..sampling.pyramidal import latent_pyramid
from .captions import SHAPES
from .data import ShapeVideoDataset
from .shape_loss import LatentShapeClassifier, shape_loss, train_shape_classifier
from .state import EMA, load_training_state, save_training_state

C = TypeVar("C", bound=ConfigMixin)

logger = logging.getLogger("vidcore")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
STATE_FILE = "state.safetensors"
SHAPE_CLASSIFIER_FILE = "shape_classifier.safetensors"


@dataclass(frozen=True)
class DenoiserKind:
    """What the flow-matching loop needs to know of a denoiser family (TrainConfig ``kind``)."""

    label: str  # in messages
    config: type  # its config dataclass (built from TrainConfig.model)
    model: Callable[[Any], nn.Module]  # config -> module
    weights: str  # the run folder's export of the EMA weights
    checkpoint_kind: str  # the ``vidcore_kind`` of its checkpoints (checked on ``init_from``)
    spatial_multiple: Callable[[Any], int]  # config -> latent height/width multiple the model needs
    rope_scale: bool  # whether the forward takes ``rope_scale`` (positions of low-resolution batches)


DENOISERS = {
    "dit": DenoiserKind(
        "DiT", DiTConfig, SpacetimeDiT, "dit.safetensors", DIT_KIND, lambda c: c.patch_s, True
    ),
    "unet": DenoiserKind(
        "U-Net", UNet3DConfig, UNet3D, "unet.safetensors", UNET_KIND, lambda c: c.spatial_multiple, False
    ),
}
KINDS = ("vae", *DENOISERS)


@dataclass(frozen=True)
class TrainConfig(ConfigMixin):
    """One training run. ``model`` is the VAEConfig / DiTConfig / UNet3DConfig dict of the model being trained
    (``kind`` "vae", "dit" or "unet")."""

    kind: str
    out_dir: str
    steps: int
    batch_size: int
    model: dict = field(default_factory=dict)
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 2
    log_every: int = 10  # steps between loss lines sent to the trainer's `log` (means since the last line)
    ckpt_every: int = 200
    num_frames: int = 17
    height: int = 64
    width: int = 64
    # VAE loss: foreground-weighted L1 + L2, spatial-gradient (edge) L1, KL.
    fg_weight: float = 10.0
    edge_weight: float = 1.0
    kl_weight: float = 1e-6
    # Denoisers: frozen VAE checkpoint, text encoder, caption dropout (for CFG), low-res (pyramid) share.
    vae: str = ""
    text_encoder: str = "minilm"
    caption_dropout: float = 0.1
    lowres_prob: float = 0.25
    pyramid_levels: int = 3
    latent_cache: int = 4096
    # Denoiser loss weight on latent positions the object covers (1 = plain MSE). Most of a shape video's
    # latent is background, so without it the object's outline barely moves the loss.
    latent_fg_weight: float = 1.0
    # Share of each batch given to counterfactual shape twins (0 = off): the last `share x batch / 2` items
    # are replaced by twins of the first ones (same colour, motion, place, caption but the shape word;
    # `ShapeVideoDataset.twin`) with the same noise and noise level, so the only thing that tells the
    # pair's targets apart is the shape word: a direct signal for binding shape words (issue 14).
    shape_twins: float = 0.0
    # Logit-normal training noise levels: σ = sigmoid(N(sigma_logit_mean, sigma_logit_std²)) (SD3 §3.1).
    sigma_logit_mean: float = 0.0
    sigma_logit_std: float = 1.0
    # Weight of the shape loss (vidcore.train.shape_loss; 0 = off): cross-entropy of a frozen latent shape
    # classifier, trained on the run's first latent cache for `shape_classifier_steps` steps and kept in
    # out_dir, on the model's clean estimate x̂0 of captioned full-resolution items.
    shape_loss_weight: float = 0.0
    shape_classifier_steps: int = 600
    processes: int = 1  # data-parallel worker processes (one torch thread each), denoisers only
    init_from: str = ""  # model checkpoint to start from when out_dir holds no training state yet

    def __post_init__(self) -> None:
        check_choice("TrainConfig.kind", self.kind, KINDS)
        for name in ("steps", "batch_size", "lr", "log_every", "ckpt_every", "threads"):
            check_positive(f"TrainConfig.{name}", getattr(self, name))
        if not 0 <= self.caption_dropout < 1 or not 0 <= self.lowres_prob < 1:
            raise ValueError(
                f"caption_dropout={self.caption_dropout} and lowres_prob={self.lowres_prob} must be in [0, 1)"
            )
        if not (0 < self.sigma_logit_std < math.inf) or not math.isfinite(self.sigma_logit_mean):
            raise ValueError(
                f"TrainConfig.sigma_logit_mean={self.sigma_logit_mean} must be finite and "
                f"sigma_logit_std={self.sigma_logit_std} finite and > 0"
            )
        if not (0 <= self.shape_loss_weight < math.inf):
            raise ValueError(
                f"TrainConfig.shape_loss_weight={self.shape_loss_weight} must be finite and >= 0 (0 = off)"
            )
        check_positive("TrainConfig.shape_classifier_steps", self.shape_classifier_steps)
        if not 0 <= self.shape_twins <= 1:
            raise ValueError(f"TrainConfig.shape_twins={self.shape_twins} must be in [0, 1] (0 = off)")
        if not self.latent_fg_weight >= 1:
            raise ValueError(f"TrainConfig.latent_fg_weight={self.latent_fg_weight} must be >= 1 (1 = off)")
        if isinstance(self.processes, bool) or not isinstance(self.processes, int) or self.processes < 1:
            raise ValueError(f"TrainConfig.processes={self.processes!r} must be a positive integer")
        if self.batch_size % self.processes:
            raise ValueError(
                f"TrainConfig.batch_size={self.batch_size} must divide evenly over processes={self.processes}"
            )
        if self.latent_cache % self.processes:
            raise ValueError(
                f"TrainConfig.latent_cache={self.latent_cache} must divide evenly over "
                f"processes={self.processes}"
            )
        if self.kind == "vae" and self.processes != 1:
            raise ValueError(
                "data-parallel processes are implemented for denoiser (DiT / U-Net) training only "
                "(use processes=1)"
            )
        if self.kind in DENOISERS and not self.vae:
            raise ValueError(
                f"a {DENOISERS[self.kind].label} run needs `vae`: the path of the trained VAE checkpoint"
            )


def resolve_config_path(path_or_name: str | Path) -> Path:
    """A config file path, or the name of a shipped config (``tiny_vae``, ``tiny_dit``, ``tiny_unet``)."""
    return resolve_shipped_config(path_or_name, CONFIG_DIR, "training config")


# Keys that older TrainConfigs had and that never changed a run. Run folders written before their removal
# keep them in config.json; loading such a file drops them with a warning instead of refusing it.
RETIRED_KEYS = {
    "sample_every": "it never wrote samples; sample the exported checkpoint with `vidcore generate`"
}


def load_train_config(path_or_name: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig from a JSON file or shipped config name; unknown keys raise, retired ones are dropped."""
    path = resolve_config_path(path_or_name)
    data = read_config_object(path, "training config")
    data.update(overrides or {})
    for key in sorted(RETIRED_KEYS.keys() & data.keys()):
        logger.warning("%s: ignoring retired TrainConfig key %r (%s)", path, key, RETIRED_KEYS[key])
        del data[key]
    return config_from_data(TrainConfig, data, path)


def read_config_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in a config file; errors name the file (not valid JSON, not an object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {what} {str(path)!r}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{what} {str(path)!r} holds a JSON {type(data).__name__}; expected an object of keys"
        )
    return data


def config_from_data(cls: type[C], data: dict[str, Any], path: Path) -> C:
    """``cls.from_dict(data)`` whose errors name the file: missing required keys listed by name (instead of
    the dataclass's "__init__() missing N required positional arguments"), other problems prefixed."""
    required = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ValueError(f"config {str(path)!r} is missing the keys {', '.join(missing)}")
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config {str(path)!r}: {e}") from None


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 10 % of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# ---- losses -------------------------------------------------------------------------------------------


def foreground_mask(video: Tensor) -> Tensor:
    """Object pixels ``[B, 1, T, H, W]`` (1.0) of shape videos: pixels that differ from the border colour."""
    border = torch.cat([video[..., 0, :], video[..., -1, :], video[..., :, 0], video[..., :, -1]], dim=-1)
    bg = border.median(dim=-1).values[..., None, None]  # [B, 3, T, 1, 1]
    return ((video - bg).abs().amax(dim=1, keepdim=True) > 0.25).float()


def foreground_weights(video: Tensor, fg_weight: float) -> Tensor:
    """Per-pixel weights ``[B, 1, T, H, W]``: ``fg_weight`` where a pixel differs from the border colour."""
    return 1.0 + (fg_weight - 1.0) * foreground_mask(video)


def latent_foreground(video: Tensor, latent_shape: tuple[int, int, int]) -> Tensor:
    """Object mask ``[B, 1, t, h, w]`` (0 or 1) of ``video`` [B, 3, T, H, W] on the latent grid ``(t, h, w)``.

    Frame 0 maps to latent frame 0 and each later group of ``(T - 1) / (t - 1)`` frames to one latent
    frame (the causal VAE's layout); a latent position counts as object when any of its pixels does,
    dilated by one latent position (the VAE's receptive field reaches past the outline).
    """
    t, h, w = latent_shape
    num_frames, height, width = video.shape[-3:]
    if (t > 1 and (num_frames - 1) % (t - 1)) or height % h or width % w:
        raise ValueError(
            f"video of {num_frames}x{height}x{width} does not map onto a latent grid of {t}x{h}x{w}"
        )
    fg = F.max_pool3d(foreground_mask(video), (1, height // h, width // w))
    if t > 1:
        r = (num_frames - 1) // (t - 1)
        rest = F.max_pool3d(fg[:, :, 1:], (r, 1, 1))
        fg = torch.cat([fg[:, :, :1], rest], dim=2)
    return F.max_pool3d(fg, (1, 3, 3), stride=1, padding=(0, 1, 1))


def foreground_weight(fg: Tensor, grid: tuple[int, ...], fg_weight: float) -> Tensor:
    """Loss weights ``[B, 1, t, h, w]`` on latent grid ``grid``: ``fg_weight`` on the object, 1 elsewhere
    (``fg`` is max-pooled down for the low-resolution pyramid batches)."""
    if tuple(fg.shape[-3:]) != tuple(grid):
        fg = F.adaptive_max_pool3d(fg, tuple(grid))
    return 1.0 + (fg_weight - 1.0) * fg


def weighted_mse(
    pred: Tensor, target: Tensor, weight: Tensor | None, weight_mean: Tensor | None = None
) -> Tensor:
    """MSE weighted by ``weight`` [B, 1, t, h, w], divided by the mean weight (keeps the plain MSE's scale).

    Data-parallel workers pass the whole batch's ``weight_mean`` so their average equals one process.
    """
    if weight is None:
        return F.mse_loss(pred, target)
    norm = weight.mean() if weight_mean is None else weight_mean
    return (weight * (pred - target).square()).mean() / norm


def vae_loss(recon: Tensor, video: Tensor, kl: Tensor, cfg: TrainConfig) -> tuple[Tensor, dict[str, float]]:
    """Foreground-weighted L1 + L2, L1 on spatial gradients (keeps corners sharp), and KL."""
    w = foreground_weights(video, cfg.fg_weight)
    diff = recon - video
    rec = (w * (diff.abs() + diff.square())).mean()

    def grads(x: Tensor) -> tuple[Tensor, Tensor]:
        return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]

    (ry, rx), (vy, vx) = grads(recon), grads(video)
    edge = (ry - vy).abs().mean() + (rx - vx).abs().mean()
    loss = rec + cfg.edge_weight * edge + cfg.kl_weight * kl.mean()
    return loss, {"rec": rec.item(), "edge": edge.item(), "kl": kl.mean().item()}


def sample_sigmas(n: int, generator: torch.Generator, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Logit-normal σ (Esser et al. 2024, SD3 §3.1): sigmoid of N(mean, std²); mean > 0 puts more of the
    training on high noise levels (where the layout and the shape of a video are decided)."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator))


# ---- the loop -----------------------------------------------------------------------------------------


class Run:
    """State shared by both trainers: model, EMA, optimiser, resume, checkpoints, progress."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        log: Callable[[str], None] = print,
        rank: int = 0,
        world: int = 1,
        kind: str | None = None,
    ) -> None:
        """``kind``: the checkpoint kind ``init_from`` must hold (None: not checked)."""
        self.cfg, self.model, self.log, self.rank, self.world = cfg, model, log, rank, world
        self.out = Path(cfg.out_dir)
        state = self.out / STATE_FILE
        if kind is not None and cfg.init_from and not state.is_file():
            found, _ = read_config(cfg.init_from)  # before anything is written to the run folder
            if found != kind:
                raise ValueError(
                    f"init_from={cfg.init_from!r} holds a {found!r} model; this {cfg.kind!r} run "
                    f"starts from a {kind!r} checkpoint"
                )
        if rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text(self.out / "config.json", json.dumps(cfg.to_dict(), indent=2), overwrite=True)
        self.ema = EMA(model, cfg.ema_decay)
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            (no_decay if p.ndim < 2 or name.endswith("bias") else decay).append(p)
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=(0.9, 0.99),
        )
        self.step = 0
        self.history: list[dict[str, float]] = []
        if state.is_file():
            self.step, info = load_training_state(state, model, self.ema, self.opt)
            self.history = info.get("history", [])
            self.log(f"resumed {state} at step {self.step}")
        elif cfg.init_from:
            # Warm start (e.g. from shipped weights when the run folder was lost): weights and EMA only;
            # the optimiser state and the step counter start fresh, so the LR warms up again.
            from ..io.checkpoint import load_state_dict

            weights = load_state_dict(cfg.init_from)
            model.load_state_dict(weights)
            self.ema = EMA(model, cfg.ema_decay)
            self.log(f"initialised from {cfg.init_from} (no training state in {self.out})")

    def optimise(self, loss: Tensor) -> float:
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            _average_gradients(self.model, self.world)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        return float(norm)

    def record(self, parts: dict[str, float]) -> None:
        """Append this step's numbers to the history; every ``log_every`` steps log their means since the
        last line (rank 0 only; the progress bar shows the latest step's loss)."""
        self.history.append({"step": self.step, **parts})
        if self.rank != 0 or self.step % self.cfg.log_every:
            return
        # This window's entries only: a resumed run's history may end before the window starts (and was
        # perhaps written by a trainer that recorded other numbers).
        window = self.history[-self.cfg.log_every :]
        recent = [
            h for h in window if h["step"] > self.step - self.cfg.log_every and parts.keys() <= h.keys()
        ]
        text = ", ".join(f"{k} {sum(h[k] for h in recent) / len(recent):.4g}" for k in parts)
        lr = lr_at(self.step - 1, self.cfg)  # the rate of the step just taken
        self.log(f"step {self.step}/{self.cfg.steps}: {text} (mean of {len(recent)} steps), lr {lr:.3g}")

    def checkpoint(self, extra: dict[str, Any] | None = None) -> None:
        if self.rank != 0:
            return
        info = {"history": self.history[-2000:], **(extra or {})}
        save_training_state(self.out / STATE_FILE, self.model, self.ema, self.opt, self.step, info)

    def ema_model(self, factory: Callable[[], nn.Module]) -> nn.Module:
        model = factory()
        self.ema.copy_to(model)
        return model.eval()


def _average_gradients(model: nn.Module, world: int) -> None:
    """All-reduce (mean) every gradient across the data-parallel workers in one flat buffer."""
    import torch.distributed as dist

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def _bar(total: int, start: int, disable: bool = False):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="train", dynamic_ncols=True, disable=disable)


def train_vae(cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train a CausalVAE3D on shape videos; writes ``vae.safetensors`` (EMA weights) in ``out_dir``."""
    check_kind(cfg, "vae")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    vcfg = VAEConfig.from_dict(cfg.model)
    model = CausalVAE3D(vcfg).train()
    run = Run(cfg, model, log, kind=VAE_KIND)
    data = ShapeVideoDataset(cfg.seed, cfg.num_frames, cfg.height, cfg.width)
    bar = _bar(cfg.steps, run.step)
    t0 = time.time()
    while run.step < cfg.steps:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + run.step)
        video = data.items(run.step * cfg.batch_size, cfg.batch_size)["video"]
        recon, post = model(video, sample=True, generator=gen)
        loss, parts = vae_loss(recon, video, post.kl(), cfg)
        parts["loss"], parts["grad_norm"] = loss.item(), run.optimise(loss)
        run.record(parts)
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.4f}", rec=f"{parts['rec']:.4f}")
        if run.step % cfg.ckpt_every == 0 or run.step == cfg.steps:
            run.checkpoint({"wall_s": time.time() - t0})
            ema = run.ema_model(lambda: CausalVAE3D(vcfg))
            calibrated = CausalVAE3D(calibrate_latents(ema, data, cfg))
            calibrated.load_state_dict(ema.state_dict())
            save_checkpoint(
                run.out / "vae.safetensors",
                calibrated,
                calibrated.config,
                VAE_KIND,
                {"train_step": str(run.step)},
                overwrite=True,
            )
    bar.close()
    return run.out / "vae.safetensors"


@torch.no_grad()
def calibrate_latents(vae: CausalVAE3D, data: ShapeVideoDataset, cfg: TrainConfig, n: int = 128) -> VAEConfig:
    """Config with per-channel ``latent_shift``/``latent_scale`` so normalised latents have zero mean and
    unit variance over ``n`` held-apart videos (items far beyond the training stream)."""
    video = data.items(10**9, n)["video"]
    z = vae.posterior(video).mode()  # raw (un-normalised) posterior means
    mean = z.mean(dim=(0, 2, 3, 4))
    std = z.std(dim=(0, 2, 3, 4)).clamp_min(1e-4)
    return vae.config.replace(latent_shift=tuple(mean.tolist()), latent_scale=tuple((1 / std).tolist()))


def export_ema(run: Run, factory: Callable[[], nn.Module], name: str) -> Path:
    """Write the EMA weights as a plain model checkpoint (config in the metadata), replacing the old one."""
    model = run.ema_model(factory)
    return model.save(run.out / name, overwrite=True, extra_metadata={"train_step": str(run.step)})


class LatentCache:
    """VAE latents and text conditioning of the dataset items ``start .. start + n - 1``, encoded once.

    With ``world`` data-parallel workers each encodes an equal contiguous share and the shares are
    all-gathered, so every worker holds the whole cache. Text rows are padded to one length L (mask
    False beyond each caption) so batches index directly; row ``n`` is the empty prompt (the
    unconditional branch used for caption dropout). ``shapes[i]`` is item i's shape (index in ``SHAPES``).
    With ``twins`` the items' counterfactual shape twins are cached too: ``twin_latents[i]`` /
    ``twin_foreground[i]`` / ``twin_shapes[i]`` and text row ``twin_row(i)``.
    """

    def __init__(
        self,
        vae: CausalVAE3D,
        text_encoder: Any,
        data: ShapeVideoDataset,
        n: int,
        start: int = 0,
        window: int = 0,
        chunk: int = 64,
        foreground: bool = False,
        log: Callable[[str], None] = print,
        rank: int = 0,
        world: int = 1,
        twins: bool = False,
    ) -> None:
        t0 = time.time()
        share = n // world
        lo = start + rank * share
        kinds = (data.items, data.twin_items) if twins else (data.items,)
        latents, captions, masks = [[] for _ in kinds], [[] for _ in kinds], [[] for _ in kinds]
        shapes: list[list[int]] = [[] for _ in kinds]
        rows = []
        with torch.no_grad():
            for i in range(lo, lo + share, chunk):
                for k, items in enumerate(kinds):
                    batch = items(i, min(chunk, lo + share - i))
                    z = vae.encode(batch["video"])
                    latents[k].append(z)
                    captions[k].extend(batch["caption"])
                    shapes[k].extend(SHAPES.index(lab["shape"]) for lab in batch["labels"])
                    if foreground:
                        masks[k].append(latent_foreground(batch["video"], z.shape[-3:]).to(torch.uint8))
            # Every worker encodes the empty prompt; only one copy is kept. Twins' rows come after it.
            texts = captions[0] + [""] + (captions[1] if twins else [])
            for i in range(0, len(texts), chunk):
                emb, mask = text_encoder.encode(texts[i : i + chunk])
                rows.append((emb, mask, text_encoder.encode_pooled(texts[i : i + chunk])))
        length = torch.tensor(max(e.shape[1] for e, _, _ in rows))
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(length, op=dist.ReduceOp.MAX)
        length = int(length)
        emb = torch.cat([F.pad(e, (0, 0, 0, length - e.shape[1])) for e, _, _ in rows])
        mask = torch.cat([F.pad(m, (0, length - m.shape[1]), value=False) for _, m, _ in rows])
        pooled = torch.cat([p for _, _, p in rows])
        # Per kind (originals, then twins; the empty prompt's row sits between their text rows): latents,
        # text rows, object masks on the latent grid [n, 1, t, h, w] (uint8; None without weighting) and
        # shape labels (index in SHAPES).
        groups = []
        for k, rows_k in enumerate((slice(0, share), slice(share + 1, None))[: len(kinds)]):
            group = [torch.cat(latents[k]), emb[rows_k], mask[rows_k], pooled[rows_k]]
            group.append(torch.cat(masks[k]) if foreground else None)
            group.append(torch.tensor(shapes[k], dtype=torch.long))
            if world > 1:
                group = [None if t is None else _all_gather_cat(t, world) for t in group]
            groups.append(group)
        self.latents, emb_o, mask_o, pooled_o, self.foreground, self.shapes = groups[0]
        no_twins = [None, emb[:0], mask[:0], pooled[:0], None, None]
        self.twin_latents, emb_t, mask_t, pooled_t, self.twin_foreground, self.twin_shapes = (
            groups[1] if twins else no_twins
        )
        e = slice(share, share + 1)
        self.emb = torch.cat([emb_o, emb[e], emb_t])
        self.mask = torch.cat([mask_o, mask[e], mask_t])
        self.pooled = torch.cat([pooled_o, pooled[e], pooled_t])
        self.window, self.empty = window, n
        log(
            f"latent cache: {n} videos{' + their shape twins' if twins else ''} -> "
            f"{tuple(self.latents.shape)}, text length {length}, {time.time() - t0:.0f}s"
        )

    def twin_row(self, i: int) -> int:
        """Text row of item ``i``'s shape twin (the cache was built with ``twins``)."""
        if self.twin_latents is None:
            raise ValueError("this latent cache holds no shape twins (built without twins=True)")
        return self.empty + 1 + i


def _all_gather_cat(t: Tensor, world: int) -> Tensor:
    import torch.distributed as dist

    t = t.contiguous()
    out = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return torch.cat(out)


def check_kind(cfg: TrainConfig, expected: str) -> None:
    """Raise naming both kinds when a config of another kind reaches a trainer."""
    if cfg.kind != expected:
        raise ValueError(
            f"this trainer takes kind={expected!r} configs; the config has kind={cfg.kind!r} "
            f"(train it with `vidcore train {cfg.kind}`)"
        )


def train_dit(cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train a SpacetimeDiT (``kind="dit"``); see :func:`train_denoiser`. Writes ``dit.safetensors``."""
    check_kind(cfg, "dit")
    return train_denoiser(cfg, log)


def train_unet(cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train a UNet3D (``kind="unet"``); see :func:`train_denoiser`. Writes ``unet.safetensors``."""
    check_kind(cfg, "unet")
    return train_denoiser(cfg, log)


def train_denoiser(cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train the denoiser ``cfg.kind`` names with flow matching on frozen-VAE latents; writes its EMA
    weights (``dit.safetensors`` / ``unet.safetensors``) in ``out_dir``.

    With ``processes > 1`` the batch is split over that many worker processes (gloo all-reduce of the
    gradients on 127.0.0.1); the result equals a single-process run up to float summation order.
    """
    if cfg.kind not in DENOISERS:
        raise ValueError(f"kind={cfg.kind!r} is not a denoiser; denoiser kinds: {list(DENOISERS)}")
    if cfg.processes == 1:
        return _train_denoiser_worker(0, cfg, 1, log)
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_denoiser_worker_entry, args=(cfg, port, os.getpid()), nprocs=cfg.processes, join=True)
    return Path(cfg.out_dir) / DENOISERS[cfg.kind].weights


def exit_with_parent(parent: int, poll_s: float = 1.0) -> threading.Thread:
    """Exit this process as soon as ``parent`` is no longer its parent.

    Spawned data-parallel workers would otherwise keep training (and writing checkpoints) after the
    launching process was killed, e.g. by ``kill PID`` or a job scheduler.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def _denoiser_worker_entry(rank: int, cfg: TrainConfig, port: int, parent: int) -> None:
    import torch.distributed as dist

    exit_with_parent(parent)

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=cfg.processes
    )
    try:
        _train_denoiser_worker(
            rank, cfg, cfg.processes, lambda m: print(m, file=sys.stderr) if rank == 0 else None
        )
    finally:
        dist.destroy_process_group()


def _train_denoiser_worker(rank: int, cfg: TrainConfig, world: int, log: Callable[[str], None]) -> Path:
    from ..text import load_text_encoder

    spec = DENOISERS[cfg.kind]
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    dcfg = spec.config.from_dict(cfg.model)
    vae = CausalVAE3D.from_checkpoint(cfg.vae)
    text = load_text_encoder(cfg.text_encoder)
    if text.dim != dcfg.text_dim:
        raise ValueError(
            f"text encoder {cfg.text_encoder!r} has width {text.dim}, {spec.label} text_dim={dcfg.text_dim}"
        )
    if vae.config.latent_channels != dcfg.in_channels:
        raise ValueError(
            f"VAE latent_channels={vae.config.latent_channels} does not fit "
            f"{spec.label} in_channels={dcfg.in_channels}"
        )
    if cfg.shape_loss_weight > 0 and dcfg.prediction == "epsilon":
        raise ValueError(
            f"shape_loss_weight={cfg.shape_loss_weight} needs a velocity or x0 denoiser (its x̂0 is read by "
            f"the shape classifier); this {spec.label} predicts epsilon"
        )
    model = spec.model(dcfg).train()
    classifier: nn.Module | None = None
    run = Run(cfg, model, log, rank, world, kind=spec.checkpoint_kind)
    data = ShapeVideoDataset(cfg.seed, cfg.num_frames, cfg.height, cfg.width)
    # The cache window moves every `latent_cache` steps' worth of items so the model sees fresh videos.
    cache: LatentCache | None = None
    bar = _bar(cfg.steps, run.step, disable=rank != 0)
    t0 = time.time()
    _, _, lat_h, lat_w = vae.latent_shape(cfg.num_frames, cfg.height, cfg.width)
    step_px = spec.spatial_multiple(dcfg)
    levels = [
        k for k in range(1, cfg.pyramid_levels) if lat_h % (step_px << k) == 0 and lat_w % (step_px << k) == 0
    ]
    while run.step < cfg.steps:
        window = (run.step * cfg.batch_size) // (cfg.latent_cache * 8)
        if cache is None or cache.window != window:
            cache = LatentCache(
                vae,
                text,
                data,
                cfg.latent_cache,
                window * cfg.latent_cache,
                window,
                foreground=cfg.latent_fg_weight != 1.0,
                log=log,
                rank=rank,
                world=world,
                twins=cfg.shape_twins > 0,
            )
        if cfg.shape_loss_weight > 0 and classifier is None:
            classifier = shape_classifier_for(run, cache, log)
        b = draw_batch(cfg, cache, run.step, levels)
        x0, noise, sigma, emb, mask, scale = b.x0, b.noise, b.sigma, b.emb, b.mask, b.scale
        pooled = b.pooled if dcfg.pooled_text else None
        shapes, captioned = b.shapes, b.captioned
        captioned_share = float(captioned.sum()) / world  # of the whole batch, as weight_mean
        weight = weight_mean = None
        if b.foreground is not None:
            weight = foreground_weight(b.foreground.float(), x0.shape[-3:], cfg.latent_fg_weight)
            weight_mean = weight.mean()  # of the whole batch, before a worker takes its share
        if world > 1:  # every worker draws the whole batch (same RNG stream) and keeps its share
            mine = slice(rank, None, world)
            x0, noise, sigma, emb, mask = x0[mine], noise[mine], sigma[mine], emb[mine], mask[mine]
            pooled = None if pooled is None else pooled[mine]
            weight = None if weight is None else weight[mine]
            shapes, captioned = shapes[mine], captioned[mine]
        kwargs = {"rope_scale": scale} if spec.rope_scale else {}
        x_t = add_noise(x0, noise, sigma)
        pred = model(x_t, sigma, emb, mask, pooled, **kwargs)
        target = {"velocity": velocity_target(x0, noise), "epsilon": noise, "x0": x0}[dcfg.prediction]
        loss = weighted_mse(pred, target, weight, weight_mean)
        parts = {"loss": _mean_over_workers(loss.detach(), world)}
        if classifier is not None and scale[1] == 1:  # the classifier reads full-resolution latents
            x0_hat = pred if dcfg.prediction == "x0" else x0_from_velocity(x_t, sigma, pred)
            ce = shape_loss(classifier, x0_hat, shapes, captioned, captioned_share)
            parts["shape_ce"] = _mean_over_workers(ce.detach(), world)
            loss = loss + cfg.shape_loss_weight * ce
        parts["grad_norm"] = run.optimise(loss)
        parts["lowres"] = float(scale[1] > 1)
        run.record(parts)
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.4f}")
        if (run.step % cfg.ckpt_every == 0 or run.step == cfg.steps) and rank == 0:
            run.checkpoint({"wall_s": time.time() - t0})
            export_ema(run, lambda: spec.model(dcfg), spec.weights)
    bar.close()
    return run.out / spec.weights


@dataclass
class DenoiserBatch:
    """One training batch: clean latents, noise, noise levels, text rows (embeddings, mask, pooled), object
    masks on the latent grid (or None) and the RoPE scale of its resolution."""

    x0: Tensor
    noise: Tensor
    sigma: Tensor
    emb: Tensor
    mask: Tensor
    pooled: Tensor
    foreground: Tensor | None
    scale: tuple[float, float, float]
    pairs: int = 0  # the last `pairs` items are the shape twins of the first `pairs`
    shapes: Tensor | None = None  # [B] shape labels (index in SHAPES)
    captioned: Tensor | None = None  # [B] bool: the item kept its caption (not dropped for CFG)


def draw_batch(cfg: TrainConfig, cache: LatentCache, step: int, levels: Sequence[int]) -> DenoiserBatch:
    """The whole batch of ``step`` (every data-parallel worker draws the same one and keeps its share): a
    function of (seed, step) and the cache only, so resumed runs see the same batches."""
    rng = random.Random(cfg.seed * 1_000_003 + step)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    n = cfg.batch_size
    idx = [rng.randrange(cfg.latent_cache) for _ in range(n)]
    x0 = cache.latents[idx]
    rows = [cache.empty if rng.random() < cfg.caption_dropout else i for i in idx]
    fg = cache.foreground[idx] if cache.foreground is not None else None
    shapes = cache.shapes[idx]
    pairs = int(n * cfg.shape_twins) // 2
    if pairs:  # the last `pairs` items become the twins of the first ones (captions never dropped)
        if cache.twin_latents is None:
            raise ValueError(f"shape_twins={cfg.shape_twins} needs a latent cache built with twins=True")
        x0 = torch.cat([x0[: n - pairs], cache.twin_latents[idx[:pairs]]])
        rows[:pairs] = idx[:pairs]
        rows[n - pairs :] = [cache.twin_row(i) for i in idx[:pairs]]
        if fg is not None and cache.twin_foreground is not None:
            fg = torch.cat([fg[: n - pairs], cache.twin_foreground[idx[:pairs]]])
        shapes = torch.cat([shapes[: n - pairs], cache.twin_shapes[idx[:pairs]]])
    scale = (1.0, 1.0, 1.0)
    if levels and rng.random() < cfg.lowres_prob:
        level = rng.choice(list(levels))
        x0 = latent_pyramid(x0, level + 1)[0]  # bilinear /2 per level, as Pyramid Flow
        scale = (1.0, float(2**level), float(2**level))
    noise = torch.randn(x0.shape, generator=gen)
    sigma = sample_sigmas(x0.shape[0], gen, cfg.sigma_logit_mean, cfg.sigma_logit_std)
    if pairs:  # a pair shares its noise and its noise level
        noise[n - pairs :], sigma[n - pairs :] = noise[:pairs], sigma[:pairs]
    captioned = torch.tensor([r != cache.empty for r in rows])
    return DenoiserBatch(
        x0,
        noise,
        sigma,
        cache.emb[rows],
        cache.mask[rows],
        cache.pooled[rows],
        fg,
        scale,
        pairs,
        shapes,
        captioned,
    )


def shape_classifier_for(run: Run, cache: LatentCache, log: Callable[[str], None] = print) -> nn.Module:
    """The run's frozen latent shape classifier: read from ``out_dir`` when an earlier (or resumed) run
    trained it, else trained on ``cache`` (deterministic in the run's seed, so every data-parallel worker
    gets the same one) and written there by rank 0."""
    path = run.out / SHAPE_CLASSIFIER_FILE
    if path.is_file():
        log(f"shape loss: classifier from {path}")
        return LatentShapeClassifier.from_checkpoint(path).requires_grad_(False)
    model, acc = train_shape_classifier(
        cache.latents,
        cache.shapes,
        run.cfg.shape_classifier_steps,
        seed=run.cfg.seed,
        classes=len(SHAPES),
        log=log,
    )
    if run.rank == 0:
        model.save(path, extra_metadata={f"held_out_accuracy_{k}": f"{v:.4f}" for k, v in acc.items()})
    return model


def _mean_over_workers(value: Tensor, world: int) -> float:
    if world > 1:
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return value.item()

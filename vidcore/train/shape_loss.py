"""Shape loss for denoiser training (issue 14): a small latent shape classifier, trained once on the run's
own clean latents and then frozen, reads the denoiser's clean estimate x̂0 and its cross-entropy against
the caption's shape is added to the flow-matching loss.

Why: at high noise levels the MSE-optimal x̂0 is a blur over every place the object could be, and a blur is
round, so nothing in the plain loss asks the model to commit to the caption's shape where the layout of a
video is decided (measured on `tiny`: one-step x̂0 from real latents keeps the true shape 98-100 % of the
time at σ <= 0.5 but 69 % at 0.9 and 40 % at 0.95, chance 33 %). A loss that reads shape, like the
perceptual losses of consistency distillation (LPIPS in Song et al. 2023, arXiv 2303.01469), gives that
commitment a gradient. The classifier is trained with blur, amplitude and noise augmentation so that it
reads the soft x̂0 of high noise levels, not only sharp latents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigMixin, check_positive
from ..io.checkpoint import Checkpointed

KIND = "vidcore-latent-shape-classifier"


@dataclass(frozen=True)
class ShapeClassifierConfig(ConfigMixin):
    """Latent channels in, conv width, number of shape classes."""

    channels: int = 8
    width: int = 32
    classes: int = 3

    def __post_init__(self) -> None:
        for name in ("channels", "width", "classes"):
            check_positive(f"ShapeClassifierConfig.{name}", getattr(self, name))


class LatentShapeClassifier(Checkpointed, nn.Module):
    """Shape logits of a latent video ``[B, C, t, h, w]`` -> ``[B, classes]``: three 3x3 convs per latent
    frame (the last two stride 2), a spatial max over positions (the object may be anywhere), then the mean
    over frames and a linear head."""

    KIND = KIND
    CONFIG_CLASS = ShapeClassifierConfig

    def __init__(self, config: ShapeClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ShapeClassifierConfig()
        self.convs = nn.Sequential(
            nn.Conv2d(c.channels, c.width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(c.width, 2 * c.width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * c.width, 2 * c.width, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        self.head = nn.Linear(2 * c.width, c.classes)

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != 5 or z.shape[1] != self.config.channels:
            raise ValueError(
                f"latent video of shape {tuple(z.shape)}: expected [B, {self.config.channels}, t, h, w]"
            )
        b, c, t, h, w = z.shape
        frames = z.transpose(1, 2).reshape(b * t, c, h, w)
        feats = self.convs(frames).amax(dim=(-2, -1)).view(b, t, -1).mean(dim=1)
        return self.head(feats)


def augment(z: Tensor, gen: torch.Generator) -> Tensor:
    """What x̂0 looks like at high noise levels: a random share of the batch blurred (3x3 box, once or
    twice), every item's amplitude scaled by U(0.4, 1) (x̂0 shrinks towards the mean) and Gaussian noise of
    standard deviation U(0, 0.4) added."""
    b = z.shape[0]
    out = z
    for _ in range(2):
        blur = F.avg_pool3d(out, (1, 3, 3), stride=1, padding=(0, 1, 1), count_include_pad=False)
        pick = (torch.rand(b, generator=gen) < 0.4).view(b, 1, 1, 1, 1)
        out = torch.where(pick, blur, out)
    amp = 0.4 + 0.6 * torch.rand(b, 1, 1, 1, 1, generator=gen)
    std = 0.4 * torch.rand(b, 1, 1, 1, 1, generator=gen)
    return out * amp + std * torch.randn(out.shape, generator=gen)


def train_shape_classifier(
    latents: Tensor,
    shapes: Tensor,
    steps: int = 600,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    classes: int = 3,
    log: Callable[[str], None] = print,
) -> tuple[LatentShapeClassifier, dict[str, float]]:
    """Train a classifier on ``latents`` [N, C, t, h, w] with labels ``shapes`` [N] (0 .. classes-1) with
    :func:`augment`; the last eighth of the items is held out. Returns the frozen model (eval mode) and
    its held-out accuracies on clean and on augmented latents."""
    if latents.ndim != 5 or shapes.shape != latents.shape[:1]:
        raise ValueError(
            f"latents {tuple(latents.shape)} and shapes {tuple(shapes.shape)}: "
            "expected [N, C, t, h, w] and [N]"
        )
    n = latents.shape[0]
    held = max(1, n // 8)
    if n - held < 2:
        raise ValueError(f"{n} latent videos are too few to train a shape classifier (need >= 3)")
    if shapes.min() < 0 or shapes.max() >= classes:
        raise ValueError(f"shape labels must be in 0..{classes - 1}, got {shapes.min()}..{shapes.max()}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = LatentShapeClassifier(ShapeClassifierConfig(channels=latents.shape[1], classes=classes))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    train_z, train_y = latents[: n - held], shapes[: n - held]
    for step in range(steps):
        for group in opt.param_groups:  # cosine decay to 0
            group["lr"] = lr * 0.5 * (1 + torch.cos(torch.tensor(step / steps * torch.pi)).item())
        idx = torch.randint(0, n - held, (min(batch_size, n - held),), generator=gen)
        loss = F.cross_entropy(model(augment(train_z[idx], gen)), train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    with torch.no_grad():
        z, y = latents[n - held :], shapes[n - held :]
        acc = {
            "clean": (model(z).argmax(-1) == y).float().mean().item(),
            "augmented": (model(augment(z, gen)).argmax(-1) == y).float().mean().item(),
        }
    log(
        f"latent shape classifier: {steps} steps on {n - held} videos; held-out accuracy "
        f"{100 * acc['clean']:.1f} % clean, {100 * acc['augmented']:.1f} % augmented ({held} videos)"
    )
    return model, acc


def shape_loss(classifier: nn.Module, x0_hat: Tensor, shapes: Tensor, keep: Tensor, norm: float) -> Tensor:
    """Sum of the classifier's cross-entropy on the items ``keep`` marks, divided by ``norm`` (the number of
    kept items in the whole batch, so data-parallel shares add up to one process's mean)."""
    ce = F.cross_entropy(classifier(x0_hat), shapes, reduction="none")
    return (ce * keep.to(ce.dtype)).sum() / max(norm, 1.0)

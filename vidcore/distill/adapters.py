"""Velocity callables ``fn(x, t) -> v`` (conditioning bound) over the network of each family.

Distillation trains at arbitrary times (the sCM time proposal, its ± h finite differences, rCM's student
times), so these call the networks at any ``t`` in [0, 1]:

- SpacetimeDiT: :func:`vidcore.pipelines.builtin.prediction_denoiser` (any prediction type -> velocity);
- LTX-Video: :class:`vidcore.pipelines.ltx.LTXDenoiser` (timestep = 1000·t, already continuous);
- Wan: the transformer directly with timestep ``1000·t``. The pipeline's ``WanDenoiser`` looks each sigma
  up on its UniPC grid, which only holds the sampler's own times; Wan's time shift lives in that schedule,
  not in the network, so the continuous ``1000·t`` is the network's own input (as rCM's RF wrapper feeds
  Wan ``t_rf·1000``, NVlabs/rcm rcm/utils/denoiser_scaling.py). Text-to-video experts only.
"""

from __future__ import annotations

from torch import Tensor, nn

from .objectives import Velocity

# diffusers' LTXPipeline defaults: 25 fps, VAE temporal ratio 8 and spatial ratio 32.
LTX_ROPE_SCALE = (8 / 25, 32.0, 32.0)


def velocity_fn(
    network: nn.Module,
    context: Tensor,
    context_mask: Tensor | None = None,
    pooled: Tensor | None = None,
    rope_scale: tuple[float, float, float] | None = None,
) -> Velocity:
    """``fn(x [B, C, T, H, W], t [B]) -> velocity`` (float32) of ``network`` with this text conditioning.

    ``rope_scale`` is LTX's (seconds per latent frame, pixels per latent row/column); others ignore it.
    """
    from ..models.dit import SpacetimeDiT
    from ..models.ltx.transformer import LTXVideoTransformer
    from ..models.wan.transformer import WanTransformer

    if isinstance(network, SpacetimeDiT):
        from ..pipelines.builtin import prediction_denoiser

        den = prediction_denoiser(network)
        extra = {"context": context, "context_mask": context_mask}
        if network.config.pooled_text:
            extra["pooled"] = pooled

        def dit(x: Tensor, t: Tensor) -> Tensor:
            return den(x, t, **extra)

        return dit
    if isinstance(network, LTXVideoTransformer):
        from ..pipelines.ltx import LTXDenoiser

        if context_mask is None:
            context_mask = context.new_ones(context.shape[:2], dtype=bool)  # type: ignore[call-overload]
        ltx = LTXDenoiser(network, LTX_ROPE_SCALE if rope_scale is None else rope_scale)
        return lambda x, t: ltx(x, t, context, context_mask)
    if isinstance(network, WanTransformer):
        if network.config.in_channels != network.config.out_channels:
            raise ValueError(
                "distillation runs on Wan text-to-video transformers; this one takes "
                f"{network.config.in_channels} input channels for {network.config.out_channels} output "
                "channels (image conditioning)"
            )
        dtype = next(network.parameters()).dtype
        ctx = context if context_mask is None else context * context_mask[..., None].to(context.dtype)

        def wan(x: Tensor, t: Tensor) -> Tensor:
            return network(x.to(dtype), t.float() * 1000, ctx.to(dtype)).to(x.dtype)

        return wan
    raise TypeError(
        f"no velocity adapter for {type(network).__name__}: distillation supports SpacetimeDiT, "
        "LTXVideoTransformer and WanTransformer"
    )

"""Pipelines: one contract (:mod:`.base`), the family registry (:mod:`.registry`) and one module per model
family, registered in order.

``load_pipeline(name_or_path)`` asks each registered family whether a path is theirs; a new family is a
new module here (plus its models in ``vidcore.models``) and one :func:`register_family` call.
"""

from . import builtin, ltx, unet, wan_loading
from .base import (
    Capabilities,
    ImageConditioning,
    Pipeline,
    Prepared,
    SamplingOptions,
    TextConditioning,
    check_seed,
    needs_uncond,
)
from .registry import (
    Family,
    Parts,
    builtin_models,
    families,
    family_of,
    load_pipeline,
    register_family,
    resolve_model,
    unregister_family,
)

register_family(builtin.FAMILY)
register_family(ltx.FAMILY)
register_family(wan_loading.FAMILY)
register_family(unet.FAMILY)

__all__ = [
    "Capabilities",
    "Family",
    "Parts",
    "ImageConditioning",
    "Pipeline",
    "Prepared",
    "SamplingOptions",
    "TextConditioning",
    "builtin_models",
    "check_seed",
    "families",
    "family_of",
    "load_pipeline",
    "needs_uncond",
    "register_family",
    "resolve_model",
    "unregister_family",
]

"""VidCore ComfyUI nodes (V1 style). Import our modules relatively: ComfyUI has its own top-level `nodes`."""

from . import _host
from .analysis import VidCoreFlowWarpLoss, VidCoreOpticalFlow, VidCoreVideoMetrics
from .caption import VidCoreCaptionToPrompt, VidCoreCaptionVideo
from .latent import VidCoreEmptyVideoLatent, VidCoreTextEncode, VidCoreVAEDecode, VidCoreVAEEncode
from .loaders import VidCoreLoadCaptioner, VidCoreLoadModel, VidCoreLoadTextEncoder, VidCoreLoadVAE
from .sampling import VidCorePyramidalSampler, VidCoreSampler
from .video_io import VidCoreLoadVideo, VidCoreSaveVideo

_host.register_model_folders()
_host.install_example_inputs_in_comfyui()  # the example workflows' clip, never replacing a file

_NODES = {
    VidCoreLoadModel: "VidCore Load Model",
    VidCoreLoadVAE: "VidCore Load VAE",
    VidCoreLoadTextEncoder: "VidCore Load Text Encoder",
    VidCoreLoadCaptioner: "VidCore Load Captioner (SmolVLM2)",
    VidCoreTextEncode: "VidCore Text Encode",
    VidCoreEmptyVideoLatent: "VidCore Empty Video Latent",
    VidCoreVAEEncode: "VidCore VAE Encode",
    VidCoreVAEDecode: "VidCore VAE Decode",
    VidCoreSampler: "VidCore Sampler",
    VidCorePyramidalSampler: "VidCore Pyramidal Sampler",
    VidCoreLoadVideo: "VidCore Load Video",
    VidCoreSaveVideo: "VidCore Save Video",
    VidCoreCaptionVideo: "VidCore Caption Video",
    VidCoreCaptionToPrompt: "VidCore Caption -> Prompt",
    VidCoreOpticalFlow: "VidCore Optical Flow",
    VidCoreFlowWarpLoss: "VidCore Flow Warp Loss",
    VidCoreVideoMetrics: "VidCore Video Metrics",
}

NODE_CLASS_MAPPINGS: dict[str, type] = {cls.__name__: cls for cls in _NODES}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {cls.__name__: name for cls, name in _NODES.items()}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

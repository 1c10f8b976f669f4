"""VidCore ComfyUI nodes (V1 style). Import our modules relatively: ComfyUI has its own top-level `nodes`."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

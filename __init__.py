"""ComfyUI entry point of the VidCore node pack. The library (`vidcore/`) never imports ComfyUI."""

# pytest imports this file as a plain module when the checkout folder is not a Python identifier; only
# ComfyUI imports it as a package, so everything is guarded (see ../shared packaging facts).
if __package__:
    import importlib.util
    import logging
    import os
    import sys

    _here = os.path.dirname(os.path.abspath(__file__))
    _lib = os.path.join(_here, "vidcore")
    if "vidcore" not in sys.modules:
        try:
            import vidcore as _installed  # a pip-installed copy (editable installs point here too)
        except ImportError:
            _spec = importlib.util.spec_from_file_location(
                "vidcore", os.path.join(_lib, "__init__.py"), submodule_search_locations=[_lib]
            )
            _mod = importlib.util.module_from_spec(_spec)
            sys.modules["vidcore"] = _mod
            _spec.loader.exec_module(_mod)
        else:
            if os.path.dirname(os.path.abspath(_installed.__file__)) != _lib:
                logging.getLogger("vidcore").warning(
                    "VidCore: using the vidcore library installed at %s, not the copy in %s",
                    _installed.__file__,
                    _lib,
                )

    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F401
else:  # imported by pytest as a plain module: expose the same names without relative imports
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}

WEB_DIRECTORY = "./web"
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

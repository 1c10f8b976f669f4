import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_importing_vidcore_loads_no_comfyui_module():
    code = (
        "import sys, vidcore, vidcore.models.dit, vidcore.ops.attention, vidcore.io.checkpoint\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths',"
        " 'comfy_extras', 'nodes', 'server'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_root_init_loads_as_comfyui_package_whatever_the_folder_name():
    spec = importlib.util.spec_from_file_location(
        "ComfyUI_VidCore_test_pkg", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    assert module.WEB_DIRECTORY == "./web"
    assert isinstance(module.NODE_CLASS_MAPPINGS, dict)
    for name, cls in module.NODE_CLASS_MAPPINGS.items():
        assert name.startswith("VidCore") and cls.CATEGORY.startswith("VidCore")


def test_config_round_trip_and_unknown_keys():
    from vidcore.models.dit import DiTConfig

    cfg = DiTConfig(width=32, heads=4, layout="factorized")
    assert DiTConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(TypeError, match="expects a dict"):
        DiTConfig.from_dict([1, 2])

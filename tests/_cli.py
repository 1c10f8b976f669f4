"""Running ``vidcore generate`` as a subprocess from the repository root, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def generate_cmd(prompt: str, out: Path, *options: str) -> list[str]:
    """The command line ``vidcore generate PROMPT -o OUT OPTIONS...`` (output path at index 6)."""
    return [sys.executable, "-m", "vidcore.cli", "generate", prompt, "-o", str(out), *options]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def read_written(res: subprocess.CompletedProcess, out: Path) -> tuple[torch.Tensor, float]:
    """Check the command succeeded and printed the written path; read the video back."""
    from vidcore.io.video import read_video

    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out) and out.stat().st_size > 0
    return read_video(out)

"""First run in ComfyUI: the shipped example clip (and its copy into the input folder, never replacing a
file), Load Video's upload button and default, and node errors that say which folder to put weights in."""

import importlib.util
import logging

import pytest
import torch

from nodes import _host
from nodes.loaders import VidCoreLoadCaptioner, VidCoreLoadModel
from nodes.video_io import VidCoreLoadVideo
from vidcore.data import EXAMPLE_FPS, EXAMPLE_VIDEO, example_frames
from vidcore.io.video import read_video

from ._cli import ROOT

torch.set_num_threads(1)


def _make_workflows():
    spec = importlib.util.spec_from_file_location(
        "_vidcore_mw_first_run", ROOT / "workflows" / "make_workflows.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def folders(tmp_path):
    inp = tmp_path / "input"
    _host.set_folders(models={"LLM": [tmp_path / "LLM"], "text_encoders": [tmp_path / "te"]}, input_dir=inp)
    yield inp
    _host.set_folders(models={})


def test_the_shipped_clip_is_small_and_is_the_renderers_clip():
    assert EXAMPLE_VIDEO.is_file() and EXAMPLE_VIDEO.stat().st_size < 100_000
    frames, fps = read_video(EXAMPLE_VIDEO)
    assert frames.shape == (25, 64, 64, 3) and fps == EXAMPLE_FPS
    # H.264 is lossy (4:2:0 chroma): close on average, not exact
    assert float((frames - example_frames()).abs().mean()) < 0.03


def test_example_inputs_are_copied_once_and_never_replace_a_file(folders):
    written = _host.install_example_inputs()
    assert written == [folders / EXAMPLE_VIDEO.name]
    assert written[0].read_bytes() == EXAMPLE_VIDEO.read_bytes()
    assert _host.install_example_inputs() == []  # already there
    mine = folders / EXAMPLE_VIDEO.name
    mine.write_bytes(b"the user's own file")
    assert _host.install_example_inputs() == [] and mine.read_bytes() == b"the user's own file"
    assert not [p.name for p in folders.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_a_failed_copy_is_logged_not_raised(tmp_path, caplog):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="vidcore"):
        assert _host.install_example_inputs(blocker / "input") == []
    assert "could not copy the example" in caplog.text


def test_outside_comfyui_nothing_is_copied_at_import(folders):
    assert _host.install_example_inputs_in_comfyui() == []
    assert not folders.exists()


def test_load_video_has_the_upload_button_and_the_example_as_default(folders):
    kind, opts = VidCoreLoadVideo.INPUT_TYPES()["required"]["video"]
    assert opts["video_upload"] is True and "default" not in opts and kind == []
    _host.install_example_inputs()
    kind, opts = VidCoreLoadVideo.INPUT_TYPES()["required"]["video"]
    assert kind == [EXAMPLE_VIDEO.name] and opts["default"] == EXAMPLE_VIDEO.name
    frames, fps, count = VidCoreLoadVideo().load(EXAMPLE_VIDEO.name, 0, 1, 0)
    assert count == 25 and fps == EXAMPLE_FPS
    # the UI files get the frontend's upload widget after the required inputs (its saved value "image")
    mw = _make_workflows()
    assert list(mw.frontend_inputs(VidCoreLoadVideo.INPUT_TYPES()))[-1] == "upload"
    refusal = VidCoreLoadVideo.VALIDATE_INPUTS("missing.mp4")
    assert refusal.endswith("upload one with the node's upload button or copy it into that folder")


def test_missing_captioner_says_where_to_put_it(folders):
    message = VidCoreLoadCaptioner.VALIDATE_INPUTS("SmolVLM2-256M-Video-Instruct")
    assert isinstance(message, str)
    assert "put a SmolVLM2 folder (e.g. SmolVLM2-256M-Video-Instruct" in message
    assert (
        "models/LLM/" in message
        and str(folders.parent / "LLM") in message
        and "found: ['(nothing)']" in message
    )
    with pytest.raises(ValueError, match="models/LLM/"):
        VidCoreLoadCaptioner().load("SmolVLM2-256M-Video-Instruct", "auto")


def test_missing_ltx_or_wan_weights_say_where_to_put_them(folders):
    message = VidCoreLoadModel.VALIDATE_INPUTS("Wan2.1-T2V-1.3B-Diffusers")
    assert isinstance(message, str) and message.startswith(
        "model_name='Wan2.1-T2V-1.3B-Diffusers' was not found"
    )
    for fragment in ("LTX-Video:", "models/checkpoints/", "Wan:", "models/diffusers/", "found: ['tiny'"):
        assert fragment in message, fragment
    te = VidCoreLoadModel.VALIDATE_INPUTS("tiny", text_encoder_name="t5-v1_1-xxl")
    assert (
        "text_encoder_name='t5-v1_1-xxl' was not found: put a T5-v1.1-XXL" in te
        and "models/text_encoders/" in te
    )
    assert "models/vae/" in VidCoreLoadModel.VALIDATE_INPUTS("tiny", vae_name="wan_2.1_vae.safetensors")
    assert "models/clip_vision/" in VidCoreLoadModel.VALIDATE_INPUTS(
        "tiny", clip_vision_name="clip.safetensors"
    )
    assert VidCoreLoadModel.VALIDATE_INPUTS("tiny", "auto", "auto", "auto") is True
    with pytest.raises(ValueError, match="models/diffusers/"):
        VidCoreLoadModel().load("Wan2.1-T2V-1.3B-Diffusers", "auto")


def test_the_clip_is_packaged():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"data/*.mp4"' in text and EXAMPLE_VIDEO.parent.name == "data"

"""`vidcore convert`: .pth -> safetensors with weights_only loading, container unwrapping, atomic writes."""

import argparse
import collections
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from vidcore.io.convert import add_convert_arguments, convert_checkpoint, main, run_convert

torch.set_num_threads(1)


class Custom:
    """Not a tensor or plain container: weights_only loading must refuse it."""

    def __init__(self):
        self.w = torch.ones(2)


def _state():
    g = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "conv.bias": torch.zeros(4),
        "norm.scale": torch.randn(4, generator=g).to(torch.bfloat16),
        "steps": torch.tensor([7], dtype=torch.int64),
    }


def _files(folder):
    return sorted(os.listdir(folder))


def test_convert_flat_state_dict(tmp_path):
    state = _state()
    src, dst = tmp_path / "model.pth", tmp_path / "model.safetensors"
    torch.save(state, src)
    summary = convert_checkpoint(src, dst)
    loaded = load_file(dst)
    assert loaded.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype
    assert summary["tensors"] == 4 and summary["container"] is None and summary["cloned"] == []
    assert summary["dtypes"] == {"float32": 2, "bfloat16": 1, "int64": 1}
    assert summary["bytes"] == (108 + 4) * 4 + 4 * 2 + 8
    assert summary["path"] == str(dst)
    with safe_open(str(dst), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "vidcore_converted_from": "model.pth"}
    assert _files(tmp_path) == ["model.pth", "model.safetensors"]  # no temporary file left
    assert dst.stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("container", ["state_dict", "model", "module", "ema"])
def test_convert_unwraps_a_nested_state_dict_and_says_which(tmp_path, container):
    src, dst = tmp_path / "run.ckpt", tmp_path / "out.safetensors"
    torch.save({"epoch": 3, container: collections.OrderedDict(_state()), "lr": 0.1}, src)
    summary = convert_checkpoint(src, dst)
    assert summary["container"] == container and summary["tensors"] == 4
    assert torch.equal(load_file(dst)["conv.weight"], _state()["conv.weight"])
    with safe_open(str(dst), framework="pt") as f:
        assert f.metadata()["vidcore_container"] == container


def test_convert_ambiguous_containers_need_a_key(tmp_path):
    src, dst = tmp_path / "both.pt", tmp_path / "out.safetensors"
    ema = {k: v + 1 for k, v in _state().items()}
    torch.save({"model": _state(), "ema": ema}, src)
    with pytest.raises(ValueError, match=r"several state dicts, under \['model', 'ema'\]; choose one"):
        convert_checkpoint(src, dst)
    assert not dst.exists()
    assert convert_checkpoint(src, dst, key="ema")["container"] == "ema"
    assert torch.equal(load_file(dst)["conv.bias"], torch.ones(4))
    with pytest.raises(ValueError, match=r"key='missing' is not in the checkpoint"):
        convert_checkpoint(src, tmp_path / "x.safetensors", key="missing")


def test_convert_clones_shared_storage(tmp_path):
    base = torch.arange(12.0)
    # tied weights (one tensor under two names) and two views of one storage
    state = {"embed.weight": base.view(3, 4), "head.weight": base.view(3, 4), "a": base[:6], "b": base[6:]}
    src, dst = tmp_path / "tied.bin", tmp_path / "tied.safetensors"
    torch.save(state, src)
    summary = convert_checkpoint(src, dst)
    assert summary["cloned"] == ["head.weight", "a", "b"]
    loaded = load_file(dst)
    for k, v in state.items():
        assert torch.equal(loaded[k], v)
    assert summary["bytes"] == (12 + 12 + 6 + 6) * 4


def test_convert_refuses_pickled_objects_and_writes_nothing(tmp_path):
    src, dst = tmp_path / "evil.pth", tmp_path / "out.safetensors"
    torch.save({"weight": torch.ones(2), "obj": Custom()}, src)
    with pytest.raises(ValueError, match=r"Custom.*nothing was written") as err:
        convert_checkpoint(src, dst)
    assert "weights_only=True" in str(err.value) and "test_convert.Custom" in str(err.value)
    assert _files(tmp_path) == ["evil.pth"]
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint" * 4)
    with pytest.raises(ValueError, match="cannot read .*damaged.pt.*nothing was written"):
        convert_checkpoint(damaged, dst)
    assert _files(tmp_path) == ["damaged.pt", "evil.pth"]


def test_convert_refuses_what_is_not_a_flat_tensor_mapping(tmp_path):
    dst = tmp_path / "out.safetensors"
    cases = [
        ({"weight": torch.ones(2), "step": 3}, r"a mapping \{'weight': Tensor, 'step': int\}"),
        ([torch.ones(2)], "the checkpoint is a list"),
        ({}, "an empty mapping"),
        ({"model": {"weight": torch.ones(2), "config": {"dim": 2}}}, r"a mapping \{'model': dict\}"),
        ({1: torch.ones(2)}, r"a mapping \{1: Tensor\}"),
    ]
    for i, (obj, message) in enumerate(cases):
        src = tmp_path / f"case{i}.pth"
        torch.save(obj, src)
        with pytest.raises(ValueError, match=message):
            convert_checkpoint(src, dst)
    assert not dst.exists()
    sparse = tmp_path / "sparse.pth"
    torch.save({"s": torch.eye(3).to_sparse()}, sparse)
    with pytest.raises(ValueError, match=r"tensors \['s'\] are not dense"):
        convert_checkpoint(sparse, dst)
    assert not dst.exists()


def test_convert_paths_and_overwrite(tmp_path):
    src, dst = tmp_path / "m.pth", tmp_path / "m.safetensors"
    torch.save(_state(), src)
    dst.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        convert_checkpoint(src, dst)
    assert dst.read_bytes() == b"keep me"
    convert_checkpoint(src, dst, overwrite=True)
    assert load_file(dst).keys() == _state().keys()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_checkpoint(tmp_path / "absent.pth", tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match=r"must end in one of \['.pth', '.pt', '.ckpt', '.bin'\]"):
        convert_checkpoint(dst, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match=r"must end in one of \['.safetensors', '.sft'\]"):
        convert_checkpoint(src, tmp_path / "x.pth")
    with pytest.raises(FileNotFoundError, match="output folder"):
        convert_checkpoint(src, tmp_path / "no" / "x.safetensors")
    (tmp_path / "folder.safetensors").mkdir()
    with pytest.raises(ValueError, match="is not a regular file"):
        convert_checkpoint(src, tmp_path / "folder.safetensors", overwrite=True)


def test_convert_cli_prints_what_it_wrote(tmp_path, capsys):
    src, dst = tmp_path / "m.ckpt", tmp_path / "m.safetensors"
    torch.save({"state_dict": _state(), "epoch": 1}, src)
    assert main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"wrote 4 tensors (464 B; float32 2, bfloat16 1, int64 1) from {src}['state_dict']")
    assert out[-1] == str(dst)
    parser = add_convert_arguments(argparse.ArgumentParser())
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        run_convert(parser.parse_args([str(src), str(dst)]))
    assert run_convert(parser.parse_args([str(src), str(dst), "--overwrite", "--key", "state_dict"])) == 0


def test_vidcore_convert_subcommand(tmp_path, capsys):
    from vidcore.cli import main

    src = tmp_path / "w.pth"
    torch.save({"state_dict": {"a": torch.ones(2)}}, src)
    assert main(["convert", str(src), str(tmp_path / "w.safetensors")]) == 0
    assert "wrote 1 tensor" in capsys.readouterr().out
    assert main(["convert", str(src), str(tmp_path / "w.safetensors")]) == 2  # never overwrites unasked
    assert "--overwrite" in capsys.readouterr().err

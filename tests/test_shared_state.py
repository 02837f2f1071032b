"""No process-wide state left changed: global switches restored, no environment variables set by
importing our modules."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from cyclegan.core.devices import cudnn_benchmark, pick_device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cudnn_benchmark_is_restored():
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        with cudnn_benchmark(torch.device("cuda")):
            assert torch.backends.cudnn.benchmark
        assert torch.backends.cudnn.benchmark is False
        with cudnn_benchmark(torch.device("cpu")):
            assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before


def test_importing_the_training_pipeline_sets_no_environment_variable():
    code = ("import os; before = dict(os.environ); import cyclegan.data.transforms, cyclegan.training.loop; "
            "import cyclegan.app.actions; print(sorted({k for k, _ in set(os.environ.items()) ^ set(before.items())}))")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    env["PYTHONPATH"] = ROOT
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # OpenCV's own loader (imported by albumentations) extends LD_LIBRARY_PATH: not ours to change
    assert eval(out.stdout) in ([], ["LD_LIBRARY_PATH"])


def test_one_device_picker_takes_names_and_devices():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")


def test_one_compile_error_rule():
    from torch._dynamo.exc import BackendCompilerFailed, TorchRuntimeError

    from cyclegan.core.fastpath import describe_error, is_compile_error

    class Wrapped(TorchRuntimeError):  # defined outside torch: the class hierarchy decides, not the module
        pass

    assert is_compile_error(TorchRuntimeError("x")) and is_compile_error(Wrapped("x"))
    assert BackendCompilerFailed.__module__.startswith("torch._dynamo")
    assert not is_compile_error(RuntimeError("CUDA out of memory")) and not is_compile_error(ValueError())
    assert describe_error(ValueError("a\nb " + "c" * 400)).startswith("ValueError: a b c")
    assert describe_error(ValueError("c" * 400)).endswith("...")


def test_json_files_are_written_atomically(tmp_path):
    from cyclegan.core.checkpoint import write_json

    path = write_json(tmp_path / "r.json", {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n'
    try:
        write_json(path, {"bad": object()})  # fails while serialising: the old file stays whole
    except TypeError:
        pass
    assert path.read_text() == '{\n  "a": 1\n}\n' and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_int_between_is_the_range_type_of_translate_and_app():
    import argparse

    import pytest

    from cyclegan.app.settings import _port
    from cyclegan.cli.translate import _quality

    assert _quality("95") == 95 and _port("7860") == 7860
    for parse, bad in ((_quality, "0"), (_quality, "101"), (_port, "0"), (_port, "65536")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"got {bad}"):
            parse(bad)

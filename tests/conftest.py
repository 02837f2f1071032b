"""Suite-wide settings.

Tests run tiny networks on a small shared CPU. There torch's default of one thread per core is a
trap: when another process holds a core, every multi-threaded op waits for it (measured on the
2-core CI machine: a tiny CycleGAN step took 2.7 s with 2 threads and 0.09 s with 1). So the test
process and every subprocess it starts use one thread.
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the `python -m cyclegan ...` subprocesses

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skips = []
    if not config.getoption("--runslow"):
        skips.append(("slow", pytest.mark.skip(reason="slow: run with --runslow")))
    if not torch.cuda.is_available():
        skips.append(("gpu", pytest.mark.skip(reason="needs a CUDA device")))
    for item in items:
        for keyword, mark in skips:
            if keyword in item.keywords:
                item.add_marker(mark)


@pytest.fixture
def cpu_with(monkeypatch):
    """cpu_with("GenuineIntel avx512_bf16 amx_bf16"): the fast path sees that CPU (CYCLEGAN_CPU_FLAGS)
    for the rest of the test; the cached answer is forgotten before and after."""
    from cyclegan.core import fastpath

    def set_flags(flags: str) -> None:
        monkeypatch.setenv("CYCLEGAN_CPU_FLAGS", flags)
        fastpath.cpu_info.cache_clear()
    yield set_flags
    fastpath.cpu_info.cache_clear()

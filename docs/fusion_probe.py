"""Which kernels inductor makes of one ResNet block (``--compile``), forward and backward: does it
fuse instance norm + ReLU + the next reflection pad into one pass, as issue 15 part 4 asks?

    python docs/fusion_probe.py [--device cuda] [--channels 256] [--size 64] [--precision bf16]

Prints each generated kernel's name (inductor names a kernel after the operations fused into it:
``cpp_fused_...`` on the CPU, ``triton_{poi,red,per}_fused_...`` on CUDA) and the convolutions
left to cuDNN/oneDNN (extern calls). A measuring tool, not part of the package.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch
from torch._inductor.utils import run_and_get_code

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cyclegan.models.generators import ResnetBlock  # noqa: E402


def kernels(code: str) -> tuple[list[str], int]:
    """The generated kernels in the order they are defined, and how many convolutions (forward or
    backward) are left to the convolution library."""
    names = re.findall(r"\b((?:cpp|triton_\w{3})_fused_\w+?)(?:\s*=|\()", code)
    convs = re.findall(r"= (?:extern_kernels\.convolution|torch\.ops\.aten\.convolution_backward\.default)\(", code)
    return list(dict.fromkeys(names)), len(convs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    block = ResnetBlock(args.channels).to(args.device)
    x = torch.randn(args.batch_size, args.channels, args.size, args.size, device=args.device, requires_grad=True)
    dtype = torch.bfloat16 if args.precision == "bf16" else None

    def step(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(torch.device(args.device).type, dtype=dtype, enabled=dtype is not None):
            return block(x).float().square().mean()

    compiled = torch.compile(step)
    _, codes = run_and_get_code(lambda: compiled(x).backward())
    for which, code in zip(("forward", "backward"), codes):
        generated, convs = kernels(code)
        print(f"{which}: {len(generated)} generated kernels, {convs} convolutions by the library")
        for name in generated:
            print(f"  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

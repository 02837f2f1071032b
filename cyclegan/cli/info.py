"""``cyclegan info``: this machine as the project sees it (versions, device, the CPU features that
decide) and what ``--precision auto`` / ``--compile auto`` resolve to here, without starting a
run. ``CYCLEGAN_CPU_FLAGS`` makes it answer for another CPU; ``--json`` is for bug reports."""

from __future__ import annotations

import argparse
import json
import os
import platform

import torch

from cyclegan import __version__
from cyclegan.core import fastpath
from cyclegan.core.devices import pick_device
from cyclegan.core.install import import_torchvision

__all__ = ["add_info_command", "machine_report"]

#: the CPU flags that the fast path or the kernels depend on, shown by name when present
DECIDING_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
#: env variables that change the answer or the kernels, shown when set
SETTINGS_ENV = (*fastpath.KERNEL_ENV, "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
#: (label, task, static shapes, crop side): the cases whose default differs between machines
CASES = (("train, 256 px crops (the default size)", "train", True, 256),
         (f"train, {fastpath.CPU_COMPILE_MIN_SIDE} px crops", "train", True, fastpath.CPU_COMPILE_MIN_SIDE),
         ("train, 64 px crops", "train", True, 64),
         ("train, --preprocess none (sizes vary)", "train", False, None),
         ("translate", "translate", False, None))


def machine_report(device_name: str = "auto") -> dict:
    torchvision = import_torchvision()

    device = pick_device(device_name)
    cpu = fastpath.cpu_info()
    report: dict = {
        "cyclegan": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
        "cpu": {"vendor": cpu.vendor, "deciding_flags": [f for f in DECIDING_FLAGS if f in cpu.flags],
                "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                "aten_capability": torch.backends.cpu.get_cpu_capability()},
        "env": {k: os.environ[k] for k in SETTINGS_ENV if os.environ.get(k)},
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        report["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                         "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
                         "bf16": torch.cuda.is_bf16_supported()}
    report["fast_path"] = []
    for label, task, static, side in CASES:
        got = fastpath.choose(device, task, static_shapes=static, image_side=side)
        report["fast_path"].append({"case": label, "path": got.describe(), **got.as_dict()})
    return report


def _print(report: dict) -> None:
    cpu = report["cpu"]
    print(f"cyclegan {report['cyclegan']} · torch {report['torch']} · torchvision {report['torchvision']} · "
          f"Python {report['python']}")
    print(f"device: {report['device']}")
    if "gpu" in report:
        g = report["gpu"]
        print(f"  GPU: {g['name']} (compute {g['capability']}, {g['memory_gib']} GiB, CUDA {g['cuda']}, "
              f"bf16 {'yes' if g['bf16'] else 'no'})")
    print(f"  CPU: {cpu['vendor'] or 'vendor unknown'}, {cpu['cores']} cores, torch uses {cpu['torch_threads']} "
          f"threads, kernels for {cpu['aten_capability']}; flags that decide: "
          f"{' '.join(cpu['deciding_flags']) or 'none'}")
    for key, value in report["env"].items():
        print(f"  {key}={value}")
    print("fast path by default (--precision auto, --compile auto):")
    # Each reason once: the cases that share one point at it by number.
    width = max(len(row["case"]) for row in report["fast_path"])
    path_width = max(len(row["path"]) for row in report["fast_path"])
    reasons = list(dict.fromkeys(row["why"] for row in report["fast_path"]))
    for row in report["fast_path"]:
        print(f"  {row['case']:<{width}}  {row['path']:<{path_width}}  [{reasons.index(row['why']) + 1}]")
    for i, why in enumerate(reasons, 1):
        print(f"  [{i}] {why}")
    print("--precision fp32 --no-compile is the reference arithmetic on every machine.")


def _cmd_info(args: argparse.Namespace) -> int:
    report = machine_report(args.device)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0


def add_info_command(sub) -> None:
    p = sub.add_parser("info",  # its one-line help: cyclegan.cli.main.COMMANDS
                       description="What this machine is to cyclegan: versions, the device, the CPU features "
                                   "that decide, and what --precision auto and --compile auto resolve to for "
                                   "training and translation, without starting a run.\n\n"
                                   "  cyclegan info\n"
                                   "  CYCLEGAN_CPU_FLAGS=\"AuthenticAMD avx512f avx512_bf16\" cyclegan info   "
                                   "# another CPU\n"
                                   "  cyclegan info --json > machine.json   # for a bug report")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [auto]")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_info)

"""Build a paired edges -> item data set from Fashion-MNIST IDX files, offline (pix2pix's edges2shoes
in miniature: the data of the bundled ``pix2pix_fmnist_edges`` model).

    python datasets/make_fmnist_edges.py                              # -> datasets/fmnist_edges
    python datasets/make_fmnist_edges.py --count 500 --out /tmp/edges # 500 training pairs

Each item (28 x 28, padded to 32 x 32) is drawn dark on white, like a product photo (B), and its edge
map (A) is what a person sketching it would draw: black lines on white, where the item's brightness
changes sharply (Sobel gradient magnitude over a threshold). Written in the pix2pix release's aligned
layout, one A|B file (64 x 32, grayscale) per pair: OUT/train/, OUT/test/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cyclegan.data.mnist import IDX_STEMS, find_idx, read_idx  # noqa: E402

#: gradient magnitude (of the 0-255 item, Sobel, divided by 4) above which a pixel is an edge
EDGE_THRESHOLD = 40.0


def edge_map(item: np.ndarray) -> np.ndarray:
    """Black (0) edge lines on white (255) for an item drawn dark on white (uint8 HxW)."""
    x = np.pad(item.astype(np.float32), 1, mode="edge")
    gx = (x[:-2, 2:] + 2 * x[1:-1, 2:] + x[2:, 2:]) - (x[:-2, :-2] + 2 * x[1:-1, :-2] + x[2:, :-2])
    gy = (x[2:, :-2] + 2 * x[2:, 1:-1] + x[2:, 2:]) - (x[:-2, :-2] + 2 * x[:-2, 1:-1] + x[:-2, 2:])
    magnitude = np.hypot(gx, gy) / 4.0
    return np.where(magnitude > EDGE_THRESHOLD, 0, 255).astype(np.uint8)


def pair(image: np.ndarray) -> np.ndarray:
    """The aligned A|B array (32 x 64) of one Fashion-MNIST image (28 x 28, light item on black)."""
    item = 255 - np.pad(image, 2)  # dark on white, 32 x 32
    return np.concatenate([edge_map(item), item], axis=1)


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idx-dir", default="/usr/share/datasets/fashion-mnist", help="folder of the IDX files [%(default)s]")
    p.add_argument("--count", type=_count, default=6000, help="training pairs, the first in the file [%(default)s]")
    p.add_argument("--test-count", type=_count, default=500, help="test pairs [%(default)s]")
    p.add_argument("--out", default="datasets/fmnist_edges", help="output folder [%(default)s]")
    args = p.parse_args(argv)
    idx_dir, out = Path(args.idx_dir), Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"{out} already exists; remove it first to rebuild it", file=sys.stderr)
        return 1
    for split, count in (("train", args.count), ("test", args.test_count)):
        path = find_idx(idx_dir, IDX_STEMS[split][0])
        if path is None:
            print(f"no {IDX_STEMS[split][0]}[.gz] in {idx_dir}; install Debian's dataset-fashion-mnist or pass "
                  "--idx-dir", file=sys.stderr)
            return 1
        images = read_idx(path)[:count]
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            Image.fromarray(pair(image)).save(folder / f"{i:05d}.png")
        print(f"{folder}: {len(images)} edge|item pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

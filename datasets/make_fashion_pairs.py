"""Build an unpaired two-domain data set from Fashion-MNIST IDX files, offline.

    python datasets/make_fashion_pairs.py                      # T-shirt/top (A) <-> Pullover (B)
    python datasets/make_fashion_pairs.py --a 5 --b 7 --out datasets/fmnist_sandal_sneaker
    python datasets/make_fashion_pairs.py --a sandal --b sneaker --count 500   # 500 training images each

Reads Debian's dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`, files in
/usr/share/datasets/fashion-mnist) or any folder with the four IDX files (--idx-dir), and
writes 28x28 grayscale PNGs in the original CycleGAN layout: OUT/trainA, trainB, testA, testB.
This is the data of the bundled demo model and of docs/quality.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cyclegan.data.mnist import IDX_STEMS, find_idx, read_idx  # noqa: E402

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]


def _class(text: str) -> int:
    """A class by number (0-9) or name (any case: "pullover", "T-shirt/top")."""
    names = [c.lower() for c in CLASSES]
    if text.isdigit() and int(text) < len(CLASSES):
        return int(text)
    if text.lower() in names:
        return names.index(text.lower())
    raise argparse.ArgumentTypeError(f"{text!r} is not a class; use 0-9 or a name: {', '.join(CLASSES)}")


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="classes: " + ", ".join(f"{i} {name}" for i, name in enumerate(CLASSES))
               + ". Fashion-MNIST has 6000 training and 1000 test images of each class.")
    p.add_argument("--idx-dir", default="/usr/share/datasets/fashion-mnist", help="folder of the IDX files [%(default)s]")
    p.add_argument("--a", type=_class, default=0, help="class of domain A, by number or name [0: T-shirt/top]")
    p.add_argument("--b", type=_class, default=2, help="class of domain B, by number or name [2: Pullover]")
    p.add_argument("--count", type=_count, default=None,
                   help="training images per class, the first COUNT in the file's order [all 6000]")
    p.add_argument("--test-count", type=_count, default=None,
                   help="test images per class, the first in the file's order [all 1000]")
    p.add_argument("--out", default="datasets/fmnist_tshirt_pullover", help="output folder [%(default)s]")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.a == args.b:
        p.error(f"--a and --b are both {CLASSES[args.a]}; pick two different classes")
    idx_dir, out = Path(args.idx_dir), Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"{out} already exists; remove it first to rebuild it", file=sys.stderr)
        return 1
    for split, prefix, count in (("train", "train", args.count), ("test", "test", args.test_count)):
        images_stem, labels_stem = IDX_STEMS[split]
        images_path, labels_path = find_idx(idx_dir, images_stem), find_idx(idx_dir, labels_stem)
        if images_path is None or labels_path is None:
            print(f"no {images_stem}[.gz] / {labels_stem}[.gz] in {idx_dir}; install Debian's "
                  "dataset-fashion-mnist or pass --idx-dir", file=sys.stderr)
            return 1
        images, labels = read_idx(images_path), read_idx(labels_path)
        for domain, cls in (("A", args.a), ("B", args.b)):
            folder = out / f"{prefix}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            picked = (labels == cls).nonzero()[0][:count]
            for i in picked:
                Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
            print(f"{folder}: {len(picked)} images of {CLASSES[cls]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

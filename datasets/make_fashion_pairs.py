"""Build an unpaired two-domain data set from Fashion-MNIST IDX files, offline.

    python datasets/make_fashion_pairs.py                      # T-shirt/top (A) <-> Pullover (B)
    python datasets/make_fashion_pairs.py --a 5 --b 7 --out datasets/fmnist_sandal_sneaker

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
from cyclegan.mnist_data import IDX_STEMS, find_idx, read_idx  # noqa: E402

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idx-dir", default="/usr/share/datasets/fashion-mnist", help="folder of the IDX files")
    p.add_argument("--a", type=int, default=0, help="class of domain A (0 = T-shirt/top)")
    p.add_argument("--b", type=int, default=2, help="class of domain B (2 = Pullover)")
    p.add_argument("--out", default="datasets/fmnist_tshirt_pullover", help="output folder")
    args = p.parse_args(argv)
    idx_dir, out = Path(args.idx_dir), Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"{out} already exists; remove it first to rebuild it", file=sys.stderr)
        return 1
    for split, prefix in (("train", "train"), ("test", "test")):
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
            picked = (labels == cls).nonzero()[0]
            for i in picked:
                Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
            print(f"{folder}: {len(picked)} images of {CLASSES[cls]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

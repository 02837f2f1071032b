"""MNIST-format data: an IDX file reader, the places such files are found, and the dataset
the unconditional GAN trains on.

Three sources, one result (:class:`MnistData`: uint8 images (N, C, S, S), labels, class names,
a training split and, when there is one, a held-out split):

* ``dataset="mnist" | "fashion-mnist" | "kmnist"``: torchvision's layout ROOT/<Name>/raw/ (plus the
  Debian package's folder for Fashion-MNIST); torchvision downloads the files when they are
  missing and the machine is online. The files are then read by :func:`read_idx`.
* ``idx_dir``: a folder with ``train-images-idx3-ubyte[.gz]`` (+ labels, + ``t10k-*`` held out).
* ``image_dir``: a folder of images; ``train/`` and ``test/`` subfolders become the splits, and
  first-level subfolders (``train/cat/x.png``) become classes.

Images are kept in memory as uint8 (Fashion-MNIST's 60,000 training images take 47 MB);
:class:`MnistDataset` turns one into a float tensor in [-1, 1] on access.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import socket
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cyclegan.data.images import DataError, find_images, load_image
from cyclegan.core.install import import_torchvision

log = logging.getLogger("cyclegan.mnist_data")

# -------------------------------------------------------------------------------------------
# IDX files
# -------------------------------------------------------------------------------------------

#: IDX type byte -> numpy dtype (all multi-byte types are big-endian)
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
#: the most an IDX file may hold once decompressed
MAX_IDX_BYTES = 2 << 30


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the format of LeCun's MNIST distribution), raw or gzip-compressed.

    Layout: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions d, then d big-endian uint32 sizes,
    then the values, big-endian, in row-major order. Compression is detected from the content
    (gzip magic), not the file name. Returns a writable array in native byte order.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read IDX file {path}: {e.strerror or e}") from e
    if blob[:2] == _GZIP_MAGIC:
        try:  # bounded: a crafted .gz can expand a thousandfold (MNIST's largest file is 47 MB)
            with gzip.GzipFile(fileobj=io.BytesIO(blob)) as gz:
                blob = gz.read(MAX_IDX_BYTES + 1)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DataError(f"{path} is a damaged gzip file ({e}); download it again") from e
        if len(blob) > MAX_IDX_BYTES:
            raise DataError(f"{path} expands to more than {MAX_IDX_BYTES >> 30} GiB; it is not an MNIST-like IDX "
                            "file (a gzip bomb?)")
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise DataError(f"{path} is not an IDX file (it should start with two zero bytes, a type "
                        "byte and a dimension count, like MNIST's train-images-idx3-ubyte)")
    type_code, ndim = blob[2], blob[3]
    if type_code not in IDX_TYPES:
        raise DataError(f"{path}: unknown IDX data type 0x{type_code:02x} "
                        f"(known: {', '.join(f'0x{t:02x}' for t in IDX_TYPES)})")
    header = 4 + 4 * ndim
    if ndim == 0 or len(blob) < header:
        raise DataError(f"{path}: truncated IDX header ({len(blob)} bytes for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(blob, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(blob) - header != expected:
        raise DataError(f"{path}: the header says {'x'.join(map(str, shape))} values of {dtype.itemsize} "
                        f"byte(s) ({expected:,} bytes) but the file holds {len(blob) - header:,}; "
                        "the file is truncated or damaged, download it again")
    data = np.frombuffer(blob, dtype=dtype, count=int(np.prod(shape)), offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed if ``compress`` or the name ends in .gz).
    The inverse of :func:`read_idx`; used to make test data and to convert datasets."""
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder("=")
    if dtype not in codes:
        raise ValueError(f"IDX cannot store {array.dtype}; use uint8, int8, int16, int32, float32 or float64")
    header = bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    blob = header + np.ascontiguousarray(array, dtype=IDX_TYPES[codes[dtype]]).tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        blob = gzip.compress(blob, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


#: split -> (images stem, labels stem), as distributed by LeCun and Zalando
IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _idx_names(stem: str) -> list[str]:
    # The official names, then the dotted variant some mirrors (e.g. Kaggle) use.
    dotted = stem.replace("-idx", ".idx", 1)
    return [stem, f"{stem}.gz", dotted, f"{dotted}.gz"]


def find_idx(folder: Path, stem: str) -> Path | None:
    """The first existing ``folder/<stem>[.gz]`` (or the dotted spelling), else None."""
    for name in _idx_names(stem):
        if (folder / name).is_file():
            return folder / name
    return None


# -------------------------------------------------------------------------------------------
# In-memory image sets
# -------------------------------------------------------------------------------------------


@dataclass
class ImageSet:
    """One split: uint8 images (N, C, S, S), int64 labels (N,) or None, where they came from."""

    images: torch.Tensor
    labels: torch.Tensor | None
    source: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def fingerprint(self) -> str:
        """Short content hash of the images and labels: identifies "the same data" across runs,
        e.g. to reuse a classifier trained on it."""
        h = hashlib.sha256(str(tuple(self.images.shape)).encode())
        h.update(self.images.numpy().tobytes())
        if self.labels is not None:
            h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]


@dataclass
class MnistData:
    """A training split, a held-out split if the source has one, and class names if known."""

    name: str
    train: ImageSet
    test: ImageSet | None = None
    classes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        n, c, h, w = self.train.images.shape
        text = f"{self.name}: {n:,} training images {h}x{w}x{c} from {self.train.source}"
        if self.test is not None:
            text += f"; {len(self.test):,} held out from {self.test.source}"
        else:
            text += "; no held-out split (evaluation compares with training images)"
        if self.classes:
            text += f"; {len(self.classes)} classes"
        return text


def _conform(images: torch.Tensor, channels: int, size: int, source: str) -> torch.Tensor:
    """uint8 (N, H, W) or (N, C, H, W) -> (N, channels, size, size)."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise DataError(f"{source}: expected images of shape (N, H, W), got {tuple(images.shape)}")
    if images.shape[1] != channels:
        if images.shape[1] == 1:
            images = images.expand(-1, channels, -1, -1)  # grayscale shown as RGB
        elif channels == 1:  # ITU-R 601 luma, as Pillow's "L" conversion
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DataError(f"{source}: {images.shape[1]} channels cannot become {channels}")
    if images.shape[-2:] != (size, size):
        log.warning("%s: resizing %dx%d images to %dx%d (--image-size)", source, images.shape[-1],
                    images.shape[-2], size, size)
        images = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                               align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


def _read_idx_split(folder: Path, split: str, channels: int, size: int) -> ImageSet | None:
    image_stem, label_stem = IDX_STEMS[split]
    images_path = find_idx(folder, image_stem)
    if images_path is None:
        return None
    raw = read_idx(images_path)
    if raw.dtype != np.uint8 or raw.ndim not in (3, 4):
        raise DataError(f"{images_path}: expected uint8 images (N, H, W), got {raw.dtype} {raw.shape}")
    if raw.ndim == 4:  # (N, H, W, C), as some RGB IDX conversions store them
        raw = raw.transpose(0, 3, 1, 2)
    images = _conform(torch.from_numpy(raw), channels, size, str(images_path))
    labels = None
    labels_path = find_idx(folder, label_stem)
    if labels_path is not None:
        lab = read_idx(labels_path)
        if lab.ndim != 1 or len(lab) != len(raw):
            raise DataError(f"{labels_path}: expected {len(raw):,} labels (one per image in {images_path.name}), "
                            f"got shape {lab.shape}")
        labels = torch.from_numpy(lab.astype(np.int64))
    return ImageSet(images, labels, str(images_path))


def _classes_from_labels(*sets: ImageSet | None) -> list[str]:
    labels = [s.labels for s in sets if s is not None and s.labels is not None]
    if not labels:
        return []
    return [str(i) for i in range(int(max(int(x.max()) for x in labels)) + 1)]


# -------------------------------------------------------------------------------------------
# Sources
# -------------------------------------------------------------------------------------------

#: --dataset name -> (torchvision dataset class name, folders a system package may install it in)
TORCHVISION_DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mnist": ("MNIST", ()),
    "fashion-mnist": ("FashionMNIST", ("/usr/share/datasets/fashion-mnist",)),
    "kmnist": ("KMNIST", ()),
}
_DOWNLOAD_TIMEOUT_S = 30  # torchvision's urlopen has none: a firewalled network would hang for minutes

_HOW_TO_GET = (
    "To get MNIST-format files: run once with network access (torchvision downloads them into "
    "--data-root), or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (MNIST: https://ossci-datasets.s3.amazonaws.com/mnist/ ; "
    "Fashion-MNIST: https://github.com/zalandoresearch/fashion-mnist) into a folder and pass --idx-dir FOLDER. "
    "On Debian/Ubuntu, `apt-get install dataset-fashion-mnist` puts Fashion-MNIST in "
    "/usr/share/datasets/fashion-mnist.")


def _looked_for(folders: list[Path]) -> str:
    names = ", ".join(_idx_names(IDX_STEMS["train"][0]))
    return "; ".join(f"{f}/{{{names}}}" for f in folders)


def load_idx_dir(folder: str | os.PathLike, channels: int = 1, size: int = 28, name: str | None = None) -> MnistData:
    """The train (required) and t10k (optional) IDX files of one folder."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"--idx-dir {folder} is not a folder. {_HOW_TO_GET}")
    train = _read_idx_split(folder, "train", channels, size)
    if train is None:
        raise DataError(f"no MNIST-format training images in {folder}: looked for {_looked_for([folder])}. "
                        f"{_HOW_TO_GET}")
    test = _read_idx_split(folder, "test", channels, size)
    return MnistData(name or str(folder), train, test, _classes_from_labels(train, test))


def _download(dataset: str, root: Path) -> Path:
    """torchvision's download into ROOT/<Name>/raw; returns that folder. Raises DataError."""
    datasets = import_torchvision("torchvision.datasets")

    cls_name = TORCHVISION_DATASETS[dataset][0]
    cls = getattr(datasets, cls_name)
    created = [d for d in (root / cls_name / "raw", root / cls_name, root) if not d.exists()]
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as e:  # URLError, RuntimeError("Error downloading ..."), checksum errors
        for d in created:  # leave no empty folders behind after a failed download
            try:
                d.rmdir()
            except OSError:
                pass
        reason = " ".join(str(e).split())[:300]
        raise DataError(f"could not download {dataset} into {root / cls_name / 'raw'} ({type(e).__name__}: {reason})") from e
    finally:
        socket.setdefaulttimeout(old)
    return root / cls_name / "raw"


def load_torchvision_dataset(dataset: str, root: str | os.PathLike = "datasets", download: bool = True,
                             channels: int = 1, size: int = 28) -> MnistData:
    """MNIST, Fashion-MNIST or KMNIST by name: from torchvision's layout under ``root`` (or a
    system package's folder), downloading with torchvision when the files are missing."""
    if dataset not in TORCHVISION_DATASETS:
        raise DataError(f"unknown --dataset {dataset!r}; choose one of: {', '.join(TORCHVISION_DATASETS)} "
                        "(or give --idx-dir / --image-dir)")
    cls_name, system = TORCHVISION_DATASETS[dataset]
    root = Path(root).expanduser()
    folders = [root / cls_name / "raw", *map(Path, system)]
    found = next((f for f in folders if find_idx(f, IDX_STEMS["train"][0])), None)
    if found is None:
        if not download:
            raise DataError(f"{dataset} not found (download disabled by --no-download): looked for "
                            f"{_looked_for(folders)}. {_HOW_TO_GET}")
        try:
            found = _download(dataset, root)
        except DataError as e:
            raise DataError(f"{dataset} not found and the download failed, probably because this machine is "
                            f"offline: {e}. Looked for {_looked_for(folders)}. {_HOW_TO_GET}") from None
    data = load_idx_dir(found, channels, size, name=dataset)
    datasets = import_torchvision("torchvision.datasets")

    classes = list(getattr(datasets, cls_name).classes)
    if len(classes) == len(data.classes):
        data.classes = classes
    return data


def _split_folders(root: Path) -> tuple[Path, Path | None]:
    train, test = root / "train", root / "test"
    if train.is_dir() and test.is_dir():
        return train, test
    return root, None


def _read_image_folder(folder: Path, channels: int, size: int, classes: list[str] | None) -> tuple[ImageSet, list[str]]:
    from PIL import Image

    paths = find_images(folder)
    if not paths:
        raise DataError(f"no images in {folder} (looked for .png, .jpg, ... in subfolders too); "
                        "point --image-dir at a folder of images")
    rel = [p.relative_to(folder).parts for p in paths]
    labelled = all(len(parts) >= 2 for parts in rel)  # every image in a class subfolder
    if classes is None:
        classes = sorted({parts[0] for parts in rel}) if labelled else []
    images = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    for i, path in enumerate(paths):
        array = load_image(path, channels)
        if array.shape[:2] != (size, size):
            mode = "L" if channels == 1 else "RGB"
            resized = Image.fromarray(array[:, :, 0] if channels == 1 else array, mode).resize(
                (size, size), Image.Resampling.LANCZOS)
            array = np.asarray(resized).reshape(size, size, channels)
        images[i] = array
    labels = None
    if labelled and classes:
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({parts[0] for parts in rel} - index.keys())
        if unknown:
            raise DataError(f"{folder}: class folders {', '.join(unknown)} are not in the training split's classes")
        labels = torch.tensor([index[parts[0]] for parts in rel], dtype=torch.int64)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return ImageSet(tensor, labels, str(folder)), classes


def load_image_dir(folder: str | os.PathLike, channels: int = 1, size: int = 28) -> MnistData:
    """A folder of images (any size: resized to ``size``); ``train/`` + ``test/`` subfolders are
    the splits, first-level subfolders of a split are its classes."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"--image-dir {root} is not a folder; pass a folder of images "
                        "(optionally with train/ and test/ subfolders, and one subfolder per class)")
    train_dir, test_dir = _split_folders(root)
    train, classes = _read_image_folder(train_dir, channels, size, None)
    test = _read_image_folder(test_dir, channels, size, classes)[0] if test_dir else None
    return MnistData(str(root), train, test, classes)


@dataclass
class DataSource:
    """Where the images come from: exactly one of ``dataset``, ``idx_dir``, ``image_dir``."""

    dataset: str | None = None
    idx_dir: str | None = None
    image_dir: str | None = None
    data_root: str = "datasets"
    download: bool = True

    def describe(self) -> str:
        return self.dataset or self.idx_dir or self.image_dir or "(none)"

    def load(self, channels: int = 1, size: int = 28) -> MnistData:
        given = [f for f in ("dataset", "idx_dir", "image_dir") if getattr(self, f)]
        if not given:
            raise DataError("no training data given: pass --dataset mnist|fashion-mnist|kmnist, "
                            "--idx-dir FOLDER (MNIST-format IDX files) or --image-dir FOLDER (images)")
        if len(given) > 1:
            flags = " and ".join("--" + f.replace("_", "-") for f in given)
            raise DataError(f"{flags} both given: pass only one data source")
        if self.dataset:
            return load_torchvision_dataset(self.dataset, self.data_root, self.download, channels, size)
        if self.idx_dir:
            return load_idx_dir(self.idx_dir, channels, size)
        return load_image_dir(self.image_dir, channels, size)


# -------------------------------------------------------------------------------------------
# The training dataset
# -------------------------------------------------------------------------------------------


class MnistDataset(torch.utils.data.Dataset):
    """``{"image": float32 (C, S, S) in [-1, 1], "label": int64 (-1 when unlabelled)}``.

    Keys are ``index`` or the ``(epoch, index)`` pairs of :class:`~cyclegan.data.EpochSampler`.
    There is no augmentation (DCGAN trains on the images as they are), so the epoch only
    decides the order, which is the sampler's job.
    """

    def __init__(self, images: ImageSet):
        self.set = images

    def __len__(self) -> int:
        return len(self.set)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index = int(key[1]) if isinstance(key, tuple) else int(key)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        label = int(self.set.labels[index]) if self.set.labels is not None else -1
        return {"image": self.set.images[index].float().div_(127.5).sub_(1.0),
                "label": torch.tensor(label, dtype=torch.int64)}

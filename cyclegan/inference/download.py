"""Downloads: the standard CycleGAN data sets and the original release's published generators.

Files come from the original release's addresses (its datasets/download_cyclegan_dataset.sh and
scripts/download_cyclegan_model.sh)::

    {base}/datasets/NAME.zip              -> datasets/NAME/{trainA,trainB,testA,testB}
    {base}/pretrained_models/NAME.pth     -> checkpoints/NAME_pretrained/latest_net_G.pth

with ``base = http://efrosgans.eecs.berkeley.edu/cyclegan``, and the pix2pix release's (its
datasets/download_pix2pix_dataset.sh and scripts/download_pix2pix_model.sh), under names with a
``pix2pix_`` prefix so they cannot be confused with the CycleGAN ones (see
:data:`~cyclegan.inference.sources.PUBLISHED_PIX2PIX`)::

    {base}/datasets/NAME.tar.gz           -> datasets/pix2pix_NAME/{train,val,test} (aligned A|B)
    {base}/models-pytorch/NAME.pth        -> checkpoints/pix2pix_NAME_pretrained/latest_net_G.pth

with ``base = http://efrosgans.eecs.berkeley.edu/pix2pix``. ``--base-url`` or the
``CYCLEGAN_BASE_URL`` environment variable replaces either base (a mirror holding both layouts, or
a local server in tests).

Every download goes to ``NAME.part`` first and resumes from there (HTTP Range) when interrupted
(:mod:`cyclegan.inference.http_download`); zips are extracted only after every member name is
checked, so a hostile archive cannot write outside the target folder
(:mod:`cyclegan.inference.safe_zip`).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from cyclegan.data.images import DataError
from cyclegan.inference.http_download import DownloadError, download_file
from cyclegan.inference.safe_zip import check_tar, check_zip, safe_extract, safe_extract_tar

__all__ = ["BASE_URL", "DATASETS", "PIX2PIX_BASE_URL", "PIX2PIX_DATASETS", "DownloadError", "base_url", "download_dataset", "download_file", "download_weights", "prepare_cityscapes", "safe_extract"]

log = logging.getLogger("cyclegan.download")

BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan"
BASE_URL_ENV = "CYCLEGAN_BASE_URL"
PIX2PIX_BASE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix"

#: The original release's CycleGAN data sets: name -> what is in it.
DATASETS: dict[str, str] = {
    "apple2orange": "996 apple and 1,020 orange photos from ImageNet",
    "summer2winter_yosemite": "1,273 summer and 854 winter Yosemite photos from Flickr",
    "horse2zebra": "939 horse and 1,177 zebra photos from ImageNet",
    "monet2photo": "1,074 Monet paintings (Wikiart) and 6,853 landscape photos (Flickr)",
    "cezanne2photo": "584 Cezanne paintings and landscape photos",
    "ukiyoe2photo": "1,433 ukiyo-e prints and landscape photos",
    "vangogh2photo": "401 Van Gogh paintings and landscape photos",
    "maps": "1,096 Google Maps satellite/map pairs (used unpaired)",
    "cityscapes": "2,975 Cityscapes street photos and label maps (manual steps: `cyclegan download dataset cityscapes`)",
    "facades": "400 CMP Facades photos and label maps",
    "iphone2dslr_flower": "1,813 iPhone and 3,316 DSLR flower photos from Flickr",
    "ae_photos": "a small set of test photos used in the paper's figures",
}

#: The pix2pix release's data sets (aligned A|B files in train/, val/, test/), by the names used here.
PIX2PIX_DATASETS: dict[str, str] = {
    "pix2pix_facades": "400 CMP Facades label maps | photos (aligned, for pix2pix)",
    "pix2pix_maps": "1,096 Google Maps satellite | map pairs (aligned, for pix2pix)",
    "pix2pix_edges2shoes": "50k shoe edge maps | photos from UT Zappos50K (aligned, for pix2pix; 2 GB)",
    "pix2pix_edges2handbags": "137k handbag edge maps | photos from iGAN (aligned, for pix2pix; 8.6 GB)",
    "pix2pix_night2day": "20k night | day pairs of outdoor webcams (aligned, for pix2pix)",
}
PIX2PIX_PREFIX = "pix2pix_"

#: Cityscapes' licence forbids redistribution, so the original release cannot host it.
CITYSCAPES_STEPS = """\
Cityscapes cannot be downloaded automatically: its licence forbids redistribution. To build it:
  1. register at https://www.cityscapes-dataset.com and download gtFine_trainvaltest.zip
     (label maps) and leftImg8bit_trainvaltest.zip (photos);
  2. unzip both;
  3. run: cyclegan download dataset cityscapes --gtfine DIR/gtFine --leftimg8bit DIR/leftImg8bit
     which writes 256x256 photos to datasets/cityscapes/trainA,testA and label maps to trainB,testB
     (the original release's prepare_cityscapes_dataset.py layout; val becomes test)."""

#: Largest download kept, in MiB (--max-size): the biggest original data set is under 1.5 GiB and a
#: published generator 44 MiB; a server that sends more (or never stops) is not the one meant.
MAX_DATASET_MB = 10240  # edges2handbags: 8.6 GB
MAX_WEIGHTS_MB = 256


def base_url(override: str | None = None, default: str = BASE_URL) -> str:
    """``--base-url``, else ``$CYCLEGAN_BASE_URL``, else the original release's server (``default``:
    :data:`BASE_URL` for CycleGAN, :data:`PIX2PIX_BASE_URL` for pix2pix)."""
    return (override or os.environ.get(BASE_URL_ENV) or default).rstrip("/")


_MIRROR_HINT = f", or point --base-url / ${BASE_URL_ENV} at a mirror"


# --------------------------------------------------------------------------------------------
# Data sets and published generators
# --------------------------------------------------------------------------------------------


def download_dataset(name: str, root: str | os.PathLike = "datasets", *, base: str | None = None,
                     force: bool = False, keep_zip: bool = False, sha256: str | None = None,
                     progress: bool = True, max_mb: int | None = None) -> Path:
    """Download and extract the data set ``name`` into ``root/name`` (trainA, trainB, testA, testB).
    The zip is extracted into a hidden folder first and renamed into place, so an interrupted
    extraction never leaves a half data set that looks complete."""
    pix2pix = name in PIX2PIX_DATASETS
    if name not in DATASETS and not pix2pix:
        hint = f" (the pix2pix release's is {PIX2PIX_PREFIX + name})" if PIX2PIX_PREFIX + name in PIX2PIX_DATASETS else ""
        raise DownloadError(f"unknown data set {name!r}{hint}; available: {', '.join({**DATASETS, **PIX2PIX_DATASETS})}")
    if name == "cityscapes":
        raise DownloadError(CITYSCAPES_STEPS)
    root = Path(root)
    target = root / name
    for path in (target, *target.parents):
        if path.exists() and not path.is_dir():
            raise DownloadError(f"{path} exists and is a file, not a folder; move it away or pass another --root")
    if target.exists() and any(target.iterdir()) and not force:
        print(f"{target} already exists; pass --force to download it again", file=sys.stderr)
        return target
    if pix2pix:  # NAME.tar.gz holding the folder NAME without the prefix
        remote = name[len(PIX2PIX_PREFIX):]
        url, file, extract = f"{base_url(base, PIX2PIX_BASE_URL)}/datasets/{remote}.tar.gz", f"{name}.tar.gz", safe_extract_tar
        check: Callable[[Path], None] = lambda part: check_tar(part, remote)
    else:
        url, file, extract = f"{base_url(base)}/datasets/{name}.zip", f"{name}.zip", safe_extract
        check = lambda part: check_zip(part, name)  # noqa: E731
    archive = download_file(url, root / file, sha256=sha256, progress=progress, offline_hint=_MIRROR_HINT,
                            max_bytes=(max_mb or MAX_DATASET_MB) << 20, check=check)
    staging = root / f".{name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    if staging.exists() or staging.is_symlink():  # a file (not a folder) of that name: rmtree leaves it
        try:
            staging.unlink()
        except OSError as e:
            raise DownloadError(f"{staging} is in the way of the extraction and cannot be removed ({e.strerror}); "
                                "move it away and run the command again") from None
    try:
        extract(archive, staging)
        entries = [p for p in staging.iterdir() if not p.name.startswith("__MACOSX")]
        # The zips hold one folder named like the data set; anything else is used as it is.
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(content, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not keep_zip:
        archive.unlink(missing_ok=True)
    missing = [d for d in (("train",) if pix2pix else ("trainA", "trainB")) if not (target / d).is_dir()]
    if missing:
        log.warning("%s has no %s folder(s); train with --domain-a/--domain-b pointing at its folders",
                    target, " or ".join(missing))
    return target


_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _expected_keys(arch: Mapping | None = None) -> set[str]:
    """Parameter names of the published architecture (``arch``: GeneratorSpec fields; default
    CycleGAN's ResNet-9), built on the meta device (no memory); normalisation statistics left out."""
    import torch

    from cyclegan.inference.loading import GeneratorSpec

    with torch.device("meta"):
        net = GeneratorSpec(**(arch or {})).build()
    return {k for k in net.state_dict() if not k.endswith(_STATS)}


def _check_weights(path: Path, name: str, arch: Mapping | None = None) -> None:
    """The file must load with ``weights_only=True`` as a state dict whose parameter names are those
    of the published generator (``arch``; default CycleGAN's ResNet-9)."""
    import torch

    from cyclegan.core.checkpoint import CheckpointError, load_torch_file

    try:
        state = load_torch_file(path, "a published generator's state dict was expected (a truncated download?)")
    except CheckpointError as e:
        raise DownloadError(str(e)) from e
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DownloadError(f"{path} is not a generator state dict; delete it and download again")
    expected = _expected_keys(arch)
    keys = {k for k in state if not k.endswith(_STATS)}
    if keys != expected:
        raise DownloadError(f"{path} does not hold a {(arch or {}).get('netG', 'resnet_9blocks')} generator as "
                            f"published for {name!r} "
                            f"({len(keys ^ expected)} parameter names differ)")
    # the shapes, finite weights and finite outputs on a probe: what every loader checks
    from cyclegan.inference.loading import GeneratorSpec, checked_generator, infer_spec

    spec = infer_spec(state) if arch is None else _spec_of(state, arch)
    try:
        checked_generator(GeneratorSpec(**spec), dict(state), path, name)
    except CheckpointError as e:
        raise DownloadError(f"{e}; it was not kept") from None


def _spec_of(state: Mapping, arch: Mapping) -> dict:
    """The architecture ``arch`` a release publishes (the pix2pix U-Net), at the width and input
    channels of the file's first convolution (its names do not depend on them)."""
    first = state.get("model.model.0.weight")
    spec = dict(arch)
    if first is not None and first.dim() == 4:
        spec.update(ngf=int(first.shape[0]), input_nc=int(first.shape[1]))
    return spec


#: size of each published CycleGAN generator's file: ResNet-9 at ngf 64, RGB, 11,378,179 float32 parameters
PUBLISHED_WEIGHTS_MB = 45.5
#: the pix2pix release's: U-Net 256 at ngf 64 with batch norm, 54,423,824 float32 values with its statistics
PIX2PIX_WEIGHTS_MB = 217.7


def published_weights_mb(name: str) -> float:
    """The size of the published generator ``name``'s file, in MB."""
    return PIX2PIX_WEIGHTS_MB if name.startswith(PIX2PIX_PREFIX) else PUBLISHED_WEIGHTS_MB


def weights_url(name: str, base: str | None = None) -> str:
    """Where the published generator ``name`` is downloaded from (each release's own layout)."""
    if name.startswith(PIX2PIX_PREFIX):
        return f"{base_url(base, PIX2PIX_BASE_URL)}/models-pytorch/{name[len(PIX2PIX_PREFIX):]}.pth"
    return f"{base_url(base)}/pretrained_models/{name}.pth"


def weights_path(name: str, root: str | os.PathLike = "checkpoints") -> Path:
    """Where ``download_weights`` puts it (and where a copy made by hand is found)."""
    return Path(root) / f"{name}_pretrained" / "latest_net_G.pth"


def download_weights(name: str, root: str | os.PathLike = "checkpoints", *, base: str | None = None,
                     force: bool = False, sha256: str | None = None, progress: bool = True,
                     max_mb: int | None = None,
                     on_progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download the original release's published generator ``name`` to
    ``root/NAME_pretrained/latest_net_G.pth`` (the original layout; ``cyclegan translate --model
    NAME`` finds it there) and check it loads as that generator before it is kept."""
    from cyclegan.inference.sources import PIX2PIX_ARCH, PUBLISHED_GENERATORS, PUBLISHED_PIX2PIX

    pix2pix = name in PUBLISHED_PIX2PIX
    if name not in PUBLISHED_GENERATORS and not pix2pix:
        hint = f" (the pix2pix release's is {PIX2PIX_PREFIX + name})" if PIX2PIX_PREFIX + name in PUBLISHED_PIX2PIX else ""
        raise DownloadError(f"unknown published model {name!r}{hint}; available: "
                            f"{', '.join({**PUBLISHED_GENERATORS, **PUBLISHED_PIX2PIX})}")
    target = weights_path(name, root)
    for path in target.parents:
        if path.exists() and not path.is_dir():
            raise DownloadError(f"{path} exists and is a file, not a folder; move it away or pass another --root")
    if target.is_dir() or (target.is_symlink() and not target.exists()):
        raise DownloadError(f"{target} is {'a folder' if target.is_dir() else 'a broken link'}, where the weights "
                            "file goes; move it away or pass another --root")
    if target.exists() and not force:
        print(f"{target} already exists; pass --force to download it again", file=sys.stderr)
        return target
    url = weights_url(name, base)
    arch = PIX2PIX_ARCH if pix2pix else None
    return download_file(url, target, sha256=sha256, progress=progress, offline_hint=_MIRROR_HINT,
                         max_bytes=(max_mb or MAX_WEIGHTS_MB) << 20, check=lambda part: _check_weights(part, name, arch),
                         on_progress=on_progress)


# --------------------------------------------------------------------------------------------
# Cityscapes, from the files its users download by hand
# --------------------------------------------------------------------------------------------


def prepare_cityscapes(gtfine: str | os.PathLike, leftimg8bit: str | os.PathLike,
                       output: str | os.PathLike = "datasets/cityscapes", size: int = 256) -> Path:
    """Build the CycleGAN cityscapes set from the unzipped official downloads: photos
    (``leftImg8bit/{train,val}/CITY/*_leftImg8bit.png``) resized to ``size`` x ``size`` into
    trainA/testA, colour label maps (``gtFine/{train,val}/CITY/*_gtFine_color.png``) into
    trainB/testB, as the original release's prepare_cityscapes_dataset.py (val becomes test)."""
    from PIL import Image

    gtfine, leftimg8bit, output = Path(gtfine), Path(leftimg8bit), Path(output)
    for folder, flag in ((gtfine, "--gtfine"), (leftimg8bit, "--leftimg8bit")):
        if not folder.is_dir():
            raise DataError(f"{flag} {folder}: no such folder (unzip the Cityscapes download first)\n{CITYSCAPES_STEPS}")
    for phase, split in (("val", "test"), ("train", "train")):
        labels = sorted((gtfine / phase).glob("*/*_gtFine_color.png"))
        photos = sorted((leftimg8bit / phase).glob("*/*_leftImg8bit.png"))
        if len(labels) != len(photos):
            raise DataError(f"{len(labels)} label maps in {gtfine / phase} but {len(photos)} photos in "
                            f"{leftimg8bit / phase}; are both downloads complete?")
        for i, (label, photo) in enumerate(zip(labels, photos)):
            if label.name.replace("_gtFine_color", "") != photo.name.replace("_leftImg8bit", ""):
                raise DataError(f"{label} and {photo} do not belong together; are both downloads complete?")
            for src, domain in ((photo, "A"), (label, "B")):
                with Image.open(src) as im:
                    small = im.convert("RGB").resize((size, size), Image.BICUBIC)
                out = output / f"{split}{domain}" / f"{i}_{domain}.jpg"
                out.parent.mkdir(parents=True, exist_ok=True)
                small.save(out, format="JPEG", quality=100, subsampling=0)
    return output

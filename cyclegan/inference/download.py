"""Downloads: the standard CycleGAN data sets and the original release's published generators.

Files come from the original release's addresses (its datasets/download_cyclegan_dataset.sh and
scripts/download_cyclegan_model.sh)::

    {base}/datasets/NAME.zip              -> datasets/NAME/{trainA,trainB,testA,testB}
    {base}/pretrained_models/NAME.pth     -> checkpoints/NAME_pretrained/latest_net_G.pth

with ``base = http://efrosgans.eecs.berkeley.edu/cyclegan``, overridable with ``--base-url`` or
the ``CYCLEGAN_BASE_URL`` environment variable (a mirror, or a local server in tests).

Every download goes to ``NAME.part`` first and resumes from there (HTTP Range) when interrupted,
in this run (a few automatic retries) or the next; the size is checked against the server's
Content-Length (and a SHA-256 when one is known or given) before the file is renamed into place.
Zips are extracted only after every member name is checked: no absolute paths, no ``..``, no
symlinks, so a hostile archive cannot write outside the target folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import socket
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath

from cyclegan import __version__
from cyclegan.data.images import DataError

__all__ = ["BASE_URL", "DATASETS", "DownloadError", "base_url", "download_dataset", "download_file", "download_weights", "prepare_cityscapes", "safe_extract"]

log = logging.getLogger("cyclegan.download")

BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan"
BASE_URL_ENV = "CYCLEGAN_BASE_URL"

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

#: Cityscapes' licence forbids redistribution, so the original release cannot host it.
CITYSCAPES_STEPS = """\
Cityscapes cannot be downloaded automatically: its licence forbids redistribution. To build it:
  1. register at https://www.cityscapes-dataset.com and download gtFine_trainvaltest.zip
     (label maps) and leftImg8bit_trainvaltest.zip (photos);
  2. unzip both;
  3. run: cyclegan download dataset cityscapes --gtfine DIR/gtFine --leftimg8bit DIR/leftImg8bit
     which writes 256x256 photos to datasets/cityscapes/trainA,testA and label maps to trainB,testB
     (the original release's prepare_cityscapes_dataset.py layout; val becomes test)."""

_RETRIES = 3           # automatic resumes of one interrupted download
#: Largest download kept, in MiB (--max-size): the biggest original data set is under 1.5 GiB and a
#: published generator 44 MiB; a server that sends more (or never stops) is not the one meant.
MAX_DATASET_MB = 4096
MAX_WEIGHTS_MB = 256
#: A zip that claims more than this many times its own size is a zip bomb (image zips are ~1x).
MAX_ZIP_RATIO = 50
_TIMEOUT_S = 30        # per connection attempt and read; a firewalled network fails in seconds, not minutes
_CHUNK = 1 << 20


class DownloadError(DataError):
    """A download or extraction that failed; the message says what to do (retry resumes)."""


def base_url(override: str | None = None) -> str:
    """``--base-url``, else ``$CYCLEGAN_BASE_URL``, else the original release's server."""
    return (override or os.environ.get(BASE_URL_ENV) or BASE_URL).rstrip("/")


# --------------------------------------------------------------------------------------------
# One file over HTTP, resumable
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


_MIRROR_HINT = f", or point --base-url / ${BASE_URL_ENV} at a mirror"


def _offline_message(url: str, reason: object, part: Path, hint: str) -> str:
    host = urllib.parse.urlparse(url).netloc
    kept = f" The partial file {part} is kept; running the same command again resumes it." if part.exists() else ""
    return (f"cannot download {url}: {reason}. Are you offline, or is {host} blocked? Check the connection "
            f"or proxy (HTTP_PROXY/HTTPS_PROXY){hint}.{kept}")


def _total_from(response: http.client.HTTPResponse, start: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range)
    if m and m.group(3) != "*":
        return int(m.group(3))
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def download_file(url: str, dest: str | os.PathLike, *, sha256: str | None = None, sha256_prefix: str | None = None,
                  progress: bool = True, retries: int = _RETRIES, timeout: float = _TIMEOUT_S,
                  offline_hint: str = "", max_bytes: int | None = None,
                  check: Callable[[Path], None] | None = None,
                  on_progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial file with an HTTP
    Range request (and retrying up to ``retries`` times when the connection drops). The size is
    checked against the server's and, if given, the SHA-256 (or a prefix of it, as in torch hub
    file names); ``dest`` appears only when the whole file is there and checks out.
    ``offline_hint`` is appended to the message when the server cannot be reached;
    ``on_progress(bytes so far, total or None)`` is called after every block (the app's bar).

    A server that sends no Content-Length cannot be checked for truncation: ``check(part)``
    (a zip's integrity, a state dict's keys) then decides, before the file is renamed into
    place, and more than ``max_bytes`` (announced or received) is refused. A failed check
    deletes the partial file."""
    dest = Path(dest)
    with _removed_if_empty_on_error(dest.parent):
        return _download(url, dest, sha256, sha256_prefix, progress, retries, timeout, offline_hint, max_bytes, check,
                         on_progress)


@contextlib.contextmanager
def _removed_if_empty_on_error(folder: Path) -> Iterator[None]:
    """Create ``folder`` (and its missing parents); if the block fails, remove the ones created
    here that are still empty, so a failed download leaves no empty folders behind."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for p in created:  # deepest first
            try:
                p.rmdir()
            except OSError:
                break
        raise


def _too_big(url: str, limit: int, part: Path) -> DownloadError:
    part.unlink(missing_ok=True)
    return DownloadError(f"{url} is larger than the {limit / 2**20:,.0f} MiB this download may take (--max-size); "
                         "nothing was kept. Check that the server or --base-url is the right one")


def _download(url: str, dest: Path, sha256: str | None, sha256_prefix: str | None, progress: bool, retries: int,
              timeout: float, offline_hint: str, max_bytes: int | None,
              check: Callable[[Path], None] | None,
              on_progress: Callable[[int, int | None], None] | None = None) -> Path:
    from tqdm import tqdm

    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        start = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": f"cyclegan/{__version__}", "Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and start:  # nothing after `start`: the .part is complete, or longer than the file
                m = re.match(r"bytes \*/(\d+)", e.headers.get("Content-Range", ""))
                if m and int(m.group(1)) == start:
                    break
                part.unlink()
                if attempt < retries:
                    attempt += 1
                    continue
            hint = " (no such file on the server: check the name)" if e.code == 404 else ""
            raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}{hint}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if attempt < retries and isinstance(reason, (socket.timeout, TimeoutError, ConnectionResetError)):
                attempt += 1
                time.sleep(min(2 ** attempt, 10) * 0.1)
                continue
            raise DownloadError(_offline_message(url, reason, part, offline_hint)) from e

        with response:
            resumed = start > 0 and response.status == 206
            if start and not resumed:
                log.info("%s ignored the Range request; downloading %s from the start", url, dest.name)
                start = 0
            total = _total_from(response, start)
            if max_bytes is not None and total is not None and total > max_bytes:
                raise _too_big(url, max_bytes, part)
            bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=dest.name, file=sys.stderr, disable=not progress, dynamic_ncols=True, mininterval=0.5)
            try:
                with open(part, "ab" if resumed else "wb") as f:
                    while True:
                        block = response.read1(_CHUNK)  # what has arrived: the progress moves on slow links
                        if not block:
                            break
                        f.write(block)
                        bar.update(len(block))
                        if on_progress is not None:
                            on_progress(bar.n, total)
                        if max_bytes is not None and f.tell() > max_bytes:  # an endless body
                            break
                    f.flush()
                    os.fsync(f.fileno())
            except (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError) as e:
                log.debug("connection dropped: %s", e)
            finally:
                bar.close()
        size = part.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise _too_big(url, max_bytes, part)
        if total is not None and size < total:
            if attempt < retries:
                attempt += 1
                log.warning("download of %s stopped at %d of %d bytes; resuming (attempt %d of %d)",
                            dest.name, size, total, attempt, retries)
                continue
            raise DownloadError(f"download of {url} stopped at {size:,} of {total:,} bytes after {retries} resumes; "
                                f"{part} is kept: run the same command again to resume")
        if total is not None and size > total:
            part.unlink()
            raise DownloadError(f"{url}: received {size:,} bytes but the server announced {total:,}; the partial "
                                "file was deleted, run the command again")
        break

    if sha256 or sha256_prefix:
        digest = _sha256(part)
        want = (sha256 or sha256_prefix or "").lower()
        if not digest.startswith(want):
            part.unlink()
            raise DownloadError(f"{url}: SHA-256 {digest} does not match the expected {want}; the file was deleted "
                                "(corrupt download or a changed file on the server)")
    if check is not None:
        try:
            check(part)
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------------------------
# Zip extraction that cannot escape its folder
# --------------------------------------------------------------------------------------------


def _member_path(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath | None:
    """The safe relative path of a zip member, None for directories; raises on anything that
    could write outside the target (absolute paths, drive letters, '..', symlinks, devices)."""
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DownloadError(f"{archive} contains a symbolic link ({info.filename}); refusing to extract it")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # many zips store permissions only
        raise DownloadError(f"{archive} contains a special file ({info.filename}); refusing to extract it")
    path = PurePosixPath(name)
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        raise DownloadError(f"{archive} contains an unsafe path ({info.filename!r}: absolute or with '..'); "
                            "refusing to extract it")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or info.is_dir():
        return None
    return PurePosixPath(*parts)


def _check_members(members: list[tuple[zipfile.ZipInfo, PurePosixPath | None]], archive: Path) -> None:
    """Refuse names that would collide on disk: a file that is also a folder, a file twice."""
    files: set[PurePosixPath] = set()
    folders: set[PurePosixPath] = set()
    for info, rel in members:
        if rel is None:
            if info.is_dir():
                folders.add(PurePosixPath(*[p for p in PurePosixPath(info.filename.replace("\\", "/")).parts
                                            if p not in ("", ".")]))
            continue
        if rel in files:
            raise DownloadError(f"{archive} holds {rel} twice; refusing to extract it")
        files.add(rel)
        folders.update(rel.parents)
    clash = sorted(files & folders)
    if clash:
        raise DownloadError(f"{archive} holds both a file and a folder named {clash[0]}; refusing to extract it")


def check_zip(archive: str | os.PathLike, top: str | None = None) -> None:
    """DownloadError unless ``archive`` is an intact zip (central directory and every member's
    CRC) whose members are safe to extract and, given ``top``, all inside the folder ``top``."""
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [(info, _member_path(info, archive)) for info in zf.infolist()]
            _check_members(members, archive)
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DownloadError(f"{archive} is not an intact zip file ({e}): a truncated or corrupt download") from e
    if bad is not None:
        raise DownloadError(f"{archive} is corrupt (bad CRC in {bad}): a truncated or corrupt download")
    if top is not None:
        outside = [str(rel) for _, rel in members
                   if rel is not None and rel.parts[0] != top and not rel.parts[0].startswith("__MACOSX")]
        if outside or not members:
            raise DownloadError(f"{archive} does not hold the folder {top}/ the data set's zip has "
                                f"({outside[0] if outside else 'it is empty'}); is --base-url the right server?")


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract ``archive`` into ``dest`` after checking every member (see :func:`_member_path`),
    that no two collide, that it claims no more than :data:`MAX_ZIP_RATIO` times its size (a zip
    bomb) and that the disk has room; member CRCs are verified as they are read. Returns the files."""
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise DownloadError(f"{archive} is not a readable zip file ({e}); delete it and download again") from e
    with zf:
        members = [(info, _member_path(info, archive)) for info in zf.infolist()]
        _check_members(members, archive)
        need = sum(info.file_size for info, _ in members)
        if need > MAX_ZIP_RATIO * max(archive.stat().st_size, 1 << 20):
            raise DownloadError(f"{archive} would expand to {need / 2**30:,.1f} GiB from {archive.stat().st_size:,} "
                                f"bytes (over {MAX_ZIP_RATIO}x: a zip bomb?); refusing to extract it")
        dest.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(dest).free
        if need > free:
            raise DownloadError(f"extracting {archive} needs {need / 2**30:.1f} GiB but {dest} has "
                                f"{free / 2**30:.1f} GiB free")
        root = dest.resolve()
        written = []
        for info, rel in members:
            if rel is None:
                continue
            target = dest.joinpath(*rel.parts)
            if root not in target.resolve().parents:  # belt and braces after the name checks
                raise DownloadError(f"{archive}: member {info.filename!r} would land outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
            except zipfile.BadZipFile as e:  # CRC mismatch: a corrupt download
                raise DownloadError(f"{archive} is corrupt ({e}); delete it and download again") from e
            written.append(target)
    return written


# --------------------------------------------------------------------------------------------
# Data sets and published generators
# --------------------------------------------------------------------------------------------


def download_dataset(name: str, root: str | os.PathLike = "datasets", *, base: str | None = None,
                     force: bool = False, keep_zip: bool = False, sha256: str | None = None,
                     progress: bool = True, max_mb: int | None = None) -> Path:
    """Download and extract the data set ``name`` into ``root/name`` (trainA, trainB, testA, testB).
    The zip is extracted into a hidden folder first and renamed into place, so an interrupted
    extraction never leaves a half data set that looks complete."""
    if name not in DATASETS:
        raise DownloadError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
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
    url = f"{base_url(base)}/datasets/{name}.zip"
    archive = download_file(url, root / f"{name}.zip", sha256=sha256, progress=progress, offline_hint=_MIRROR_HINT,
                            max_bytes=(max_mb or MAX_DATASET_MB) << 20, check=lambda part: check_zip(part, name))
    staging = root / f".{name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        safe_extract(archive, staging)
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
    missing = [d for d in ("trainA", "trainB") if not (target / d).is_dir()]
    if missing:
        log.warning("%s has no %s folder(s); train with --domain-a/--domain-b pointing at its folders",
                    target, " or ".join(missing))
    return target


def _expected_keys(netG: str = "resnet_9blocks") -> set[str]:
    """Parameter names of the published architecture, built on the meta device (no memory)."""
    import torch

    from cyclegan.inference.loading import GeneratorSpec

    with torch.device("meta"):
        net = GeneratorSpec(netG=netG).build()
    return set(net.state_dict())


def _check_weights(path: Path, name: str) -> None:
    """The file must load with ``weights_only=True`` as a state dict whose names (after dropping
    stale InstanceNorm statistics) are those of the published ResNet-9 generator."""
    import torch

    from cyclegan.core.checkpoint import CheckpointError, load_torch_file

    try:
        state = load_torch_file(path, "a published generator's state dict was expected (a truncated download?)")
    except CheckpointError as e:
        raise DownloadError(str(e)) from e
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DownloadError(f"{path} is not a generator state dict; delete it and download again")
    expected = _expected_keys()
    keys = {k for k in state if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    if keys != expected:
        raise DownloadError(f"{path} does not hold a resnet_9blocks generator as published for {name!r} "
                            f"({len(keys ^ expected)} parameter names differ)")


def download_weights(name: str, root: str | os.PathLike = "checkpoints", *, base: str | None = None,
                     force: bool = False, sha256: str | None = None, progress: bool = True,
                     max_mb: int | None = None,
                     on_progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download the original release's published generator ``name`` to
    ``root/NAME_pretrained/latest_net_G.pth`` (the original layout; ``cyclegan translate --model
    NAME`` finds it there) and check it loads as that generator before it is kept."""
    from cyclegan.inference.sources import PUBLISHED_GENERATORS

    if name not in PUBLISHED_GENERATORS:
        raise DownloadError(f"unknown published model {name!r}; available: {', '.join(PUBLISHED_GENERATORS)}")
    target = Path(root) / f"{name}_pretrained" / "latest_net_G.pth"
    for path in target.parents:
        if path.exists() and not path.is_dir():
            raise DownloadError(f"{path} exists and is a file, not a folder; move it away or pass another --root")
    if target.exists() and not force:
        print(f"{target} already exists; pass --force to download it again", file=sys.stderr)
        return target
    url = f"{base_url(base)}/pretrained_models/{name}.pth"
    return download_file(url, target, sha256=sha256, progress=progress, offline_hint=_MIRROR_HINT,
                         max_bytes=(max_mb or MAX_WEIGHTS_MB) << 20, check=lambda part: _check_weights(part, name),
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

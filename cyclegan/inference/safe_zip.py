"""Zip extraction that cannot escape its folder: every member name is checked before anything is
written (no absolute paths, no ``..``, no symlinks or devices, no two members colliding), a zip
bomb is refused, and member CRCs are verified as they are read. The same for the tar.gz files the
pix2pix release publishes (:func:`check_tar`, :func:`safe_extract_tar`)."""

from __future__ import annotations

import errno
import os
import gzip
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from cyclegan.inference.http_download import CHUNK, DownloadError

__all__ = ["MAX_ZIP_RATIO", "check_tar", "check_zip", "safe_extract", "safe_extract_tar"]

#: A zip that claims more than this many times its own size is a zip bomb (image zips are ~1x).
MAX_ZIP_RATIO = 50


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
        _check_room(archive, dest, sum(info.file_size for info, _ in members))
        root = dest.resolve()
        written = []
        for info, rel in members:
            if rel is None:
                continue
            target = dest.joinpath(*rel.parts)
            if root not in target.resolve().parents:  # belt and braces after the name checks
                raise DownloadError(f"{archive}: member {info.filename!r} would land outside {dest}")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
            except zipfile.BadZipFile as e:  # CRC mismatch: a corrupt download
                raise DownloadError(f"{archive} is corrupt ({e}); delete it and download again") from e
            except OSError as e:  # a name too long for this file system, a full disk, no inodes left
                reason = {errno.ENAMETOOLONG: "the name is too long for this file system",
                          errno.ENOSPC: "no space (or no inodes) left on device"}.get(e.errno, e.strerror or str(e))
                raise DownloadError(f"cannot extract {info.filename[:200]!r} from {archive}: {reason}; nothing "
                                    "was kept") from None
            written.append(target)
    return written


# --------------------------------------------------------------------------------------------
# tar.gz (the pix2pix data sets)
# --------------------------------------------------------------------------------------------


def _tar_members(archive: Path) -> list[tarfile.TarInfo]:
    """The members of an intact tar.gz (the whole gzip stream read: its CRC and length checked),
    each a plain file or folder with a safe relative name; DownloadError otherwise."""
    try:
        with gzip.open(archive) as stream:
            while stream.read(CHUNK):
                pass
        with tarfile.open(archive, "r:gz") as tf:
            members = tf.getmembers()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DownloadError(f"{archive} is not an intact tar.gz file ({e}): a truncated or corrupt download") from e
    for m in members:
        if not (m.isfile() or m.isdir()):
            what = "a symbolic or hard link" if m.issym() or m.islnk() else "a special file"
            raise DownloadError(f"{archive} contains {what} ({m.name}); refusing to extract it")
        path = PurePosixPath(m.name)
        if m.name.startswith("/") or re.match(r"^[A-Za-z]:", m.name) or ".." in path.parts:
            raise DownloadError(f"{archive} contains an unsafe path ({m.name!r}: absolute or with '..'); "
                                "refusing to extract it")
    return members


def check_tar(archive: str | os.PathLike, top: str | None = None) -> None:
    """DownloadError unless ``archive`` is an intact tar.gz whose members are safe to extract and,
    given ``top``, all inside the folder ``top``."""
    archive = Path(archive)
    members = _tar_members(archive)
    if top is not None:
        outside = [m.name for m in members if PurePosixPath(m.name).parts[:1] != (top,)]
        if outside or not members:
            raise DownloadError(f"{archive} does not hold the folder {top}/ the data set's archive has "
                                f"({outside[0] if outside else 'it is empty'}); is --base-url the right server?")


def _check_room(archive: Path, dest: Path, need: int) -> None:
    """Refuse an archive that would expand past :data:`MAX_ZIP_RATIO` times its size (a bomb) or
    past ``dest``'s free space; make ``dest``."""
    if need > MAX_ZIP_RATIO * max(archive.stat().st_size, 1 << 20):
        kind = "zip" if archive.suffix == ".zip" else "tar"
        raise DownloadError(f"{archive} would expand to {need / 2**30:,.1f} GiB from {archive.stat().st_size:,} "
                            f"bytes (over {MAX_ZIP_RATIO}x: a {kind} bomb?); refusing to extract it")
    dest.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest).free
    if need > free:
        raise DownloadError(f"extracting {archive} needs {need / 2**30:.1f} GiB but {dest} has "
                            f"{free / 2**30:.1f} GiB free")


def safe_extract_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract the tar.gz ``archive`` into ``dest`` after the checks of :func:`check_tar`, a bomb
    check (:data:`MAX_ZIP_RATIO`) and a free-space check; tarfile's ``data`` filter as a second guard."""
    archive, dest = Path(archive), Path(dest)
    members = _tar_members(archive)
    _check_room(archive, dest, sum(m.size for m in members))
    try:
        with tarfile.open(archive, "r:gz") as tf:
            tf.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DownloadError(f"{archive} could not be extracted ({e}); delete it and download again") from e

"""One file over HTTP, resumable: every download goes to ``NAME.part`` first and resumes from there
(HTTP Range) when interrupted, in this run (a few automatic retries) or the next; the size is
checked against the server's Content-Length (and a SHA-256 when one is known or given) before the
file is renamed into place. Used for the data sets, the published generators and the Inception
weights of FID."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from cyclegan import __version__
from cyclegan.data.images import DataError

__all__ = ["CHUNK", "DownloadError", "download_file"]

log = logging.getLogger("cyclegan.download")

_RETRIES = 3           # automatic resumes of one interrupted download
_TIMEOUT_S = 30        # per connection attempt and read; a firewalled network fails in seconds, not minutes
CHUNK = 1 << 20        # bytes per read and write
#: a connection that brings fewer than _STALL_BYTES in _STALL_S seconds is treated as dropped (and
#: resumed, within the retries), as curl's --speed-limit/--speed-time do: a server that drips a
#: byte every 20 s never trips the per-read timeout, and would otherwise keep a download forever
_STALL_S = 60.0
_STALL_BYTES = 1024


class DownloadError(DataError):
    """A download or extraction that failed; the message says what to do (retry resumes)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


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
    part = dest.with_name(dest.name + ".part")
    for path, what in ((dest, "the downloaded file"), (part, "its partial download")):
        if path.is_dir():
            raise DownloadError(f"{path} is a folder, where {what} goes; move it away and run the command again")
    existed = dest.exists()
    with _removed_if_empty_on_error(dest.parent), _exclusive(dest):
        if dest.exists() and not existed:  # another download of the same file finished while this one waited
            return dest
        try:
            return _download(url, dest, sha256, sha256_prefix, progress, retries, timeout, offline_hint, max_bytes,
                             check, on_progress)
        except OSError as e:  # the disk is full, out of inodes, read-only: nothing half-written is kept
            if isinstance(e, (urllib.error.URLError,)):
                raise
            part.unlink(missing_ok=True)
            reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise DownloadError(f"cannot write {e.filename or part}: {reason}; nothing was kept. Free some space "
                                "(or pass another --root) and run the command again") from None


@contextlib.contextmanager
def _exclusive(dest: Path) -> Iterator[None]:
    """One download of ``dest`` at a time (two clicks of the app's button, two commands): the
    second waits for the first, then finds the file there. A lock file beside it (flock; where
    the file system has none, no lock)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    lock = dest.with_name(f".{dest.name}.lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # the holder before us removes the file while it holds the lock: then ours is a lock
            # on a removed file, and the next one must be taken on a new file
            if os.path.exists(lock) and os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except OSError:
            break  # a file system without locks: go on without one
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock)  # while still holding it (see above), so no litter is left
        except OSError:
            pass
        os.close(fd)


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
            received = start  # counted here: a disabled bar (the app's) does not count
            window, window_bytes = time.monotonic(), 0
            try:
                with open(part, "ab" if resumed else "wb") as f:
                    while True:
                        block = response.read1(CHUNK)  # what has arrived: the progress moves on slow links
                        if not block:
                            break
                        f.write(block)
                        bar.update(len(block))
                        received += len(block)
                        if on_progress is not None:
                            on_progress(received, total)
                        if max_bytes is not None and f.tell() > max_bytes:  # an endless body
                            break
                        window_bytes += len(block)
                        if time.monotonic() - window >= _STALL_S:
                            if window_bytes < _STALL_BYTES:
                                raise TimeoutError(f"fewer than {_STALL_BYTES} bytes in {_STALL_S:g} s")
                            window, window_bytes = time.monotonic(), 0
                    f.flush()
                    os.fsync(f.fileno())
            except (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError) as e:
                log.debug("connection dropped: %s", e)
                stalled = isinstance(e, TimeoutError) and "bytes in" in str(e)
                if stalled and (total is None or part.stat().st_size < total) and attempt >= retries:
                    raise DownloadError(f"download of {url} stalled ({e}) {retries + 1} times; {part} is kept: run "
                                        "the same command again to resume") from None
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

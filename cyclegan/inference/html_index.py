"""The index.html that shows a translated folder side by side."""

from __future__ import annotations

import html
import os
import urllib.parse
from pathlib import Path
from cyclegan.core.checkpoint import atomic_write
from cyclegan.inference.folder import TranslateJob

__all__ = ['write_index_html']



def write_index_html(path: str | os.PathLike, jobs: list[TranslateJob], title: str, subtitle: str = "",
                     width: int = 256) -> Path:
    """An HTML page with one row per image (name, input, output), like the original release's
    results page; links are relative, so the page works wherever the folders are opened."""
    path = Path(path)
    base = path.parent.resolve()

    def link(p: Path) -> str:
        return urllib.parse.quote(Path(os.path.relpath(p.resolve(), base)).as_posix())

    rows = []
    for job in jobs:
        if not job.output.exists():
            continue  # failed inputs have no output to show
        src, out = link(job.source), link(job.output)
        rows.append(f'<tr><td>{html.escape(job.label)}</td>'
                    f'<td><a href="{src}"><img src="{src}" width="{width}" loading="lazy"></a></td>'
                    f'<td><a href="{out}"><img src="{out}" width="{width}" loading="lazy"></a></td></tr>')
    page = "\n".join([
        "<!DOCTYPE html>", '<html><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif} td{padding:4px;vertical-align:top} img{display:block}</style>",
        "</head><body>", f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(subtitle)}</p>",
        "<table><tr><th>image</th><th>input</th><th>output</th></tr>", *rows, "</table>", "</body></html>", ""])
    return atomic_write(path, lambda f: f.write(page.encode("utf-8")))

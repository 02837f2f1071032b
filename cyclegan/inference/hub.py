"""Models on the Hugging Face Hub, both ways, through ``huggingface_hub`` (its cache, revisions,
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` (both read when a model is resolved, not only when
huggingface_hub is imported), and the token of ``hf auth login`` / ``HF_TOKEN``).

Download: ``hf:user/repo[@revision]`` wherever a model is asked for (:func:`download`, called by
the one resolver, :mod:`cyclegan.inference.sources`). A repo of ours holds ``config.json``
(``"library_name": "cyclegan"``, naming the weights file), the generators as
``generators.safetensors`` (our export: weights plus model config) and a model card README.md.
Only those two files are fetched, into huggingface_hub's own cache; with ``HF_HUB_OFFLINE=1``
they are read from there.

Upload (``cyclegan push``): :mod:`cyclegan.inference.publish`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cyclegan.core.checkpoint import CheckpointError

__all__ = ["CARD_NAME", "CONFIG_NAME", "HUB_PREFIX", "LIBRARY", "HubError", "WEIGHTS_NAME", "download", "endpoint",
           "parse_hub", "repo_id_like"]

HUB_PREFIX = "hf:"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "generators.safetensors"
CARD_NAME = "README.md"
LIBRARY = "cyclegan"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


class HubError(CheckpointError):
    """A Hub model that cannot be used or pushed: one line saying which and what to do."""


def repo_id_like(text: str) -> bool:
    """Whether ``text`` has the shape of a Hub repo id, ``user/repo`` (one slash, no ``..``)."""
    return bool(_REPO_ID.match(text)) and ".." not in text


def parse_hub(typed: str, *, bare: bool = False) -> tuple[str, str | None] | None:
    """``hf:user/repo[@revision]`` -> (repo id, revision or None); None for anything else. With
    ``bare``, ``user/repo[@revision]`` without the prefix counts too (:meth:`Translator.from_pretrained`)."""
    if typed.startswith(HUB_PREFIX):
        text = typed[len(HUB_PREFIX):]
    elif bare:
        text = typed
    else:
        return None
    repo, _, revision = text.partition("@")
    if not repo_id_like(repo) or (_ and not revision):
        if typed.startswith(HUB_PREFIX):
            raise HubError(f"{typed}: not a Hub model id; write hf:USER/REPO or hf:USER/REPO@REVISION")
        return None
    return repo, revision or None


def _where(repo: str, revision: str | None) -> str:
    return f"hf:{repo}" + (f"@{revision}" if revision else "")


def _fetch(repo: str, filename: str, revision: str | None, flag: str) -> Path | None:
    """One file of ``repo`` through huggingface_hub's cache; None when the repo has no such file.
    Every other failure is a one-line :class:`HubError`."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RemoteEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    where = _where(repo, revision)
    try:
        return Path(hf_hub_download(repo, filename, revision=revision, library_name=LIBRARY, endpoint=endpoint(),
                                    local_files_only=_offline()))
    except GatedRepoError:
        raise HubError(f"{flag} {where}: the repo is gated; accept its terms on the Hub and log in "
                       "(`hf auth login` or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise HubError(f"{flag} {where}: no such repo on the Hub (or it is private: log in with `hf auth login` "
                       "or set HF_TOKEN); a local path would need to exist") from None
    except RevisionNotFoundError:
        raise HubError(f"{flag} {where}: the repo has no revision {revision!r}; give a branch, tag or commit "
                       "it has, or leave @REVISION out for main") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        offline = isinstance(e, OfflineModeIsEnabled) or _offline()
        why = ("HF_HUB_OFFLINE is set and the cache holds no copy of it; download it once online"
               if offline else "the Hub cannot be reached and the cache holds no copy of it; check the network "
                               "or HF_ENDPOINT")
        raise HubError(f"{flag} {where}: {filename}: {why}") from None
    except RemoteEntryNotFoundError:  # the repo has no such file (a missing cache copy is handled above)
        return None
    except HfHubHTTPError as e:
        status = e.response.status_code if getattr(e, "response", None) is not None else "?"
        raise HubError(f"{flag} {where}: the Hub answered HTTP {status} for {filename}; try again later") from None


def endpoint() -> str | None:
    """HF_ENDPOINT as it is now (huggingface_hub reads it once, when first imported)."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or None


def _offline() -> bool:
    """HF_HUB_OFFLINE as it is now, or as huggingface_hub read it at import."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or bool(constants.is_offline_mode())


def download(repo: str, revision: str | None = None, *, flag: str = "--model") -> Path:
    """The generators file of Hub model ``repo`` at ``revision`` (default main), in
    huggingface_hub's cache: its ``config.json`` first (is it a model of ours? which file?), then
    the weights it names."""
    where = _where(repo, revision)
    config_file = _fetch(repo, CONFIG_NAME, revision, flag)
    if config_file is None:
        card = _fetch(repo, CARD_NAME, revision, flag)
        if card is not None:
            raise HubError(f"{flag} {where}: the repo has a model card but no {CONFIG_NAME}; a cyclegan model repo "
                           f"holds {CONFIG_NAME} and {WEIGHTS_NAME} (`cyclegan push RUN {repo}` writes both)")
        raise HubError(f"{flag} {where}: the repo holds no cyclegan model (no {CONFIG_NAME}); "
                       f"`cyclegan push RUN {repo}` uploads one")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise HubError(f"{flag} {where}: {CONFIG_NAME} is not valid JSON ({type(e).__name__})") from None
    if not isinstance(config, dict) or config.get("library_name") != LIBRARY:
        other = config.get("library_name") or config.get("model_type") if isinstance(config, dict) else None
        raise HubError(f"{flag} {where}: the repo holds no cyclegan model (its {CONFIG_NAME} is "
                       f"{'for ' + repr(other) if other else 'not ours'}); give a repo made by `cyclegan push`")
    weights = config.get("weights", WEIGHTS_NAME)
    if not isinstance(weights, str) or not weights.endswith(".safetensors") or "/" in weights or weights.startswith("."):
        raise HubError(f"{flag} {where}: {CONFIG_NAME} names weights {weights!r}; expected a .safetensors file "
                       "at the top of the repo")
    file = _fetch(repo, weights, revision, flag)
    if file is None:
        raise HubError(f"{flag} {where}: {CONFIG_NAME} names {weights}, which the repo does not hold; push it "
                       "again with `cyclegan push`")
    return file

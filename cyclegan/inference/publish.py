"""``cyclegan push``: a run as a Hub-ready folder, uploaded with ``huggingface_hub``.

:func:`hub_folder` writes the folder: the generators as ``generators.safetensors`` (our export,
config inside), ``config.json`` (what the resolver reads first, :mod:`cyclegan.inference.hub`), a
model card ``README.md`` (what was trained, on what, for how long, the evaluation figures saved in
the run, a strip of sample translations, the command to use it) and ``samples.png``.
:func:`push_to_hub` writes it and uploads it with ``HfApi``; nothing is uploaded without the
user's token.

No training code here: a run that holds only a checkpoint is exported from the checkpoint's
stored generators (the same weights inference would load).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclegan.core.checkpoint import CheckpointError, export_generators, run_settings
from cyclegan.inference.hub import CARD_NAME, CONFIG_NAME, LIBRARY, WEIGHTS_NAME, HubError, repo_id_like
from cyclegan.inference.hub import endpoint as hub_endpoint

__all__ = ["SAMPLES_NAME", "PushResult", "hub_folder", "push_to_hub"]

SAMPLES_NAME = "samples.png"


# --------------------------------------------------------------------------------------------
# The Hub-ready folder and the upload
# --------------------------------------------------------------------------------------------


@dataclass
class PushResult:
    folder: Path
    repo: str
    uploaded: bool = False
    url: str | None = None
    revision: str | None = None

    def describe(self) -> str:
        if not self.uploaded:
            return f"wrote {self.folder} (not uploaded: --dry-run)"
        return f"uploaded {self.folder} to {self.url}" + (f" (revision {self.revision})" if self.revision else "")


def _export_of(run: Path, out: Path) -> tuple[dict, dict]:
    """Write ``out`` (our safetensors export) for ``run``, a run folder, checkpoint or export;
    returns (model config, metadata)."""
    from cyclegan.core.checkpoint import load_export, load_torch_file
    from cyclegan.inference.loading import load_generator
    from cyclegan.inference.sources import resolve
    from cyclegan.models.cut import config_directions

    file = resolve(run, flag="push").file
    if file.suffix == ".safetensors":
        _, config, extra = load_export(file)  # checks it is an export of ours
        shutil.copyfile(file, out)
        return config, extra
    if file.suffix != ".pt":
        raise HubError(f"push {run}: {file.name} is not ours (an original-release .pth carries no config); push a "
                       "run folder, a checkpoint .pt or a generators.safetensors export")
    state = load_torch_file(file, "push takes a run folder, a checkpoint .pt or generators.safetensors")
    config = dict(state.get("model_config") or {})
    gens = {("G_A" if d == "AtoB" else "G_B"): load_generator(file, d) for d in config_directions(config)}
    first = next(iter(gens.values()))
    meta = {"size": first.size, "name": first.name, "weights": "ema" if any(
        k.startswith("ema_generators.") for k in state.get("model", {})) else "last"}
    export_generators({k: g.net for k, g in gens.items()}, config, out, meta)
    return config, meta


def _run_record(run: Path) -> dict[str, Any]:
    """What the run's checkpoint says about training (settings, counters), if it has one."""
    from cyclegan.core.checkpoint import load_torch_file

    ckpt = run / "checkpoints" / "latest.pt" if run.is_dir() else (run if run.suffix == ".pt" else None)
    if ckpt is None or not ckpt.is_file():
        return {}
    try:
        state = load_torch_file(ckpt, "a training checkpoint")
    except CheckpointError:
        return {}
    return {"settings": run_settings(state), "counters": dict(state.get("counters") or {})}


def _run_dir(run: Path) -> Path:
    """The run folder of ``run``: itself, or the folder of its checkpoint or export."""
    if run.is_dir():
        return run
    return run.parent.parent if run.parent.name == "checkpoints" else run.parent


def _eval_figures(run: Path) -> dict[str, dict]:
    """The evaluation JSON files saved in the run folder (``eval*.json``): {file name: numbers}."""
    figures: dict[str, dict] = {}
    if not run.is_dir():
        return figures
    for f in sorted(run.glob("eval*.json")):
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            nums = {k: v for k, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if nums:
                figures[f.name] = nums
    return figures


def _sample_inputs(samples: Path | None, settings: dict, channels: int, count: int) -> list[Path]:
    from cyclegan.data.images import find_images

    folders = [samples] if samples is not None else []
    root = settings.get("dataroot")
    if samples is None and root:
        folders += [Path(root) / "testA", Path(str(settings.get("domain_a") or Path(root) / "trainA"))]
    for folder in folders:
        if folder.is_file():
            return [folder]
        if folder.is_dir():
            try:
                found = find_images(folder)
            except Exception:
                continue
            if found:
                return found[:count]
    return []


def _sample_strip(weights: Path, inputs: list[Path], out: Path, direction: str) -> bool:
    """Inputs on the top row, their translations below, one PNG; False when there is nothing to show."""
    import numpy as np
    from PIL import Image

    from cyclegan.data.images import load_image
    from cyclegan.inference.translator import Translator

    if not inputs:
        return False
    tr = Translator.from_pretrained(weights, direction, device="cpu", precision="fp32", compile=False)
    side = tr.size
    tops, bottoms = [], []
    for p in inputs:
        image = load_image(p, tr.input_channels)
        prepared = Translator.to_uint8(tr.prepare(image))
        translated = tr.translate(image)
        tops.append(prepared)
        bottoms.append(translated)
    rgb = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in tops + bottoms]
    n = len(tops)
    grid = np.zeros((2 * side, n * side, 3), dtype=np.uint8)
    for i, a in enumerate(rgb):
        r, c = divmod(i, n)
        grid[r * side:(r + 1) * side, c * side:(c + 1) * side] = a[:side, :side]
    Image.fromarray(grid).save(out)
    return True


def _card(repo: str, config: dict, meta: dict, record: dict, figures: dict, samples: bool) -> str:
    from cyclegan.models.cut import config_directions, model_kind

    kind = model_kind(config)
    directions = config_directions(config)
    settings, counters = record.get("settings", {}), record.get("counters", {})
    name = meta.get("name") or repo.split("/")[-1]
    size = meta.get("size")
    arch = (f"{config.get('netG', '?')} generator, ngf {config.get('ngf', '?')}, {config.get('norm', '?')} norm, "
            f"{config.get('input_nc', '?')} input / {config.get('output_nc', '?')} output channels")
    data = settings.get("dataroot") or settings.get("domain_a")
    data_line = (f"`{Path(str(data)).name}` (unpaired folders A and B: `{data}` when trained)" if data
                 else "not recorded (no training checkpoint beside the weights)")
    if counters:
        planned = (settings.get("n_epochs") or 0) + (settings.get("n_epochs_decay") or 0)
        how_long = (f"{counters.get('iteration', 0)} iterations, epoch {counters.get('epoch', 0)}"
                    + (f" of {planned}" if planned else "")
                    + (f", batch size {settings['batch_size']}" if settings.get("batch_size") else ""))
    else:
        how_long = "not recorded (no training checkpoint beside the weights)"
    lines = [
        "---", f"library_name: {LIBRARY}", "pipeline_tag: image-to-image",
        "tags:", "- image-to-image", "- gan", f"- {kind}", "---", "",
        f"# {name}", "",
        f"A {kind} image-to-image model trained with the cyclegan project "
        f"({', '.join(directions)}{', ' + str(size) + ' px' if size else ''}).", "",
        "## What was trained", "",
        f"- model: {kind}, {arch}",
        f"- directions: {', '.join(directions)} (`--direction`)",
        f"- weights: {meta.get('weights', 'last')} (`{WEIGHTS_NAME}`, config inside; `{CONFIG_NAME}` for the Hub)",
        f"- trained at: {size} px" if size else "- trained at: size not recorded",
        f"- on: {data_line}",
        f"- how long: {how_long}", "",
        "## Evaluation", "",
    ]
    if figures:
        for file, nums in figures.items():
            lines.append(f"- `{file}`: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in nums.items()))
    else:
        lines.append("No evaluation figures were saved in the run folder (`cyclegan eval ... --json RUN/eval.json` "
                     "saves them).")
    lines += ["", "## Samples", ""]
    lines.append(f"![inputs (top) and {directions[0]} translations (bottom)]({SAMPLES_NAME})" if samples
                 else "No sample images were at hand when this card was written (`cyclegan push --samples DIR`).")
    lines += [
        "", "## Use it", "", "With the cyclegan project installed (the files are read with safetensors: no code runs):",
        "", "```bash",
        f"cyclegan translate --model hf:{repo} --input photos/ --output translated/",
        f"cyclegan app --model hf:{repo}", "```", "", "```python", "from PIL import Image", "from cyclegan import Translator",
        f'translator = Translator.from_pretrained("{repo}")', 'translated = translator(Image.open("in.jpg"))',
        "```", ""]
    return "\n".join(lines)


def hub_folder(run: str | os.PathLike, repo: str, out: str | os.PathLike, *, samples: str | os.PathLike | None = None,
               count: int = 4) -> Path:
    """Write the Hub-ready folder of ``run`` (a run folder, checkpoint or export) to ``out``:
    generators.safetensors, config.json, README.md and, when sample inputs are found (``samples``,
    else the run's test/train A images), samples.png."""
    if not repo_id_like(repo):
        raise HubError(f"push: {repo!r} is not a Hub repo id; write USER/REPO")
    run, out = Path(run), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_NAME
    config, meta = _export_of(run, weights)
    record = _run_record(run)
    from cyclegan.models.cut import config_directions, model_kind

    directions = config_directions(config)
    hub_config = {"library_name": LIBRARY, "weights": WEIGHTS_NAME, "model": model_kind(config),
                  "directions": list(directions), "size": meta.get("size"), "name": meta.get("name"),
                  "model_config": config}
    (out / CONFIG_NAME).write_text(json.dumps(hub_config, indent=2) + "\n", encoding="utf-8")
    run_dir = _run_dir(run)
    inputs = _sample_inputs(Path(samples) if samples is not None else None, record.get("settings", {}),
                            int(config.get("input_nc", 3)), count)
    if samples is not None and not inputs:
        raise HubError(f"push --samples {samples}: no images there")
    strip = out / SAMPLES_NAME
    has_samples = _sample_strip(weights, inputs, strip, directions[0])
    if not has_samples:
        strip.unlink(missing_ok=True)
    (out / CARD_NAME).write_text(_card(repo, config, meta, record, _eval_figures(run_dir), has_samples), encoding="utf-8")
    return out


def push_to_hub(run: str | os.PathLike, repo: str, *, folder: str | os.PathLike | None = None, private: bool = False,
                revision: str | None = None, dry_run: bool = False, samples: str | os.PathLike | None = None,
                token: str | None = None, endpoint: str | None = None) -> PushResult:
    """Write the Hub-ready folder of ``run`` (default ``RUN/hub``, or beside a file) and, unless
    ``dry_run``, upload it to model repo ``repo`` (created if missing, ``private`` if asked) at
    branch ``revision`` (created if missing; default main). Needs a token: ``token``, else
    huggingface_hub's (``HF_TOKEN``, ``hf auth login``)."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    run = Path(run)
    if folder is None:
        folder = _run_dir(run) / "hub"
    token = token or get_token()
    if not dry_run and not token:
        raise HubError("push: no Hugging Face token; log in with `hf auth login` or set HF_TOKEN "
                       "(--dry-run writes the folder without uploading)")
    out = hub_folder(run, repo, folder, samples=samples)
    result = PushResult(out, repo, revision=revision)
    if dry_run:
        return result
    api = HfApi(endpoint=endpoint or hub_endpoint(), token=token)
    try:
        url = api.create_repo(repo, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo, branch=revision, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=out, revision=revision,
                          commit_message=f"cyclegan push {run.name}")
    except HfHubHTTPError as e:
        status = e.response.status_code if getattr(e, "response", None) is not None else "?"
        why = {401: "the token was refused (log in again)", 403: "the token may not write to this repo"}.get(
            status, "see the Hub's status and try again")
        raise HubError(f"push {repo}: the Hub answered HTTP {status}: {why}; the folder is kept at {out}") from None
    except Exception as e:  # no network, a refused connection (httpx's errors are not OSErrors)
        raise HubError(f"push {repo}: cannot reach the Hub ({type(e).__name__}); the folder is kept at {out}") from None
    result.uploaded, result.url = True, str(url)
    return result

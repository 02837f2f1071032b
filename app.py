"""The cyclegan web app: translate images, batches and videos with CycleGAN generators, draw and see
a pix2pix model translate the drawing as it grows, download published models with one click, and
draw samples from the Fashion-MNIST GAN. This file is the
UI wiring only; what happens on a click is in ``cyclegan/app/`` (tested without a browser). The
HTTP API (docs/app.md) is a set of typed functions with meaningful names, separate from the
page's events.

    python app.py                                  # http://127.0.0.1:7860, bundled demo models
    python app.py --port 8000 --model runs/horse2zebra
    python app.py --host 0.0.0.0 --concurrency 2   # serve the network, two model calls at once
    python app.py --help                           # every flag (also: cyclegan app --help)
    python app.py --model hf:USER/REPO             # a model from the Hugging Face Hub

As a Hugging Face Space (sdk: gradio) this file runs as it is: the Space sets the host and port,
and the Space variable CYCLEGAN_MODEL (e.g. hf:USER/REPO) is the starting model (docs/hub.md).
"""

# No `from __future__ import annotations`: gr.api reads the API functions' type hints at run time.
import logging
import os
import signal
import sys
from typing import Any, Callable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the app must work offline

import gradio as gr  # noqa: E402
from gradio import FileData  # noqa: E402

from cyclegan import app as logic  # noqa: E402
from cyclegan.app import media, published  # noqa: E402
from cyclegan.app.catalog import download_command  # noqa: E402
from cyclegan.inference.download import published_weights_mb  # noqa: E402
from cyclegan.inference.loading import PUBLISHED_GENERATORS  # noqa: E402
from cyclegan.inference.sources import PUBLISHED_PIX2PIX  # noqa: E402
from cyclegan.app.memory import MemoryTrimmer, limit_malloc_arenas  # noqa: E402
from cyclegan.core import install  # noqa: E402

log = logging.getLogger("cyclegan.app")
_TRIMMER = MemoryTrimmer()

#: the tabs that use the model chosen above them
TRANSLATING_TABS = ("Translate", "Batch", "Video")
SIZE_CHOICES = [("Training size (fast; what the model saw)", "train"), ("Full resolution", "full")]
# System fonts: the default theme would fetch Google Fonts, which an offline machine cannot reach.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "SFMono-Regular", "monospace"])
# Small images (Fashion-MNIST is 28 px) are shown filling their box, with square pixels. Example
# labels wrap instead of being cut off on a narrow (phone) screen.
CSS = """
#before-after img, #recon-image img { width: 100%; height: 100%; object-fit: contain; }
#input-image img, #before-after img, #recon-image img, #samples img, #strip img, #batch-gallery img, #drawn img {
  image-rendering: pixelated; }
#examples button { white-space: normal; overflow-wrap: anywhere; max-width: 100%; }
#published button { flex: 0 1 auto; min-width: 0 !important; white-space: normal; overflow-wrap: anywhere; }
/* The two halves of the before/after slider say which is which */
#before-after:has(.slider-wrap)::before, #before-after:has(.slider-wrap)::after {
  position: absolute; bottom: var(--size-2); z-index: 100; padding: 1px var(--size-2); border-radius: var(--radius-sm);
  background: rgba(0, 0, 0, 0.65); color: white; font-size: var(--text-sm); pointer-events: none; }
#before-after:has(.slider-wrap)::before { content: "before: the input"; left: var(--size-2); }
#before-after:has(.slider-wrap)::after { content: "after: the translation"; right: var(--size-2); }
/* The model's name ends before the dropdown's caret; on a phone in a smaller type, so that it fits */
#model input { padding-right: var(--size-6); text-overflow: ellipsis; }
@media (max-width: 640px) { #model input { font-size: var(--text-xs); } }
/* On a phone the examples come first in the Translate tab, within the first screen */
@media (max-width: 640px) { #examples { order: -1; } }
/* Batch: pairs as thumbnails (a click opens one large), three pairs to a row on a wide screen and one on a
   phone, the whole of a small batch in view, captions wrapped instead of cut off */
#batch-gallery .grid-container { --grid-cols: 6 !important; }
@media (max-width: 640px) { #batch-gallery .grid-container { --grid-cols: 2 !important; } }
#batch-gallery .grid-wrap { max-height: none; }
#batch-gallery .caption-label { white-space: normal; overflow-wrap: anywhere; max-width: calc(100% - 8px); }
"""


def _upload_path(payload: Any) -> str | None:
    """The server-side path of an uploaded file. Upload events run without gradio's
    preprocessing (which would open the file and fail with a stack trace on non-images), so they
    get the upload's file record; gradio has already checked that it lies in its upload folder."""
    if isinstance(payload, dict):
        return payload.get("path") or None
    if payload is not None and hasattr(payload, "path"):
        return payload.path or None
    return payload or None


def _call(action: Callable[..., Any], *args: Any, toasts: bool = True, **kwargs: Any) -> Any:
    """Run one backend action: a UserError becomes the error pop-up with its message, anything
    unexpected a short message (the details go to the server log); notes become warnings (with
    ``toasts=False`` the caller shows them in the page instead)."""
    try:
        result = action(*args, **kwargs)
    except logic.UserError as e:
        raise gr.Error(str(e), print_exception=False) from None
    except Exception as e:
        log.exception("unexpected error in %s", getattr(action, "__name__", action))
        raise gr.Error(f"Something went wrong ({type(e).__name__}); the details are in the server's log. "
                       "Try another input or model.", print_exception=False) from None
    finally:
        _TRIMMER.after_request()
    for note in getattr(result, "notes", ()) if toasts else ():
        gr.Warning(note)
    return result


def _progress_callback(progress: gr.Progress, desc: str, unit: str) -> Callable[[int, int | None], None]:
    return lambda done, total: progress((done, total), desc=desc, unit=unit)


def build_ui(backend: logic.AppBackend) -> gr.Blocks:
    catalog = backend.catalog()
    examples = logic.labelled_examples(catalog)

    with gr.Blocks(title="CycleGAN", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# CycleGAN\nUnpaired image-to-image translation of images, batches and videos, and samples "
                    "from a Fashion-MNIST GAN.")

        # -- the model, shared by the Translate, Batch and Video tabs ----------------------------
        with gr.Row(equal_height=False) as model_row:
            with gr.Column(scale=3, min_width=240):
                model = gr.Dropdown(catalog.translate_choices(), value=catalog.default_translate,
                                    label="Model and direction (Translate, Batch, Video)", elem_id="model")
                rescan = gr.Button("Rescan models", size="sm")
            with gr.Column(scale=2, min_width=240):
                info_panel = gr.Markdown(_info(backend, catalog.default_translate), elem_id="model-info")
        with gr.Accordion("Published models: one click downloads and selects one", open=not catalog.translate,
                          elem_id="published") as published_box:
            published_status = gr.Markdown(
                "A click downloads the generator (its size on the button) from the original release's server "
                "(or `$CYCLEGAN_BASE_URL`) into the checkpoints folder, checks it and selects the model; "
                f"`{download_command('NAME', backend.settings.checkpoints_dir)}` does the same from a terminal.",
                elem_id="published-status")
            with gr.Row():
                get_buttons = {name: gr.Button(f"{name} ({published_weights_mb(name):g} MB)", size="sm", scale=0,
                                               elem_id=f"get-{name}")
                               for name in (*PUBLISHED_GENERATORS, *PUBLISHED_PIX2PIX)}
        missing = gr.Markdown(catalog.missing_markdown())

        # The tabs wrap onto a second row on a narrow screen instead of hiding behind a "..." menu. Entered
        # here and left after the last tab (before the events) rather than indenting every tab.
        tabs = gr.Tabs(overflow_behavior="wrap", elem_id="tabs")
        tabs.__enter__()
        with gr.Tab("Translate"):
            with gr.Row():
                # The input with the examples right under it: on a phone they come before the results.
                with gr.Column(min_width=300):
                    image_in = gr.Image(label="Input", type="filepath", image_mode=None,
                                        sources=["upload", "clipboard", "webcam"], elem_id="input-image", height=360)
                    if examples:
                        # The example sets the image only; on_example keeps a model of the user's own
                        # (see example_choice).
                        example_set = gr.Examples(examples=[[str(p)] for p, _, _ in examples], inputs=[image_in],
                                                  example_labels=[label for _, label, _ in examples],
                                                  elem_id="examples", examples_per_page=12,
                                                  label="Examples by domain (on the demo model a click picks the "
                                                        "direction that translates it)")
                before_after = gr.ImageSlider(label="Before / after (drag the handle)", type="filepath",
                                              format="png", interactive=False, elem_id="before-after", height=360,
                                              buttons=["download", "fullscreen"])
                image_recon = gr.Image(label="Translated back", format="png", interactive=False, visible=False,
                                       buttons=["download", "fullscreen"], elem_id="recon-image", height=360)
            with gr.Row():
                # columns with min widths: on a narrow screen they wrap onto lines of their own
                # (form fields side by side in one row would be clipped instead)
                with gr.Column(scale=2, min_width=300):
                    size = gr.Radio(SIZE_CHOICES, value="train", label="Size")
                with gr.Column(scale=1, min_width=300):
                    cycle = gr.Checkbox(label="Also translate back (cycle reconstruction)", value=False)
            translate = gr.Button("Translate", variant="primary", elem_id="translate-button")
            info = gr.Markdown(elem_id="translate-info")
            download = gr.File(label="Download the result (PNG, at its true size)", interactive=False,
                               elem_id="download")

        with gr.Tab("Batch"):
            batch_files = gr.File(label="Images (choose or drop several)", file_count="multiple",
                                  file_types=["image"], elem_id="batch-files")
            batch_size = gr.Radio(SIZE_CHOICES, value="train", label="Size")
            batch_go = gr.Button("Translate all", variant="primary", elem_id="batch-button")
            batch_info = gr.Markdown(elem_id="batch-info")
            gallery = gr.Gallery(label="Each input beside its translation (click one to see it large)", columns=2,
                                 object_fit="contain", height="auto", allow_preview=True,
                                 elem_id="batch-gallery", interactive=False)
            batch_zip = gr.File(label="All translations (zip, true size)", interactive=False, elem_id="batch-zip")

        with gr.Tab("Video"):
            video_in = gr.Video(label="Clip", sources=["upload"], elem_id="video-input", height=320)
            with gr.Row():
                with gr.Column(scale=2, min_width=300):
                    video_size = gr.Radio(SIZE_CHOICES, value="train", label="Size")
                with gr.Column(scale=1, min_width=300):
                    smoothing = gr.Slider(0, 0.9, value=0, step=0.05, label="Temporal smoothing",
                                          info="blends each frame with the previous output: less flicker, "
                                               "more ghosting behind moving things")
            video_go = gr.Button("Translate the video", variant="primary", elem_id="video-button")
            video_info = gr.Markdown(elem_id="video-info")
            video_out = gr.Video(label="Translated (frame size, frame rate and audio kept)", interactive=False,
                                 elem_id="video-output", height=320)

        with gr.Tab("Draw") as draw_tab:
            gr.Markdown("Draw the edges of something with the mouse or a finger, and a pix2pix model draws the "
                        "object as you go (Isola et al. 2017; the bundled model knows Fashion-MNIST items: "
                        "shoes, shirts, bags, trousers). Upload an edge map to start from one.")
            with gr.Row():
                draw_model = gr.Dropdown(catalog.draw_choices(), value=catalog.default_draw,
                                         label="pix2pix model", elem_id="draw-model", scale=4)
            with gr.Row(equal_height=True):
                sketch = gr.Sketchpad(label="Draw here", type="numpy", image_mode="RGBA", sources=("upload",),
                                      canvas_size=(256, 256), fixed_canvas=True, height=420, layers=False,
                                      brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=6),
                                      elem_id="sketch")
                drawn = gr.Image(label="Translation", format="png", interactive=False, elem_id="drawn",
                                 height=420, buttons=["download", "fullscreen"])
            draw_info = gr.Markdown("Draw with the mouse or a finger: the translation appears as you draw.",
                                    elem_id="draw-info")

        with gr.Tab("Generate"):
            with gr.Row():
                latent = gr.Dropdown(catalog.generate_choices(), value=catalog.default_generate,
                                     label="Generator (noise \u2192 image)", scale=4)
                rescan_g = gr.Button("Rescan models", scale=1, size="sm")
            no_latent = gr.Markdown(catalog.generate_markdown())
            with gr.Row():
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed")
                count = gr.Slider(1, backend.settings.max_count, value=16, step=1, label="Count")
            generate = gr.Button("Generate", variant="primary", elem_id="generate-button")
            samples = gr.Image(label="Samples", format="png", interactive=False, elem_id="samples",
                               buttons=["download", "fullscreen"])
            samples_info = gr.Markdown()
            samples_file = gr.File(label="Download (PNG, true size)", interactive=False)
            gr.Markdown("### Latent interpolation\nA walk through latent space from the noise of seed A to "
                        "that of seed B.")
            with gr.Row():
                seed_a = gr.Number(value=0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed A")
                seed_b = gr.Number(value=1, precision=0, minimum=0, maximum=2**31 - 1, label="Seed B")
                steps = gr.Slider(2, backend.settings.max_steps, value=8, step=1, label="Steps")
            interpolate = gr.Button("Interpolate", elem_id="interpolate-button")
            strip = gr.Image(label="Interpolation", format="png", interactive=False, elem_id="strip",
                             buttons=["download", "fullscreen"])
            strip_info = gr.Markdown()
            strip_file = gr.File(label="Download (PNG, true size)", interactive=False)

        tabs.__exit__(None, None, None)

        # -- the page's events (private: the API is below) ---------------------------------------
        def shown(image):
            # Hand gradio a file, not a PIL image: gradio writes PIL results into its content-hashed
            # cache in place (Path.write_bytes), so two requests with the same result (the same
            # upload twice at once) truncate the file while the other is being served, and that
            # client gets 0 bytes. Files are copied into the cache atomically.
            return None if image is None else str(backend.image_file(image, "shown.png"))

        def on_translate(payload, choice_id, size_mode, want_cycle):
            r = _call(backend.translate, _upload_path(payload), choice_id, full_res=size_mode == "full",
                      cycle=bool(want_cycle), toasts=False)
            # notes under the result they are about, not in a pop-up over the model panel
            notes = "".join(f"\n- {note}" for note in r.notes)
            return ((shown(r.input_display), shown(r.display)),
                    gr.update(value=shown(r.reconstruction), visible=r.reconstruction is not None),
                    r.info + ("\n" + notes if notes else ""), str(r.download))

        def on_batch(files, choice_id, size_mode, progress=gr.Progress()):
            paths = [_upload_path(f) for f in files or []]
            r = _call(media.translate_batch, backend, paths, choice_id, full_res=size_mode == "full",
                      on_progress=_progress_callback(progress, "translating", "images"))
            return [(str(p), c) for p, c in r.gallery], r.info, str(r.archive) if r.archive else None

        def on_video(payload, choice_id, size_mode, smooth, progress=gr.Progress()):
            r = _call(media.translate_video_upload, backend, _upload_path(payload), choice_id,
                      full_res=size_mode == "full", smoothing=smooth,
                      on_progress=_progress_callback(progress, "translating", "frames"))
            return str(r.video), r.info

        def on_draw(drawing, choice_id):
            r = _call(backend.draw, drawing, choice_id)
            return shown(r.display), r.info

        def on_generate(key, seed_value, n):
            r = _call(backend.generate, key, seed_value, n)
            return shown(r.image), r.info, str(r.download)

        def on_interpolate(key, a, b, n):
            r = _call(backend.interpolate, key, a, b, n)
            return shown(r.image), r.info, str(r.download)

        def refreshed(select: str | None, current_latent: str | None) -> tuple:
            cat = backend.catalog(refresh=True)
            ids, keys = [c.id for c in cat.translate], [e.key for e in cat.generate]
            value = select if select in ids else cat.default_translate
            return (gr.update(choices=cat.translate_choices(), value=value), cat.missing_markdown(),
                    gr.update(choices=cat.generate_choices(),
                              value=current_latent if current_latent in keys else cat.default_generate),
                    cat.generate_markdown(), gr.update(choices=cat.draw_choices()))

        def on_get(name: str):
            def get(current_latent, progress=gr.Progress()):
                def bar(done: int, total: int | None) -> None:
                    got = f"{done / 1e6:.1f}" + (f" of {total / 1e6:.1f}" if total else "")
                    progress((done, total), desc=f"Downloading {name}: {got} MB", unit="bytes")

                progress(0, desc=f"Downloading {name}")
                try:
                    choice_id = published.download_published(backend, name, on_progress=bar)
                except logic.UserError as e:  # offline, a bad file: one line in the panel
                    return (gr.update(), f"**{e}**", gr.update(), gr.update(), gr.update(), gr.update())
                model_update, missing_md, latent_update, latent_md, draw_update = refreshed(choice_id, current_latent)
                status = f"{name} is downloaded, checked and selected."
                return model_update, status, missing_md, latent_update, latent_md, draw_update
            return get

        def on_info(choice_id):
            return _info(backend, choice_id)

        def on_example(picked, current):
            index = picked[0] if isinstance(picked, (tuple, list)) else picked
            suggested = examples[index][2] if isinstance(index, int) and 0 <= index < len(examples) else None
            choice_id, note = logic.example_choice(backend.catalog(), current, suggested)
            return (gr.update() if choice_id == current else gr.update(value=choice_id)), note

        model_calls = dict(concurrency_id="model", concurrency_limit=backend.settings.concurrency)
        private = dict(api_visibility="private")
        # preprocess=False: uploads reach the backend as file records (see _upload_path), so that any
        # file, even a non-image, gets a readable message instead of a decoding error.
        translate.click(on_translate, [image_in, model, size, cycle], [before_after, image_recon, info, download],
                        preprocess=False, **private, **model_calls)
        batch_go.click(on_batch, [batch_files, model, batch_size], [gallery, batch_info, batch_zip],
                       preprocess=False, **private, **model_calls)
        video_go.click(on_video, [video_in, model, video_size, smoothing], [video_out, video_info],
                       preprocess=False, **private, **model_calls)
        # every stroke (and an upload) changes the sketchpad; a change during a translation waits and
        # only the newest is translated (always_last), so the picture keeps up with the hand
        sketch.change(on_draw, [sketch, draw_model], [drawn, draw_info], trigger_mode="always_last",
                      show_progress="hidden", **private, **model_calls)
        # the brush ready on arrival (the editor starts on its image tool), so drawing starts at once
        draw_tab.select(None, js="() => { setTimeout(() => document.querySelector("
                                 "'#sketch button[aria-label=\"Brush\"]')?.click(), 200); }")
        draw_model.change(on_draw, [sketch, draw_model], [drawn, draw_info], show_progress="hidden", **private,
                          **model_calls)
        generate.click(on_generate, [latent, seed, count], [samples, samples_info, samples_file], **private,
                       **model_calls)
        interpolate.click(on_interpolate, [latent, seed_a, seed_b, steps], [strip, strip_info, strip_file],
                          **private, **model_calls)
        model.change(on_info, [model], [info_panel], **private)
        # The model block above the tabs is for the tabs that translate: out of view on the others (Generate
        # has its own generator list and Rescan button; Draw its own model list, and the published models,
        # pix2pix's among them, stay in view there).
        def on_tab(evt: gr.SelectData):
            shown = evt.value in TRANSLATING_TABS
            return [gr.update(visible=shown), gr.update(visible=shown or evt.value == "Draw"), gr.update(visible=shown)]

        tabs.select(on_tab, None, [model_row, published_box, missing], queue=False, **private)
        if examples:
            example_set.dataset.click(on_example, [example_set.dataset, model], [model, info], queue=False, **private)
        rescan_outputs = [model, missing, latent, no_latent, draw_model]
        for button in (rescan, rescan_g):
            button.click(lambda current, current_latent: refreshed(current, current_latent), [model, latent],
                         rescan_outputs, queue=False, **private)
        for name, button in get_buttons.items():
            button.click(on_get(name), [latent], [model, published_status, missing, latent, no_latent, draw_model],
                         show_progress="full", show_progress_on=[published_status], **private)
        _api(backend, catalog.default_translate, model_calls)
    return demo


def _info(backend: logic.AppBackend, choice_id: Any) -> str:
    if not choice_id:
        return ""
    try:
        return published.model_info(backend, choice_id)
    except logic.UserError as e:
        return f"**{e}**"


def _flag(value: Any, name: str) -> bool:
    """A true/false API parameter; anything else is a one-line error, not silently truthy."""
    if not isinstance(value, bool):
        raise gr.Error(f"{name} must be true or false, got {value!r}.", print_exception=False)
    return value


def _file(path: Any) -> FileData:
    return FileData(path=str(path))


def _api(backend: logic.AppBackend, default_model: str | None, model_calls: dict) -> None:
    """The HTTP API: one typed function per action (docs/app.md shows a gradio_client call for
    each). Files come back as paths; errors as the same one-line messages as in the page."""

    def translate(image: FileData, model: str = default_model or "", full_resolution: bool = False) -> FileData:
        """Translate one image; returns the translated PNG at its true size."""
        r = _call(backend.translate, _upload_path(image), model, full_res=_flag(full_resolution, "full_resolution"))
        return _file(r.download)

    def translate_batch(images: list[FileData], model: str = default_model or "",
                        full_resolution: bool = False) -> FileData:
        """Translate several images; returns a zip of the translated PNGs."""
        r = _call(media.translate_batch, backend, [_upload_path(i) for i in images or []], model,
                  full_res=_flag(full_resolution, "full_resolution"))
        if r.archive is None:
            raise gr.Error("No image could be translated: " + " ".join(r.notes), print_exception=False)
        return _file(r.archive)

    def translate_video(video: FileData, model: str = default_model or "", full_resolution: bool = False,
                        smoothing: float = 0.0) -> FileData:
        """Translate a clip frame by frame; returns the MP4 (frame size, frame rate and audio kept)."""
        r = _call(media.translate_video_upload, backend, _upload_path(video), model,
                  full_res=_flag(full_resolution, "full_resolution"), smoothing=smoothing)
        return _file(r.video)

    def models() -> list[list[str]]:
        """Rescan the model folders; returns [id, label] of every model and direction."""
        return [[c.id, c.label] for c in backend.catalog(refresh=True).translate]

    def model_info(model: str) -> str:
        """What a model is: domains, trained size, grayscale or colour, evaluation figures (markdown)."""
        return _call(published.model_info, backend, model)

    def download_model(name: str) -> str:
        """Download a published model (e.g. horse2zebra); returns its id for the other endpoints."""
        return _call(published.download_published, backend, name)

    def generate(model: str = "bundled-latent", seed: int = 0, count: int = 16) -> FileData:
        """Samples of a noise -> image generator; returns the grid PNG."""
        return _file(_call(backend.generate, model, seed, count).download)

    def interpolate(model: str = "bundled-latent", seed_a: int = 0, seed_b: int = 1, steps: int = 8) -> FileData:
        """A latent walk from seed A to seed B; returns the strip PNG."""
        return _file(_call(backend.interpolate, model, seed_a, seed_b, steps).download)

    for fn in (translate, translate_batch, translate_video, generate, interpolate):
        gr.api(fn, api_name=fn.__name__, **model_calls)
    for fn in (models, model_info):
        gr.api(fn, api_name=fn.__name__, queue=False)
    gr.api(download_model, api_name="download_model")


def serve(settings: logic.AppSettings, *, block: bool = True) -> gr.Blocks:
    """Build the app on ``settings`` and serve it; ``block=False`` returns once it is serving."""
    limit_malloc_arenas()  # before gradio starts its worker threads (see cyclegan.app.memory)
    backend = logic.AppBackend(settings)
    try:
        backend.preload()
        demo = build_ui(backend)
        demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
        examples_dir = logic.EXAMPLES_DIR.resolve()
        # Model folders are read by the app, never served; the example images are served.
        blocked = [str(r) for r in backend.model_roots() if not logic.is_inside(examples_dir, r)]
        _, local_url, share_url = demo.launch(
            server_name=settings.host, server_port=settings.port, share=settings.share,
            max_file_size=settings.max_file_size, allowed_paths=[str(examples_dir)], blocked_paths=blocked,
            show_error=False, ssr_mode=False, mcp_server=False, prevent_thread_lock=True, quiet=True,
            theme=THEME, css=CSS, footer_links=["api", "gradio"])
        cat = backend.catalog()
        print(f"{len(cat.translate)} translation choice(s), {len(cat.generate)} generator(s); serving on "
              f"{local_url}{f' and {share_url}' if share_url else ''}", file=sys.stderr, flush=True)
        if block:
            demo.block_thread()  # until Ctrl-C or SIGTERM
    finally:
        if block:
            backend.close()
    return demo


#: the signal that stopped the app: gradio's block_thread swallows the KeyboardInterrupt and
#: returns, so the exit status is taken from here (130 for SIGINT, 143 for SIGTERM, as training
#: and translation give), not from how serve() returned
_stopped_by: list[int] = []


def _stop(signum: int, frame: Any) -> None:
    _stopped_by.append(signum)
    raise KeyboardInterrupt  # SIGTERM: close the server and delete temporary files, as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up probes
    settings = logic.parse_args(argv)
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    _stopped_by.clear()
    try:
        install.check()
        serve(settings)
    except install.BrokenInstall as e:  # torchvision built for another torch: the line says the fix
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
    except logic.UserError as e:  # a broken --model, an unavailable --device: one line, no traceback
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the port is taken, the address cannot be bound
        print(f"app.py: error: {e} (choose another --port, or set GRADIO_SERVER_PORT)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 128 + (_stopped_by[0] if _stopped_by else signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if _stopped_by:
        return 128 + _stopped_by[0]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The cyclegan web app: translate images with CycleGAN generators and draw samples from the
Fashion-MNIST GAN. This file is the UI wiring only; what happens on a click is in
``cyclegan/app/`` (tested without a browser).

    python app.py                                  # http://127.0.0.1:7860, bundled demo models
    python app.py --port 8000 --model runs/horse2zebra
    python app.py --host 0.0.0.0 --concurrency 2   # serve the network, two model calls at once
    python app.py --help                           # every flag (also: cyclegan app --help)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any, Callable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the app must work offline

import gradio as gr  # noqa: E402

from cyclegan import app as logic  # noqa: E402

log = logging.getLogger("cyclegan.app")

SIZE_CHOICES = [("Training size (fast; what the model saw)", "train"), ("Full resolution", "full")]
# System fonts: the default theme would fetch Google Fonts, which an offline machine cannot reach.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "SFMono-Regular", "monospace"])
# Small images (Fashion-MNIST is 28 px) are shown filling their box, with square pixels.
CSS = """
#input-image img, #output-image img, #recon-image img { width: 100%; height: 100%; object-fit: contain; }
#input-image img, #output-image img, #recon-image img, #samples img, #strip img { image-rendering: pixelated; }
"""


def _upload_path(payload: Any) -> str | None:
    """The server-side path of an uploaded image. The translate event runs without gradio's
    preprocessing (which would open the file with PIL and fail with a stack trace on non-images),
    so it gets the upload's file record; gradio has already checked that it lies in its upload
    folder."""
    if isinstance(payload, dict):
        return payload.get("path") or None
    return payload or None


def _call(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one backend action: a UserError becomes the error pop-up with its message, anything
    unexpected a short message (the details go to the server log); notes become warnings."""
    try:
        result = action(*args, **kwargs)
    except logic.UserError as e:
        raise gr.Error(str(e), print_exception=False) from None
    except Exception as e:
        log.exception("unexpected error in %s", getattr(action, "__name__", action))
        raise gr.Error(f"Something went wrong ({type(e).__name__}); the details are in the server's log. "
                       "Try another image or model.", print_exception=False) from None
    for note in getattr(result, "notes", ()):
        gr.Warning(note)
    return result


def build_ui(backend: logic.AppBackend) -> gr.Blocks:
    catalog = backend.catalog()
    examples = [str(p) for p in logic.example_images()]

    with gr.Blocks(title="CycleGAN", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# CycleGAN\nUnpaired image-to-image translation, and samples from a Fashion-MNIST GAN.")

        with gr.Tab("Translate"):
            with gr.Row():
                model = gr.Dropdown(catalog.translate_choices(), value=catalog.default_translate,
                                    label="Model and direction", scale=4, elem_id="model")
                rescan = gr.Button("Rescan models", scale=1, size="sm")
            missing = gr.Markdown(catalog.missing_markdown())
            with gr.Row():
                size = gr.Radio(SIZE_CHOICES, value="train", label="Size", scale=2)
                cycle = gr.Checkbox(label="Also translate back (cycle reconstruction)", value=False, scale=1)
            with gr.Row(equal_height=True):
                image_in = gr.Image(label="Input", type="filepath", image_mode=None,
                                    sources=["upload", "clipboard", "webcam"], elem_id="input-image", height=360)
                image_out = gr.Image(label="Translated", format="png", interactive=False, elem_id="output-image",
                                     height=360, buttons=["download", "fullscreen"])
                image_recon = gr.Image(label="Translated back", format="png", interactive=False, visible=False,
                                       buttons=["download", "fullscreen"],
                                       elem_id="recon-image", height=360)
            translate = gr.Button("Translate", variant="primary", elem_id="translate-button")
            info = gr.Markdown(elem_id="translate-info")
            download = gr.File(label="Download the result (PNG, at its true size)", interactive=False,
                               elem_id="download")
            if examples:
                gr.Examples(examples=[[p] for p in examples], inputs=[image_in], label="Examples (click one)",
                            examples_per_page=12)

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

        # -- events -------------------------------------------------------------------------------
        def shown(image):
            # Hand gradio a file, not a PIL image: gradio writes PIL results into its content-hashed
            # cache in place (Path.write_bytes), so two requests with the same result (the same
            # upload twice at once) truncate the file while the other is being served, and that
            # client gets 0 bytes. Files are copied into the cache atomically.
            return None if image is None else str(backend.image_file(image, "shown.png"))

        def on_translate(payload, choice_id, size_mode, want_cycle):
            r = _call(backend.translate, _upload_path(payload), choice_id, full_res=size_mode == "full",
                      cycle=bool(want_cycle))
            return (shown(r.display), gr.update(value=shown(r.reconstruction), visible=r.reconstruction is not None),
                    r.info, str(r.download))

        def on_generate(key, seed_value, n):
            r = _call(backend.generate, key, seed_value, n)
            return shown(r.image), r.info, str(r.download)

        def on_interpolate(key, a, b, n):
            r = _call(backend.interpolate, key, a, b, n)
            return shown(r.image), r.info, str(r.download)

        def on_rescan(current, current_latent):
            cat = backend.catalog(refresh=True)
            ids, keys = [c.id for c in cat.translate], [e.key for e in cat.generate]
            return (gr.update(choices=cat.translate_choices(),
                              value=current if current in ids else cat.default_translate),
                    cat.missing_markdown(),
                    gr.update(choices=cat.generate_choices(),
                              value=current_latent if current_latent in keys else cat.default_generate),
                    cat.generate_markdown())

        model_calls = dict(concurrency_id="model", concurrency_limit=backend.settings.concurrency)
        # preprocess=False: the upload reaches the backend as a file record (see _upload_path), so
        # that any file, even a non-image, gets a readable message instead of a decoding error.
        translate.click(on_translate, [image_in, model, size, cycle], [image_out, image_recon, info, download],
                        api_name="translate", preprocess=False, **model_calls)
        generate.click(on_generate, [latent, seed, count], [samples, samples_info, samples_file],
                       api_name="generate", **model_calls)
        interpolate.click(on_interpolate, [latent, seed_a, seed_b, steps], [strip, strip_info, strip_file],
                          api_name="interpolate", **model_calls)
        rescan_outputs = [model, missing, latent, no_latent]
        rescan.click(on_rescan, [model, latent], rescan_outputs, api_name="rescan", queue=False)
        rescan_g.click(on_rescan, [model, latent], rescan_outputs, api_visibility="private", queue=False)
    return demo


def serve(settings: logic.AppSettings, *, block: bool = True) -> gr.Blocks:
    """Build the app on ``settings`` and serve it; ``block=False`` returns once it is serving."""
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


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM: close the server and delete temporary files, as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own start-up probes
    settings = logic.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        serve(settings)
    except logic.UserError as e:  # a broken --model, an unavailable --device: one line, no traceback
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the port is taken, the address cannot be bound
        print(f"app.py: error: {e} (choose another --port, or set GRADIO_SERVER_PORT)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

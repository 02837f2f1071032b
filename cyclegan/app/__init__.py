"""What the Gradio app (app.py) does on a click, testable without a browser: its settings, the
catalogue of models it offers, decoding uploads, and the actions (translate, generate)."""

from cyclegan.app.actions import (EXAMPLES_DIR, AppBackend, DrawResult, GenerateResult, TranslateResult, example_choice,
                                  example_images, labelled_examples)
from cyclegan.app.catalog import BUNDLED_CYCLEGAN, Catalog, Choice, ModelEntry, is_inside
from cyclegan.app.settings import AppSettings, UserError, add_app_arguments, parse_args, settings_from_args
from cyclegan.app.uploads import enlarge, read_upload, to_image

__all__ = ["BUNDLED_CYCLEGAN", "EXAMPLES_DIR", "AppBackend", "AppSettings", "Catalog", "Choice", "DrawResult", "GenerateResult",
           "ModelEntry", "TranslateResult", "UserError", "add_app_arguments", "enlarge", "example_choice", "example_images", "is_inside",
           "labelled_examples", "parse_args", "read_upload", "settings_from_args",
           "to_image"]

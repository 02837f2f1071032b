"""What the Gradio app (app.py) does on a click, testable without a browser: its settings, the
catalogue of models it offers, decoding uploads, and the actions (translate, generate)."""

from cyclegan.app.actions import EXAMPLES_DIR, AppBackend, GenerateResult, TranslateResult, example_images
from cyclegan.app.catalog import BUNDLED_CYCLEGAN, Catalog, Choice, ModelEntry, is_inside
from cyclegan.app.settings import AppSettings, UserError
from cyclegan.app.uploads import enlarge, read_upload, to_image

__all__ = ["BUNDLED_CYCLEGAN", "EXAMPLES_DIR", "AppBackend", "AppSettings", "Catalog", "Choice", "GenerateResult",
           "ModelEntry", "TranslateResult", "UserError", "enlarge", "example_images", "is_inside", "read_upload",
           "to_image"]

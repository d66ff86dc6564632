"""Publishing a ReLU model: the release folder, its reload gate, model card, plots, upload, ONNX export, sparsity.

Apart from the method (the package's top level needs torch and transformers only): these modules turn a
trained model into a folder others can load with stock transformers, and put it on the Hub.
``save_release(model, folder)`` is the one call a script needs; ``upload_release`` pushes the folder.
"""

from .card import build_model_card, set_card_section
from .folder import (
    CARD_FILENAME,
    MANIFEST_FILENAME,
    PROFILE_JSON_FILENAME,
    PROFILE_PLOT_FILENAME,
    REPORT_FILENAME,
    add_release_files,
    check_output_dir,
    check_release_dir,
    reluize_for_release,
    save_release,
)
from .gate import check_reload, dummy_inputs, verify_reloads
from .plots import load_profile_json, save_profile_json, save_profile_plot
from .twin import save_twin_release
from .upload import push_reluized, upload_release

__all__ = [
    "CARD_FILENAME",
    "MANIFEST_FILENAME",
    "PROFILE_JSON_FILENAME",
    "PROFILE_PLOT_FILENAME",
    "REPORT_FILENAME",
    "add_release_files",
    "build_model_card",
    "check_output_dir",
    "check_release_dir",
    "check_reload",
    "dummy_inputs",
    "load_profile_json",
    "push_reluized",
    "reluize_for_release",
    "save_profile_json",
    "save_profile_plot",
    "save_release",
    "save_twin_release",
    "set_card_section",
    "upload_release",
    "verify_reloads",
]

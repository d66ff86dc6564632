"""λ-GELU for the Hugging Face ecosystem: learnable gate hardness, hardening, ReLU-ization.

Importing the package registers ``"lambda_gelu"`` and ``"lambda_gelu_tanh"`` in transformers'
``ACT2FN`` (see :func:`register`).
"""

from .activation import LambdaGELU, lambda_modules
from .config import DistillationConfig, HardeningConfig, LambdaGELUConfig
from .conversion import convert_to_lambda_gelu, from_pretrained, patch_from_pretrained
from .distillation import DistillationTrainer, Distiller
from .errors import (
    CheckpointDiskFullError,
    DataFileError,
    ExportAuditError,
    GELURemnantsError,
    InertSettingWarning,
    InvalidInputError,
    InvalidSettingError,
    LambdaGELUError,
    LambdaGELUWarning,
    LambdaOptimizerError,
    LRFloorError,
    MissingExtraError,
    MissingTeacherError,
    ModelFolderError,
    ModelSourceError,
    NoGELUFoundError,
    NonFiniteLossError,
    NotAReleaseError,
    NotLambdaGELUModelError,
    NotReluModelError,
    OutputDirNotEmptyError,
    OutputDirOverlapError,
    PushError,
    ReleaseDirBusyError,
    ReleaseDirNotEmptyError,
    ReleaseDiskFullError,
    ReleaseReloadError,
    ReloadCheckedFileError,
    ReluModelRequiredError,
    SingularCalibrationError,
    UncontrolledGELUError,
    UnhardenedSwapError,
    UnhardenedSwapWarning,
    UnsupportedPoolingError,
    UnsupportedRefitError,
)
from .fidelity import FidelityReport, measure_fidelity
from .gelu_remnants import find_gelu_remnants
from .hardening import HardeningCallback, target_lambda_for_tolerance
from .module_swap import swap_modules
from .ops import RELU_DISTANCE_CONSTANT, lambda_gelu
from .optim import create_lambda_gelu_optimizer, install_lambda_update, lambda_param_groups
from .peft_utils import add_lambda_modules_to_save
from .refit import RefitReport, refit_down_projections
from .registration import register
from .release import (
    build_model_card,
    dummy_inputs,
    push_reluized,
    save_profile_plot,
    save_release,
    save_twin_release,
    upload_release,
)
from .release.export import export_onnx, export_release
from .release.sparsity import measure_sparsity
from .relufy import RelufyArguments, RelufyTrainer, relufy
from .reluize import ReluizeReport, gelu_to_relu, hardness_profile, reluize
from .swap_measure import measure_swap, summary_metrics
from .trainer import LambdaGELUTrainer
from .training_args import LambdaGELUTrainingArguments

register()

__version__ = "0.1.0"

__all__ = [
    "CheckpointDiskFullError",
    "DataFileError",
    "DistillationConfig",
    "DistillationTrainer",
    "Distiller",
    "ExportAuditError",
    "FidelityReport",
    "GELURemnantsError",
    "HardeningCallback",
    "HardeningConfig",
    "InertSettingWarning",
    "InvalidInputError",
    "InvalidSettingError",
    "LRFloorError",
    "LambdaGELU",
    "LambdaGELUConfig",
    "LambdaGELUError",
    "LambdaGELUTrainer",
    "LambdaGELUTrainingArguments",
    "LambdaGELUWarning",
    "LambdaOptimizerError",
    "MissingExtraError",
    "MissingTeacherError",
    "ModelFolderError",
    "ModelSourceError",
    "NoGELUFoundError",
    "NonFiniteLossError",
    "NotAReleaseError",
    "NotLambdaGELUModelError",
    "NotReluModelError",
    "OutputDirNotEmptyError",
    "OutputDirOverlapError",
    "PushError",
    "ReleaseDirBusyError",
    "RELU_DISTANCE_CONSTANT",
    "ReleaseDirNotEmptyError",
    "ReleaseDiskFullError",
    "ReleaseReloadError",
    "ReloadCheckedFileError",
    "ReluModelRequiredError",
    "RefitReport",
    "RelufyArguments",
    "RelufyTrainer",
    "ReluizeReport",
    "UncontrolledGELUError",
    "UnhardenedSwapError",
    "UnhardenedSwapWarning",
    "SingularCalibrationError",
    "UnsupportedPoolingError",
    "UnsupportedRefitError",
    "add_lambda_modules_to_save",
    "build_model_card",
    "convert_to_lambda_gelu",
    "create_lambda_gelu_optimizer",
    "dummy_inputs",
    "export_onnx",
    "export_release",
    "find_gelu_remnants",
    "from_pretrained",
    "gelu_to_relu",
    "hardness_profile",
    "install_lambda_update",
    "lambda_gelu",
    "lambda_modules",
    "lambda_param_groups",
    "measure_fidelity",
    "measure_sparsity",
    "measure_swap",
    "patch_from_pretrained",
    "push_reluized",
    "register",
    "relufy",
    "refit_down_projections",
    "reluize",
    "save_profile_plot",
    "save_release",
    "save_twin_release",
    "summary_metrics",
    "swap_modules",
    "target_lambda_for_tolerance",
    "upload_release",
]

"""The pyfunc loader module that saved entity models name; the code is in
:mod:`manymodels.artifacts.entity_folder`.

Every entity model folder's ``MLmodel`` file, from this release and earlier ones, records
``loader_module: manymodels.flavor``, so this module stays where it is.
"""

from manymodels.artifacts.entity_folder import (
    ModelWriter,
    PyfuncEntityModel,
    _load_pyfunc,
    entity_model_files,
    load_entity_model,
)
from manymodels.artifacts.model_files import ModelFiles, environment_files, requirements

__all__ = [
    "ModelFiles",
    "ModelWriter",
    "PyfuncEntityModel",
    "_load_pyfunc",
    "entity_model_files",
    "environment_files",
    "load_entity_model",
    "requirements",
]

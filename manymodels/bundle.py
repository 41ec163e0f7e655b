"""The pyfunc loader module that saved job bundles name; the code is in
:mod:`manymodels.artifacts.bundle`.

Every job bundle's ``MLmodel`` file, from this release and earlier ones, records
``loader_module: manymodels.bundle``, so this module stays where it is.
"""

from manymodels.artifacts.bundle import (
    MANIFEST,
    PyfuncBundle,
    _load_pyfunc,
    bundle_name,
    read_manifest,
    write_bundle,
)

__all__ = [
    "MANIFEST",
    "PyfuncBundle",
    "_load_pyfunc",
    "bundle_name",
    "read_manifest",
    "write_bundle",
]

"""Looking after the registry once it holds thousands of models (``manymodels models``).

Every function takes the config whose registry it works on, checks a request in full before
it changes anything, and has a command of the same job:

* :func:`list_models` (``models list``), :func:`show_model` (``models show``);
* :func:`promote_models`, :func:`rollback_models` (``models promote``/``rollback``);
* :func:`prune_models` (``models prune``), :func:`stale_models` (``models stale``).

Example:
    >>> import manymodels
    >>> config = manymodels.load_config("my.yaml")                      # doctest: +SKIP
    >>> manymodels.list_models(config, where=["mase > 1.2"], sort=["-mase"])  # doctest: +SKIP
    >>> manymodels.rollback_models(config, job_id="4f2a...", dry_run=True)    # doctest: +SKIP
"""

from manymodels.lifecycle.listing import ModelDetails, list_models, show_model
from manymodels.lifecycle.moves import AliasMove, promote_models, rollback_models
from manymodels.lifecycle.pruning import Deletion, prune_models
from manymodels.lifecycle.stale import stale_models

__all__ = [
    "AliasMove",
    "Deletion",
    "ModelDetails",
    "list_models",
    "promote_models",
    "prune_models",
    "rollback_models",
    "show_model",
    "stale_models",
]

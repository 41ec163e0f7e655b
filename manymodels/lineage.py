"""The names of the tags manymodels writes on job runs, registered models and model versions.

Everything that writes or reads one of these tags names it from here: the job run (which job,
which command, which driver owns it), the registered model (the entity's keys) and each model
version's lineage (what trained it on which data, and how it scored). The keys of a version's
entity are tags too, under the key columns' own names.
"""

from __future__ import annotations

__all__ = [
    "BACKTEST_WINDOWS",
    "CHAMPION_BEFORE",
    "CONFIG_HASH",
    "DATA_FINGERPRINT",
    "DRIVER",
    "FIT_SECONDS",
    "ENTITIES",
    "ENTITY_KEYS",
    "FALLBACK",
    "HOLDOUT_START",
    "JOB_ID",
    "JOB_KIND",
    "MARGIN_RUNNER_UP",
    "MARGIN_SEASONAL_NAIVE",
    "OBSERVATIONS",
    "PARAMS_DIGEST",
    "PARTITION_ENTITIES",
    "PLAN",
    "REGISTRY_FALLBACK",
    "SOURCE_FINGERPRINT",
    "TAG_PREFIX",
    "TEMPLATE",
    "TEMPLATE_DIGEST",
    "TRAINED_UNTIL",
    "WINNER",
    "coverage_tag",
    "metric_tag",
]

TAG_PREFIX = "manymodels."

# A job's run; JOB_ID is also on every version the job registers.
JOB_ID = f"{TAG_PREFIX}job_id"
JOB_KIND = f"{TAG_PREFIX}job_kind"
CONFIG_HASH = f"{TAG_PREFIX}config_hash"
DRIVER = f"{TAG_PREFIX}driver"
REGISTRY_FALLBACK = f"{TAG_PREFIX}registry_fallback"

# A registered model: its entity's keys as JSON.
ENTITY_KEYS = f"{TAG_PREFIX}entity_keys"

# A model version's lineage.
TEMPLATE = f"{TAG_PREFIX}template"
TEMPLATE_DIGEST = f"{TAG_PREFIX}template_digest"
PARAMS_DIGEST = f"{TAG_PREFIX}params_digest"
DATA_FINGERPRINT = f"{TAG_PREFIX}data_fingerprint"
HOLDOUT_START = f"{TAG_PREFIX}holdout_start"
TRAINED_UNTIL = f"{TAG_PREFIX}trained_until"
OBSERVATIONS = f"{TAG_PREFIX}observations"
ENTITIES = f"{TAG_PREFIX}entities"  # a job bundle's version: how many entities it holds
# The champion's version number when this version was registered: where a rollback goes back to.
CHAMPION_BEFORE = f"{TAG_PREFIX}champion_before"
# The partition's file listing, template code and params, hashed together (see
# manymodels.tasks.unchanged), and how many entities the partition held: a retrain compares
# them on the driver and skips the partition without reading it.
SOURCE_FINGERPRINT = f"{TAG_PREFIX}source_fingerprint"
PARTITION_ENTITIES = f"{TAG_PREFIX}partition_entities"
# How long the entity took to train, in seconds: a retrain sizes its cluster and tasks by it.
FIT_SECONDS = f"{TAG_PREFIX}fit_seconds"

# How a model version was chosen (model.template: auto, or one template).
PLAN = f"{TAG_PREFIX}plan"
WINNER = f"{TAG_PREFIX}winner"
BACKTEST_WINDOWS = f"{TAG_PREFIX}backtest_windows"
FALLBACK = f"{TAG_PREFIX}fallback"
MARGIN_RUNNER_UP = f"{TAG_PREFIX}margin.runner_up"
MARGIN_SEASONAL_NAIVE = f"{TAG_PREFIX}margin.seasonal_naive"


def metric_tag(metric: str) -> str:
    """The tag holding a version's mean backtest score, e.g. ``manymodels.metric.mase``."""
    return f"{TAG_PREFIX}metric.{metric}"


def coverage_tag(level: str) -> str:
    """The tag holding a version's backtest interval coverage, e.g. ``manymodels.coverage.80``."""
    return f"{TAG_PREFIX}coverage.{level}"

"""The names of the tags manymodels writes on job runs, registered models and model versions.

Everything that writes or reads one of these tags names it from here: the job run (which job,
which command, which driver owns it), the registered model (the entity's keys) and each model
version's lineage (what trained it on which data, and how it scored). The keys of a version's
entity are tags too, under the key columns' own names.
"""

from __future__ import annotations

__all__ = [
    "CONFIG_HASH",
    "DATA_FINGERPRINT",
    "DRIVER",
    "ENTITIES",
    "ENTITY_KEYS",
    "HOLDOUT_START",
    "JOB_ID",
    "JOB_KIND",
    "OBSERVATIONS",
    "PARAMS_DIGEST",
    "REGISTRY_FALLBACK",
    "TAG_PREFIX",
    "TEMPLATE",
    "TEMPLATE_DIGEST",
    "TRAINED_UNTIL",
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


def metric_tag(metric: str) -> str:
    """The tag holding a version's score on its holdout, e.g. ``manymodels.metric.mase``."""
    return f"{TAG_PREFIX}metric.{metric}"

"""Exceptions raised by manymodels.

Every error a user can cause derives from :class:`ManyModelsError` and mixes in the builtin
that a caller would naturally catch. Messages name the thing at fault, the value seen and the
fix; the CLI prints them as one line.
"""

from __future__ import annotations


class ManyModelsError(Exception):
    """Base class of all errors that manymodels raises on purpose."""


class ConfigError(ManyModelsError, ValueError):
    """The configuration file or an override is missing, malformed or invalid."""


class DataError(ManyModelsError, ValueError):
    """The dataset is missing, empty, or lacks a column the configuration names."""


class UnreadableFileError(DataError):
    """A data file exists but cannot be read as Parquet (corrupt, truncated, not Parquet)."""


class TemplateError(ManyModelsError, ValueError):
    """A training template cannot be found, imported, or does not honour the contract."""


class RegistryError(ManyModelsError, RuntimeError):
    """The model registry has no model for a request, or refused a write."""


class JobError(ManyModelsError, RuntimeError):
    """A job finished with more failed entities than its failure budget allows."""


class ResumeError(ManyModelsError, LookupError):
    """``--resume`` names a job that does not exist, is of another kind, or already finished."""


class EntityError(ManyModelsError, ValueError):
    """One entity's data cannot be modelled (too short, all missing, ...).

    Raised inside the per-entity guard; it is recorded as that entity's failure, never
    propagated to the job.
    """


class FutureValuesError(EntityError):
    """A forecast period lacks the known future value of an exogenous column.

    Attributes:
        column: the exogenous column.
        missing: how many of the forecast periods lack it.
    """

    def __init__(self, column: str, missing: int, horizon: int) -> None:
        self.column, self.missing, self.horizon = column, missing, horizon
        super().__init__(
            f"no future value of '{column}' for {missing} of {horizon} forecast periods; give "
            "them as rows after the last observed target or in forecast.future_path, or set "
            "data.future_exog: carry_forward"
        )

    def __reduce__(self) -> tuple[type, tuple[str, int, int]]:
        # Raised on a worker and pickled back: rebuild from the arguments, not the message.
        return (type(self), (self.column, self.missing, self.horizon))

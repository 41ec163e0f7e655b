"""An object-style face for notebooks, in the habits of mlforecast and statsforecast.

``ManyModels(...).fit(df)`` stages a long DataFrame, runs a real training job (Dask, MLflow,
the registry) and keeps the per-entity results; ``predict(h)`` runs a forecast job and returns
its rows; ``cross_validation()`` returns the job's backtest predictions. The function API
(``manymodels.train(config)``) stays the way to run from a config file; this class only builds
that config from keyword arguments.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from manymodels.config import Config, config_from_dict
from manymodels.errors import ManyModelsError
from manymodels.exploration.frames import stage_frame

__all__ = ["ManyModels", "NotFittedError"]


class NotFittedError(ManyModelsError, ValueError, AttributeError):
    """A method that needs a trained job was called before ``fit``."""


class ManyModels:
    """One model per entity of a long DataFrame, trained, tracked and forecast by manymodels.

    Column names default to the ``unique_id``/``ds``/``y`` convention of Nixtla's libraries.

    Args:
        horizon: periods to forecast (and, by default, to hold out for scoring).
        template: a built-in template, ``auto`` (choose per entity among candidates, the
            default of ``model.template``) or a template ``.py`` file.
        params: the template's parameters.
        freq: pandas frequency of the series; inferred when None.
        id_cols: the columns that identify one entity.
        time_col, target_col: timestamps; the numeric value to forecast.
        exog_cols: numeric columns known in advance.
        work_dir: the MLflow store, job ledgers and staged data; relative to the working
            directory.
        **sections: any other config section, as in the YAML file, e.g.
            ``compute={"n_workers": 2}`` or ``evaluation={"metric": "mae"}``.

    Example:
        >>> mm = ManyModels(horizon=8, freq="W-SUN", id_cols=["store", "brand"],
        ...                 time_col="week", target_col="sales")     # doctest: +SKIP
        >>> mm.fit(sales).entities_.nlargest(5, "mase")             # doctest: +SKIP
        >>> mm.predict(8)                                           # doctest: +SKIP
    """

    def __init__(
        self,
        horizon: int,
        template: str | None = None,
        params: dict[str, Any] | None = None,
        freq: str | None = None,
        id_cols: Sequence[str] = ("unique_id",),
        time_col: str = "ds",
        target_col: str = "y",
        exog_cols: Sequence[str] = (),
        work_dir: str = "manymodels-work",
        **sections: Any,
    ) -> None:
        self.horizon = horizon
        self.template = template
        self.params = params
        self.freq = freq
        self.id_cols = id_cols
        self.time_col = time_col
        self.target_col = target_col
        self.exog_cols = exog_cols
        self.work_dir = work_dir
        self.sections = sections

    def config(self, data_path: str) -> Config:
        """The job config these settings describe, reading data from ``data_path``."""
        data = {
            "path": data_path, "partition_by": list(self.id_cols), "time_col": self.time_col,
            "target_col": self.target_col, "exog_cols": list(self.exog_cols), "freq": self.freq,
        }  # fmt: skip
        raw: dict[str, Any] = {
            "horizon": self.horizon,
            "data": {key: value for key, value in data.items() if value is not None},
            "model": {"params": dict(self.params or {})},
            "work_dir": os.path.abspath(self.work_dir),
            "forecast": {"output": os.path.join(os.path.abspath(self.work_dir), "forecasts")},
        }
        if self.template is not None:
            raw["model"]["template"] = self.template
        for section, values in self.sections.items():
            merged = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
            raw[section] = merged
        return config_from_dict(raw, label="ManyModels")

    def fit(self, df: pd.DataFrame, progress: bool = False) -> ManyModels:
        """Train and register one model per entity of ``df``.

        Args:
            df: long data: the id, time, target and exogenous columns, one row per entity and
                period. Rows after an entity's last target value give future exogenous values.
            progress: draw a progress bar.

        Returns:
            ``self``, with ``config_``, ``job_id_``, ``run_id_``, ``entities_`` (per-entity
            status, metrics, version) and ``failures_`` set.
        """
        from manymodels.jobs.training import train

        config = self.config(stage_frame(df, list(self.id_cols), self.work_dir))
        result = train(config, progress=progress)
        self.config_, self.result_ = config, result
        self.job_id_, self.run_id_ = result.job_id, result.run_id
        self.entities_, self.failures_ = result.entities, result.failures
        return self

    def predict(
        self,
        h: int | None = None,
        level: Sequence[int] | None = None,
        df: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Forecast every entity with its champion model.

        Args:
            h: periods to forecast; ``horizon`` by default.
            level: interval levels in percent (``lo-80``/``hi-80`` columns for 80);
                ``forecast.levels`` (80 and 95 by default) when None, ``[]`` for none.
            df: newer data to forecast from; the data given to ``fit`` by default.

        Returns:
            The id columns, the time column, ``prediction``, the interval columns asked for,
            ``model_name`` and ``model_version``.

        Raises:
            NotFittedError: called before ``fit``.
            ManyModelsError: the models give no intervals at a ``level`` asked for.
        """
        from manymodels.jobs.forecasting import forecast

        config = self._fitted()
        if df is not None:
            config = self.config(stage_frame(df, list(self.id_cols), self.work_dir))
        if level is not None:
            # The levels to compute travel in the config, as forecast.levels does from YAML.
            forecast_section = config.forecast.model_copy(update={"levels": list(level)})
            config = config.model_copy(update={"forecast": forecast_section})
        forecasts = forecast(config, horizon=h).read()
        return _with_levels(self._ordered(forecasts), level)

    def _ordered(self, forecasts: pd.DataFrame) -> pd.DataFrame:
        """Keys and time first, as the input had them, then the values and their models."""
        first = [*self.id_cols, self.time_col]
        rest = [col for col in forecasts.columns if col not in first]
        ordered = forecasts[[*first, *rest]]
        return ordered.sort_values(first, kind="stable").reset_index(drop=True)

    def cross_validation(self) -> pd.DataFrame:
        """The backtest predictions of the fitted job: entity keys, ``cutoff``, time,
        ``actual``, ``prediction``, ``candidate`` and ``window``.

        Raises:
            NotFittedError: called before ``fit``.
            ManyModelsError: the job recorded no backtest.
        """
        from manymodels.exploration.jobdata import load_job

        job = load_job(self._fitted(), self.job_id_)
        if job.backtest is None:
            raise ManyModelsError(
                f"job {self.job_id_} recorded no backtest predictions (backtest.parquet); its "
                "holdout metrics per entity are in entities_."
            )
        return job.backtest.read()

    def promote(self, entities: pd.DataFrame, alias: str = "champion") -> pd.DataFrame:
        """Point ``alias`` at this job's model version of each of ``entities``.

        Args:
            entities: rows with the id columns (e.g. a filtered ``entities_``); entities that
                this job did not train are left alone.
            alias: the registry alias to move.

        Returns:
            The moves made: id columns, ``model_name`` and ``model_version``.
        """
        from manymodels.tracking.store import open_tracking

        config = self._fitted()
        keys = list(self.id_cols)
        wanted = entities[keys].astype(str).drop_duplicates()
        ours = self.entities_[self.entities_["status"] == "ok"]
        moves = ours.astype({col: str for col in keys}).merge(wanted, on=keys)
        moves = moves[[*keys, "model_name", "model_version"]].reset_index(drop=True)
        registry = open_tracking(config).registry
        registry.set_aliases(
            [(name, alias, int(version)) for name, version in
             zip(moves["model_name"], moves["model_version"], strict=True)]
        )  # fmt: skip
        return moves

    def report(self, path: str | os.PathLike[str] = "report.html") -> Path:
        """Write the fitted job's HTML report and return its path."""
        from manymodels.exploration.html_report import write_report

        return write_report(self._fitted(), self.job_id_, path)

    def _fitted(self) -> Config:
        config: Config | None = getattr(self, "config_", None)
        if config is None:
            raise NotFittedError(
                "This ManyModels instance is not fitted yet. Call 'fit' with a DataFrame first."
            )
        return config

    def __repr__(self) -> str:
        return (
            f"ManyModels(horizon={self.horizon}, template={self.template!r}, "
            f"id_cols={list(self.id_cols)}, work_dir={self.work_dir!r})"
        )


def _with_levels(forecasts: pd.DataFrame, level: Sequence[float] | None) -> pd.DataFrame:
    labels = [str(int(lv)) if float(lv).is_integer() else str(lv) for lv in level or []]
    missing = [lv for lv in labels if f"lo-{lv}" not in forecasts or f"hi-{lv}" not in forecasts]
    if missing:
        raise ManyModelsError(
            f"level={list(level or [])}: the models give no {missing[0]}% prediction intervals "
            f"(no lo-{missing[0]}/hi-{missing[0]} columns in the forecasts)."
        )
    return forecasts

"""The HTML report of a training job: one self-contained file, charts inlined as SVG.

Sections appear when the job's tables hold what they need: skill against seasonal naive
(``skill_mase``), which template won (``winner``, ``mase_<candidate>``), interval coverage
(``coverage_80``/``coverage_95``), backtest lines (``backtest.parquet``), intervals on the
forecasts (``lo-80``/``hi-80``, ...). Jinja2 lays out the page with autoescaping, so error
messages and key values cannot inject markup.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from manymodels.config import Config
from manymodels.errors import ManyModelsError
from manymodels.exploration import charts
from manymodels.exploration.jobdata import (
    SKILL_COL,
    WINNER_COL,
    EntitySeries,
    JobData,
    candidate_columns,
    coverage_columns,
    entity_series,
    interval_columns,
    load_job,
)
from manymodels.metrics import METRICS
from manymodels.tracking.store import Tracking, open_tracking

__all__ = ["best_entities", "render_report", "worst_entities", "write_report"]

WORST_COUNT = 5
BEST_COUNT = 3
FAILURE_ROWS = 100
REPORT_NAME = "report.html"


def write_report(
    config: Config, job_id: str | None = None, output: str | os.PathLike[str] | None = None
) -> Path:
    """Write the HTML report of a training job.

    Args:
        config: the job's config (it says where the tracking store and the data are).
        job_id: the job to report on; the newest training job with results by default.
        output: the file to write; ``report.html`` in the working directory by default.

    Returns:
        The path of the written file.

    Raises:
        ManyModelsError: no such job, or the report libraries are not installed.

    Example:
        >>> path = manymodels.write_report(config, output="report.html")  # doctest: +SKIP
    """
    session = open_tracking(config)
    job = load_job(config, job_id, session)
    page = render_report(job, session)
    target = Path(output or REPORT_NAME)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ManyModelsError(f"{target}: cannot write the report ({exc.strerror}).") from None
    return target


def render_report(job: JobData, session: Tracking | None = None) -> str:
    """The report of ``job`` as one HTML document."""
    template = _template()
    config = job.config
    worst, best = worst_entities(job), best_entities(job)
    session = session or open_tracking(config)
    series = entity_series(job, _keys(worst, config) + _keys(best, config), session)
    by_key = {tuple(s.keys.values()): s for s in series}
    context = {
        "job": job,
        "version": _version(),
        "started": _when(job.started),
        "summary": _summary(job),
        "trained": len(job.trained),
        "distributions": _distributions(job),
        "skill": _skill(job),
        "winners": _winners(job),
        "coverage": _coverage(job),
        "failures": _failures(job),
        "entity_groups": [
            _group(
                job,
                "worst",
                "Worst entities",
                worst,
                by_key,
                f"The {len(worst)} trained entities with the highest {_metric(job)}.",
            ),
            _group(
                job,
                "best",
                "A sample of the best entities",
                best,
                by_key,
                f"{len(best)} entities drawn from the best quarter by {_metric(job)}.",
            ),
        ],
    }
    context["sections"] = _sections(context)
    return template.render(**context)


def _template() -> Any:
    try:
        import jinja2
    except ImportError:
        raise ManyModelsError(
            "the HTML report needs Jinja2 and matplotlib. Hint: pip install 'manymodels[report]'."
        ) from None
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("manymodels.exploration", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("report.html.j2")


def _version() -> str:
    from manymodels import __version__

    return __version__


def _when(stamp: pd.Timestamp | None) -> str:
    return "" if stamp is None else f"{stamp:%Y-%m-%d %H:%M} UTC"


def _metric(job: JobData) -> str:
    """The metric that ranks entities: the configured one, else the first one present."""
    preferred = job.config.evaluation.metric
    if job.has(preferred):
        return preferred
    return next((name for name in METRICS if job.has(name)), preferred)


def _ranked(job: JobData) -> pd.DataFrame:
    """The trained entities with a finite ranking metric, worst first (ties by keys)."""
    metric = _metric(job)
    trained = job.trained
    if metric not in trained:
        return trained.iloc[:0]
    values = pd.to_numeric(trained[metric], errors="coerce").to_numpy(dtype=float)
    scored = trained[np.isfinite(values)]
    return scored.sort_values(
        [metric, *job.entity_cols], ascending=[False] + [True] * len(job.entity_cols)
    )


def worst_entities(job: JobData, count: int = WORST_COUNT) -> pd.DataFrame:
    """The ``count`` trained entities with the highest ranking metric, worst first."""
    return _ranked(job).head(count)


def best_entities(job: JobData, count: int = BEST_COUNT) -> pd.DataFrame:
    """A fixed sample of ``count`` entities from the best quarter, best first."""
    ranked = _ranked(job).iloc[::-1]
    pool = ranked.head(max(count, math.ceil(len(ranked) / 4)))
    worst = set(worst_entities(job).index)
    pool = pool[~pool.index.isin(worst)]
    sample = pool.sample(min(count, len(pool)), random_state=0) if len(pool) else pool
    return sample.loc[[i for i in pool.index if i in set(sample.index)]]


def _keys(rows: pd.DataFrame, config: Config) -> list[dict[str, str]]:
    cols = config.data.entity_cols
    return [{col: str(row[col]) for col in cols} for _, row in rows.iterrows()]


def _label(keys: dict[str, str]) -> str:
    return "/".join(f"{col}={value}" for col, value in keys.items())


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _summary(job: JobData) -> list[tuple[str, str]]:
    entities = job.entities
    counts = entities["status"].value_counts() if "status" in entities else pd.Series(dtype=int)
    rows = [
        ("entities", _fmt(len(entities))),
        ("trained", _fmt(int(counts.get("ok", 0)))),
        ("failed", _fmt(int(counts.get("failed", 0)))),
    ]
    if counts.get("skipped", 0):
        rows.append(("unchanged (skipped)", _fmt(int(counts["skipped"]))))
    rows.append(("template", job.params.get("template") or job.params.get("model.template", "")))
    rows.append(("horizon / holdout", f"{job.config.horizon} / {job.config.holdout}"))
    for name in METRICS:
        if job.has(name):
            values = pd.to_numeric(job.trained[name], errors="coerce")
            rows.append(
                (f"{name}: mean / median", f"{_fmt(values.mean())} / {_fmt(values.median())}")
            )
    seconds = job.metrics.get("seconds")
    if seconds is not None:
        rows.append(("duration", f"{seconds:,.1f} s"))
    rows.append(("data", job.config.data.path))
    return rows


def _distributions(job: JobData) -> str | None:
    values = {
        name: pd.to_numeric(job.trained[name], errors="coerce") for name in METRICS if job.has(name)
    }
    values = {name: series for name, series in values.items() if series.notna().any()}
    return charts.distribution_chart(values) if values else None


def _skill(job: JobData) -> dict[str, Any] | None:
    if not job.has(SKILL_COL):
        return None
    skill = pd.to_numeric(job.trained[SKILL_COL], errors="coerce").dropna()
    if skill.empty:
        return None
    better = int((skill > 0).sum())
    return {
        "chart": charts.distribution_chart({SKILL_COL: skill}, marker=0.0),
        "better": better,
        "total": len(skill),
        "share": f"{better / len(skill):.0%}",
    }


def _winners(job: JobData) -> dict[str, Any] | None:
    if not job.has(WINNER_COL):
        return None
    counts = job.trained[WINNER_COL].dropna().astype(str).value_counts()
    if counts.empty:
        return None
    candidates = []
    for name, col in sorted(candidate_columns(job).items()):
        values = pd.to_numeric(job.trained[col], errors="coerce")
        candidates.append(
            {
                "name": name,
                "won": int(counts.get(name, 0)),
                "mean": _fmt(values.mean()),
                "median": _fmt(values.median()),
            }
        )
    return {
        "chart": charts.bar_chart(counts, "entities won, per candidate"),
        "candidates": candidates,
        "metric": job.config.evaluation.metric,
    }


def _coverage(job: JobData) -> list[dict[str, str]]:
    rows = []
    for level, col in sorted(coverage_columns(job).items(), key=lambda item: float(item[0])):
        observed = pd.to_numeric(job.trained[col], errors="coerce").mean()
        rows.append(
            {
                "level": level,
                "nominal": f"{float(level) / 100:.3g}",
                "observed": _fmt(float(observed)),
            }
        )
    return rows


def _failures(job: JobData) -> dict[str, Any]:
    table = job.failures
    shown = [c for c in [*job.entity_cols, "stage", "error_type", "error"] if c in table]
    digest = []
    if len(table) and {"stage", "error_type", "error"} <= set(table):
        grouped = table.groupby(["stage", "error_type", "error"], dropna=False).size()
        for (stage, kind, error), count in grouped.sort_values(ascending=False).head(10).items():
            digest.append({"count": int(count), "stage": stage, "error_type": kind, "error": error})
    rows = [
        [_fmt(value) for value in row]
        for row in table[shown].head(FAILURE_ROWS).itertuples(index=False)
    ]
    return {
        "count": len(table),
        "digest": digest,
        "columns": shown,
        "rows": rows,
        "more": max(0, len(table) - FAILURE_ROWS),
    }


def _group(
    job: JobData,
    anchor: str,
    title: str,
    rows: pd.DataFrame,
    series: dict[tuple[str, ...], EntitySeries],
    intro: str,
) -> dict[str, Any]:
    keys = job.entity_cols
    scores = [
        c
        for c in [*METRICS, SKILL_COL, WINNER_COL, *coverage_columns(job).values()]
        if c in rows and rows[c].notna().any()
    ]
    listed, plots = [], []
    for entity in _keys(rows, job.config):
        row = rows[(rows[keys].astype(str) == pd.Series(entity)).all(axis=1)].iloc[0]
        listed.append(
            {
                "label": _label(entity),
                "cells": [entity[k] for k in keys] + [_fmt(row[c]) for c in scores],
            }
        )
        found = series.get(tuple(entity.values()))
        if found is not None:
            plots.append(_plot(job, entity, row, scores, found))
    return {
        "anchor": anchor,
        "title": title,
        "intro": intro,
        "columns": [*keys, *scores],
        "rows": listed,
        "key_count": len(keys),
        "plots": plots,
    }


def _plot(
    job: JobData, entity: dict[str, str], row: pd.Series, scores: list[str], found: EntitySeries
) -> dict[str, str]:
    data = job.config.data
    backtest = found.backtest
    if not backtest.empty and "candidate" in backtest and pd.notna(row.get(WINNER_COL)):
        backtest = backtest[backtest["candidate"].astype(str) == str(row[WINNER_COL])]
    title = _label(entity) + "  ·  " + ", ".join(f"{c} {_fmt(row[c])}" for c in scores[:3])
    chart = charts.entity_chart(
        title,
        found.history,
        found.forecast,
        backtest,
        data.time_col,
        data.target_col,
        interval_columns(found.forecast),
        row.get("holdout_start"),
    )
    return {"label": _label(entity), "chart": chart, "note": found.note}


def _sections(context: dict[str, Any]) -> list[tuple[str, str]]:
    sections = [("summary", "Summary")]
    optional = [
        ("distributions", "metrics", "Metrics"),
        ("skill", "skill", "Skill"),
        ("winners", "winners", "Winners"),
        ("coverage", "intervals", "Intervals"),
    ]
    sections += [(anchor, label) for key, anchor, label in optional if context[key]]
    sections.append(("failures", "Failures"))
    sections += [(group["anchor"], group["title"]) for group in context["entity_groups"]]
    return sections

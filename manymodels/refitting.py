"""Choosing an entity's model among its backtested candidates, and refitting it on all the data.

The winner (or the combination of the best few, see :mod:`manymodels.selection`) is refit with
the specification it was backtested with. A winner whose refit raises gives way to the next
best. Pure: no Dask, no MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from manymodels import ensembles
from manymodels.backtesting import Backtest, Candidate, Windows
from manymodels.ensembles import Ensemble, Member
from manymodels.entity_model import EntityModel
from manymodels.errors import EntityError
from manymodels.selection import COMBINATION, choose, combination
from manymodels.templates import TrainContext

if TYPE_CHECKING:
    from manymodels.fitting import FitSpec

__all__ = ["Refit", "choose_and_refit", "with_params"]


@dataclass(frozen=True)
class Refit:
    """What choosing a winner and refitting it on all the data needs."""

    history: pd.DataFrame
    values: np.ndarray
    observed: np.ndarray
    context: TrainContext
    windows: Windows
    spec: FitSpec
    selected_by: str


def choose_and_refit(
    candidates: list[Candidate], results: dict[str, Backtest], errors: dict[str, str],
    refit: Refit,
) -> tuple[Backtest, EntityModel]:  # fmt: skip
    """The best candidate (or combination, see :func:`~manymodels.selection.combination`) and
    its model refit on all the data.

    A winner whose final refit raises gives way to the next best, its error kept in ``errors``
    like a failed backtest's: the newest data can rule out a specification that every earlier
    cutoff allowed, and that must not cost the entity its model.
    """
    by_name = {candidate.name: candidate for candidate in candidates}
    spec = refit.spec
    standing = dict(results)  # the candidates still in the race; ``results`` keeps every score
    while True:
        winner = choose(standing, refit.selected_by, spec.prior)
        combined = combination(standing, winner, refit.selected_by, spec.combine, refit.values,
                               refit.observed, refit.windows, refit.context.season_length,
                               spec.prior)  # fmt: skip
        chosen = combined.members if combined is not None else (winner.candidate,)
        fitted = {}
        for name in chosen:
            try:
                fitted[name] = _final_model(by_name[name], results[name], refit.history,
                                            refit.context, refit.windows, spec)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - the next best takes its place
                if len(candidates) == 1:
                    raise
                errors[name] = f"final refit: {type(exc).__name__}: {exc}"
                del standing[name]
                break
        else:
            if combined is None:
                return winner, fitted[winner.candidate]
            results[COMBINATION] = combined
            return combined, _ensemble(list(fitted.items()), refit)
        if not standing:
            raise EntityError(f"every candidate failed; the last: {errors[chosen[-1]]}")


def _ensemble(fitted: list[tuple[str, EntityModel]], refit: Refit) -> EntityModel:
    spec = refit.spec
    ensemble = Ensemble([Member(name, model.predict_fn, model.model, model.context,
                                model.train_fn, model.update_fn)
                         for name, model in fitted],
                        non_negative=spec.non_negative)  # fmt: skip
    history = fitted[0][1].history
    return EntityModel(COMBINATION, ensembles.predict, ensemble, refit.context, history,
                       levels=spec.levels, update_fn=ensembles.update,
                       non_negative=spec.non_negative)  # fmt: skip


def _final_model(
    chosen: Candidate, backtest: Backtest, history: pd.DataFrame, context: TrainContext,
    windows: Windows, spec: FitSpec,
) -> EntityModel:  # fmt: skip
    ctx = with_params(context, chosen)
    template = chosen.template
    if not len(windows):
        fitted, fitted_on = template.train(history.reset_index(drop=True), ctx), history
    elif spec.refit:
        fitted = template.refit(backtest.first_model, history.reset_index(drop=True), ctx)
        fitted_on = history
    else:
        fitted, fitted_on = backtest.last_model, history.iloc[: windows.cutoffs[-1]]
    if fitted is None:
        raise EntityError("train() returned None; it must return the fitted model")
    return EntityModel(template.name, template.predict, fitted, ctx,
                       fitted_on.reset_index(drop=True), levels=spec.levels,
                       train_fn=template.train, update_fn=template.update_fn,
                       non_negative=spec.non_negative)  # fmt: skip


def with_params(context: TrainContext, candidate: Candidate) -> TrainContext:
    """``context`` with ``candidate``'s parameters."""
    if context.params is candidate.params:
        return context
    return TrainContext(
        keys=context.keys, params=candidate.params, time_col=context.time_col,
        target_col=context.target_col, exog_cols=context.exog_cols, freq=context.freq,
        horizon=context.horizon, season_length=context.season_length,
    )  # fmt: skip

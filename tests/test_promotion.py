"""Champion against challenger: both backtested on the same windows, each refitted at every
cutoff from its own specification, so that neither is scored on data it was fitted on.

A champion scored with the parameters it has was fitted on the very windows it is scored on: it
looks better than it is, and a better challenger rarely wins (the leak these tests pin down).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from manymodels.fitting import fit_entity, score_model
from manymodels.promotion import challenger_wins
from tests.test_selection import KEYS, series, spec_for

ENTITIES = 20
MIN_IMPROVEMENT = 0.02

# A regressor that remembers its training rows: perfect on them, poor on new ones.
MEMORISER = {"template": "sklearn_lags",
             "params": {"estimator": "knn", "estimator_params": {"n_neighbors": 1}, "lags": [1],
                        "fourier_terms": 0, "use_exog": False}}  # fmt: skip


def seasonal(rng: np.random.Generator, length: int = 96) -> np.ndarray:
    t = np.arange(length)
    return 100 + 25 * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 6)) + rng.normal(0, 3, length)


def legacy(model):
    """The model as one saved before refits existed: scored with the parameters it has."""
    return dataclasses.replace(model, train_fn=None, update_fn=None)


def test_a_truly_better_challenger_wins_for_nearly_every_entity():
    rng = np.random.default_rng(21)
    spec_old = spec_for("MS", 12, MEMORISER)
    spec_new = spec_for("MS", 12, {"template": "seasonal_naive"})
    wins = leaky_wins = 0
    for _ in range(ENTITIES):
        frame = series(seasonal(rng), "MS")
        champion = fit_entity(frame, KEYS, spec_old).model  # trained on every row
        challenger = fit_entity(frame, KEYS, spec_new)
        fair, _ = score_model(champion, frame, spec_new)
        leaky, _ = score_model(legacy(champion), frame, spec_new)
        wins += challenger_wins(challenger.metrics, fair, "mase", MIN_IMPROVEMENT)
        leaky_wins += challenger_wins(challenger.metrics, leaky, "mase", MIN_IMPROVEMENT)
    assert wins >= 0.9 * ENTITIES
    assert leaky_wins <= 0.1 * ENTITIES  # what the comparison was before: the leak decided


@pytest.mark.parametrize("model", [{"template": "auto_ets"}, {"template": "auto"}])
def test_an_identical_specification_neither_wins_nor_loses(model):
    rng = np.random.default_rng(4)
    spec = spec_for("MS", 12, model)
    for _ in range(3):
        frame = series(seasonal(rng), "MS")
        champion = fit_entity(frame, KEYS, spec)
        challenger = fit_entity(frame, KEYS, spec)
        scored, _ = score_model(champion.model, frame, spec)
        assert scored["mase"] == pytest.approx(challenger.metrics["mase"], rel=1e-9)
        assert not challenger_wins(challenger.metrics, scored, "mase", MIN_IMPROVEMENT)


def test_a_combination_champion_refits_each_member(tmp_path):
    # Two forecasts biased in opposite directions, whose mean wins: each member is fitted
    # again (here: the mean of the history before the cutoff) when the champion is scored.
    for name, shift in (("high", 5.0), ("low", -5.0)):
        (tmp_path / f"{name}.py").write_text(
            "def train(history, context):\n"
            "    return float(history[context.target_col].mean())\n\n"
            "def predict(model, history, future, context):\n"
            f"    return [model + {shift}] * len(future)\n"
        )
    candidates = [{"template": str(tmp_path / "high.py")}, {"template": str(tmp_path / "low.py")}]
    rng = np.random.default_rng(3)
    frame = series(50 + rng.normal(0, 1, 80), "W-SUN")
    spec = spec_for("W-SUN", 8, {"candidates": candidates, "combine": 2})
    fit = fit_entity(frame, KEYS, spec)
    assert fit.winner == "combination"
    refitted = fit.model.refit(frame.iloc[:40])
    assert refitted.forecast()["prediction"].to_numpy() == pytest.approx(
        np.full(8, frame["y"].iloc[:40].mean()))  # fmt: skip
    scored, _ = score_model(fit.model, frame, spec)
    assert scored["mase"] == pytest.approx(fit.metrics["mase"], rel=1e-9)
    leaky, _ = score_model(legacy(fit.model), frame, spec)
    assert leaky["mase"] != pytest.approx(fit.metrics["mase"], rel=1e-3)

"""DataFrames in and out: staging a long frame, the object-style API, results as frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import manymodels
from manymodels.exploration.api import NotFittedError
from manymodels.exploration.frames import stage_frame

HORIZON = 4


def _model(tmp_path: Path, scheduler: str, **kwargs) -> manymodels.ManyModels:
    return manymodels.ManyModels(
        horizon=HORIZON, freq="W-SUN", id_cols=["store", "brand"], time_col="week",
        target_col="sales", exog_cols=["price", "deal"], template="sklearn_lags", params={"lags": 4},
        work_dir=str(tmp_path / "work"), compute={"scheduler": scheduler},
        tracking={"experiment": "api"}, **kwargs,
    )  # fmt: skip


def test_the_same_rows_stage_to_the_same_folder_once(oj_frame: pd.DataFrame, tmp_path: Path):
    first = stage_frame(oj_frame, ["store", "brand"], str(tmp_path))
    stamp = os.stat(first).st_mtime_ns
    again = stage_frame(oj_frame.copy(), ["store", "brand"], str(tmp_path))
    other = stage_frame(oj_frame.head(100), ["store", "brand"], str(tmp_path))

    assert first == again and os.stat(again).st_mtime_ns == stamp
    assert other != first
    assert len(list(Path(first).glob("store=*/brand=*/part-0.parquet"))) == 12


def test_a_frame_without_its_key_column_is_refused(oj_frame: pd.DataFrame, tmp_path: Path):
    with pytest.raises(manymodels.DataError, match="no column 'region'.*id_cols"):
        stage_frame(oj_frame, ["region"], str(tmp_path))


def test_train_refuses_a_frame_in_place_of_the_config(oj_frame: pd.DataFrame):
    with pytest.raises(manymodels.ConfigError, match="got a DataFrame. Hint: .*data=frame"):
        manymodels.train(oj_frame)


def test_fit_predict_and_report_from_a_dataframe(
    oj_frame: pd.DataFrame, tmp_path: Path, dask_scheduler: str
) -> None:
    model = _model(tmp_path, dask_scheduler)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.predict()

    assert model.fit(oj_frame) is model
    assert (model.entities_["status"] == "ok").sum() == 12 and model.failures_.empty
    assert {"store", "brand", "mae", "mase", "model_version"} <= set(model.entities_.columns)

    forecasts = model.predict()
    assert list(forecasts.columns[:4]) == ["store", "brand", "week", "prediction"]
    future = oj_frame[oj_frame["sales"].isna()].astype({"store": str})
    future = (
        future.sort_values(["store", "brand", "week"]).groupby(["store", "brand"]).head(HORIZON)
    )
    expected = future[["store", "brand", "week"]]
    pd.testing.assert_frame_equal(
        forecasts[["store", "brand", "week"]], expected.reset_index(drop=True)
    )
    assert np.isfinite(forecasts["prediction"]).all()

    intervals = model.predict(level=[90])
    assert {"lo-90", "hi-90"} <= set(intervals.columns) and "lo-80" not in intervals
    assert (intervals["lo-90"] <= intervals["prediction"]).all()
    assert (intervals["prediction"] <= intervals["hi-90"]).all()

    backtest = model.cross_validation()
    assert {
        "store",
        "brand",
        "cutoff",
        "week",
        "actual",
        "prediction",
        "candidate",
        "window",
    } <= set(backtest.columns)
    assert set(backtest["store"].astype(str)) == set(oj_frame["store"].astype(str))
    assert model.report(tmp_path / "r.html").stat().st_size > 10_000


def test_train_and_forecast_functions_take_a_dataframe(
    make_config, oj_frame: pd.DataFrame, tmp_path: Path
) -> None:
    config = make_config(data_path=tmp_path / "nowhere-yet")
    trained = manymodels.train(config, data=oj_frame)
    result = manymodels.forecast(config, data=oj_frame)

    assert trained.trained == 12
    frame = result.read()
    assert len(frame) == 12 * HORIZON and frame["store"].dtype == object
    assert manymodels.list_jobs(config)["job_id"].iloc[0] == trained.job_id

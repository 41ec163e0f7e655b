"""The report's charts: matplotlib figures rendered to inline SVG.

SVG keeps the report one self-contained file that needs no script and no network to open, stays
sharp at any zoom, and is small for line charts of a few hundred points. Each function takes
plain DataFrames and returns one ``<svg>`` element as text.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

__all__ = ["bar_chart", "distribution_chart", "entity_chart"]

HISTORY_COLOR = "#1f3b57"
FORECAST_COLOR = "#d1495b"
BACKTEST_COLOR = "#2e933c"
# Periods of history drawn before the forecast: enough to see a few seasons, not a decade.
HISTORY_SHOWN = 156


def _figure(width: float, height: float) -> Figure:
    # The object API without pyplot: no global state, no GUI backend, safe in any thread.
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    # The SVG canvas measures text for the layout as the SVG writer will draw it.
    FigureCanvasSVG(figure)
    return figure


def _svg(figure: Figure, lay_out: bool = False) -> str:
    """The figure as an inline ``<svg>`` element. ``lay_out`` runs constrained layout, for
    charts whose labels can be of any length (category names); the others are placed with
    :func:`_margins`, which costs nothing."""
    import matplotlib

    # Text goes into the SVG as text, for the browser to draw with its own fonts: key values in
    # any script show as written, where matplotlib's one font drew empty boxes (and warned of
    # every missing glyph on the terminal), and the file is half the size.
    with matplotlib.rc_context({"svg.fonttype": "none"}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        if lay_out:
            from matplotlib.layout_engine import ConstrainedLayoutEngine

            # Run once here rather than as the figure's layout engine: savefig draws a figure
            # that has an engine twice (once only to lay it out).
            ConstrainedLayoutEngine().execute(figure)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    # Inline in HTML, the XML prolog and doctype are noise; the <svg> element is what renders.
    return text[text.index("<svg") :]


def _margins(figure: Figure, left: float = 0.65, bottom: float = 0.45, top: float = 0.3,
             right: float = 0.15, between: float | None = None) -> None:  # fmt: skip
    """Fixed margins, in inches. A layout engine measures every tick label before the figure
    is drawn, which doubled the cost of a chart; the margins here hold any tick label that
    :func:`compact_number` and the date formatter write, at most about eight characters."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=between,
    )


def compact_number(value: float, _position: object = None) -> str:
    """A short tick label: ``950``, ``1.2k``, ``35M``, ``0.25``, ``-4.1B``."""
    magnitude = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _style(axes: Axes) -> None:
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(alpha=0.25, linewidth=0.6)
    axes.tick_params(labelsize=8)


def _numbers(axis: Axis, ticks: int = 4, integer: bool = False) -> None:
    """A few short labels on a numeric axis: each tick is several artists to build and draw,
    and a chart 2.6 inches high reads as well with four."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=ticks, integer=integer))
    axis.set_major_formatter(FuncFormatter(compact_number))


def _time_axis(axes: Axes, times: pd.Series | None) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    if times is None:
        return
    if pd.api.types.is_datetime64_any_dtype(times):
        locator = AutoDateLocator(minticks=3, maxticks=8)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    else:
        _numbers(axes.xaxis, ticks=6, integer=True)


def distribution_chart(values: Mapping[str, pd.Series], marker: float | None = None) -> str:
    """Histograms of per-entity metrics, one panel per metric, the median marked with a red line
    and given in the title.

    Args:
        values: metric name to its per-entity values (undefined values are dropped).
        marker: draw a vertical line at this value (0 for skill, 1 for MASE).
    """
    names = [name for name, series in values.items() if series.notna().any()]
    figure = _figure(2.9 * max(len(names), 1), 2.4)
    for index, name in enumerate(names, start=1):
        axes = figure.add_subplot(1, len(names), index)
        finite = values[name].astype(float)
        finite = finite[np.isfinite(finite)]
        # Clip the far tail so that a handful of outliers do not squash the histogram.
        upper = float(np.quantile(finite, 0.99)) if len(finite) else 1.0
        # One filled outline rather than 30 touching bars: it looks the same and draws faster.
        axes.hist(
            finite.clip(upper=upper),
            bins=30,
            color=HISTORY_COLOR,
            alpha=0.85,
            histtype="stepfilled",
        )
        median = float(finite.median())
        axes.axvline(median, color=FORECAST_COLOR, linewidth=1.2)
        if marker is not None:
            axes.axvline(marker, color="#555", linestyle=":", linewidth=1)
        # The median in the title rather than a legend: a legend per panel was a third of
        # the chart's cost. A title with its position given is not moved clear of the ticks,
        # which the top of a chart without top ticks does not need.
        axes.set_title(f"{name} (median {compact_number(median)})", fontsize=9, y=1.0)
        _style(axes)
        _numbers(axes.xaxis)
        _numbers(axes.yaxis, integer=True)
    _margins(figure, left=0.4, between=0.35)
    return _svg(figure)


def bar_chart(counts: pd.Series, title: str) -> str:
    """Horizontal bars of counts, largest on top (e.g. how often each template won)."""
    counts = counts.sort_values()
    figure = _figure(5.5, 0.45 * len(counts) + 0.9)
    axes = figure.add_subplot()
    axes.barh([str(label) for label in counts.index], counts.to_numpy(), color=HISTORY_COLOR)
    for y, value in enumerate(counts.to_numpy()):
        axes.text(value, y, f" {value}", va="center", fontsize=8)
    axes.set_title(title, fontsize=9, y=1.0)
    _style(axes)
    return _svg(figure, lay_out=True)


def entity_chart(
    title: str,
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    backtest: pd.DataFrame,
    time_col: str,
    target_col: str,
    levels: list[str],
    holdout_start: object = None,
) -> str:
    """One entity: its history, backtest predictions, forecast and intervals.

    Args:
        title: the entity's keys and scores.
        history: time and target columns.
        forecast: time column, ``prediction`` and ``lo-<level>``/``hi-<level>`` columns.
        backtest: time column, ``prediction`` and ``window`` (one line per window).
        levels: the interval levels to shade (column labels such as ``80``), widest first.
        holdout_start: the first period the job scored its model on, marked when given.
    """
    figure = _figure(8.0, 2.6)
    axes = figure.add_subplot()
    if not history.empty:
        shown = history.tail(HISTORY_SHOWN)
        axes.plot(
            shown[time_col], shown[target_col], color=HISTORY_COLOR, linewidth=1.1, label="history"
        )
    _draw_backtest(axes, backtest, time_col)
    if holdout_start is not None and not pd.isna(holdout_start):
        axes.axvline(
            pd.Timestamp(holdout_start), color="#777", linestyle=":", linewidth=1, label="holdout"
        )
    if not forecast.empty:
        for level in sorted(levels, key=float, reverse=True):
            axes.fill_between(
                forecast[time_col],
                forecast[f"lo-{level}"],
                forecast[f"hi-{level}"],
                color=FORECAST_COLOR,
                alpha=0.12 if float(level) >= 90 else 0.22,
                linewidth=0,
                label=f"{level}% interval",
            )
        axes.plot(
            forecast[time_col],
            forecast["prediction"],
            color=FORECAST_COLOR,
            linewidth=1.6,
            label="forecast",
        )
    axes.set_title(title, fontsize=9, loc="left", y=1.0)
    axes.legend(fontsize=7, frameon=False, ncols=4, loc="upper left")
    _style(axes)
    _numbers(axes.yaxis)
    _time_axis(axes, history.get(time_col, forecast.get(time_col)))
    _margins(figure)
    return _svg(figure)


def _draw_backtest(axes: Axes, backtest: pd.DataFrame, time_col: str) -> None:
    if backtest.empty or time_col not in backtest or "prediction" not in backtest:
        return
    windows = backtest.groupby("window") if "window" in backtest else [(0, backtest)]
    for index, (_, rows) in enumerate(windows):
        rows = rows.sort_values(time_col)
        axes.plot(
            rows[time_col],
            rows["prediction"],
            color=BACKTEST_COLOR,
            linewidth=1.1,
            linestyle="--",
            label="backtest" if index == 0 else None,
        )

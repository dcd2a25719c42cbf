"""The report's figures: matplotlib on the Agg canvas, seaborn's look, one PNG each.

Every figure is drawn at the size it is shown (``FIGURE_WIDTH`` inches wide) and its titles
are wrapped to that width, so nothing is clipped at the rendered size.
"""

from __future__ import annotations

import contextlib
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from .tables import DatasetResult, run_order

CCMA_COLOUR = "#d62728"
# One fixed colour per strategy in every figure of every report; red is CCMA's alone.
STRATEGY_COLOURS = {
    "random": "#7f7f7f", "uncertainty": "#1f77b4", "entropy": "#aec7e8", "margins": "#17becf",
    "bald": "#2ca02c", "powerbald": "#98df8a", "coreset": "#9467bd", "badge": "#ff7f0e",
    "alfamix": "#bcbd22", "probcover": "#8c564b", "typiclust": "#e377c2", "uherding": "#c5b0d5",
    "ccma": CCMA_COLOUR,
}
CCMA_FAMILY_COLOURS = ("#7b0d0d", "#f4a582", "#b2182b", "#ef8a62")  # other standard CCMA runs
OTHER_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252",
                 "#bd9e39", "#ad494a", "#a55194", "#6b6ecf", "#b5cf6b", "#e7ba52", "#d6616b")

DIAGNOSTIC_PANELS = (  # (column, panel title); the paper's Figs. 8 (a-c) and 9 (a-c), plus the gate
    ("overlap", "overlap |C_T∩C_S| / |C_T∪C_S|"),
    ("sym_diff", "symmetric diff. |C_T Δ C_S|"),
    ("top1_disagreement", "top-1 disagreement"),
    ("js_mean", "JS divergence"),
    ("conf_student", "student confidence c_S"),
    ("conf_teacher", "teacher confidence c_T"),
    ("gate_mean", "gate w"),
)
VARIANT_COLOURS = {"V1": CCMA_COLOUR, "V2": "#4c72b0", "V3": "#55a868", "V4": "#8172b3",
                   "V5": "#937860"}
FIGURE_WIDTH = 7.0   # inches: one text width; figures are drawn at the size they are printed
CHAR_WIDTH = 0.6     # a title character's mean width, in units of the font size (sans-serif)


def _wrap(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` broken into lines that fit ``width_inches`` at ``fontsize`` points."""
    chars = max(12, int(width_inches * 72 / (CHAR_WIDTH * fontsize)))
    return "\n".join(textwrap.wrap(text, chars, break_on_hyphens=False))


def _suptitle(fig, text: str) -> None:
    from matplotlib import rcParams
    from matplotlib.font_manager import FontProperties

    size = FontProperties(size=rcParams["figure.titlesize"]).get_size_in_points()
    fig.suptitle(_wrap(text, fig.get_figwidth() * 0.95, size), fontsize=size)


def _title(ax, text: str, width_inches: float, fontsize: float | None = None) -> None:
    from matplotlib import rcParams
    from matplotlib.font_manager import FontProperties

    size = fontsize or FontProperties(size=rcParams["axes.titlesize"]).get_size_in_points()
    ax.set_title(_wrap(text, width_inches, size), fontsize=size)


def palette(records: pd.DataFrame) -> dict[str, str]:
    """A fixed colour per standard run name: the strategy's own, red shades for CCMA presets."""
    colours, family, others = {}, iter(CCMA_FAMILY_COLOURS), iter(OTHER_COLOURS)
    for run in run_order(records[records["main"]]):
        base = records.loc[records["run"] == run, "base"].iloc[0]
        if run == base and base in STRATEGY_COLOURS:
            colours[run] = STRATEGY_COLOURS[base]
        elif base == "ccma":
            colours[run] = next(family, CCMA_FAMILY_COLOURS[-1])
        else:
            colours[run] = next(others, "#000000")
    return colours


@contextlib.contextmanager
def _theme(style: str = "whitegrid", scale: float = 1.15):
    """Seaborn's look for the figures of this module only (global rcParams are restored)."""
    import seaborn as sns

    with sns.axes_style(style), sns.plotting_context("paper", font_scale=scale):
        yield


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kwargs):
    """A matplotlib figure on the Agg canvas, outside pyplot (no global figure state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def _save(fig, path: Path, dpi: int) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _style(run: str, colours: dict[str, str]) -> dict:
    """CCMA is drawn thick and on top; other CCMA presets dashed."""
    if run == "ccma":
        return {"color": colours.get(run, CCMA_COLOUR), "linewidth": 2.6, "zorder": 10}
    style = {"color": colours.get(run, "#000000"), "linewidth": 1.5, "zorder": 3}
    if run.startswith("ccma"):
        style.update(linestyle="--", zorder=8)
    return style


def _accuracy_axis(ax, label="test accuracy (%)"):
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel(label)


def _mean_sd(ax, rows: pd.DataFrame, x: str, y: str, band_alpha: float = 0.2, **style) -> None:
    """The mean of ``y`` at each ``x`` (NaN skipped) with a +-1 standard deviation band
    (ddof = 1; none where one value): one groupby for the whole line."""
    values = rows[y].astype(float)  # a diagnostic column holds None where a round has none
    stats = values.groupby(rows[x]).agg(["mean", "std"]).dropna(subset=["mean"])
    xs = stats.index.to_numpy(dtype=float)
    mean, sd = stats["mean"].to_numpy(dtype=float), stats["std"].to_numpy(dtype=float)
    ax.plot(xs, mean, **style)
    band = {k: style[k] for k in ("color", "zorder") if k in style}
    ax.fill_between(xs, mean - sd, mean + sd, alpha=band_alpha, linewidth=0, **band)


def _band_lines(ax, rows: pd.DataFrame, runs, x: str, y: str, styles: dict, labels=None):
    """Seed mean with a +-1 standard deviation band (ddof = 1), one line per run."""
    for run in runs:
        sub = rows[rows["run"] == run]
        if sub[y].notna().any():
            _mean_sd(ax, sub, x, y, band_alpha=0.2 if len(runs) <= 4 else 0.1, marker="o",
                     markersize=3.5, markeredgewidth=0, label=(labels or {}).get(run, run),
                     **styles[run])


def figure_learning_curves(res: DatasetResult, colours, path: Path, dpi: int) -> Path:
    with _theme():
        fig, axes = _figure(FIGURE_WIDTH, 4.3)
        ax = axes[0, 0]
        _band_lines(ax, res.rows, res.main, "n_labeled", "accuracy",
                    {r: _style(r, colours) for r in res.main})
        if not math.isnan(res.zero_shot):
            ax.axhline(res.zero_shot, color="black", linestyle=":", linewidth=1.2,
                       label=f"teacher zero-shot ({100 * res.zero_shot:.1f}%)")
        _accuracy_axis(ax)
        ax.set_xlabel("labelled samples")
        _title(ax, f"{res.dataset}: learning curves (mean ± s.d. over seeds)", 0.6 * FIGURE_WIDTH)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        return _save(fig, path, dpi)


def figure_label_efficiency(res: DatasetResult, panels: list[tuple[str, str]], colours, path: Path,
                            dpi: int) -> Path:
    """Horizontal bars, one panel per (title, summary column) target: labels needed; 'not
    reached' written in place."""
    s = res.summary.set_index("run").loc[res.main]
    with _theme():
        fig, axes = _figure(FIGURE_WIDTH, max(2.4, 1.4 + 0.3 * len(res.main)), 1, len(panels),
                            sharey=True)
        top = np.nanmax([s[column].max() for _, column in panels] + [1.0])
        y = np.arange(len(res.main))
        for ax, (title, column) in zip(axes[0], panels):
            needed = s[column].to_numpy(dtype=float)
            ax.barh(y, np.nan_to_num(needed), color=[colours.get(r, "#000000") for r in res.main],
                    edgecolor=["black" if r == "ccma" and not np.isnan(n) else "none"
                               for r, n in zip(res.main, needed)], linewidth=1.2)
            for yi, n in zip(y, needed):
                if np.isnan(n):
                    ax.text(0.02 * top, yi, "not reached", va="center", ha="left", fontsize=8,
                            style="italic", color="#555555")
                else:
                    ax.text(n + 0.02 * top, yi, f"{n:.0f}", va="center", ha="left", fontsize=8)
            ax.set_xlim(0, top * 1.3)
            _title(ax, title, 0.85 * (FIGURE_WIDTH - 1.4) / len(panels))
            ax.grid(axis="y", visible=False)
        axes[0, 0].set_yticks(y, res.main)
        axes[0, 0].invert_yaxis()
        fig.supxlabel("labels needed")
        _suptitle(fig, f"{res.dataset}: labels needed to reach each target (seed-mean curve)")
        return _save(fig, path, dpi)


def _rank_heatmap(ax, table: pd.DataFrame, n_runs: int):
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    integral = np.allclose(table.fillna(0).to_numpy() % 1, 0)
    sns.heatmap(table, ax=ax, annot=True, fmt=".0f" if integral else ".1f", cmap="crest_r",
                vmin=1, vmax=max(n_runs, 2), linewidths=0.5, linecolor="white",
                annot_kws={"fontsize": 8}, cbar_kws={"label": "rank (1 = best)", "shrink": 0.8})
    ax.collections[0].colorbar.locator = MaxNLocator(integer=True)
    ax.collections[0].colorbar.update_ticks()
    ax.set_facecolor("#eeeeee")  # a run without that round: grey, no number
    ax.set_ylabel("")
    ax.tick_params(axis="y", rotation=0)


def figure_ranks(res: DatasetResult, path: Path, dpi: int) -> Path:
    table = res.curves[res.curves["run"].isin(res.main)].pivot(index="run", columns="round",
                                                                values="rank").loc[res.main]
    with _theme("white"):
        fig, axes = _figure(FIGURE_WIDTH, max(2.0, 1.1 + 0.32 * len(res.main)))
        _rank_heatmap(axes[0, 0], table, len(res.main))
        axes[0, 0].set_xlabel("round")
        _title(axes[0, 0], f"{res.dataset}: rank per round (seed-mean accuracy)", 0.8 * FIGURE_WIDTH)
        return _save(fig, path, dpi)


def figure_rank_table(table: pd.DataFrame, path: Path, dpi: int) -> Path:
    datasets = list(dict.fromkeys(c.rsplit("@", 1)[0] for c in table.columns))
    shown = table.copy()
    shown.columns = [c.rsplit("@", 1)[1] for c in table.columns]
    with _theme("white"):
        fig, axes = _figure(max(FIGURE_WIDTH, 1.8 + 0.45 * len(table.columns)), max(2.2, 1.6 + 0.32 * len(table)))
        ax = axes[0, 0]
        _rank_heatmap(ax, shown, len(table))
        centres, start = [], 0
        for ds in datasets:
            width = sum(c.rsplit("@", 1)[0] == ds for c in table.columns)
            centres.append(start + width / 2)
            if start:
                ax.axvline(start, color="white", linewidth=5)
            start += width
        top = ax.secondary_xaxis("top")
        top.set_xticks(centres, datasets, fontweight="bold")
        top.tick_params(length=0)
        top.spines["top"].set_visible(False)
        ax.set_xlabel("iteration")
        _suptitle(fig, "rank per dataset and iteration (1 = highest seed-mean accuracy)")
        return _save(fig, path, dpi)


def _diagnostic_grid(rows: pd.DataFrame, hue: str, order, styles, title: str, path: Path, dpi: int):
    """2 x 4 panels: the seven diagnostics and the empirical coverage of both predictors."""
    with _theme(scale=0.95):
        fig, axes = _figure(FIGURE_WIDTH, 4.6, 2, 4)
        panels = list(DIAGNOSTIC_PANELS) + [("coverage", "coverage on D_cal")]
        for ax, (column, name) in zip(axes.flat, panels):
            for key in order:
                sub = rows[rows[hue] == key]
                if column == "coverage":
                    for col, ls in (("coverage_student", "-"), ("coverage_teacher", ":")):
                        if sub[col].notna().any():
                            st = {**styles[key], "linestyle": ls}
                            _mean_sd(ax, sub, "round", col, **st)
                elif sub[column].notna().any():
                    _mean_sd(ax, sub, "round", column, marker="o", markersize=3, markeredgewidth=0,
                             **styles[key])
            _title(ax, name, FIGURE_WIDTH / 4 * 0.9, 8)
            ax.set_xlabel("round")
            ax.set_ylabel("")
        axes[1, 3].text(0.98, 0.04, "solid: student\ndotted: teacher", transform=axes[1, 3].transAxes,
                        ha="right", va="bottom", fontsize=7, color="#444444")
        handles = [_line_handle(styles[k]) for k in order]
        fig.legend(handles, list(order), loc="outside lower center", ncols=min(len(order), 6),
                   frameon=False)
        _suptitle(fig, title)
        return _save(fig, path, dpi)


def _line_handle(style: dict):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=style["color"], linewidth=style.get("linewidth", 1.5),
                  linestyle=style.get("linestyle", "-"))


def ccma_runs_with_diagnostics(res: DatasetResult) -> list[str]:
    have = res.rows.groupby("run")["overlap"].apply(lambda c: c.notna().any())
    return [r for r in res.main if have.get(r, False)]


def figure_diagnostics(res: DatasetResult, colours, path: Path, dpi: int) -> Path:
    runs = ccma_runs_with_diagnostics(res)
    return _diagnostic_grid(res.rows, "run", runs, {r: _style(r, colours) for r in runs},
                            f"{res.dataset}: CCMA teacher-student diagnostics on the scored subpool "
                            "(mean ± s.d. over seeds)", path, dpi)


def figure_diagnostics_across(results: list[DatasetResult], path: Path, dpi: int) -> Path | None:
    """The default ``ccma`` run of every dataset, one line each (the paper's Figs. 3, 8, 9)."""
    import seaborn as sns

    have = [res for res in results if "ccma" in ccma_runs_with_diagnostics(res)]
    if not have:
        return None
    rows = pd.concat([res.rows[res.rows["run"] == "ccma"] for res in have], ignore_index=True)
    order = [res.dataset for res in have]
    shades = sns.color_palette("colorblind", len(order))
    styles = {ds: {"color": c, "linewidth": 1.8} for ds, c in zip(order, shades)}
    return _diagnostic_grid(rows, "dataset", order, styles,
                            "CCMA diagnostics across datasets (mean ± s.d. over seeds)", path, dpi)


def _curves_and_panel(res: DatasetResult, runs: list, styles: dict, labels: dict):
    """A 1 x 2 figure: learning curves of ``runs`` on the left (with legend), the right free."""
    fig, axes = _figure(FIGURE_WIDTH, 3.6, 1, 2)
    _band_lines(axes[0, 0], res.rows, runs, "n_labeled", "accuracy", styles, labels)
    _accuracy_axis(axes[0, 0])
    axes[0, 0].set_xlabel("labelled samples")
    axes[0, 0].set_title("learning curves")
    axes[0, 0].legend(frameon=False)
    return fig, axes


def figure_ablation(res: DatasetResult, table: pd.DataFrame, path: Path, dpi: int) -> Path:
    """Learning curves of V1-V5 and AULC against query seconds per round (the paper's Fig. 7)."""
    t = table[table["dataset"] == res.dataset]
    runs = list(t["run"])
    styles = {r: {"color": VARIANT_COLOURS[v], "linewidth": 2.6 if v == "V1" else 1.5}
              for r, v in zip(runs, t["variant"])}
    labels = dict(zip(runs, t["variant"]))
    with _theme():
        fig, axes = _curves_and_panel(res, runs, styles, labels)
        ax = axes[0, 1]
        for row in t.itertuples():
            ax.errorbar(row.time_per_round_s, row.aulc_mean, yerr=np.nan_to_num(row.aulc_std),
                        fmt="o", color=styles[row.run]["color"], capsize=3, markersize=6)
            ax.annotate(row.variant, (row.time_per_round_s, row.aulc_mean), textcoords="offset points",
                        xytext=(5, 4), fontsize=8.5)
        _spread_axis(ax, t["time_per_round_s"].to_numpy(dtype=float))
        ax.set_xlabel("query seconds per round")
        ax.set_ylabel("AULC")
        ax.set_title("accuracy vs cost")
        _suptitle(fig, f"{res.dataset}: CCMA ablation (V1 = k-means subpool + diversity)")
        return _save(fig, path, dpi)


def _spread_axis(ax, values: np.ndarray) -> None:
    """A log x axis when the values span more than a factor 10, with plain-number ticks."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    values = values[np.isfinite(values)]
    if len(values) and values.min() > 0 and values.max() / values.min() > 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())


def figure_sensitivity(res: DatasetResult, param: str, path: Path, dpi: int) -> Path:
    """Learning curves per value of ``param`` and AULC against the value (Figs. 5, 6, 10)."""
    import seaborn as sns

    t = res.sensitivity[param]
    runs = list(t["run"])
    shades = sns.color_palette("flare", len(runs))
    labels = {r: f"{param} = {v:g}" for r, v in zip(runs, t["value"])}
    styles = {r: {"color": c, "linewidth": 2.4 if r == "ccma" else 1.5} for r, c in zip(runs, shades)}
    with _theme():
        fig, axes = _curves_and_panel(res, runs, styles, labels)
        ax = axes[0, 1]
        ax.errorbar(t["value"], t["aulc_mean"], yerr=np.nan_to_num(t["aulc_std"]), color="#444444",
                    marker="o", capsize=3)
        values = t["value"].to_numpy(dtype=float)
        _spread_axis(ax, values)
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.set_xlabel(param)
        ax.set_ylabel("AULC")
        ax.set_title(f"AULC vs {param}")
        _suptitle(fig, f"{res.dataset}: CCMA sensitivity to {param} (mean ± s.d. over seeds)")
        return _save(fig, path, dpi)



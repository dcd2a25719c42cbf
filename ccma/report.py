"""Aggregation, tables, figures and the report (SPEC sections 9 and 13).

Reads every finished run record ``{data_dir}/runs/{dataset}/{run}/seed{seed}.parquet`` and
writes under a results folder, each file atomically:

- ``{dataset}/summary.csv``: one row per run: AULC, Final@R, seconds per round, AULC per
  query second, labels needed per target accuracy (empty cell = not reached), mean rank.
- ``{dataset}/curves.csv``: one row per (run, round): accuracy mean and deviation over
  seeds, rank, timings and the mean CCMA diagnostics.
- ``{dataset}/*.png``: learning curves, label efficiency, rank heat map, CCMA diagnostics,
  ablation and kappa/tau sensitivity (the last three when such runs exist).
- ``rank_table.{csv,md,png}`` (the paper's Table 1), ``ablation.{csv,md}`` (its Table 2),
  ``labels_to_target.{csv,md}``, ``fallbacks.csv``, ``diagnostics.png`` (CCMA across
  datasets, Figs. 3, 8, 9), ``metrics.json`` (for ``dvc metrics``), ``report.md`` and a
  self-contained ``report.html``.

Which runs are compared: the *standard* runs of a dataset, i.e. every run whose name is
the default one for its strategy and parameters and, for CCMA, whose variant is V1
(``ccma``, ``ccma-reference-code``, ``random``, ...), are ranked and drawn together. CCMA
variants feed the ablation; runs named with ``--name`` (``ccma-kappa10``) that differ from
another CCMA run in one sensitivity parameter only feed that parameter's sensitivity curve.
Every run appears in ``summary.csv`` and ``curves.csv``.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import metrics, record
from .atomic import atomic_path
from .errors import CCMAError

DEFAULT_TARGETS = (0.80, 0.85, 0.90)
DEFAULT_ITERATIONS = (1, 4, 8, 16, 20)   # the columns of the paper's Table 1
SENSITIVITY_PARAMS = ("kappa", "tau")
VARIANTS = ("V1", "V2", "V3", "V4", "V5")

# The paper's order of strategies (its Table 1), CCMA last; other names follow alphabetically.
STRATEGY_ORDER = ("random", "uncertainty", "entropy", "margins", "bald", "powerbald", "coreset",
                  "badge", "alfamix", "probcover", "typiclust", "uherding", "ccma")
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


@dataclass(frozen=True)
class ReportConfig:
    targets: tuple[float, ...] = DEFAULT_TARGETS       # target accuracies, fractions
    iterations: tuple[int, ...] = DEFAULT_ITERATIONS   # rounds shown in the rank table
    ties: str = "min"                                  # tie rule of metrics.ranks
    seeds: tuple[int, ...] | None = None               # expected seeds; None: all seeds found
    sensitivity: tuple[str, ...] = SENSITIVITY_PARAMS  # CCMA parameters with sensitivity curves
    dpi: int = 200

    def __post_init__(self):
        if not self.targets or not all(0 < t <= 1 for t in self.targets):
            raise CCMAError(f"--targets: each target must be a percentage in (0, 100], got "
                            f"{[round(100 * t, 6) for t in self.targets]}")
        if not self.iterations or min(self.iterations) < 1:
            raise CCMAError(f"--rank-iterations: rounds are numbered from 1, got {list(self.iterations)}")
        if self.ties not in metrics.TIE_METHODS:
            raise CCMAError(f"--ties: must be one of {metrics.TIE_METHODS}, got {self.ties!r}")
        if self.dpi < 50:
            raise CCMAError(f"--dpi: must be >= 50, got {self.dpi}")
        numeric = sensitivity_parameters()
        unknown = [p for p in self.sensitivity if p not in numeric]
        if unknown:
            raise CCMAError(f"--sensitivity: {', '.join(unknown)} not a numeric CCMA parameter; "
                            f"choose from {', '.join(numeric)}")


def sensitivity_parameters() -> tuple[str, ...]:
    """CCMA's numeric parameters: the ones a sensitivity curve can have on its x axis."""
    from dataclasses import fields

    from .acquisition import CCMAParams

    return tuple(f.name for f in fields(CCMAParams) if type(f.default) in (int, float))


# ================================================================== loading

@dataclass
class RunSet:
    """Every finished run record found under one data directory."""

    rows: pd.DataFrame      # one row per (record, round): record.COLUMNS plus `run`
    records: pd.DataFrame   # one row per record: dataset, run, seed, base, params, setting, ...
    warnings: list[str]


def _target_label(target: float) -> str:
    return f"{100 * target:g}%"


def _default_name(base: str, params: dict) -> str:
    from .loop import run_name

    return run_name(base, params)


def load_runs(data_dir) -> RunSet:
    """Read every ``runs/*/*/seed*.parquet``; unfinished (``.partial``) records become warnings,
    except a stale one beside its finished record, which is removed."""
    root = Path(data_dir) / "runs"
    if not root.is_dir():
        raise CCMAError(f"{root}: no run records (run `ccma run` first)")
    warnings, frames, infos = [], [], []
    for path in sorted(root.glob("*/*/seed*.parquet")):
        if path.name.endswith(".partial.parquet"):
            final = record.final_path(path)
            if final.exists() and record.remove_stale_partial(final):
                continue
            other = " with other parameters than the finished record beside it" if final.exists() else ""
            warnings.append(f"{path.relative_to(root)}: unfinished run{other} (rounds done so far are not "
                            "aggregated)")
            continue
        try:
            rows, meta = record.read_rows(path)
        except CCMAError as exc:
            raise CCMAError(f"{exc}; rerun the `ccma run` that wrote it with --overwrite, or delete it") from None
        frame = pd.DataFrame(rows)
        missing = [c for c in record.COLUMNS if c not in frame.columns]
        if missing:
            raise CCMAError(f"{path}: not a run record, missing column(s) {', '.join(missing)}")
        if frame.empty:
            warnings.append(f"{path.relative_to(root)}: record has no rounds; skipped")
            continue
        frame = frame[list(record.COLUMNS)].sort_values("round", kind="stable").reset_index(drop=True)
        first = frame.iloc[0]
        identity = meta.get("identity", {})
        params = identity.get("params", {})
        base = identity.get("strategy", first["strategy"])
        # Everything that defines the run except the seed: equal across a run's seeds.
        setting = {k: v for k, v in identity.items() if k != "seed"}
        infos.append({
            "dataset": first["dataset"], "run": first["strategy"], "seed": int(first["seed"]),
            "base": base, "preset": first["preset"], "variant": first["variant"], "params": params,
            "setting": json.dumps(setting, sort_keys=True, default=str),
            "rounds": len(frame), "last_round": int(frame["round"].max()),
            "budget": identity.get("budget"), "init": identity.get("init"),
            "teacher": identity.get("teacher"), "student": identity.get("student"),
            "zero_shot": first["teacher_zero_shot_accuracy"],
            "student_config": json.dumps(identity.get("student_config"), sort_keys=True),
            "standard": first["strategy"] == _default_name(base, params),
            "path": str(path),
        })
        if list(frame["round"]) != list(range(1, len(frame) + 1)):
            warnings.append(f"{path.relative_to(root)}: rounds {list(frame['round'])} are not "
                            f"1..{len(frame)}")
        frames.append(frame.assign(run=first["strategy"]))
    if not frames:
        raise CCMAError(f"{root}: no finished run records")
    records = pd.DataFrame(infos)
    records["main"] = records["standard"] & (records["variant"].isna() | (records["variant"] == "V1"))
    return RunSet(pd.concat(frames, ignore_index=True), records, warnings)


def _strategy_key(base: str, run: str):
    """Sort key: the paper's order, CCMA's family last, a strategy's default run first."""
    order = STRATEGY_ORDER.index(base) if base in STRATEGY_ORDER else STRATEGY_ORDER.index("ccma") - 0.5
    return (base == "ccma", order, base, run != base, run)


def run_order(records: pd.DataFrame) -> list[str]:
    pairs = records[["base", "run"]].drop_duplicates().itertuples(index=False)
    return [run for base, run in sorted(pairs, key=lambda p: _strategy_key(p.base, p.run))]


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


# ================================================================== aggregation

@dataclass
class DatasetResult:
    dataset: str
    rounds: int                 # T: the most rounds any run has
    zero_shot: float            # the teacher's zero-shot test accuracy
    runs: list[str]             # every run, in display order
    main: list[str]             # the runs that are ranked and drawn together
    curves: pd.DataFrame        # per (run, round)
    summary: pd.DataFrame       # per run
    rows: pd.DataFrame          # the raw rounds of this dataset (for seed bands)
    sensitivity: dict[str, pd.DataFrame] = field(default_factory=dict)  # param -> runs by value


def _check_dataset(dataset: str, recs: pd.DataFrame, rounds: int, seeds, warnings: list[str]) -> None:
    expected = set(seeds) if seeds is not None else set(recs["seed"])
    for run, group in recs.groupby("run", sort=False):
        have = set(group["seed"])
        if expected - have:
            warnings.append(f"{dataset}/{run}: seed(s) {_joined(expected - have)} missing "
                            f"(has {_joined(have)}); its means use {len(have)} seed(s)")
        if len(set(group["setting"])) > 1:
            warnings.append(f"{dataset}/{run}: its seeds ran with different parameters")
        for rec in group.itertuples():
            if rec.rounds < rounds:
                warnings.append(f"{dataset}/{run} seed {rec.seed}: {rec.rounds} of {rounds} rounds; "
                                f"its AULC and Final@R cover rounds 1-{rec.rounds} and it is "
                                f"not ranked after round {rec.rounds}")


def _joined(values) -> str:
    return ", ".join(str(v) for v in sorted(values))


def aggregate_dataset(runset: RunSet, dataset: str, cfg: ReportConfig) -> DatasetResult:
    """Curves and summary of one dataset (SPEC section 9); appends its warnings to ``runset``."""
    rows = runset.rows[runset.rows["dataset"] == dataset]
    recs = runset.records[runset.records["dataset"] == dataset]
    rounds = int(recs["rounds"].max())
    _check_dataset(dataset, recs, rounds, cfg.seeds, runset.warnings)
    runs = run_order(recs)
    main = [r for r in runs if recs.loc[recs["run"] == r, "main"].all()]

    curve_parts, summary_rows, by_round = [], [], {}
    for run in runs:
        r = rows[rows["run"] == run]
        acc = r.pivot(index="seed", columns="round", values="accuracy")  # (seeds, rounds), NaN: absent
        mean, std = metrics.mean_std(acc.to_numpy(), axis=0)
        grouped = r.groupby("round")
        curve = pd.DataFrame({
            "dataset": dataset, "run": run, "round": acc.columns.astype(int),
            "n_labeled": grouped["n_labeled"].mean().to_numpy(),
            "accuracy_mean": mean, "accuracy_std": std,
            "n_seeds": acc.notna().sum(axis=0).to_numpy(),
            "train_seconds_mean": grouped["train_seconds"].mean().to_numpy(),
            "query_seconds_mean": grouped["query_seconds"].mean().to_numpy(),
            **{c: grouped[c].mean().to_numpy() for c in record.DIAGNOSTIC_COLUMNS},
        })
        curve_parts.append(curve)
        by_round[run] = curve.set_index("round")["accuracy_mean"]

        per_seed = [a[~np.isnan(a)] for a in acc.to_numpy()]
        aulc_mean, aulc_std = metrics.mean_std([metrics.aulc(a) for a in per_seed])
        final_mean, final_std = metrics.mean_std([metrics.final_at_r(a) for a in per_seed])
        # Seed-wise mean seconds per round, then the mean over seeds; the last round never queries.
        query_s = float(np.nanmean(r.groupby("seed")["query_seconds"].mean())) \
            if r["query_seconds"].notna().any() else math.nan
        train_s = float(r.groupby("seed")["train_seconds"].mean().mean())
        needed = metrics.labels_to_target(mean, curve["n_labeled"].to_numpy(), cfg.targets)
        info = recs[recs["run"] == run].iloc[0]
        summary_rows.append({
            "dataset": dataset, "run": run, "strategy": info["base"], "preset": info["preset"],
            "variant": info["variant"], "seeds": int(acc.shape[0]),
            "seed_list": " ".join(str(s) for s in acc.index), "rounds": int(acc.shape[1]),
            "aulc_mean": float(aulc_mean), "aulc_std": float(aulc_std),
            "final_mean": float(final_mean), "final_std": float(final_std),
            "query_seconds_per_round": query_s, "train_seconds_per_round": train_s,
            "aulc_per_query_second": float(metrics.per_second(aulc_mean, query_s)),
            **{f"labels_to_{_target_label(t)}": n for t, n in zip(cfg.targets, needed)},
            "fallback_rounds": int(r["fallback"].notna().sum()),
            "standard": bool(info["standard"]), "main": run in main,
        })

    curves = pd.concat(curve_parts, ignore_index=True)
    curves["rank"] = np.nan
    if main:
        table = pd.DataFrame({run: by_round[run] for run in main}).T  # (runs, rounds)
        ranked = pd.DataFrame(metrics.ranks(table.to_numpy(), cfg.ties),
                              index=pd.Index(table.index, name="run"), columns=table.columns)
        long = ranked.stack().rename("rank_").reset_index()
        curves = curves.merge(long, on=["run", "round"], how="left")
        curves["rank"] = curves.pop("rank_")
    summary = pd.DataFrame(summary_rows)
    summary["mean_rank"] = summary["run"].map(curves.groupby("run")["rank"].mean())
    # The zero-shot line belongs to the teacher most runs used (runs may compare teachers).
    teacher = recs["teacher"].mode(dropna=False).iloc[0] if recs["teacher"].notna().any() else None
    same = recs[recs["teacher"] == teacher] if teacher is not None else recs
    result = DatasetResult(dataset, rounds, float(same["zero_shot"].mean()), runs, main, curves,
                           summary, rows)
    for param in cfg.sensitivity:
        found = sensitivity_runs(recs, param)
        if found is not None:
            result.sensitivity[param] = found.merge(summary, on="run")
    return result


def sensitivity_runs(recs: pd.DataFrame, param: str) -> pd.DataFrame | None:
    """CCMA runs that differ from each other in ``param`` only: columns run, value.

    Runs are compared on everything that defines them except the seed and ``param``. Among
    several such families the one holding the default ``ccma`` run wins, then the largest.
    None when no family has two values.
    """
    ccma = recs[(recs["base"] == "ccma")].drop_duplicates("run")
    families: dict[str, dict] = {}
    for rec in ccma.itertuples():
        if param not in rec.params:
            continue
        setting = json.loads(rec.setting)
        setting["params"] = {k: v for k, v in setting.get("params", {}).items() if k != param}
        key = json.dumps(setting, sort_keys=True)
        # Two names for one configuration: keep the standard (shorter) name.
        family = families.setdefault(key, {})
        value = rec.params[param]
        if value not in family or (rec.standard and not family[value][1]):
            family[value] = (rec.run, rec.standard)
    candidates = [f for f in families.values() if len(f) >= 2]
    if not candidates:
        return None
    best = max(candidates, key=lambda f: (any(run == "ccma" for run, _ in f.values()), len(f)))
    return pd.DataFrame([{"run": run, "value": value} for value, (run, _) in sorted(best.items())])


def rank_table(results: list[DatasetResult], iterations) -> tuple[pd.DataFrame, list[str]]:
    """Ranks at the chosen iterations, datasets side by side (the paper's Table 1).

    Returns the table (rows: runs; columns ``{dataset}@{round}``) and notes on iterations
    beyond a dataset's T, which are left out.
    """
    columns, notes = {}, []
    for res in results:
        if not res.main:
            notes.append(f"{res.dataset}: no standard runs to rank")
            continue
        ranks = res.curves[res.curves["run"].isin(res.main)].pivot(index="run", columns="round",
                                                                   values="rank")
        beyond = [t for t in iterations if t > res.rounds]
        if beyond:
            notes.append(f"{res.dataset}: iteration(s) {', '.join(map(str, beyond))} beyond "
                         f"T = {res.rounds}; left out")
        for t in iterations:
            if t <= res.rounds:
                columns[f"{res.dataset}@{t}"] = ranks[t] if t in ranks.columns else np.nan
    table = pd.DataFrame(columns)
    order = [r for res in results for r in res.main]
    order = sorted(dict.fromkeys(order), key=lambda r: _strategy_key(*_base_of(results, r)))
    table = table.reindex(order)
    table.index.name = "run"
    return table, notes


def _base_of(results: list[DatasetResult], run: str) -> tuple[str, str]:
    for res in results:
        hit = res.summary.loc[res.summary["run"] == run, "strategy"]
        if len(hit):
            return hit.iloc[0], run
    return run, run


def _selections(rows: pd.DataFrame, run: str) -> dict[int, tuple]:
    """Per seed, every round's queried indices of one run of one dataset."""
    mine = rows[rows["run"] == run].sort_values(["seed", "round"])
    return {int(seed): tuple(tuple(q) for q in g["queried"]) for seed, g in mine.groupby("seed")}


def identical_to(rows: pd.DataFrame, runs: list[str]) -> dict[str, str | None]:
    """For each run, the first earlier run in ``runs`` that selected exactly the same points in
    every round of every seed both have (e.g. V2 = V1 when the pool is not larger than the
    subpool), or None. rows: one dataset's round rows."""
    chosen = {run: _selections(rows, run) for run in runs}
    same = {}
    for i, run in enumerate(runs):
        mine = chosen[run]
        same[run] = next((other for other in runs[:i]
                          if set(mine) & set(chosen[other])
                          and all(mine[s] == chosen[other][s] for s in set(mine) & set(chosen[other]))),
                         None)
    return same


def ablation_table(results: list[DatasetResult], rows: pd.DataFrame) -> pd.DataFrame:
    """CCMA V1-V5 of the paper preset on each dataset with at least two variants (Table 2).

    rows: every round row of every run. A variant whose selections equal an earlier variant's
    on every seed is marked in ``same_as``: it is that run again, not a separate result."""
    parts = []
    for res in results:
        s = res.summary
        pick = s[s["standard"] & (s["strategy"] == "ccma") & (s["preset"].fillna("paper") == "paper")
                 & s["variant"].isin(VARIANTS)]
        if pick["variant"].nunique() >= 2:
            pick = pick.sort_values("variant")
            same = identical_to(rows[rows["dataset"] == res.dataset], list(pick["run"]))
            variant_of = dict(zip(pick["run"], pick["variant"]))
            parts.append(pick.assign(same_as=[variant_of.get(same[r]) for r in pick["run"]]))
    if not parts:
        return pd.DataFrame()
    t = pd.concat(parts, ignore_index=True)
    return pd.DataFrame({
        "dataset": t["dataset"], "variant": t["variant"], "run": t["run"], "seeds": t["seeds"],
        "same_as": t["same_as"],
        "aulc_mean": t["aulc_mean"], "aulc_std": t["aulc_std"],
        "final_mean": t["final_mean"], "final_std": t["final_std"],
        "time_per_round_s": t["query_seconds_per_round"],
        "aulc_per_second": t["aulc_per_query_second"],
    })


def fallback_table(runset: RunSet) -> pd.DataFrame:
    """Every round in which a strategy deviated from its published algorithm."""
    rows = runset.rows[runset.rows["fallback"].notna()]
    return rows[["dataset", "run", "seed", "round", "fallback"]].reset_index(drop=True)


def fallback_summary(fallbacks: pd.DataFrame) -> pd.DataFrame:
    """One line per (dataset, run, fallback message): which seeds and rounds it hit."""
    groups = fallbacks.groupby(["dataset", "run", "fallback"], sort=False)
    return pd.DataFrame([
        {"dataset": ds, "run": run, "fallback": message, "seeds": _joined(g["seed"].unique()),
         "rounds": _joined(g["round"].unique()), "times": len(g)}
        for (ds, run, message), g in groups])


def metrics_json(results: list[DatasetResult]) -> dict:
    """{dataset: {run: {aulc, final, ...}}}: small and stable, for ``dvc metrics``."""
    out = {}
    for res in results:
        out[res.dataset] = {
            "teacher_zero_shot_accuracy": _num(res.zero_shot),
            **{row.run: {"aulc": _num(row.aulc_mean), "aulc_std": _num(row.aulc_std),
                         "final": _num(row.final_mean), "final_std": _num(row.final_std),
                         "seeds": int(row.seeds), "rounds": int(row.rounds)}
               for row in res.summary.itertuples()},
        }
    return out


def _num(x) -> float | None:
    """JSON has no NaN: undefined values (one seed's deviation) become null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


# ================================================================== figures

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


def _band_lines(ax, rows: pd.DataFrame, runs, x: str, y: str, styles: dict, labels=None):
    """Seed mean with a +-1 standard deviation band (seaborn, ddof = 1), one line per run."""
    import seaborn as sns

    for run in runs:
        sub = rows[rows["run"] == run]
        if sub[y].notna().any():
            sns.lineplot(data=sub, x=x, y=y, ax=ax, errorbar="sd", marker="o", markersize=3.5,
                         markeredgewidth=0, label=(labels or {}).get(run, run),
                         err_kws={"alpha": 0.2 if len(runs) <= 4 else 0.1}, **styles[run])


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
        ax.set_title(f"{res.dataset}: learning curves (mean ± s.d. over seeds)")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        return _save(fig, path, dpi)


def figure_label_efficiency(res: DatasetResult, targets, colours, path: Path, dpi: int) -> Path:
    """Horizontal bars, one panel per target: labels needed; 'not reached' written in place."""
    s = res.summary.set_index("run").loc[res.main]
    with _theme():
        fig, axes = _figure(FIGURE_WIDTH, max(2.2, 1.2 + 0.3 * len(res.main)), 1, len(targets),
                               sharey=True)
        top = np.nanmax([s[f"labels_to_{_target_label(t)}"].max() for t in targets] + [1.0])
        y = np.arange(len(res.main))
        for ax, target in zip(axes[0], targets):
            needed = s[f"labels_to_{_target_label(target)}"].to_numpy()
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
            ax.set_title(f"{_target_label(target)} accuracy")
            ax.set_xlabel("labels needed")
            ax.grid(axis="y", visible=False)
        axes[0, 0].set_yticks(y, res.main)
        axes[0, 0].invert_yaxis()
        fig.suptitle(f"{res.dataset}: labels needed to reach each target (seed-mean curve)")
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
        axes[0, 0].set_title(f"{res.dataset}: rank per round (seed-mean accuracy)")
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
        fig.suptitle("rank per dataset and iteration (1 = highest seed-mean accuracy)")
        return _save(fig, path, dpi)


def _diagnostic_grid(rows: pd.DataFrame, hue: str, order, styles, title: str, path: Path, dpi: int):
    """2 x 4 panels: the seven diagnostics and the empirical coverage of both predictors."""
    import seaborn as sns

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
                            sns.lineplot(data=sub, x="round", y=col, ax=ax, errorbar="sd", **st)
                elif sub[column].notna().any():
                    sns.lineplot(data=sub, x="round", y=column, ax=ax, errorbar="sd",
                                 marker="o", markersize=3, markeredgewidth=0, **styles[key])
            ax.set_title(name, fontsize=8)
            ax.set_xlabel("round")
            ax.set_ylabel("")
        axes[1, 3].text(0.98, 0.04, "solid: student\ndotted: teacher", transform=axes[1, 3].transAxes,
                        ha="right", va="bottom", fontsize=7, color="#444444")
        handles = [_line_handle(styles[k]) for k in order]
        fig.legend(handles, list(order), loc="outside lower center", ncols=min(len(order), 6),
                   frameon=False)
        fig.suptitle(title)
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
        fig.suptitle(f"{res.dataset}: CCMA ablation (V1 = kmeans subpool + diversity)")
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
        fig.suptitle(f"{res.dataset}: CCMA sensitivity to {param} (mean ± s.d. over seeds)")
        return _save(fig, path, dpi)


# ================================================================== documents

@dataclass
class Document:
    """Blocks rendered both as Markdown (figures linked) and as HTML (figures embedded)."""

    blocks: list[tuple] = field(default_factory=list)

    def heading(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def para(self, text: str):
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]):
        if items:
            self.blocks.append(("ul", items))

    def table(self, frame: pd.DataFrame):
        self.blocks.append(("table", frame))

    def figure(self, path: Path, caption: str):
        self.blocks.append(("fig", path, caption))

    def markdown(self, root: Path) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append("#" * block[1] + " " + block[2])
            elif kind == "p":
                out.append(block[1])
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "table":
                out.append(markdown_table(block[1]))
            elif kind == "fig":
                rel = block[1].relative_to(root).as_posix()
                out.append(f"![{block[2]}]({rel})\n\n*{block[2]}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        body = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "p":
                body.append(f"<p>{_inline_html(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "table":
                body.append(block[1].to_html(index=False, escape=True, border=0, na_rep="",
                                             classes="tbl"))
            elif kind == "fig":
                data = base64.b64encode(block[1].read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(block[2])}" '
                            f'src="data:image/png;base64,{data}"><figcaption>'
                            f"{html.escape(block[2])}</figcaption></figure>")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
                + "\n".join(body) + "\n</body></html>\n")


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
        "color:#222;line-height:1.45}table.tbl{border-collapse:collapse;margin:0.8em 0;"
        "font-size:0.88em}table.tbl th,table.tbl td{padding:0.25em 0.6em;border-bottom:1px solid #ddd;"
        "text-align:right}table.tbl th{background:#f3f3f3}figure{margin:1.2em 0}"
        "img{max-width:100%}figcaption{font-size:0.9em;color:#555}code{background:#f3f3f3;"
        "padding:0 0.2em}h2{border-bottom:2px solid #d62728;padding-bottom:0.2em}")


def _inline_html(text: str) -> str:
    """Escape, then render Markdown's `code` spans (the only inline markup the report uses)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _pm(mean, std, digits: int = 3) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if std is None or math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _num_text(x, digits: int = 3) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _seconds(x) -> str:
    return "–" if x is None or math.isnan(x) else (f"{x:.3f}" if x >= 0.01 else f"{x:.2g}")


def _labels_text(n) -> str:
    return "not reached" if n is None or math.isnan(n) else f"{n:.0f}"


def _rank_text(x) -> str:
    return "" if math.isnan(x) else (f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}")


def shown_summary(res: DatasetResult, targets) -> pd.DataFrame:
    s = res.summary
    return pd.DataFrame({
        "run": s["run"], "seeds": s["seeds"], "rounds": s["rounds"],
        "AULC": [_pm(m, d) for m, d in zip(s["aulc_mean"], s["aulc_std"])],
        "Final@R": [_pm(m, d) for m, d in zip(s["final_mean"], s["final_std"])],
        "query s/round": s["query_seconds_per_round"].map(_seconds),
        "train s/round": s["train_seconds_per_round"].map(_seconds),
        "AULC per query s": s["aulc_per_query_second"].map(lambda x: _num_text(x, 2)),
        **{f"labels to {_target_label(t)}": s[f"labels_to_{_target_label(t)}"].map(_labels_text)
           for t in targets},
        "mean rank": s["mean_rank"].map(lambda x: "" if math.isnan(x) else f"{x:.2f}"),
    })


def shown_ablation(table: pd.DataFrame) -> pd.DataFrame:
    variant = [v if same is None or pd.isna(same) else f"{v} (identical to {same}: same selections)"
               for v, same in zip(table["variant"], table["same_as"])]
    return pd.DataFrame({
        "dataset": table["dataset"], "variant": variant, "seeds": table["seeds"],
        "AULC": [_pm(m, d) for m, d in zip(table["aulc_mean"], table["aulc_std"])],
        "Final@R": [_pm(m, d) for m, d in zip(table["final_mean"], table["final_std"])],
        "Time/rd (s)": table["time_per_round_s"].map(_seconds),
        "AULC/s": table["aulc_per_second"].map(lambda x: _num_text(x, 3)),
    })


def labels_table(results: list[DatasetResult], targets) -> pd.DataFrame:
    parts = []
    for res in results:
        s = res.summary[res.summary["main"]]
        parts.append(pd.DataFrame({"dataset": res.dataset, "run": s["run"],
                                   **{_target_label(t): s[f"labels_to_{_target_label(t)}"]
                                      for t in targets}}))
    return pd.concat(parts, ignore_index=True)


# ================================================================== the whole report

@dataclass
class Report:
    results_dir: Path
    files: list[Path]
    warnings: list[str]


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _write_csv(path: Path, frame: pd.DataFrame, index: bool = False) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index, float_format="%.6g")
    return path


def _config_tables(runset: RunSet) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs (one row per dataset and run) and the CCMA parameters of every CCMA run."""
    recs = runset.records
    rows, ccma = [], {}
    for (dataset, run), g in recs.groupby(["dataset", "run"], sort=False):
        first = g.iloc[0]
        rows.append({"dataset": dataset, "run": run, "strategy": first["base"],
                     "seeds": _joined(g["seed"]), "rounds": int(g["rounds"].max()),
                     "b": first["budget"], "init": first["init"], "teacher": first["teacher"],
                     "student": first["student"]})
        if first["base"] == "ccma":
            ccma[f"{dataset}/{run}"] = first["params"]
    runs = pd.DataFrame(rows)
    runs["_key"] = [_strategy_key(b, r) for b, r in zip(runs["strategy"], runs["run"])]
    runs = runs.sort_values(["dataset", "_key"]).drop(columns="_key")
    params = pd.DataFrame(ccma)
    if not params.empty:
        params = params.map(lambda v: "" if v is None else str(v)).reset_index(names="parameter")
    return runs, params


def write_report(data_dir, results_dir, cfg: ReportConfig = ReportConfig(),
                 progress: bool | None = None) -> Report:
    """Aggregate every run under ``data_dir`` and write tables, figures and the report."""
    import sys

    data_dir, results_dir = Path(data_dir), Path(results_dir)
    runset = load_runs(data_dir)
    datasets = sorted(runset.records["dataset"].unique())
    colours = palette(runset.records)
    show = sys.stderr.isatty() if progress is None else progress
    files: list[Path] = []

    results = [aggregate_dataset(runset, ds, cfg) for ds in datasets]
    ranks, rank_notes = rank_table(results, cfg.iterations)
    ablation = ablation_table(results, runset.rows)
    fallbacks = fallback_table(runset)
    runs_cfg, ccma_cfg = _config_tables(runset)

    doc = Document()
    doc.heading(1, "CCMA active-learning results")
    doc.para(f"Aggregated from {len(runset.records)} run records under `{data_dir / 'runs'}` "
             f"({len(datasets)} dataset(s)). AULC: trapezoidal area under accuracy vs round "
             "index, divided by T - 1. Final@R: accuracy at the last round. Means ± sample "
             "standard deviations are over seeds; labels-to-target and ranks use the seed-mean "
             f"curve (ties: `{cfg.ties}`). Time per round is the query time; the last round "
             "does not query.")
    doc.heading(2, "Warnings")
    if runset.warnings:
        doc.bullets(runset.warnings)
    else:
        doc.para("None: every run has every seed and every round.")

    doc.heading(2, "Configuration")
    doc.table(runs_cfg)
    configs = runset.records["student_config"].unique()
    doc.para("Student: " + "; ".join(f"`{c}`" for c in configs) + ".")
    if not ccma_cfg.empty:
        doc.para("CCMA parameters of each CCMA run (after preset and variant):")
        doc.table(ccma_cfg)

    doc.heading(2, "Teacher zero-shot accuracy")
    zero_shot = runset.records.groupby(["dataset", "teacher"], dropna=False)["zero_shot"].mean()
    doc.table(pd.DataFrame([{"dataset": ds, "teacher": teacher, "zero-shot test accuracy": _num_text(acc)}
                            for (ds, teacher), acc in zero_shot.items()]))

    for res in tqdm(results, desc="aggregate", unit="dataset", disable=not show):
        out = results_dir / res.dataset
        files.append(_write_csv(out / "summary.csv", res.summary))
        files.append(_write_csv(out / "curves.csv", res.curves))
        doc.heading(2, f"Dataset {res.dataset}")
        doc.para(f"T = {res.rounds} rounds; teacher zero-shot accuracy {_num_text(res.zero_shot)}. "
                 f"Ranked and drawn together: {', '.join(res.main) or 'none'}.")
        doc.table(shown_summary(res, cfg.targets))
        if res.main:
            figs = [
                (figure_learning_curves(res, colours, out / "learning_curves.png", cfg.dpi),
                 f"{res.dataset}: learning curves, mean ± s.d. over seeds"),
                (figure_label_efficiency(res, cfg.targets, colours, out / "label_efficiency.png", cfg.dpi),
                 f"{res.dataset}: labels needed per target accuracy"),
                (figure_ranks(res, out / "ranks.png", cfg.dpi), f"{res.dataset}: rank per round"),
            ]
            if ccma_runs_with_diagnostics(res):
                figs.append((figure_diagnostics(res, colours, out / "diagnostics.png", cfg.dpi),
                             f"{res.dataset}: CCMA diagnostics vs round"))
            for path, caption in figs:
                files.append(path)
                doc.figure(path, caption)
        if not ablation.empty and (ablation["dataset"] == res.dataset).any():
            files.append(figure_ablation(res, ablation, out / "ablation.png", cfg.dpi))
            doc.figure(files[-1], f"{res.dataset}: CCMA variants V1-V5")
        for param, table in res.sensitivity.items():
            files.append(_write_csv(out / f"sensitivity_{param}.csv", table[
                ["run", "value", "seeds", "aulc_mean", "aulc_std", "final_mean", "final_std"]]))
            files.append(figure_sensitivity(res, param, out / f"sensitivity_{param}.png", cfg.dpi))
            doc.heading(3, f"Sensitivity to {param}")
            doc.table(pd.DataFrame({
                param: table["value"].map(lambda v: f"{v:g}"), "run": table["run"],
                "seeds": table["seeds"],
                "AULC": [_pm(m, d) for m, d in zip(table["aulc_mean"], table["aulc_std"])],
                "Final@R": [_pm(m, d) for m, d in zip(table["final_mean"], table["final_std"])]}))
            doc.figure(files[-1], f"{res.dataset}: sensitivity to {param}")

    doc.heading(2, "Ranks across datasets (Table 1)")
    if ranks.empty:
        doc.para("No standard runs to rank.")
    else:
        shown_ranks = ranks.map(_rank_text).reset_index()
        files.append(_write_csv(results_dir / "rank_table.csv", ranks, index=True))
        files.append(_write_text(results_dir / "rank_table.md", markdown_table(shown_ranks) + "\n"))
        doc.para(f"Rank of each run at iterations {', '.join(map(str, cfg.iterations))} "
                 "(1 = highest seed-mean accuracy).")
        doc.bullets(rank_notes)
        doc.table(shown_ranks)
        if len(ranks.columns):
            files.append(figure_rank_table(ranks, results_dir / "rank_table.png", cfg.dpi))
            doc.figure(files[-1], "rank per dataset and iteration")

    doc.heading(2, "Labels needed per target accuracy")
    labels = labels_table(results, cfg.targets)
    files.append(_write_csv(results_dir / "labels_to_target.csv", labels))
    shown_labels = labels.copy()
    for t in cfg.targets:
        shown_labels[_target_label(t)] = labels[_target_label(t)].map(_labels_text)
    files.append(_write_text(results_dir / "labels_to_target.md", markdown_table(shown_labels) + "\n"))
    doc.table(shown_labels)

    doc.heading(2, "CCMA ablation (Table 2)")
    if ablation.empty:
        doc.para("No dataset has runs of two or more CCMA variants (`ccma run --variant V2` ...).")
    else:
        files.append(_write_csv(results_dir / "ablation.csv", ablation))
        files.append(_write_text(results_dir / "ablation.md", markdown_table(shown_ablation(ablation)) + "\n"))
        doc.para("Time/rd is the mean query seconds per round; AULC/s = AULC / Time/rd. A variant "
                 "marked identical selected exactly the points of the one named on every seed "
                 "(the pool was not larger than the subpool M, so the subpool changed nothing): "
                 "it is not a separate result.")
        doc.table(shown_ablation(ablation))

    across = figure_diagnostics_across(results, results_dir / "diagnostics.png", cfg.dpi)
    if across is not None:
        files.append(across)
        doc.heading(2, "CCMA diagnostics across datasets")
        doc.figure(across, "overlap, symmetric difference, top-1 disagreement, JS, confidences, "
                           "gate and coverage of the default CCMA run per dataset")

    doc.heading(2, "Fallbacks")
    files.append(_write_csv(results_dir / "fallbacks.csv", fallbacks))
    if fallbacks.empty:
        doc.para("No run used a fallback: every strategy ran as published.")
    else:
        doc.para("Runs in which a strategy deviated from its published algorithm (every round "
                 "is listed in `fallbacks.csv`):")
        doc.table(fallback_summary(fallbacks))

    files.append(_write_text(results_dir / "metrics.json",
                             json.dumps(metrics_json(results), indent=2, sort_keys=True) + "\n"))
    files.append(_write_text(results_dir / "report.md", doc.markdown(results_dir)))
    files.append(_write_text(results_dir / "report.html", doc.html("CCMA active-learning results")))
    return Report(results_dir, files, runset.warnings)

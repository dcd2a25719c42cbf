"""The report's numbers: loading run records, per-dataset aggregation, and every table.

Pure data in, data frames out; nothing here draws or writes a document (``figures`` and
``document`` do). Which runs are compared: the *standard* runs of a dataset (the default
name for its strategy and parameters and, for CCMA, variant V1) are ranked together; CCMA
variants feed the ablation; CCMA runs named with ``--name`` that differ from another CCMA run
in one sensitivity parameter only feed that parameter's sensitivity curve. Runs on
random-weight backbones (the test models ``tiny-clip``, ``tiny-dinov2``) are pipeline checks:
aggregated, but kept out of every headline table and ranking.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics, record
from ..errors import CCMAError
from ..settings import (DEFAULT_ITERATIONS, DEFAULT_RELATIVE_TARGETS, DEFAULT_TARGETS,
                        SENSITIVITY_PARAMS)

MIN_SEEDS_FOR_CI = 3                     # paired intervals need at least this many common seeds
PIPELINE_CHECK = "pipeline check: random-weight backbones; accuracy is meaningless"
# One line per ablation variant: what it changes against CCMA's default (V1).
VARIANT_MEANINGS = {
    "V1": "k-means subpool + diversity (CCMA's default)",
    "V2": "no subpool (the whole pool is scored) + diversity",
    "V3": "random subpool + diversity",
    "V4": "k-means subpool, no diversity (top-b by score)",
    "V5": "no subpool, no diversity",
}
PAPER_RESULTS = Path(__file__).resolve().parent.parent / "data" / "paper_results.csv"
VARIANTS = ("V1", "V2", "V3", "V4", "V5")

# The paper's order of strategies (its Table 1), CCMA last; other names follow alphabetically.
STRATEGY_ORDER = ("random", "uncertainty", "entropy", "margins", "bald", "powerbald", "coreset",
                  "badge", "alfamix", "probcover", "typiclust", "uherding", "ccma")
@dataclass(frozen=True)
class ReportConfig:
    targets: tuple[float, ...] = DEFAULT_TARGETS       # target accuracies, fractions
    relative_targets: tuple[float, ...] = DEFAULT_RELATIVE_TARGETS  # fractions of the best Final@R
    iterations: tuple[int, ...] = DEFAULT_ITERATIONS   # rounds shown in the rank table
    ties: str = "min"                                  # tie rule of metrics.ranks
    seeds: tuple[int, ...] | None = None               # expected seeds; None: all seeds found
    sensitivity: tuple[str, ...] = SENSITIVITY_PARAMS  # CCMA parameters with sensitivity curves
    dpi: int = 200

    def __post_init__(self):
        if not self.targets or not all(0 < t <= 1 for t in self.targets):
            raise CCMAError(f"--targets: each target must be a percentage in (0, 100], got "
                            f"{[round(100 * t, 6) for t in self.targets]}")
        if not all(0 < t <= 1 for t in self.relative_targets):
            raise CCMAError(f"--relative-targets: each must be a percentage in (0, 100], got "
                            f"{[round(100 * t, 6) for t in self.relative_targets]}")
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

    from ..acquisition import CCMAParams

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


def relative_label(fraction: float) -> str:
    """Name of a target relative to the dataset's best Final@R: "95% of best"."""
    return f"{100 * fraction:g}% of best"


def _default_name(base: str, params: dict) -> str:
    from ..loop import run_name

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
    stores = {}
    for ds, name in {(d, n) for d, t, s in zip(records["dataset"], records["teacher"], records["student"])
                     for n in (t, s) if isinstance(n, str)}:
        stores[ds, name] = random_weights(Path(data_dir), ds, name)
    records["pipeline_check"] = [stores.get((d, t), False) or stores.get((d, s), False)
                                 for d, t, s in zip(records["dataset"], records["teacher"], records["student"])]
    rows = pd.concat(frames, ignore_index=True)
    # numbers, None where a strategy has none: float (NaN) so that grouped means run in C
    numeric = list(record.DIAGNOSTIC_COLUMNS + record.CANDIDATE_COLUMNS)
    rows[numeric] = rows[numeric].astype(float)
    return RunSet(rows, records, warnings)


def random_weights(data_dir: Path, dataset: str, backbone: str) -> bool:
    """Whether ``backbone``'s feature store of ``dataset`` was embedded by a randomly initialised
    model (its ``init`` attribute, e.g. "random, seed 0"). Synthetic stores and stores that
    are gone count as real: only the store can tell (synthetic data reuses backbone names)."""
    from ..features import feature_path

    meta = feature_path(data_dir, dataset, backbone) / "zarr.json"  # the group's attributes (Zarr v3)
    try:
        attrs = json.loads(meta.read_text(encoding="utf-8")).get("attributes", {})
    except (OSError, ValueError):
        return False
    return str(attrs.get("init", "")).startswith("random")


def _strategy_key(base: str, run: str):
    """Sort key: the paper's order, CCMA's family last, a strategy's default run first."""
    order = STRATEGY_ORDER.index(base) if base in STRATEGY_ORDER else STRATEGY_ORDER.index("ccma") - 0.5
    return (base == "ccma", order, base, run != base, run)


def run_order(records: pd.DataFrame) -> list[str]:
    pairs = records[["base", "run"]].drop_duplicates().itertuples(index=False)
    return [run for base, run in sorted(pairs, key=lambda p: _strategy_key(p.base, p.run))]



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
    per_seed: pd.DataFrame      # per (run, seed): aulc, final (for paired comparisons)
    best_final: float           # the best seed-mean Final@R among the ranked runs
    pipeline_check: bool        # some run used random-weight backbones: kept out of headlines
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
    """Curves and summary of one dataset; appends its warnings to ``runset``.

    Labels-to-target is reported for the fixed ``cfg.targets`` and for ``cfg.relative_targets``
    times the best seed-mean Final@R among the ranked runs (all runs when none is ranked)."""
    rows = runset.rows[runset.rows["dataset"] == dataset]
    recs = runset.records[runset.records["dataset"] == dataset]
    rounds = int(recs["rounds"].max())
    _check_dataset(dataset, recs, rounds, cfg.seeds, runset.warnings)
    runs = run_order(recs)
    main = [r for r in runs if recs.loc[recs["run"] == r, "main"].all()]

    curve_parts, summary_rows, by_round, seed_rows, mean_curves = [], [], {}, [], {}
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
        })
        # one grouped mean for every diagnostic column (a groupby per column is the slow part)
        diagnostics = grouped[list(record.DIAGNOSTIC_COLUMNS)].mean()
        curve[list(record.DIAGNOSTIC_COLUMNS)] = diagnostics.to_numpy()
        curve_parts.append(curve)
        by_round[run] = curve.set_index("round")["accuracy_mean"]

        per_seed = [a[~np.isnan(a)] for a in acc.to_numpy()]
        aulcs = [metrics.aulc(a) for a in per_seed]
        finals = [metrics.final_at_r(a) for a in per_seed]
        seed_rows += [{"run": run, "seed": int(s), "aulc": a, "final": f}
                      for s, a, f in zip(acc.index, aulcs, finals)]
        mean_curves[run] = (mean, curve["n_labeled"].to_numpy())
        aulc_mean, aulc_std = metrics.mean_std(aulcs)
        final_mean, final_std = metrics.mean_std(finals)
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
            "pipeline_check": bool(recs.loc[recs["run"] == run, "pipeline_check"].any()),
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
    finals = summary.loc[summary["main"], "final_mean"] if main else summary["final_mean"]
    best = float(finals.max())
    for frac in cfg.relative_targets:
        summary[f"labels_to_{relative_label(frac)}"] = [
            metrics.labels_to_target(*mean_curves[run], [frac * best])[0] for run in summary["run"]]
    summary["mean_rank"] = summary["run"].map(curves.groupby("run")["rank"].mean())
    # The zero-shot line belongs to the teacher most runs used (runs may compare teachers).
    teacher = recs["teacher"].mode(dropna=False).iloc[0] if recs["teacher"].notna().any() else None
    same = recs[recs["teacher"] == teacher] if teacher is not None else recs
    result = DatasetResult(dataset, rounds, float(same["zero_shot"].mean()), runs, main, curves,
                           summary, rows, pd.DataFrame(seed_rows), best,
                           bool(recs["pipeline_check"].any()))
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
    by_dataset = {res.dataset: res for res in results}
    v1 = {ds: g.loc[g["variant"] == "V1", "run"] for ds, g in t.groupby("dataset")}
    aulc, final = [], []
    for ds, run in zip(t["dataset"], t["run"]):
        ref = v1[ds].iloc[0] if len(v1[ds]) and v1[ds].iloc[0] != run else None
        nothing = Paired(math.nan, math.nan, math.nan, 0)
        aulc.append(paired(by_dataset[ds].per_seed, run, ref, "aulc") if ref else nothing)
        final.append(paired(by_dataset[ds].per_seed, run, ref, "final") if ref else nothing)
    return pd.DataFrame({
        "dataset": t["dataset"], "variant": t["variant"], "run": t["run"], "seeds": t["seeds"],
        "same_as": t["same_as"], "meaning": t["variant"].map(VARIANT_MEANINGS),
        "paired_seeds": [d.n for d in aulc], **_paired_columns("aulc_vs_v1", aulc),
        **_paired_columns("final_vs_v1", final),
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


def metrics_json(results: list[DatasetResult]) -> dict[str, dict]:
    """The files of ``metrics/``, for ``dvc metrics show``, which prints one row per file and
    one column per key: ``{"DATASET/RUN.json": {aulc, final, mean_rank, seeds}}`` (seed means;
    mean_rank null where the run is not ranked) and ``{"DATASET/teacher.json": {zero_shot}}``."""
    out = {}
    for res in results:
        out[f"{res.dataset}/teacher.json"] = {"zero_shot": _num(res.zero_shot)}
        for row in res.summary.itertuples():
            out[f"{res.dataset}/{row.run}.json"] = {
                "aulc": _num(row.aulc_mean), "final": _num(row.final_mean),
                "mean_rank": _num(row.mean_rank), "seeds": int(row.seeds)}
    return out


def _num(x) -> float | None:
    """JSON has no NaN: undefined values (one seed's deviation) become null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def labels_table(results: list[DatasetResult], targets, relative_targets) -> pd.DataFrame:
    """Labels needed per target (NaN: not reached) of the ranked runs; targets relative to
    the dataset's best Final@R come with that target's accuracy."""
    parts = []
    for res in results:
        s = res.summary[res.summary["main"]]
        parts.append(pd.DataFrame({
            "dataset": res.dataset, "run": s["run"],
            **{_target_label(t): s[f"labels_to_{_target_label(t)}"] for t in targets},
            **{relative_label(f): s[f"labels_to_{relative_label(f)}"] for f in relative_targets},
            "best_final": res.best_final}))
    columns = ["dataset", "run", *map(_target_label, targets), *map(relative_label, relative_targets),
               "best_final"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


# ================================================================== paired comparisons

@dataclass(frozen=True)
class Paired:
    """a - b over the seeds both runs have: mean and 95 % t interval (NaN under 3 seeds)."""

    mean: float
    low: float
    high: float
    n: int


def paired(per_seed: pd.DataFrame, a: str, b: str, column: str) -> Paired:
    """Paired per-seed difference of ``column`` (aulc or final) between runs ``a`` and ``b``."""
    va = per_seed[per_seed["run"] == a].set_index("seed")[column]
    vb = per_seed[per_seed["run"] == b].set_index("seed")[column]
    common = sorted(set(va.index) & set(vb.index))
    if not common:
        return Paired(math.nan, math.nan, math.nan, 0)
    mean, low, high = metrics.paired_difference(va[common].to_numpy(), vb[common].to_numpy())
    if len(common) < MIN_SEEDS_FOR_CI:
        low = high = math.nan
    return Paired(mean, low, high, len(common))


def _paired_columns(prefix: str, diffs: list[Paired]) -> dict:
    return {f"{prefix}": [d.mean for d in diffs], f"{prefix}_low": [d.low for d in diffs],
            f"{prefix}_high": [d.high for d in diffs]}


def ccma_vs_baselines(res: DatasetResult, ccma: str = "ccma") -> pd.DataFrame:
    """CCMA against every other ranked run: paired AULC and Final@R differences (CCMA - run)."""
    others = [r for r in res.main if r != ccma]
    if ccma not in res.main or not others:
        return pd.DataFrame()
    aulc = [paired(res.per_seed, ccma, r, "aulc") for r in others]
    final = [paired(res.per_seed, ccma, r, "final") for r in others]
    return pd.DataFrame({"dataset": res.dataset, "run": others, "paired_seeds": [d.n for d in aulc],
                         **_paired_columns("aulc_diff", aulc), **_paired_columns("final_diff", final)})


def dataset_rank_table(res: DatasetResult, iterations) -> pd.DataFrame:
    """One dataset's ranked runs, best mean rank first: ranks at ``iterations`` (those within
    T), mean rank over all rounds, AULC and the paired AULC difference to the run below."""
    s = res.summary[res.summary["main"]].sort_values(["mean_rank", "aulc_mean"],
                                                     ascending=[True, False], kind="stable")
    ranks = res.curves[res.curves["run"].isin(res.main)].pivot(index="run", columns="round", values="rank")
    shown = [t for t in iterations if t <= res.rounds]
    runs = list(s["run"])
    below = [paired(res.per_seed, a, b, "aulc") for a, b in zip(runs, runs[1:])]
    below.append(Paired(math.nan, math.nan, math.nan, 0))
    return pd.DataFrame({
        "run": runs, **{f"@{t}": [ranks.at[r, t] if t in ranks.columns else math.nan for r in runs]
                        for t in shown},
        "mean_rank": list(s["mean_rank"]), "aulc_mean": list(s["aulc_mean"]),
        "paired_seeds": [d.n for d in below], **_paired_columns("aulc_vs_next", below)})


# ================================================================== the paper's numbers

PAPER_DATASETS = ("cifar100", "food101", "domainnet_real", "caltech101", "caltech256")


def paper_results(path: Path = PAPER_RESULTS) -> pd.DataFrame:
    """The published figures shipped with ccma: dataset, run, metric, relation, value, source,
    note. An empty value is a figure the paper reports but whose number its text lost."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    frame = pd.DataFrame(rows)
    frame["value"] = pd.to_numeric(frame["value"].replace("", np.nan))
    return frame


def paper_comparison(res: DatasetResult, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's figures for ``res.dataset`` beside ours (same run and metric; NaN where we
    have no such run)."""
    mine = paper[paper["dataset"] == res.dataset]
    if mine.empty:
        return pd.DataFrame()
    summary = res.summary.set_index("run")
    column = {"aulc": "aulc_mean", "final": "final_mean", "time_per_round_s": "query_seconds_per_round",
              "aulc_per_second": "aulc_per_query_second"}
    ours = []
    for row in mine.itertuples():
        col = column.get(row.metric, row.metric)
        ours.append(float(summary.at[row.run, col])
                    if row.run in summary.index and col in summary.columns else math.nan)
    return mine.assign(ours=ours).reset_index(drop=True)


def config_tables(runset: RunSet) -> tuple[pd.DataFrame, pd.DataFrame]:
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


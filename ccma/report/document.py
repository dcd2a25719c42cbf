"""The report as a document: what ``ccma aggregate`` writes, in Markdown and self-contained HTML.

Findings first (per dataset: learning curves, the ranks with paired differences, CCMA against
each baseline, labels to target, the paper's published figures, the ablation), then the
tables across datasets, pipeline checks (runs on random-weight backbones), fallbacks, and the
configuration as an appendix. Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..atomic import atomic_path
from . import figures as fig
from . import tables as tab
from .tables import (PIPELINE_CHECK, VARIANT_MEANINGS, DatasetResult, ReportConfig, RunSet,
                     _target_label, relative_label)


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
        "padding:0 0.2em}h2{border-bottom:2px solid #d62728;padding-bottom:0.2em}"
        "table.tbl{display:block;overflow-x:auto;max-width:100%}table.tbl td:first-child,"
        "table.tbl th:first-child{text-align:left}table.tbl td{white-space:nowrap}")


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


def _diff_text(mean, low, high, n) -> str:
    """A paired difference: "+0.012 [+0.004, +0.020]" (95 % t interval), or without the
    interval when fewer than 3 seeds are shared."""
    if n == 0 or mean is None or math.isnan(mean):
        return "–"
    if math.isnan(low):
        return f"{mean:+.3f} ({n} seed{'s' if n != 1 else ''}: no interval)"
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def _diffs(frame: pd.DataFrame, prefix: str) -> list[str]:
    return [_diff_text(m, lo, hi, n) for m, lo, hi, n in
            zip(frame[prefix], frame[f"{prefix}_low"], frame[f"{prefix}_high"], frame["paired_seeds"])]


def _target_columns(cfg: ReportConfig) -> list[tuple[str, str]]:
    """(shown name, summary column) of every target: fixed ones, then relative ones."""
    return ([(_target_label(t), f"labels_to_{_target_label(t)}") for t in cfg.targets]
            + [(relative_label(f), f"labels_to_{relative_label(f)}") for f in cfg.relative_targets])


def shown_summary(res: DatasetResult, cfg: ReportConfig) -> pd.DataFrame:
    s = res.summary
    return pd.DataFrame({
        "run": s["run"], "seeds": s["seeds"], "rounds": s["rounds"],
        "AULC": [_pm(m, d) for m, d in zip(s["aulc_mean"], s["aulc_std"])],
        "Final@R": [_pm(m, d) for m, d in zip(s["final_mean"], s["final_std"])],
        "query s/round": s["query_seconds_per_round"].map(_seconds),
        "train s/round": s["train_seconds_per_round"].map(_seconds),
        "AULC per query s": s["aulc_per_query_second"].map(lambda x: _num_text(x, 2)),
        **{f"labels to {name}": s[column].map(_labels_text) for name, column in _target_columns(cfg)},
        "mean rank": s["mean_rank"].map(lambda x: "" if math.isnan(x) else f"{x:.2f}"),
    })


def shown_dataset_ranks(table: pd.DataFrame) -> pd.DataFrame:
    shown = table[["run"] + [c for c in table.columns if c.startswith("@")]].copy()
    for c in shown.columns[1:]:
        shown[c] = table[c].map(_rank_text)
    shown.columns = ["run"] + [f"rank {c}" for c in shown.columns[1:]]
    return shown.assign(**{"mean rank": table["mean_rank"].map(lambda x: _num_text(x, 2)),
                           "AULC": table["aulc_mean"].map(_num_text),
                           "AULC − next run [95% CI]": _diffs(table, "aulc_vs_next")})


def shown_versus(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"CCMA vs": table["run"], "seeds": table["paired_seeds"],
                         "AULC: CCMA − run [95% CI]": _diffs(table, "aulc_diff"),
                         "Final@R: CCMA − run [95% CI]": _diffs(table, "final_diff")})


def shown_ablation(table: pd.DataFrame) -> pd.DataFrame:
    variant = [v if same is None or pd.isna(same) else f"{v} (identical to {same}: same selections)"
               for v, same in zip(table["variant"], table["same_as"])]
    return pd.DataFrame({
        "dataset": table["dataset"], "variant": variant, "seeds": table["seeds"],
        "AULC": [_pm(m, d) for m, d in zip(table["aulc_mean"], table["aulc_std"])],
        "Final@R": [_pm(m, d) for m, d in zip(table["final_mean"], table["final_std"])],
        "Time/rd (s)": table["time_per_round_s"].map(_seconds),
        "AULC/s": table["aulc_per_second"].map(lambda x: _num_text(x, 3)),
        "AULC − V1 [95% CI]": _diffs(table, "aulc_vs_v1"),
        "Final@R − V1 [95% CI]": _diffs(table, "final_vs_v1"),
    })


def shown_labels(labels: pd.DataFrame, cfg: ReportConfig) -> pd.DataFrame:
    shown = labels.drop(columns="best_final").copy()
    for name, _ in _target_columns(cfg):
        shown[name] = labels[name].map(_labels_text)
    return shown.assign(**{"best Final@R": labels["best_final"].map(_num_text)})


def shown_paper(comparison: pd.DataFrame) -> pd.DataFrame:
    def published(rel, value):
        if math.isnan(value):
            return "not legible in the paper's text"
        return f"{rel} {value:g}".replace("= ", "")

    return pd.DataFrame({
        "run": comparison["run"].replace("*", "every run"), "metric": comparison["metric"],
        "paper": [published(r, v) for r, v in zip(comparison["relation"], comparison["value"])],
        "ours": [_labels_text(o) if m.startswith("labels_to") else ("–" if math.isnan(o) else f"{o:.3f}")
                 for m, o in zip(comparison["metric"], comparison["ours"])],
        "source": comparison["source"], "note": comparison["note"].fillna("")})


def variant_bullets() -> list[str]:
    return [f"{v}: {meaning}" for v, meaning in VARIANT_MEANINGS.items()]


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


def _findings(headline: list[DatasetResult], versus: dict[str, pd.DataFrame]) -> list[str]:
    """One line per headline dataset: the best run by mean rank and CCMA's strongest rival."""
    lines = []
    for res in headline:
        s = res.summary[res.summary["main"]].sort_values("mean_rank", kind="stable")
        if s.empty:
            continue
        best = s.iloc[0]
        line = f"{res.dataset}: best mean rank {best['run']} ({best['mean_rank']:.2f})"
        v = versus.get(res.dataset)
        if v is not None and not v.empty:
            rival = v.loc[v["aulc_diff"].idxmin()]
            line += (f"; CCMA's AULC minus that of its strongest rival, {rival['run']}: "
                     + _diff_text(rival["aulc_diff"], rival["aulc_diff_low"], rival["aulc_diff_high"],
                                  rival["paired_seeds"]))
        lines.append(line)
    return lines


def _dataset_figures(res: DatasetResult, cfg: ReportConfig, colours, out: Path, caption_note: str = ""):
    """(path, caption) of the learning curves, label efficiency, ranks and diagnostics figures."""
    panels = ([(f"{relative_label(f)} ({100 * f * res.best_final:.1f}%)", f"labels_to_{relative_label(f)}")
               for f in cfg.relative_targets]
              + [(_target_label(t), f"labels_to_{_target_label(t)}") for t in cfg.targets
                 if res.summary.loc[res.summary["main"], f"labels_to_{_target_label(t)}"].notna().any()])
    unreached = [_target_label(t) for t in cfg.targets
                 if res.summary.loc[res.summary["main"], f"labels_to_{_target_label(t)}"].isna().all()]
    note = f" ({caption_note})" if caption_note else ""
    figs = {
        "curves": (fig.figure_learning_curves(res, colours, out / "learning_curves.png", cfg.dpi),
                   f"{res.dataset}: learning curves, mean ± s.d. over seeds{note}"),
        "labels": (fig.figure_label_efficiency(res, panels, colours, out / "label_efficiency.png", cfg.dpi),
                   f"{res.dataset}: labels needed per target accuracy"
                   + (f"; fixed target(s) {', '.join(unreached)} reached by no run" if unreached else "")
                   + note),
        "ranks": (fig.figure_ranks(res, out / "ranks.png", cfg.dpi), f"{res.dataset}: rank per round{note}"),
    }
    if fig.ccma_runs_with_diagnostics(res):
        figs["diagnostics"] = (fig.figure_diagnostics(res, colours, out / "diagnostics.png", cfg.dpi),
                               f"{res.dataset}: CCMA diagnostics vs round{note}")
    return figs


def _all_dataset_figures(results: list[DatasetResult], cfg: ReportConfig, colours,
                         results_dir: Path) -> dict[str, dict]:
    """dataset -> ``_dataset_figures`` of every dataset with runs to draw, two datasets at a
    time where there are two cores: saving the PNGs is most of ``ccma aggregate``'s time."""
    import os

    jobs = [(res, cfg, colours, results_dir / res.dataset, PIPELINE_CHECK if res.pipeline_check else "")
            for res in results if res.main]
    workers = min(2, len(os.sched_getaffinity(0)), len(jobs))
    if workers <= 1:
        drawn = [_dataset_figures(*job) for job in jobs]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            drawn = list(pool.map(_dataset_figures, *zip(*jobs)))
    return {job[0].dataset: figs for job, figs in zip(jobs, drawn)}


def write_report(data_dir, results_dir, cfg: ReportConfig = ReportConfig(),
                 progress: bool | None = None) -> Report:
    """Aggregate every run under ``data_dir`` and write tables, figures and the report."""
    import sys

    data_dir, results_dir = Path(data_dir), Path(results_dir)
    runset = tab.load_runs(data_dir)
    datasets = sorted(runset.records["dataset"].unique())
    colours = fig.palette(runset.records)
    show = sys.stderr.isatty() if progress is None else progress
    files: list[Path] = []

    results = [tab.aggregate_dataset(runset, ds, cfg) for ds in datasets]
    headline = [res for res in results if not res.pipeline_check]
    checks = [res for res in results if res.pipeline_check]
    ranks, rank_notes = tab.rank_table(headline, cfg.iterations)
    ablation = tab.ablation_table(headline, runset.rows)
    fallbacks = tab.fallback_table(runset)
    versus = {res.dataset: tab.ccma_vs_baselines(res) for res in headline}
    paper = tab.paper_results()
    drawn = _all_dataset_figures(results, cfg, colours, results_dir)

    doc = Document()
    doc.heading(1, "CCMA active-learning results")
    doc.para(f"Aggregated from {len(runset.records)} run records under `{data_dir / 'runs'}` "
             f"({len(datasets)} dataset(s)). AULC: trapezoidal area under accuracy vs round "
             "index, divided by T - 1. Final@R: accuracy at the last round. Means ± sample "
             "standard deviations are over seeds; labels-to-target and ranks use the seed-mean "
             f"curve (ties: `{cfg.ties}`). A difference \"A − B\" is the mean over the seeds both "
             "runs have of the per-seed difference, with its 95 % t interval when at least "
             f"{tab.MIN_SEEDS_FOR_CI} seeds are shared. The configuration is in the appendix.")
    findings = _findings(headline, versus)
    if findings or checks:
        doc.heading(2, "Findings")
        doc.bullets(findings + [f"{res.dataset}: {PIPELINE_CHECK} (reported under Pipeline "
                                "checks; kept out of every ranking and every table across datasets)"
                                for res in checks])
    if runset.warnings:
        doc.heading(2, "Warnings")
        doc.bullets(runset.warnings)

    for res in tqdm(results, desc="aggregate", unit="dataset", disable=not show):
        out = results_dir / res.dataset
        files.append(_write_csv(out / "summary.csv", res.summary))
        files.append(_write_csv(out / "curves.csv", res.curves))
    for res in headline:
        out = results_dir / res.dataset
        doc.heading(2, f"Dataset {res.dataset}")
        doc.para(f"T = {res.rounds} rounds; teacher zero-shot accuracy {_num_text(res.zero_shot)}; "
                 f"best final accuracy {_num_text(res.best_final)}. "
                 f"Ranked and drawn together: {', '.join(res.main) or 'none'}.")
        figs = drawn.get(res.dataset, {})
        if "curves" in figs:
            doc.figure(*figs["curves"])
        if res.main:
            doc.heading(3, "Ranks")
            doc.para("Best mean rank first; the last column compares each run with the one below it.")
            doc.table(shown_dataset_ranks(tab.dataset_rank_table(res, cfg.iterations)))
        if not versus[res.dataset].empty:
            doc.heading(3, "CCMA against each baseline")
            files.append(_write_csv(out / "ccma_vs_baselines.csv", versus[res.dataset]))
            doc.table(shown_versus(versus[res.dataset]))
        if res.main:
            doc.heading(3, "Labels to target")
            doc.table(shown_labels(tab.labels_table([res], cfg.targets, cfg.relative_targets), cfg)
                      .drop(columns=["dataset", "best Final@R"]))
            doc.figure(*figs["labels"])
        comparison = tab.paper_comparison(res, paper)
        if not comparison.empty:
            doc.heading(3, "The paper's published numbers beside ours")
            doc.para("From the paper's text (its tables partly did not survive conversion: such "
                     "figures are marked). \"<\" and \">\" are bounds the text states.")
            doc.table(shown_paper(comparison))
        if not ablation.empty and (ablation["dataset"] == res.dataset).any():
            doc.heading(3, "Ablation")
            doc.bullets(variant_bullets())
            doc.table(shown_ablation(ablation[ablation["dataset"] == res.dataset]).drop(columns="dataset"))
            files.append(fig.figure_ablation(res, ablation, out / "ablation.png", cfg.dpi))
            doc.figure(files[-1], f"{res.dataset}: CCMA variants V1-V5")
        for param, table in res.sensitivity.items():
            files.append(_write_csv(out / f"sensitivity_{param}.csv", table[
                ["run", "value", "seeds", "aulc_mean", "aulc_std", "final_mean", "final_std"]]))
            files.append(fig.figure_sensitivity(res, param, out / f"sensitivity_{param}.png", cfg.dpi))
            doc.heading(3, f"Sensitivity to {param}")
            doc.table(pd.DataFrame({
                param: table["value"].map(lambda v: f"{v:g}"), "run": table["run"],
                "seeds": table["seeds"],
                "AULC": [_pm(m, d) for m, d in zip(table["aulc_mean"], table["aulc_std"])],
                "Final@R": [_pm(m, d) for m, d in zip(table["final_mean"], table["final_std"])]}))
            doc.figure(files[-1], f"{res.dataset}: sensitivity to {param}")
        if "ranks" in figs:
            doc.heading(3, "Rank per round and CCMA diagnostics")
            doc.figure(*figs["ranks"])
            if "diagnostics" in figs:
                doc.figure(*figs["diagnostics"])
        files += [path for path, _ in figs.values()]
        doc.heading(3, "Every run")
        doc.table(shown_summary(res, cfg))

    doc.heading(2, "Ranks across datasets (Table 1)")
    if ranks.empty:
        doc.para("No standard runs to rank.")
    else:
        with_mean = ranks.assign(mean_rank=ranks.mean(axis=1))
        shown_ranks = ranks.map(_rank_text).assign(
            **{"mean rank": with_mean["mean_rank"].map(lambda x: _num_text(x, 2))}).reset_index()
        files.append(_write_csv(results_dir / "rank_table.csv", with_mean, index=True))
        files.append(_write_text(results_dir / "rank_table.md", markdown_table(shown_ranks) + "\n"))
        doc.para(f"Rank of each run at iterations {', '.join(map(str, cfg.iterations))} "
                 "(1 = highest seed-mean accuracy); mean rank over the cells shown. The paired "
                 "differences behind each order are in the datasets' Ranks tables.")
        doc.bullets(rank_notes)
        doc.table(shown_ranks)
        if len(ranks.columns):
            files.append(fig.figure_rank_table(ranks, results_dir / "rank_table.png", cfg.dpi))
            doc.figure(files[-1], "rank per dataset and iteration")

    doc.heading(2, "Labels needed per target accuracy")
    labels = tab.labels_table(headline, cfg.targets, cfg.relative_targets)
    files.append(_write_csv(results_dir / "labels_to_target.csv", labels))
    files.append(_write_text(results_dir / "labels_to_target.md",
                             markdown_table(shown_labels(labels, cfg)) + "\n"))
    doc.para("Fixed targets, then targets relative to the dataset's best final accuracy "
             "(the best Final@R among its ranked runs).")
    doc.table(shown_labels(labels, cfg))

    doc.heading(2, "CCMA ablation (Table 2)")
    if ablation.empty:
        doc.para("No dataset has runs of two or more CCMA variants (`ccma run --variant V2` ...).")
    else:
        files.append(_write_csv(results_dir / "ablation.csv", ablation))
        files.append(_write_text(results_dir / "ablation.md", markdown_table(shown_ablation(ablation)) + "\n"))
        doc.bullets(variant_bullets())
        doc.para("Time/rd is the mean query seconds per round; AULC/s = AULC / Time/rd; \"− V1\" "
                 "is the paired per-seed difference to V1. A variant marked identical selected "
                 "exactly the points of the one named on every seed (the pool was not larger than "
                 "the subpool M, so the subpool changed nothing): it is not a separate result.")
        doc.table(shown_ablation(ablation))

    across = fig.figure_diagnostics_across(headline, results_dir / "diagnostics.png", cfg.dpi)
    if across is not None:
        files.append(across)
        doc.heading(2, "CCMA diagnostics across datasets")
        doc.figure(across, "overlap, symmetric difference, top-1 disagreement, JS, confidences, "
                           "gate and coverage of the default CCMA run per dataset")

    if checks:
        doc.heading(2, "Pipeline checks")
        for res in checks:
            doc.heading(3, f"Dataset {res.dataset}: {PIPELINE_CHECK}")
            doc.para("Its features come from randomly initialised test backbones (the feature "
                     "store records `init: random`): these runs check that every stage works "
                     f"end to end. Teacher zero-shot accuracy {_num_text(res.zero_shot)}.")
            doc.table(shown_summary(res, cfg))
            if res.main:
                for path, caption in drawn[res.dataset].values():
                    files.append(path)
                    doc.figure(path, caption)

    doc.heading(2, "Fallbacks")
    files.append(_write_csv(results_dir / "fallbacks.csv", fallbacks))
    if fallbacks.empty:
        doc.para("No run used a fallback: every strategy ran as published.")
    else:
        doc.para("Runs in which a strategy deviated from its published algorithm (every round "
                 "is listed in `fallbacks.csv`):")
        doc.table(tab.fallback_summary(fallbacks))

    _appendix(doc, runset)
    shutil.rmtree(results_dir / "metrics", ignore_errors=True)  # no file of a dropped run stays
    for name, values in tab.metrics_json(results).items():
        files.append(_write_text(results_dir / "metrics" / name, json.dumps(values, indent=2, sort_keys=True) + "\n"))
    # every dataset's curves in one file: dvc.yaml's plot of accuracy vs labels per run
    files.append(_write_csv(results_dir / "curves.csv", pd.concat([res.curves for res in results], ignore_index=True)))
    files.append(_write_text(results_dir / "report.md", doc.markdown(results_dir)))
    files.append(_write_text(results_dir / "report.html", doc.html("CCMA active-learning results")))
    return Report(results_dir, files, runset.warnings)


def _appendix(doc: Document, runset: RunSet) -> None:
    """Configuration: the runs, the student, the CCMA parameters, the teachers' zero-shot accuracy."""
    runs_cfg, ccma_cfg = tab.config_tables(runset)
    doc.heading(2, "Appendix: configuration")
    doc.heading(3, "Runs")
    doc.table(runs_cfg)
    configs = runset.records["student_config"].unique()
    doc.para("Student: " + "; ".join(f"`{c}`" for c in configs) + ".")
    if not ccma_cfg.empty:
        doc.heading(3, "CCMA parameters")
        doc.para("Of each CCMA run (after preset and variant):")
        doc.table(ccma_cfg)
    doc.heading(3, "Teacher zero-shot accuracy")
    zero_shot = runset.records.groupby(["dataset", "teacher"], dropna=False)["zero_shot"].mean()
    doc.table(pd.DataFrame([{"dataset": ds, "teacher": teacher, "zero-shot test accuracy": _num_text(acc)}
                            for (ds, teacher), acc in zero_shot.items()]))

"""``ccma aggregate``: aggregation, tables, figures and the report.

Reads every finished run record ``{data_dir}/runs/{dataset}/{run}/seed{seed}.parquet`` and
writes under a results folder, each file atomically:

- ``{dataset}/summary.csv``: one row per run: AULC, Final@R, seconds per round, AULC per
  query second, labels needed per target accuracy (fixed and relative to the dataset's best
  final accuracy; empty cell = not reached), mean rank.
- ``{dataset}/curves.csv``: one row per (run, round): accuracy mean and deviation over
  seeds, rank, timings and the mean CCMA diagnostics.
- ``{dataset}/ccma_vs_baselines.csv``: paired per-seed AULC and Final@R differences of CCMA
  against every ranked run, with 95 % t intervals (at least 3 shared seeds).
- ``{dataset}/*.png``: learning curves, label efficiency, rank heat map, CCMA diagnostics,
  ablation and kappa/tau sensitivity (the last three when such runs exist).
- ``rank_table.{csv,md,png}`` (the paper's Table 1), ``ablation.{csv,md}`` (its Table 2),
  ``labels_to_target.{csv,md}``, ``fallbacks.csv``, ``diagnostics.png`` (CCMA across
  datasets), ``metrics/{dataset}/{run}.json`` (for ``dvc metrics show``), ``curves.csv``
  (every dataset's, for ``dvc plots``), ``report.md`` and a self-contained ``report.html``.

Three modules, each readable alone: ``tables`` (loading, statistics, every table),
``figures`` (every PNG) and ``document`` (the Markdown/HTML report and ``write_report``).
The method and the definitions are in docs/method.md.
"""

from .document import Document, Report, markdown_table, write_report
from .tables import (DEFAULT_ITERATIONS, DEFAULT_RELATIVE_TARGETS, DEFAULT_TARGETS, PIPELINE_CHECK,
                     SENSITIVITY_PARAMS, VARIANT_MEANINGS, VARIANTS, DatasetResult, Paired,
                     ReportConfig, RunSet, ablation_table, aggregate_dataset, ccma_vs_baselines,
                     dataset_rank_table, identical_to, load_runs, paired, paper_comparison,
                     paper_results, rank_table, sensitivity_parameters)

__all__ = ["DEFAULT_ITERATIONS", "DEFAULT_RELATIVE_TARGETS", "DEFAULT_TARGETS", "PIPELINE_CHECK",
           "SENSITIVITY_PARAMS", "VARIANT_MEANINGS", "VARIANTS", "DatasetResult", "Document",
           "Paired", "Report", "ReportConfig", "RunSet", "ablation_table", "aggregate_dataset",
           "ccma_vs_baselines", "dataset_rank_table", "identical_to", "load_runs", "markdown_table",
           "paired", "paper_comparison", "paper_results", "rank_table", "sensitivity_parameters",
           "write_report"]

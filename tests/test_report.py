"""`ccma aggregate`: the report from a small set of fake run records that use every column."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ccma import record
from ccma.cli import main
from ccma.report import ReportConfig, load_runs, write_report

ROOT = Path(__file__).resolve().parent.parent
from ccma.strategies import get_strategy

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEEDS = (1, 2, 3)
OFFSET = {1: -0.01, 2: 0.0, 3: 0.01, 4: 0.0}  # seed offsets average to 0 over seeds 1-3

# dataset alpha: T = 6, b = 10. Seed means are exactly these curves.
ALPHA = {
    "random": [0.30, 0.45, 0.55, 0.62, 0.68, 0.72],
    "coreset": [0.30, 0.50, 0.60, 0.70, 0.75, 0.78],
    "typiclust": [0.30, 0.52, 0.66, 0.74],        # ran 4 of 6 rounds
    "ccma": [0.30, 0.55, 0.70, 0.80, 0.86, 0.90],
    "ccma-reference-code": [0.30, 0.56, 0.69, 0.79, 0.84, 0.88],
    "ccma-V3": [0.30, 0.52, 0.66, 0.76, 0.83, 0.87],
    "ccma-V4": [0.30, 0.50, 0.62, 0.72, 0.80, 0.85],
    "ccma-kappa5": [0.30, 0.53, 0.67, 0.77, 0.84, 0.88],
    "ccma-tau0.1": [0.30, 0.51, 0.64, 0.75, 0.82, 0.86],
}
# Query seconds per round (the same on every round and seed).
QUERY_SECONDS = {"random": 0.001, "coreset": 0.5, "typiclust": 0.8, "ccma": 2.0,
                 "ccma-reference-code": 1.5, "ccma-V3": 0.4, "ccma-V4": 1.9, "ccma-kappa5": 1.0,
                 "ccma-tau0.1": 2.0}
CCMA_PARAMS = {"ccma": {}, "ccma-reference-code": {"preset": "reference-code"},
               "ccma-V3": {"variant": "V3"}, "ccma-V4": {"variant": "V4"},
               "ccma-kappa5": {"kappa": 5.0}, "ccma-tau0.1": {"tau": 0.1}}


# Every fake run queries the same rows unless shifted here: ccma-V4 is then the V1 run again.
QUERY_SHIFT = {"ccma-V3": 1000}


def _params(run: str) -> tuple[str, dict]:
    if run.startswith("ccma"):
        return "ccma", get_strategy("ccma").effective(CCMA_PARAMS[run])
    return run, {}


def write_fake_run(data_dir, dataset, run, seed, curve, budget, zero_shot, fallback_round=None,
                   teacher="clip-vit-l-14", student="dinov2-large"):
    base, params = _params(run)
    identity = {"dataset": dataset, "strategy": base, "params": params, "rounds": len(curve),
                "budget": budget, "init": "random", "seed": seed, "teacher": teacher,
                "student": student, "student_config": {"dropout": 0.75}, "pool": "abc"}
    rows = []
    for t, acc in enumerate(curve, start=1):
        last = t == len(curve)
        ccma = base == "ccma"
        diag = {c: (0.1 * t + 0.01 * seed if ccma else None)
                for c in record.DIAGNOSTIC_COLUMNS + record.CANDIDATE_COLUMNS}
        rows.append({
            "dataset": dataset, "strategy": run, "preset": params.get("preset"),
            "variant": params.get("variant"), "params_hash": f"h{seed}", "seed": seed,
            "round": t, "n_labeled": budget * t, "accuracy": round(acc + OFFSET[seed], 6),
            "train_seconds": 0.25 * t, "query_seconds": None if last else QUERY_SECONDS[run],
            "queried": [] if last else [QUERY_SHIFT.get(run, 0) + q for q in range(budget * t, budget * (t + 1))],
            "teacher_zero_shot_accuracy": zero_shot, **diag,
            "fallback": "initial batch: drawn at random" if t == fallback_round else None,
        })
    path = record.run_path(data_dir, dataset, run, seed)
    record.write_rows(path, rows, {"params_hash": f"h{seed}", "identity": identity, "run_name": run})
    return path


def make_fake_runs(data_dir):
    for run, curve in ALPHA.items():
        seeds = (1, 2) if run == "coreset" else SEEDS          # coreset lacks seed 3
        for seed in seeds:
            write_fake_run(data_dir, "alpha", run, seed, curve, 10, 0.61,
                           fallback_round=1 if (run, seed) == ("ccma", 2) else None)
    for run, curve in {"random": [0.40, 0.50, 0.60], "ccma": [0.40, 0.62, 0.70]}.items():
        for seed in (1, 2):
            write_fake_run(data_dir, "beta", run, seed, curve, 5, 0.93)
    # digits: runs on a random-weight teacher store (and a synthetic student store that reuses a
    # backbone name): a pipeline check, kept out of every headline table.
    write_store(data_dir, "digits", "tiny-clip", {"init": "random, seed 0"})
    write_store(data_dir, "digits", "tiny-dinov2", {"synthetic": True})
    for run, curve in {"random": [0.10, 0.12, 0.11], "ccma": [0.10, 0.18, 0.14]}.items():
        for seed in (1, 2):
            write_fake_run(data_dir, "digits", run, seed, curve, 10, 0.10, teacher="tiny-clip",
                           student="tiny-dinov2")
    # An unfinished run: a warning, never aggregated.
    partial = record.partial_path(record.run_path(data_dir, "beta", "coreset", 1))
    record.write_rows(partial, [], {})


def write_store(data_dir, dataset, backbone, attrs):
    from ccma.features import FeatureSplit, feature_path, write_features

    rows = np.eye(4, dtype=np.float32)
    split = FeatureSplit(rows, np.arange(4))
    write_features(feature_path(data_dir, dataset, backbone), dataset=dataset, backbone=backbone,
                   train=split, test=split, n_classes=4, attrs=attrs)


FIGURES = ["alpha/learning_curves.png", "alpha/label_efficiency.png", "alpha/ranks.png",
           "alpha/diagnostics.png", "alpha/ablation.png", "alpha/sensitivity_kappa.png",
           "alpha/sensitivity_tau.png", "beta/learning_curves.png", "beta/label_efficiency.png",
           "beta/ranks.png", "beta/diagnostics.png", "digits/learning_curves.png",
           "digits/label_efficiency.png", "digits/ranks.png", "digits/diagnostics.png",
           "rank_table.png", "diagnostics.png"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    make_fake_runs(data)
    results = tmp_path_factory.mktemp("results")
    report = write_report(data, results, ReportConfig(dpi=60), progress=False)
    return data, results, report


def _aulc(curve):  # independent: trapezoids written out
    return sum((a + b) / 2 for a, b in zip(curve, curve[1:])) / (len(curve) - 1)


def test_fake_records_use_every_column(tmp_path):
    path = write_fake_run(tmp_path, "alpha", "ccma", 1, ALPHA["ccma"], 10, 0.61, fallback_round=1)
    rows, _ = record.read_rows(path)
    for column in record.COLUMNS:
        assert any(r[column] not in (None, []) for r in rows), column


def test_summary_metrics_match_hand_computation(built):
    _, results, _ = built
    s = pd.read_csv(results / "alpha" / "summary.csv").set_index("run")
    for run in ("random", "ccma", "ccma-V3"):
        per_seed = [_aulc([a + OFFSET[seed] for a in ALPHA[run]]) for seed in SEEDS]
        assert s.loc[run, "aulc_mean"] == pytest.approx(np.mean(per_seed), abs=1e-6)
        assert s.loc[run, "aulc_std"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-6)
        assert s.loc[run, "final_mean"] == pytest.approx(ALPHA[run][-1], abs=1e-6)
        assert s.loc[run, "query_seconds_per_round"] == pytest.approx(QUERY_SECONDS[run])
        assert s.loc[run, "aulc_per_query_second"] == pytest.approx(
            np.mean(per_seed) / QUERY_SECONDS[run], rel=1e-5)
    # Seed-mean ccma curve: 0.80 at 40 labels, 0.86 at 50, 0.90 at 60; random reaches none.
    assert list(s.loc["ccma", ["labels_to_80%", "labels_to_85%", "labels_to_90%"]]) == [40, 50, 60]
    assert s.loc["random", ["labels_to_80%", "labels_to_85%", "labels_to_90%"]].isna().all()
    assert s.loc["ccma", "train_seconds_per_round"] == pytest.approx(np.mean(0.25 * np.arange(1, 7)))
    # Fewer rounds: metrics over the rounds it has.
    assert s.loc["typiclust", "rounds"] == 4
    assert s.loc["typiclust", "aulc_mean"] == pytest.approx(_aulc(ALPHA["typiclust"]), abs=1e-6)
    assert s.loc["coreset", "seeds"] == 2
    assert s.loc["ccma", "fallback_rounds"] == 1
    # Standard runs are ranked; variants and renamed sensitivity runs are not.
    assert s.loc["ccma-reference-code", "main"] and not s.loc["ccma-V3", "main"]
    assert not s.loc["ccma-kappa5", "main"] and np.isnan(s.loc["ccma-kappa5", "mean_rank"])


def test_curves_and_ranks(built):
    _, results, _ = built
    c = pd.read_csv(results / "alpha" / "curves.csv")
    final = c[c["round"] == 6].set_index("run")
    # Round 6 among the ranked runs: ccma .90, reference-code .88, coreset .78, random .72;
    # typiclust has no round 6.
    assert final.loc["ccma", "rank"] == 1 and final.loc["ccma-reference-code", "rank"] == 2
    assert final.loc["coreset", "rank"] == 3 and final.loc["random", "rank"] == 4
    assert "typiclust" not in final.index
    # Round 1 is shared by every strategy: the four with every seed tie at rank 1 (ties: min);
    # coreset lacks seed 3 (offset +0.01), so its mean is 0.295 and it comes fifth.
    first = c[(c["round"] == 1) & c["rank"].notna()].set_index("run")["rank"]
    assert first.to_dict() == {"random": 1, "coreset": 5, "typiclust": 1, "ccma": 1,
                               "ccma-reference-code": 1}
    ccma = c[c["run"] == "ccma"].set_index("round")
    assert ccma.loc[3, "accuracy_mean"] == pytest.approx(0.70)
    assert ccma.loc[3, "accuracy_std"] == pytest.approx(0.01)
    assert ccma.loc[3, "n_seeds"] == 3 and ccma.loc[3, "n_labeled"] == 30
    assert ccma.loc[2, "overlap"] == pytest.approx(0.2 + 0.02)  # mean of 0.2 + 0.01 * seed


def test_cross_dataset_rank_table_and_ablation(built):
    _, results, _ = built
    ranks = pd.read_csv(results / "rank_table.csv", index_col="run")
    # alpha has T = 6 (iterations 1, 4), beta T = 3 (iteration 1); later ones are left out.
    # digits (random-weight backbones) is not ranked.
    assert list(ranks.columns) == ["alpha@1", "alpha@4", "beta@1", "mean_rank"]
    assert ranks.loc["ccma", "alpha@4"] == 1 and ranks.loc["random", "alpha@4"] == 5
    # beta, round 1: random and ccma tie at 0.40 (rank 1)
    assert ranks.loc["random", "mean_rank"] == pytest.approx((1 + 5 + 1) / 3, abs=1e-5)
    assert ranks.loc["ccma", "mean_rank"] == 1
    assert np.isnan(ranks.loc["coreset", "beta@1"])  # coreset did not finish on beta
    assert "| run | alpha@1 |" in (results / "rank_table.md").read_text()

    ab = pd.read_csv(results / "ablation.csv")
    assert list(ab["variant"]) == ["V1", "V3", "V4"] and set(ab["dataset"]) == {"alpha"}
    v3 = ab.set_index("variant").loc["V3"]
    assert v3["time_per_round_s"] == pytest.approx(0.4)
    assert v3["aulc_per_second"] == pytest.approx(v3["aulc_mean"] / 0.4, rel=1e-5)
    assert "| V3 |" in (results / "ablation.md").read_text()
    # V4 selected exactly V1's points on every seed: marked, not presented as a result
    assert ab.set_index("variant")["same_as"].fillna("").to_dict() == {"V1": "", "V3": "", "V4": "V1"}
    assert "| V4 (identical to V1: same selections) |" in (results / "ablation.md").read_text()


def test_sensitivity_families_are_detected_from_the_parameters(built):
    _, results, _ = built
    kappa = pd.read_csv(results / "alpha" / "sensitivity_kappa.csv")
    assert list(kappa["run"]) == ["ccma-kappa5", "ccma"] and list(kappa["value"]) == [5, 20]
    tau = pd.read_csv(results / "alpha" / "sensitivity_tau.csv")
    assert list(tau["run"]) == ["ccma", "ccma-tau0.1"]
    assert not (results / "beta" / "sensitivity_kappa.csv").exists()


def test_warnings_for_missing_seed_fewer_rounds_and_unfinished_runs(built):
    _, results, report = built
    text = "\n".join(report.warnings)
    assert "alpha/coreset: seed(s) 3 missing (has 1, 2)" in text
    assert "alpha/typiclust seed 1: 4 of 6 rounds" in text
    assert "seed1.partial.parquet: unfinished run" in text
    md = (results / "report.md").read_text()
    page = (results / "report.html").read_text()
    for line in ("seed(s) 3 missing", "4 of 6 rounds", "unfinished run"):
        assert line in md and line in page


def test_every_figure_is_a_valid_png(built):
    from matplotlib.image import imread

    _, results, report = built
    for name in FIGURES:
        path = results / name
        assert path in report.files, name
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE, name
        assert len(data) > 5000, name
        image = imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 200, name
        assert image[..., :3].std() > 0.01, name  # not a blank canvas


def test_report_contents_and_self_contained_html(built):
    _, results, _ = built
    md = (results / "report.md").read_text()
    for needle in ("Teacher zero-shot accuracy", "| alpha | clip-vit-l-14 | 0.610 |",
                   "| beta | clip-vit-l-14 | 0.930 |",
                   "Ranks across datasets (Table 1)", "CCMA ablation (Table 2)", "not reached",
                   "Sensitivity to kappa", "| tau |"):
        assert needle in md, needle
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(linked) == set(FIGURES)
    page = (results / "report.html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert embedded == {(results / f).read_bytes() for f in FIGURES}
    assert "| alpha | ccma | initial batch: drawn at random | 2 | 1 | 1 |" in md
    fallbacks = pd.read_csv(results / "fallbacks.csv")
    assert fallbacks[["dataset", "run", "seed", "round"]].values.tolist() == [["alpha", "ccma", 2, 1]]


def test_metrics_for_dvc(built):
    _, results, report = built
    per_seed = [_aulc([a + OFFSET[seed] for a in ALPHA["ccma"]]) for seed in SEEDS]
    ccma = json.loads((results / "metrics" / "alpha" / "ccma.json").read_text())
    assert ccma["aulc"] == pytest.approx(np.mean(per_seed), abs=1e-6) and ccma["seeds"] == 3
    beta = json.loads((results / "metrics" / "beta" / "ccma.json").read_text())
    assert beta["final"] == pytest.approx(0.695, abs=1e-6)  # seeds 1, 2: 0.69, 0.70
    teacher = json.loads((results / "metrics" / "alpha" / "teacher.json").read_text())
    assert teacher["zero_shot"] == pytest.approx(0.61)
    assert results / "metrics" / "alpha" / "ccma.json" in report.files


def test_cli_aggregate(tmp_path, capsys):
    data = tmp_path / "data"
    for seed in (1, 2):
        write_fake_run(data, "gamma", "random", seed, [0.2, 0.5, 0.9], 4, 0.5)
    out = tmp_path / "res"
    assert main(["aggregate", "--data-dir", str(data), "--results-dir", str(out),
                 "--targets", "45", "95", "--relative-targets", "50", "--rank-iterations", "1", "3", "--dpi", "60",
                 "--seeds", "1", "2", "3", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("report.html")
    assert "gamma/random: seed(s) 3 missing" in captured.err
    s = pd.read_csv(out / "gamma" / "summary.csv")
    assert s["labels_to_45%"][0] == 8  # seed mean 0.195, 0.495, 0.895 and np.isnan(s["labels_to_95%"][0])
    assert s["labels_to_50% of best"][0] == 8  # half of 0.895 is first reached at round 2
    assert "labels_to_90% of best" not in s.columns
    assert (out / "report.html").stat().st_size > 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["aggregate", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "runs: no run records" in err
    write_fake_run(tmp_path, "gamma", "random", 1, [0.2, 0.5], 4, 0.5)
    assert main(["aggregate", "--data-dir", str(tmp_path), "--targets", "120"]) == 2
    assert "--targets" in capsys.readouterr().err
    assert main(["aggregate", "--data-dir", str(tmp_path), "--relative-targets", "150"]) == 2
    assert "--relative-targets: each must be a percentage in (0, 100], got [150.0]" in capsys.readouterr().err
    assert main(["aggregate", "--data-dir", str(tmp_path), "--sensitivity", "kapa"]) == 2
    assert "--sensitivity: kapa not a numeric CCMA parameter" in capsys.readouterr().err
    bad = record.run_path(tmp_path, "gamma", "broken", 1)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")
    assert main(["aggregate", "--data-dir", str(tmp_path), "--results-dir", str(tmp_path / "r")]) == 2
    assert "broken/seed1.parquet: not a readable run record" in capsys.readouterr().err


def test_load_runs_marks_standard_runs(built):
    data, _, _ = built
    runs = load_runs(data)
    recs = runs.records.drop_duplicates(["dataset", "run"]).set_index(["dataset", "run"])
    assert recs.loc[("alpha", "ccma-V3"), "standard"] and not recs.loc[("alpha", "ccma-V3"), "main"]
    assert not recs.loc[("alpha", "ccma-kappa5"), "standard"]
    assert recs.loc[("beta", "random"), "main"]


def test_paired_difference_and_its_interval():
    from ccma.report import paired

    per_seed = pd.DataFrame({"run": ["a"] * 4 + ["b"] * 3, "seed": [1, 2, 3, 4, 1, 2, 3],
                             "aulc": [0.5, 0.6, 0.7, 0.9, 0.4, 0.4, 0.6]})
    d = paired(per_seed, "a", "b", "aulc")        # seeds 1-3: differences 0.1, 0.2, 0.1
    half = 4.302652729911275 * np.std([0.1, 0.2, 0.1], ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert d.n == 3 and d.mean == pytest.approx(0.4 / 3)
    assert (d.low, d.high) == (pytest.approx(0.4 / 3 - half), pytest.approx(0.4 / 3 + half))
    two = paired(per_seed[per_seed["seed"] < 3], "a", "b", "aulc")
    assert two.n == 2 and two.mean == pytest.approx(0.15) and np.isnan(two.low)  # no interval


def test_comparisons_carry_paired_differences(built):
    _, results, _ = built
    versus = pd.read_csv(results / "alpha" / "ccma_vs_baselines.csv").set_index("run")
    # every fake run has the same seed offsets, so the per-seed difference is constant
    gap = _aulc(ALPHA["ccma"]) - _aulc(ALPHA["random"])
    assert versus.loc["random", "paired_seeds"] == 3
    assert versus.loc["random", ["aulc_diff", "aulc_diff_low", "aulc_diff_high"]].tolist() == \
        pytest.approx([gap] * 3, abs=1e-5)
    assert versus.loc["coreset", "paired_seeds"] == 2 and np.isnan(versus.loc["coreset", "aulc_diff_low"])
    ab = pd.read_csv(results / "ablation.csv").set_index("variant")
    assert ab.loc["V3", "aulc_vs_v1"] == pytest.approx(_aulc(ALPHA["ccma-V3"]) - _aulc(ALPHA["ccma"]), abs=1e-5)
    assert np.isnan(ab.loc["V1", "aulc_vs_v1"])
    assert ab.loc["V4", "meaning"] == "k-means subpool, no diversity (top-b by score)"
    md = (results / "report.md").read_text()
    assert f"| random | 3 | {gap:+.3f} [{gap:+.3f}, {gap:+.3f}] |" in md
    assert "(2 seeds: no interval)" in md
    for v in ("V1: k-means subpool + diversity", "V2: no subpool", "V3: random subpool",
              "V5: no subpool, no diversity"):
        assert v in md, v


def test_labels_to_target_relative_to_the_best_final_accuracy(built):
    _, results, _ = built
    s = pd.read_csv(results / "alpha" / "summary.csv").set_index("run")
    # best seed-mean Final@R among the ranked runs: ccma 0.90; targets 0.81 and 0.855
    assert s.loc["ccma", ["labels_to_90% of best", "labels_to_95% of best"]].tolist() == [50, 50]
    assert s.loc["ccma-reference-code", ["labels_to_90% of best", "labels_to_95% of best"]].tolist() == [50, 60]
    assert s.loc["random", ["labels_to_90% of best", "labels_to_95% of best"]].isna().all()
    labels = pd.read_csv(results / "labels_to_target.csv")
    assert set(labels["dataset"]) == {"alpha", "beta"}
    assert labels.set_index(["dataset", "run"]).loc[("alpha", "ccma"), "best_final"] == pytest.approx(0.90)


def test_random_weight_backbones_are_pipeline_checks(built):
    _, results, _ = built
    s = pd.read_csv(results / "digits" / "summary.csv")
    assert s["pipeline_check"].all()
    assert not pd.read_csv(results / "alpha" / "summary.csv")["pipeline_check"].any()
    md = (results / "report.md").read_text()
    flag = "pipeline check: random-weight backbones; accuracy is meaningless"
    assert f"### Dataset digits: {flag}" in md and "\n## Dataset digits" not in md
    assert md.index("## Pipeline checks") > md.index("## Ranks across datasets")
    assert "digits" not in (results / "rank_table.md").read_text()


def test_findings_lead_and_configuration_is_an_appendix(built):
    _, results, _ = built
    md = (results / "report.md").read_text()
    order = ["## Findings", "## Dataset alpha", "alpha: learning curves", "### Ranks",
             "### CCMA against each baseline", "### Labels to target", "### Ablation",
             "## Ranks across datasets", "## Appendix: configuration", "### CCMA parameters"]
    positions = [md.index(h) for h in order]
    assert positions == sorted(positions)
    assert "- alpha: best mean rank ccma" in md


def test_the_papers_numbers_ship_with_their_source():
    from ccma.report import paper_results

    paper = paper_results()
    assert paper["source"].str.len().gt(0).all() and set(paper["relation"]) <= {"=", "<", ">"}
    assert set(paper["dataset"]) == {"cifar100", "food101", "domainnet_real", "caltech101", "caltech256"}
    table2 = paper[(paper["dataset"] == "cifar100") & (paper["metric"] == "aulc")].set_index("run")["value"]
    assert table2.to_dict() == {"ccma": 0.859, "ccma-V2": 0.828, "ccma-V3": 0.835, "ccma-V4": 0.809,
                                "ccma-V5": 0.793}
    # figures whose numbers the text lost are kept, without a value, and say so
    lost = paper[paper["value"].isna()]
    assert len(lost) and lost["note"].str.len().gt(0).all()


def test_paper_numbers_sit_beside_ours(built):
    from ccma.report import ReportConfig, aggregate_dataset, load_runs, paper_comparison

    data, _, _ = built
    runset = load_runs(data)
    res = aggregate_dataset(runset, "alpha", ReportConfig())
    paper = pd.DataFrame({"dataset": ["alpha", "alpha", "alpha"], "run": ["ccma", "ccma-V3", "*"],
                          "metric": ["aulc", "labels_to_80%", "rank"], "relation": ["=", "<", "="],
                          "value": [0.9, 45.0, np.nan], "source": ["T"] * 3, "note": ["", "", "lost"]})
    both = paper_comparison(res, paper)
    assert both["ours"].iloc[0] == pytest.approx(res.summary.set_index("run").at["ccma", "aulc_mean"])
    assert both["ours"].iloc[1] == 50 and np.isnan(both["ours"].iloc[2])   # ccma-V3 reaches .80 at 50


def test_titles_are_wrapped_to_the_figure_width():
    from ccma.report import figures

    title = ("synth-mismatch: CCMA teacher-student diagnostics on the scored subpool "
             "(mean ± s.d. over seeds)")
    with figures._theme(scale=0.95):
        for wrap in (False, True):
            fig, _ = figures._figure(figures.FIGURE_WIDTH, 4.6, 2, 4)
            figures._suptitle(fig, title) if wrap else fig.suptitle(title)
            fig.canvas.draw()
            box = fig._suptitle.get_window_extent()
            inside = box.x0 >= 0 and box.x1 <= fig.bbox.width
            assert inside == wrap  # unwrapped, this title runs off both edges


@pytest.mark.browser
def test_report_renders_in_chromium(built):
    """The report at 1400 px in headless Chromium (CI's browser step installs it); the
    screenshot is kept as a CI artefact."""
    import importlib.util
    import shutil
    import subprocess

    from matplotlib.image import imread

    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium): no screenshot")
    spec = importlib.util.spec_from_file_location("report_screenshot", ROOT / "tools" / "report_screenshot.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    _, results, _ = built
    out = ROOT / "results" / "ci" / "report_1400px.png"
    try:
        tool.screenshot(results / "report.html", out)
    except subprocess.TimeoutExpired:
        pytest.skip("chromium did not finish its screenshot in time (a slow or busy machine)")
    image = imread(out)
    assert image.shape[1] == 1400 and image[..., :3].std() > 0.01
    print(f"report screenshot: {out}")

# Aggregation (docs/method.md §9, §13): metrics, tables, figures and the report over every run record.


rule aggregate:
    input:
        runs=all_run_files(),
        code=code(*plan.MODULES["aggregate"]),
    output:
        report=f"{RESULTS}/report.md",
        html=f"{RESULTS}/report.html",
        # files, not directory(): Snakemake's timestamp file in it would be a metric to DVC
        metrics=[f"{RESULTS}/metrics/{ds}/{name}.json" for ds, name in RUNS]
        + [f"{RESULTS}/metrics/{ds}/teacher.json" for ds in config["al"]["datasets"]],
        all_curves=f"{RESULTS}/curves.csv",
        labels=f"{RESULTS}/labels_to_target.csv",
        summaries=expand(f"{RESULTS}/{{dataset}}/summary.csv", dataset=config["al"]["datasets"]),
        curves=expand(f"{RESULTS}/{{dataset}}/curves.csv", dataset=config["al"]["datasets"]),
    params:
        data_dir=lambda wildcards, input: str(Path(input.runs[0]).parents[3]),
        results_dir=up(0),
        options=plan.flags(config["report"]),
    log:
        f"{LOGS}/aggregate.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/report.yaml"
    shell:
        PIN + "ccma aggregate --data-dir {params.data_dir:q} --results-dir {params.results_dir:q} "
        "{params.options} > {log:q} 2>&1"

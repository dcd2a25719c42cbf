# One active-learning run per (dataset, run, seed) (docs/method.md §1, §13). The run table, with every
# option and the teacher each run gets, comes from ccma_plan.al_runs: baselines, ccma, its
# presets (reference-code reads backbones.reference-code-teacher's stores on image datasets),
# the ablation variants and the kappa/tau sensitivity runs. A killed run resumes from its last
# finished round (the .partial.parquet beside the output is not an output, so it survives).


rule al:
    input:
        unpack(al_inputs),
    output:
        run_file("{dataset}", "{run}", "{seed}"),
    params:
        data_dir=up(3),
        teacher=lambda wildcards: RUNS[wildcards.dataset, wildcards.run].teacher,
        student=STUDENT,
        strategy=lambda wildcards: RUNS[wildcards.dataset, wildcards.run].strategy,
        protocol=plan.protocol(config),
        training=plan.flags(config["student"]),
        options=lambda wildcards: plan.flags(RUNS[wildcards.dataset, wildcards.run].options),
    log:
        f"{LOGS}/runs/{{dataset}}/{{run}}/seed{{seed}}.log",
    wildcard_constraints:
        dataset=one_of(config["al"]["datasets"]),
        run=one_of(sorted({name for _, name in RUNS})),
        seed=one_of(SEEDS),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        al_slot=1,  # see workflow/profiles/slurm/config.yaml: one run at a time per batch
    conda:
        "../envs/al.yaml"
    shell:
        PIN + "ccma run --data-dir {params.data_dir:q} --dataset {wildcards.dataset} "
        "--teacher-backbone {params.teacher} --student-backbone {params.student} "
        "--strategy {params.strategy} --seed {wildcards.seed} {params.protocol} "
        "{params.training} {params.options} > {log:q} 2>&1"

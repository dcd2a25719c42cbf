# The calibration hold-out (docs/method.md §1): fixed per dataset, independent of the AL seed.


rule splits:
    input:
        teacher=features("{dataset}", TEACHER),
        code=code(*plan.MODULES["splits"]),
    output:
        f"{DATA}/splits/{{dataset}}.npz",
    params:
        data_dir=up(1),
        teacher=TEACHER,
        options=plan.flags(config["splits"]),
    log:
        f"{LOGS}/splits/{{dataset}}.log",
    wildcard_constraints:
        dataset=one_of(config["al"]["datasets"]),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/al.yaml"
    shell:
        PIN + "ccma splits --data-dir {params.data_dir:q} --dataset {wildcards.dataset} "
        "--teacher-backbone {params.teacher} {params.options} > {log:q} 2>&1"

# CCMA's k-means subpool (docs/method.md §6), clustered once per dataset and seed and shared by every
# CCMA run that uses it (V1, V4 and the kappa/tau sensitivity runs).


rule clusters:
    input:
        unpack(lambda wildcards: run_data(wildcards.dataset)),
        code=code(*plan.MODULES["clusters"]),
    output:
        plan.cluster_file(config, "{dataset}", "{seed}"),
    params:
        data_dir=up(3),
        teacher=TEACHER,
        student=STUDENT,
        subpool_size=config["ccma"]["subpool-size"],
        kmeans_iters=config["ccma"]["kmeans-iters"],
    log:
        f"{LOGS}/clusters/{{dataset}}/seed{{seed}}.log",
    wildcard_constraints:
        dataset=one_of(config["al"]["datasets"]),
        seed=one_of(SEEDS),
    threads: 4
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/al.yaml"
    shell:
        PIN + "ccma clusters --data-dir {params.data_dir:q} --dataset {wildcards.dataset} "
        "--teacher-backbone {params.teacher} --student-backbone {params.student} "
        "--seed {wildcards.seed} --subpool-size {params.subpool_size} "
        "--kmeans-iters {params.kmeans_iters} > {log:q} 2>&1"

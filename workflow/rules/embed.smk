# Frozen features (docs/method.md §2): one store per image dataset and backbone (teacher, student and,
# where the reference-code runs use another teacher, that one), on a GPU (resources:
# gpu, which the SLURM executor submits as --gpus=1). A killed job leaves a partial store;
# Snakemake (like dvc repro) deletes it before the rerun, since it may come from other code
# or options; `ccma embed` run by hand continues one with its missing chunks.


rule embed:
    input:
        raw=lambda wildcards: raw_input(wildcards.dataset),
        code=code(*plan.MODULES["embed"]),
    output:
        directory(features("{dataset}", "{backbone}")),
    params:
        data_dir=up(2),
        options=plan.flags(config["embed"]),
    log:
        f"{LOGS}/embed/{{dataset}}/{{backbone}}.log",
    wildcard_constraints:
        dataset=one_of(IMAGE_DATASETS),
        backbone=one_of([*TEACHERS, STUDENT]),
    threads: 8
    resources:
        mem_mb=32000,
        runtime=480,
        gpu=1,
    conda:
        "../envs/embed.yaml"
    shell:
        PIN + "ccma embed --data-dir {params.data_dir:q} --dataset {wildcards.dataset} "
        "--backbone {wildcards.backbone} {params.options} --no-progress > {log:q} 2>&1"

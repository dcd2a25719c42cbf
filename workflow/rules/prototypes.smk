# Text prototypes of the teacher (SPEC 2): the class names through the CLIP text tower,
# averaged over the templates. The command also reports the teacher's zero-shot accuracy,
# which is why it reads the teacher's feature store. A CPU encodes the few thousand prompts
# in minutes, so it does not queue for a GPU.


rule prototypes:
    input:
        teacher=features("{dataset}", TEACHER),
        code=code(*plan.MODULES["prototypes"]),
    output:
        directory(prototypes("{dataset}")),
    params:
        data_dir=up(2),
        teacher=TEACHER,
        device=config["embed"]["device"],
    log:
        f"{LOGS}/prototypes/{{dataset}}.log",
    wildcard_constraints:
        dataset=one_of(IMAGE_DATASETS),
    threads: 4
    resources:
        mem_mb=16000,
        runtime=30,
    conda:
        "../envs/embed.yaml"
    shell:
        PIN + "ccma prototypes --data-dir {params.data_dir} --dataset {wildcards.dataset} "
        "--backbone {params.teacher} --device {params.device} > {log} 2>&1"

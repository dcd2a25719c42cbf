# Text prototypes of a teacher (docs/method.md §2): the class names through the CLIP text tower,
# averaged over the templates; for TEACHER and, where the reference-code runs use another
# teacher, for that one. The command also reports the teacher's zero-shot accuracy, which is
# why it reads the teacher's feature store. A CPU encodes the few thousand prompts in
# minutes, so it does not queue for a GPU.


rule prototypes:
    input:
        teacher=features("{dataset}", "{backbone}"),
        code=code(*plan.MODULES["prototypes"]),
    output:
        directory(prototypes("{dataset}", "{backbone}")),
    params:
        data_dir=up(2),
        device=config["prototypes"]["device"],
    log:
        f"{LOGS}/prototypes/{{dataset}}/{{backbone}}.log",
    wildcard_constraints:
        dataset=one_of(IMAGE_DATASETS),
        backbone=one_of(TEACHERS),
    threads: 4
    resources:
        mem_mb=16000,
        runtime=30,
    conda:
        "../envs/embed.yaml"
    shell:
        PIN + "ccma prototypes --data-dir {params.data_dir:q} --dataset {wildcards.dataset} "
        "--backbone {wildcards.backbone} --device {params.device} > {log:q} 2>&1"

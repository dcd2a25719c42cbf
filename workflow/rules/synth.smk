# The synthetic cross-modal benchmark (docs/method.md §11): teacher and student stores and the teacher's
# prototypes, in exactly the layout embed + prototypes give a real dataset.


rule synth:
    input:
        code=code(*plan.MODULES["synth"]),
    output:
        teacher=directory(features("{dataset}", TEACHER)),
        student=directory(features("{dataset}", STUDENT)),
        prototypes=directory(prototypes("{dataset}")),
    params:
        data_dir=up(2),
        teacher=TEACHER,
        student=STUDENT,
        options=lambda wildcards: plan.flags(config["synthetic"][wildcards.dataset]),
    log:
        f"{LOGS}/synth/{{dataset}}.log",
    wildcard_constraints:
        dataset=one_of(config["synthetic"]),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/al.yaml"
    shell:
        PIN + "ccma synth --data-dir {params.data_dir:q} --dataset {wildcards.dataset} "
        "--teacher-backbone {params.teacher} --student-backbone {params.student} "
        "{params.options} > {log:q} 2>&1"

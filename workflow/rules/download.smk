# Dataset files (docs/method.md §10, §13) into raw/{dataset}/, for the datasets listed under
# datasets.download. The rule tracks no code: what it writes is fixed by the source (md5
# checked), and rerunning it would delete and fetch again the whole directory. It is a
# local rule because compute nodes often have no internet.


rule download:
    output:
        directory(f"{DATA}/raw/{{dataset}}"),
    params:
        data_dir=up(1),
    log:
        f"{LOGS}/download/{{dataset}}.log",
    wildcard_constraints:
        dataset=one_of(config["datasets"]["download"]),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=720,
    conda:
        "../envs/embed.yaml"
    shell:
        "ccma download --data-dir {params.data_dir:q} --dataset {wildcards.dataset} > {log:q} 2>&1"

# The resolved experiment config travels with the results and is what every stage reads.
rule experiment_config:
    output:
        "results/{exp}/config.yaml",
    params:
        diffnet=DIFFNET,
        text=experiment_yaml,
    log:
        "results/{exp}/logs/config.log",
    benchmark:
        "results/{exp}/benchmarks/config.tsv"
    conda:
        "../../envs/diffnet.yaml"
    localrule: True
    shell:
        "{params.diffnet} config --yaml {params.text:q} --experiment {wildcards.exp} --out {output} > {log} 2>&1"

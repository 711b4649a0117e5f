rule sample:
    input:
        config="results/{exp}/config.yaml",
    output:
        "results/{exp}/samples.nc",
    log:
        "results/{exp}/logs/sample.log",
    benchmark:
        "results/{exp}/benchmarks/sample.tsv"
    params:
        diffnet=DIFFNET,
    conda:
        "../../envs/diffnet.yaml"
    shell:
        "{params.diffnet} sample --config {input.config} --out {output} > {log} 2>&1"

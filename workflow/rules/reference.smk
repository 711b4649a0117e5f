rule reference:
    input:
        config="results/{exp}/config.yaml",
        samples="results/{exp}/samples.nc",
    output:
        "results/{exp}/reference.nc",
    log:
        "results/{exp}/logs/reference.log",
    benchmark:
        "results/{exp}/benchmarks/reference.tsv"
    params:
        diffnet=DIFFNET,
    conda:
        "../../envs/diffnet.yaml"
    shell:
        "{params.diffnet} reference --config {input.config} --samples {input.samples} --out {output} --threads {threads} "
        "> {log} 2>&1"

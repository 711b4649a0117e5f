rule infer:
    input:
        model="results/{exp}/model.pt",
        samples="results/{exp}/samples.nc",
    output:
        "results/{exp}/prediction.nc",
    log:
        "results/{exp}/logs/infer.log",
    benchmark:
        "results/{exp}/benchmarks/infer.tsv"
    params:
        diffnet=DIFFNET,
    threads: 2
    conda:
        "../../envs/diffnet.yaml"
    shell:
        "{params.diffnet} infer --model {input.model} --samples {input.samples} --split test --out {output} "
        "--threads {threads} > {log} 2>&1"

rule infer:
    input:
        model="results/{exp}/model.pt",
        ics="results/{exp}/ics.nc",
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
        "{params.diffnet} infer --model {input.model} --ics {input.ics} --split test --out {output} "
        "--threads {threads} > {log} 2>&1"

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
    conda:
        "../../envs/infer.yaml"
    shell:
        "diffnet infer --model {input.model} --ics {input.ics} --split test --out {output} > {log} 2>&1"

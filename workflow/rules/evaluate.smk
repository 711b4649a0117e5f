rule evaluate:
    input:
        config="results/{exp}/config.yaml",
        prediction="results/{exp}/prediction.nc",
        reference="results/{exp}/reference.nc",
    output:
        nc="results/{exp}/metrics.nc",
        csv=report(
            "results/{exp}/metrics.csv",
            caption="../report/metrics.rst",
            category="{exp}",
            subcategory="accuracy",
        ),
    log:
        "results/{exp}/logs/evaluate.log",
    benchmark:
        "results/{exp}/benchmarks/evaluate.tsv"
    params:
        diffnet=DIFFNET,
    conda:
        "../../envs/diffnet.yaml"
    shell:
        "{params.diffnet} evaluate --config {input.config} --prediction {input.prediction} "
        "--reference {input.reference} --out-nc {output.nc} --out-csv {output.csv} --threads {threads} > {log} 2>&1"

rule report:
    input:
        prediction="results/{exp}/prediction.nc",
        reference="results/{exp}/reference.nc",
        metrics="results/{exp}/metrics.nc",
        history="results/{exp}/training.csv",
        chain=chain_histories,
    output:
        fields=report(
            "results/{exp}/report/fields.png",
            caption="../report/fields.rst",
            category="{exp}",
            subcategory="fields",
        ),
        error=report(
            "results/{exp}/report/error_vs_parameter.png",
            caption="../report/error_vs_parameter.rst",
            category="{exp}",
            subcategory="accuracy",
        ),
        loss=report(
            "results/{exp}/report/loss.png",
            caption="../report/loss.rst",
            category="{exp}",
            subcategory="training",
        ),
        self_check=report(
            "results/{exp}/report/self_check.png",
            caption="../report/self_check.rst",
            category="{exp}",
            subcategory="accuracy",
        ),
        timing=report(
            "results/{exp}/report/timing.csv",
            caption="../report/timing.rst",
            category="{exp}",
            subcategory="timing",
        ),
        break_even=report(
            "results/{exp}/report/break_even.csv",
            caption="../report/break_even.rst",
            category="{exp}",
            subcategory="is training worth it?",
        ),
        cost_vs_error=report(
            "results/{exp}/report/cost_vs_error.png",
            caption="../report/cost_vs_error.rst",
            category="{exp}",
            subcategory="is training worth it?",
        ),
    log:
        "results/{exp}/logs/report.log",
    benchmark:
        "results/{exp}/benchmarks/report.tsv"
    params:
        diffnet=DIFFNET,
        out_dir=subpath(output.fields, parent=True),
        # Read, not declared as input: Snakemake writes them after each upstream job finishes.
        stage_benchmarks=lambda wildcards: f"results/{wildcards.exp}/benchmarks",
    conda:
        "../../envs/diffnet.yaml"
    shell:
        "{params.diffnet} report --prediction {input.prediction} --reference {input.reference} "
        "--metrics {input.metrics} --training {input.history} --out-dir {params.out_dir} "
        "--stage-benchmarks {params.stage_benchmarks} --chain {input.chain} > {log} 2>&1"


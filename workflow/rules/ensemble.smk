# Many queries of a trained model (`snakemake ensemble`): the draws are split over `chunks` jobs (each its own
# Slurm job through the profile, each resumable), and a gather merges them exactly and runs the spot checks.
rule ensemble_chunk:
    input:
        model="results/{exp}/model.pt",
    output:
        "results/{exp}/ensemble/chunk{chunk}.nc",
    log:
        "results/{exp}/logs/ensemble_chunk{chunk}.log",
    benchmark:
        "results/{exp}/benchmarks/ensemble_chunk{chunk}.tsv"
    params:
        diffnet=DIFFNET,
        settings=ensemble_options,
    threads: 2
    conda:
        "../../envs/diffnet.yaml"
    shell:
        "{params.diffnet} ensemble --model {input.model} {params.settings} --chunk {wildcards.chunk} "
        "--out {output} --threads {threads} > {log} 2>&1"


rule ensemble_merge:
    input:
        chunks=ensemble_chunks,
        metrics="results/{exp}/metrics.nc",
        history="results/{exp}/training.csv",
        chain=chain_histories,
    output:
        nc="results/{exp}/ensemble.nc",
        qoi=report(
            "results/{exp}/ensemble/qoi.png",
            caption="../report/ensemble_qoi.rst",
            category="{exp}",
            subcategory="ensemble",
        ),
        fields=report(
            "results/{exp}/ensemble/fields.png",
            caption="../report/ensemble_fields.rst",
            category="{exp}",
            subcategory="ensemble",
        ),
        spot_checks=report(
            "results/{exp}/ensemble/spot_checks.csv",
            caption="../report/ensemble_spot_checks.rst",
            category="{exp}",
            subcategory="ensemble",
        ),
    log:
        "results/{exp}/logs/ensemble.log",
    benchmark:
        "results/{exp}/benchmarks/ensemble.tsv"
    params:
        diffnet=DIFFNET,
        figures=subpath(output.qoi, parent=True),
    threads: 1
    conda:
        "../../envs/diffnet.yaml"
    shell:
        "{params.diffnet} ensemble-merge {input.chunks} --out {output.nc} --figures {params.figures} "
        "--metrics {input.metrics} --training {input.history} {input.chain} > {log} 2>&1"


rule ensemble:
    input:
        ensemble_outputs(),
    default_target: False

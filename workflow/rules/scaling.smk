# Scaling study (`snakemake scaling`; also part of `all` when the config has a `scaling` section): the
# configured experiment trained for a few steps at each rank count, on the user's own machine or cluster.
# Locally each timed run reserves every core Snakemake has, so nothing else runs beside it; under the Slurm
# profile each is its own job of `ranks` tasks (profiles/slurm sets the launcher for scaling_train too).


rule scaling_config:
    output:
        "results/scaling/{exp}/ranks{ranks}/config.yaml",
    params:
        diffnet=DIFFNET,
        text=scaling_yaml,
    log:
        "results/scaling/{exp}/logs/config_ranks{ranks}.log",
    benchmark:
        "results/scaling/{exp}/benchmarks/config_ranks{ranks}.tsv"
    conda:
        "../../envs/diffnet.yaml"
    localrule: True
    shell:
        "{params.diffnet} config --yaml {params.text:q} --experiment {wildcards.exp} --out {output} > {log} 2>&1"


rule scaling_train:
    input:
        unpack(scaling_train_inputs),
    output:
        model="results/scaling/{exp}/ranks{ranks}/model.pt",
        history="results/scaling/{exp}/ranks{ranks}/training.csv",
    log:
        "results/scaling/{exp}/logs/train_ranks{ranks}.log",
    benchmark:
        "results/scaling/{exp}/benchmarks/train_ranks{ranks}.tsv"
    params:
        env=DIFFNET_ENV,
        out_dir=subpath(output.model, parent=True),
        init=init_option,
        # One thread per rank at every rank count (not the cores reserved): the runs compare ranks.
        rank_threads=lambda wildcards, resources: resources.cpus_per_task,
        launch=launch_prefix,
    threads: lambda wildcards: max(workflow.cores or 1, int(wildcards.ranks))
    resources:
        tasks=lambda wildcards: int(wildcards.ranks),
        cpus_per_task=1,
        launcher="mpiexec",
        mpi=mpi_job("scaling_train"),
        mpi_env="",
        mem_mb_per_cpu=train_mem_mb_per_rank,
    conda:
        "../../envs/train.yaml"
    # A timing is only meaningful from step 1: never resume a previous attempt's checkpoint.
    shell:
        f"rm -rf {{params.out_dir}}/checkpoints && {TRAIN_SHELL}"


rule scaling_summary:
    input:
        lambda wildcards: expand(
            "results/scaling/{exp}/ranks{ranks}/training.csv", exp=wildcards.exp, ranks=SCALING["ranks"]
        ),
    output:
        nc="results/scaling/{exp}/scaling.nc",
        csv=report(
            "results/scaling/{exp}/scaling.csv",
            caption="../report/scaling.rst",
            category="scaling",
            labels={"experiment": "{exp}", "table": "step time, throughput, efficiency"},
        ),
        png=report(
            "results/scaling/{exp}/scaling.png",
            caption="../report/scaling.rst",
            category="scaling",
            labels={"experiment": "{exp}", "figure": "step time and efficiency"},
        ),
    log:
        "results/scaling/{exp}/logs/summary.log",
    benchmark:
        "results/scaling/{exp}/benchmarks/summary.tsv"
    params:
        diffnet=DIFFNET,
        runs=lambda wildcards, input: " ".join(str(Path(f).parent) for f in input),
        mode=lambda wildcards: SCALING["mode"],
    conda:
        "../../envs/diffnet.yaml"
    shell:
        "{params.diffnet} scaling {params.runs} --mode {params.mode} --out-nc {output.nc} --out-csv {output.csv} "
        "--out-png {output.png} > {log} 2>&1"


rule scaling:
    input:
        scaling_outputs(),
    default_target: False

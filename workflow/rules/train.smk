# MPI ranks come from resources.tasks and the launcher from resources.launcher (mpiexec locally, srun under
# the Slurm profile). Checkpoints are deliberately not an output: Snakemake deletes the outputs of a
# failed or interrupted job, and the checkpoints are what a rerun resumes from.
# The local defaults live here, not in profiles/default: Snakemake lets the workflow profile's
# `set-resources` replace a --profile's `set-resources` as a whole, so it must not define them.
# SRUN_CPUS_PER_TASK: since Slurm 22.05 srun does not inherit --cpus-per-task from the job (and the
# Slurm plugin strips SLURM_*/SRUN_* before this command runs); mpiexec ignores it.
rule train:
    input:
        unpack(train_inputs),
    output:
        model="results/{exp}/model.pt",
        history="results/{exp}/training.csv",
    log:
        "results/{exp}/logs/train.log",
    benchmark:
        "results/{exp}/benchmarks/train.tsv"
    params:
        env=DIFFNET_ENV,
        out_dir=subpath(output.model, parent=True),
        init=init_option,
        rank_threads=per_rank_threads,
        launch=launch_prefix,
    # tasks x cpus_per_task, whatever sets them; --cores caps it, and the ranks then share what is granted.
    threads: mpi_threads("train")
    resources:
        tasks=2,  # MPI ranks
        cpus_per_task=1,  # torch threads per rank
        launcher="mpiexec",  # the MPI launcher; profiles/slurm sets srun
        # The Slurm plugin's MPI flag, from tasks (see mpi_job in common.smk): not for profiles to set.
        mpi=mpi_job("train"),
        # Environment of the launcher, i.e. how MPI reaches the network (profiles/slurm: `mpi_env`).
        mpi_env="",
        # Per rank, from diffnet.resources (measured bytes per pixel); Slurm: --mem-per-cpu, which the
        # plugin prefers over mem_mb. One core per rank by default; with more, this over-requests.
        mem_mb_per_cpu=train_mem_mb_per_rank,
    conda:
        "../../envs/train.yaml"
    shell:
        TRAIN_SHELL

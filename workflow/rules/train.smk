# MPI ranks come from resources.tasks and the launcher from resources.mpi (mpiexec locally, srun under
# the Slurm profile). Checkpoints are deliberately not an output: Snakemake deletes the outputs of a
# failed or interrupted job, and the checkpoints are what a rerun resumes from.
rule train:
    input:
        config="results/{exp}/config.yaml",
        ics="results/{exp}/ics.nc",
    output:
        model="results/{exp}/model.pt",
        history="results/{exp}/training.csv",
    log:
        "results/{exp}/logs/train.log",
    benchmark:
        "results/{exp}/benchmarks/train.tsv"
    params:
        out_dir=subpath(output.model, parent=True),
    resources:
        tasks=1,
        cpus_per_task=1,
        mpi="mpiexec",
    conda:
        "../../envs/train.yaml"
    shell:
        "{resources.mpi} -n {resources.tasks} diffnet train --config {input.config} --ics {input.ics} "
        "--out-dir {params.out_dir} --threads {resources.cpus_per_task} > {log} 2>&1"

# Experiment list, cross-field config checks and paths shared by the rules.
import shlex
import sys
import warnings
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

# The code every job runs is this workflow's own src/, wherever Snakemake reads the workflow from (a clone,
# a copy, a module included by path): not whichever `diffnet` an environment happens to have installed.
# The driver needs only the torch-free config code from it (diffnet.config, diffnet.resources).
DIFFNET_SRC = (Path(workflow.current_basedir) / "../../src").resolve()
sys.path.insert(0, str(DIFFNET_SRC))
DIFFNET_ENV = f"PYTHONPATH={shlex.quote(str(DIFFNET_SRC))}${{PYTHONPATH:+:$PYTHONPATH}}"  # before a launcher, which passes it on
DIFFNET = f"{DIFFNET_ENV} python -m diffnet"

from diffnet.config import ConfigError, experiment_from_dict, scaling_experiment  # noqa: E402
from diffnet.config import validate as diffnet_validate  # noqa: E402
from diffnet.resources import train_memory_mib  # noqa: E402

try:
    # JSON Schema cannot say c_min < c_max or that the grid fits the U-Net: fail here, before any job.
    with warnings.catch_warnings(record=True) as advice:
        warnings.simplefilter("always")
        VALIDATED = diffnet_validate(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
for item in advice:
    logger.warning(f"diffnet: warning: {item.message}")


# Runs made before 0.4.0 named the samples file ics.nc. Renaming it (mtime kept) lets their trained
# models stay current instead of retraining from a resampled, identical file.
for _name in VALIDATED["experiments"]:
    _old, _new = Path(f"results/{_name}/ics.nc"), Path(f"results/{_name}/samples.nc")
    if _old.is_file() and not _new.exists():
        try:
            _old.rename(_new)
            logger.info(f"diffnet: renamed {_old} -> {_new} (the samples file's name since 0.4.0)")
        except FileNotFoundError:  # another Snakemake process (a cluster job) renamed it first
            pass
EXPERIMENTS = VALIDATED["run"]


wildcard_constraints:
    exp="|".join(VALIDATED["experiments"]),
    ranks="[0-9]+",
    chunk="[0-9]+",


def _one_experiment_yaml(name, exp):
    return yaml.safe_dump({"experiments": {name: exp}, "run": [name]}, sort_keys=False)


def experiment_yaml(wildcards):
    """The resolved experiment (defaults filled): a change to it reruns the pipeline from the top."""
    return _one_experiment_yaml(wildcards.exp, VALIDATED["experiments"][wildcards.exp])


def all_outputs():
    files = [
        "metrics.nc",
        "metrics.csv",
        "report/fields.png",
        "report/error_vs_parameter.png",
        "report/loss.png",
        "report/self_check.png",
        "report/timing.csv",
        "report/break_even.csv",
        "report/cost_vs_error.png",
    ]
    return expand("results/{exp}/{file}", exp=EXPERIMENTS, file=files) + scaling_outputs()


def chain_histories(wildcards):
    """training.csv of every experiment this one was initialised from, nearest first: the break-even counts
    their training too."""
    chain, name = [], VALIDATED["experiments"][wildcards.exp]["train"]["init_from"]
    while name:
        chain.append(f"results/{name}/training.csv")
        name = VALIDATED["experiments"][name]["train"]["init_from"]
    return chain



def _training_inputs(exp, config_path):
    """Config and ICs, plus the coarser experiment's model when training continues from it."""
    inputs = {"config": config_path, "samples": f"results/{exp}/samples.nc"}
    source = VALIDATED["experiments"][exp]["train"]["init_from"]
    if source:
        inputs["init"] = f"results/{source}/model.pt"
    return inputs


def train_inputs(wildcards):
    return _training_inputs(wildcards.exp, f"results/{wildcards.exp}/config.yaml")


# The training command of `train` and `scaling_train` (params: env, launch, out_dir, rank_threads, init).
TRAIN_SHELL = (
    "{params.env} {resources.mpi_env} SRUN_CPUS_PER_TASK={resources.cpus_per_task} "
    "{params.launch} python -m diffnet train --config {input.config} --samples {input.samples} "
    "--out-dir {params.out_dir} --threads {params.rank_threads} {params.init} > {log} 2>&1"
)


def init_option(wildcards, input):
    return f"--init-from {input.init}" if "init" in input.keys() else ""


def train_mem_mb_per_rank(wildcards):
    """Memory per training rank estimated from the experiment (grid, micro-batch, checkpointing, model):
    requested as --mem-per-cpu, i.e. per rank at the default of one core per rank."""
    exp = experiment_from_dict(wildcards.exp, VALIDATED["experiments"][wildcards.exp])
    return train_memory_mib(exp, int(wildcards.get("ranks", 1)))


def _rule_resource(rule_name, name, wildcards, attempt):
    """A resource of a rule as set by the rule, a profile or --set-resources (which may be expressions)."""
    resource = workflow.get_rule(rule_name).resources[name]
    return resource.evaluate(wildcards, input=[], attempt=attempt, threads=None, rulename=rule_name,
                             async_run=workflow.async_run).value


def mpi_threads(rule_name):
    """A threads function for an MPI rule: its `tasks` x `cpus_per_task` resources, whatever set them (the
    rule, a profile, --set-resources). Snakemake evaluates threads before resources, so this evaluates the
    two resources itself; they must not depend on threads."""

    def threads(wildcards, attempt):
        return int(_rule_resource(rule_name, "tasks", wildcards, attempt)) * int(
            _rule_resource(rule_name, "cpus_per_task", wildcards, attempt))

    return threads


def mpi_job(rule_name):
    """The Slurm plugin's `mpi` resource. Its presence makes the job step run the rule's command itself,
    whose launcher then starts the ranks (without it the plugin wraps the command in an `srun -n1` step,
    inside which a second srun of several tasks waits forever for CPUs); its value must be 0 for one task,
    which the plugin otherwise refuses, and one rank is legitimate (the scaling baseline, tasks=1). One
    rank runs without a launcher (see launch_prefix)."""

    def flag(wildcards, attempt):
        return int(int(_rule_resource(rule_name, "tasks", wildcards, attempt)) > 1)

    return flag


def launch_prefix(wildcards, resources):
    """`<launcher> -n <tasks>` for several ranks; nothing for one (a singleton MPI process)."""
    tasks = int(resources.tasks)
    return f"{resources.launcher} -n {tasks}" if tasks > 1 else ""


def per_rank_threads(wildcards, threads, resources):
    """Torch threads per rank: the cores Snakemake granted, shared by the ranks (at least 1: --cores 1 still
    starts every rank)."""
    return max(1, threads // int(resources.tasks))


# Ensembles (`snakemake ensemble`): many queries of a trained experiment, keyed by its name.
ENSEMBLES = VALIDATED.get("ensembles") or {}


def ensemble_outputs():
    return [f"results/{exp}/ensemble.nc" for exp in ENSEMBLES]


def ensemble_chunks(wildcards):
    return [f"results/{wildcards.exp}/ensemble/chunk{k}.nc" for k in range(ENSEMBLES[wildcards.exp]["chunks"])]


def ensemble_options(wildcards):
    e = ENSEMBLES[wildcards.exp]
    keep = " --keep-fields" if e["keep_fields"] else ""
    fast = " --compile" if e["compile"] else ""
    return (f"--n {e['n']} --seed {e['seed']} --chunks {e['chunks']} --spot-checks {e['spot_checks']} "
            f"--batch {e['batch']} --precision {e['precision']}{keep}{fast}")


# Scaling study (`snakemake scaling`): one configured experiment trained for a few steps at each rank count.
SCALING = VALIDATED.get("scaling")


def scaling_outputs():
    if not SCALING:
        return []
    exp = SCALING["experiment"]
    return [f"results/scaling/{exp}/scaling.nc", f"results/scaling/{exp}/scaling.csv",
            f"results/scaling/{exp}/scaling.png"]


def scaling_train_inputs(wildcards):
    return _training_inputs(wildcards.exp, f"results/scaling/{wildcards.exp}/ranks{wildcards.ranks}/config.yaml")


def scaling_yaml(wildcards):
    """The experiment as trained at one rank count: the configured steps, and the batch the mode asks for."""
    exp = scaling_experiment(VALIDATED["experiments"][wildcards.exp], ranks=int(wildcards.ranks),
                             steps=SCALING["steps"], mode=SCALING["mode"])
    return _one_experiment_yaml(wildcards.exp, exp)

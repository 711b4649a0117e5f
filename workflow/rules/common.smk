# Experiment list, cross-field config checks and paths shared by the rules.
import warnings
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from diffnet.config import ConfigError, experiment_from_dict
from diffnet.config import validate as diffnet_validate
from diffnet.resources import train_memory_mib

try:
    # JSON Schema cannot say c_min < c_max or that the grid fits the U-Net: fail here, before any job.
    with warnings.catch_warnings(record=True) as advice:
        warnings.simplefilter("always")
        VALIDATED = diffnet_validate(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
for item in advice:
    logger.warning(f"diffnet: warning: {item.message}")

EXPERIMENTS = VALIDATED["run"]


wildcard_constraints:
    exp="|".join(VALIDATED["experiments"]),
    table="[A-Za-z0-9_]+",


def experiment_yaml(wildcards):
    """The resolved experiment (defaults filled): a change to it reruns the pipeline from the top."""
    exp = VALIDATED["experiments"][wildcards.exp]
    return yaml.safe_dump({"experiments": {wildcards.exp: exp}, "run": [wildcards.exp]}, sort_keys=False)


def all_outputs():
    files = [
        "metrics.nc",
        "metrics.csv",
        "report/fields.png",
        "report/error_vs_parameter.png",
        "report/loss.png",
        "report/self_check.png",
        "report/timing.csv",
    ]
    tables = [p.stem for p in Path("benchmarks/results").glob("*.md")] if Path("benchmarks/results").is_dir() else []
    return expand("results/{exp}/{file}", exp=EXPERIMENTS, file=files) + expand(
        "results/benchmarks/{table}.md", table=sorted(tables)
    )



def train_inputs(wildcards):
    """Config and ICs, plus the coarser experiment's model when training continues from it."""
    inputs = {"config": f"results/{wildcards.exp}/config.yaml", "ics": f"results/{wildcards.exp}/ics.nc"}
    source = VALIDATED["experiments"][wildcards.exp]["train"]["init_from"]
    if source:
        inputs["init"] = f"results/{source}/model.pt"
    return inputs


def train_mem_mb_per_rank(wildcards):
    """Memory per training rank estimated from the experiment (grid, micro-batch, checkpointing, model):
    requested as --mem-per-cpu, i.e. per rank at the default of one core per rank."""
    exp = experiment_from_dict(wildcards.exp, VALIDATED["experiments"][wildcards.exp])
    return train_memory_mib(exp)

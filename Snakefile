# DiffNet: sample -> train (MPI) -> infer; reference -> evaluate -> report.
# Rules are thin: each calls the `diffnet` CLI. Resources (ranks, threads) live in profiles/.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/config.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        all_outputs(),
    default_target: True

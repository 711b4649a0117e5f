# DiffNet: sample -> train (MPI) -> infer; reference -> evaluate -> report; ensemble (many queries).
# Rules are thin: each calls the `diffnet` CLI. Resources (ranks, threads) live in profiles/.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


# Validation only: the defaults are filled by diffnet.config (common.smk), which copies each default per
# experiment; Snakemake's own filler would share one default object between experiments.
validate(config, "workflow/schemas/config.schema.yaml", set_default=False)


include: "workflow/rules/common.smk"
include: "workflow/rules/config.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/scaling.smk"
include: "workflow/rules/ensemble.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        all_outputs(),
    default_target: True

"""config/README.md, rendered from the JSON Schema: the schema stays the one place a field is described.

Regenerate after a schema change with ``diffnet config-docs --out config/README.md``; a test fails while
the committed page differs from the rendering.
"""

from __future__ import annotations

import json
from typing import Any

SECTIONS = ("grid", "sampling", "model", "loss", "train")

HEADER = """\
<!-- Generated from workflow/schemas/config.schema.yaml by `diffnet config-docs --out config/README.md`.
     Do not edit: change the schema and regenerate (tests/test_workflow_catalog.py checks this page is current). -->
# Configuration

`config/config.yaml` names experiments under `experiments:`; `snakemake` builds those listed under `run:`
(all when omitted), and the scaling study when a `scaling:` section is present. Every field below has a
default unless marked *required*; an experiment states only what differs. Snakemake and the `diffnet` CLI
validate against the same schema, and a bad value stops the run before any job starts, with a one-line
error that names the field.

Resources (MPI ranks, threads per rank, memory, run time) are not configuration: they live in the
Snakemake profiles (`profiles/default`, `profiles/slurm`) and on the command line
(`--set-resources train:tasks=4`).

A minimal experiment:

```yaml
run: [mine]
experiments:
  mine:
    problem: {name: burgers, c_min: 3.0, c_max: 6.0}
    grid: {nx: 128, nt: 128}
    train: {steps: 3000}
```
"""


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _kind(spec: dict[str, Any]) -> str:
    if "const" in spec:
        return f"`{spec['const']}`"
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    if "oneOf" in spec:
        return " or ".join(_kind(s) for s in spec["oneOf"])
    kind = spec.get("type", "")
    if kind == "array":
        return f"list of {_kind(spec.get('items', {}))}"
    bounds = []
    for key, symbol in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in spec:
            bounds.append(f"{symbol} {spec[key]}")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _default(spec: dict[str, Any], required: bool) -> str:
    if required:
        return "*required*"
    if "default" in spec:
        return f"`{json.dumps(spec['default'])}`"
    return ""


def _table(prefix: str, spec: dict[str, Any], extra_defaults: dict[str, Any] | None = None) -> list[str]:
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    required = set(spec.get("required", ()))
    for name, field in spec.get("properties", {}).items():
        field = {**field, **(extra_defaults or {}).get(name, {})}
        rows.append(f"| `{prefix}{name}` | {_kind(field)} | {_default(field, name in required)} | "
                    f"{_one_line(field.get('description'))} |")
    return rows


def families(schema: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """problem.name -> the $defs of that family's problem and reference fields, read from the experiment's
    if/then branches (the same ones validation uses)."""
    found = {}
    for branch in schema["$defs"]["experiment"]["allOf"]:
        name = branch["if"]["properties"]["problem"]["properties"]["name"]["const"]
        then = branch["then"]["properties"]
        found[name] = tuple(then[key]["$ref"].rsplit("/", 1)[1] for key in ("problem", "reference"))
    return found


def render(schema: dict[str, Any]) -> str:
    """The markdown page for ``schema`` (the parsed config.schema.yaml)."""
    defs, top = schema["$defs"], schema["properties"]
    family_defs = families(schema)
    experiment = defs["experiment"]["properties"]
    out = [HEADER]
    out += ["## Top level", "", *_table("", {"properties": {k: v for k, v in top.items() if k != "scaling"},
                                             "required": schema.get("required", [])}), ""]
    out += ["## Scaling study (`scaling`)", "", _one_line(top["scaling"]["description"]), "",
            *_table("scaling.", top["scaling"]), ""]
    out += ["## Ensembles (`ensembles.<experiment>`)", "", _one_line(top["ensembles"]["description"]), "",
            *_table("ensembles.<experiment>.", defs["ensemble"]), ""]
    out += ["## Experiments (`experiments.<name>`)", "",
            "Each experiment has a `problem` (the PDE family and its parameters), a `grid`, `sampling`, "
            "`model`, `loss`, `train` and `reference` section.", ""]
    out += ["### `problem`", "", _one_line(experiment["problem"]["description"]), ""]
    for family, (problem_def, _) in family_defs.items():
        spec = defs[problem_def]
        out += [f"#### `problem.name: {family}`", "", _one_line(spec.get("description")), "",
                *_table("problem.", spec), ""]
    for section in SECTIONS:
        spec = experiment[section]
        out += [f"### `{section}`", ""]
        if spec.get("description"):
            out += [_one_line(spec["description"]), ""]
        out += [*_table(f"{section}.", spec), ""]
    out += ["### `reference`", "", _one_line(experiment["reference"]["description"]), ""]
    seen = set()
    for _, reference_def in family_defs.values():
        if reference_def in seen:
            continue
        seen.add(reference_def)
        users = ", ".join(f"`{f}`" for f, (_, r) in family_defs.items() if r == reference_def)
        out += [f"#### for {users}", "", *_table("reference.", defs[reference_def]), ""]
    return "\n".join(out).rstrip() + "\n"

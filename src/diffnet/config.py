"""Typed experiment configuration, loaded from YAML and validated against the JSON Schema.

The schema (workflow/schemas/config.schema.yaml, shipped in the package as config.schema.yaml) is the
single source of truth for fields and defaults. This module adds what JSON Schema cannot say (c_min <
c_max, the grid fits the U-Net) and turns the result into frozen dataclasses, so a bad config fails
with one line naming the field before any expensive work starts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ReachWarning(UserWarning):
    """The model cannot see the whole domain of dependence (see ``_check_reach``)."""


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that names the field and the fix."""


@dataclass(frozen=True)
class ProblemConfig:
    name: str
    c_min: float
    c_max: float
    t_end: float


@dataclass(frozen=True)
class GridConfig:
    nx: int
    nt: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nt, self.nx)


@dataclass(frozen=True)
class SamplingConfig:
    n_train: int
    n_test: int
    seed: int


@dataclass(frozen=True)
class ModelConfig:
    base_channels: int
    depth: int
    norm: str
    activation_checkpointing: bool
    cascade_levels: int


@dataclass(frozen=True)
class LossConfig:
    scheme: str
    residual_form: str
    warm_start_steps: int
    constraint: str
    penalty_weight: float
    viscosity: float


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    lr_final_ratio: float
    grad_clip: float
    seed: int
    checkpoint_every: int
    channels_last: bool
    precision: str
    optimizer: str
    lbfgs_max_iter: int
    init_from: str
    micro_batch: int


@dataclass(frozen=True)
class ReferenceConfig:
    fem_order: int
    fem_refine: int


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    problem: ProblemConfig
    grid: GridConfig
    sampling: SamplingConfig
    model: ModelConfig
    loss: LossConfig
    train: TrainConfig
    reference: ReferenceConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (without the name), the form written to files and provenance."""
        d = asdict(self)
        d.pop("name")
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump({"experiments": {self.name: self.to_dict()}, "run": [self.name]},
                              sort_keys=False)

    def digest(self) -> str:
        """Short sha256 of the canonical JSON of the experiment: identifies a configuration."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def schema() -> dict[str, Any]:
    text = resources.files("diffnet").joinpath("config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _validator_with_defaults() -> type:
    # jsonschema validates but does not fill defaults; this is the extension its docs recommend.
    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, subschema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def _field_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate(raw: dict[str, Any], *, resolved: bool = False) -> dict[str, Any]:
    """Validate a whole config document, fill defaults, and check cross-field rules.

    ``resolved``: the document is one experiment taken out of a larger config (results/<exp>/config.yaml,
    the copy inside a model.pt), so its ``train.init_from`` may name an experiment it does not contain:
    that reference was checked when the larger config was, and training checks the model file itself.
    Returns the completed document; raises ConfigError naming the first bad field.
    """
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a YAML mapping with an 'experiments' key")
    doc = copy.deepcopy(raw)
    validator = _validator_with_defaults()(schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise ConfigError(f"config field '{_field_path(e)}': {e.message}")
    # Defaults inside additionalProperties subschemas are filled on a second pass, once the parents exist.
    validator.validate(doc)
    for name, exp in doc["experiments"].items():
        _check_experiment(name, exp)
        source = exp["train"]["init_from"]
        if source and source not in doc["experiments"] and not resolved:
            raise ConfigError(f"config field 'experiments.{name}.train.init_from': experiment '{source}' does not "
                              "exist; name an experiment defined in this file")
        if source in doc["experiments"]:
            _check_init_from(name, exp, source, doc["experiments"][source])
        elif exp["model"]["cascade_levels"] and not source:
            raise ConfigError(f"config field 'experiments.{name}.train.init_from': model.cascade_levels="
                              f"{exp['model']['cascade_levels']} needs the coarser experiment whose network it "
                              "builds on; name it here (or set cascade_levels: 0)")
    run = doc.get("run", sorted(doc["experiments"]))
    doc["run"] = [run] if isinstance(run, str) else list(run)
    for name in doc["run"]:
        if name not in doc["experiments"]:
            known = ", ".join(sorted(doc["experiments"]))
            raise ConfigError(f"config field 'run': experiment '{name}' does not exist (defined: {known})")
    return doc


def _check_init_from(name: str, exp: dict[str, Any], source: str, src: dict[str, Any]) -> None:
    """Coarse-to-fine: same architecture (weights carried over), or one cascade level more on twice the grid."""
    where = f"config field 'experiments.{name}.train.init_from'"
    levels = exp["model"]["cascade_levels"]
    if not levels:
        if src["model"] != exp["model"]:
            raise ConfigError(f"{where}: '{source}' has a different model section; coarse-to-fine needs the "
                              "same architecture")
        return
    if {**src["model"], "cascade_levels": levels} != exp["model"] or src["model"]["cascade_levels"] != levels - 1:
        raise ConfigError(f"{where}: with model.cascade_levels={levels}, '{source}' must have the same model "
                          f"section with cascade_levels={levels - 1}")
    from diffnet.models.cascade import coarse_shape  # torch is needed only once a config is checked

    nt, nx = coarse_shape((exp["grid"]["nt"], exp["grid"]["nx"]))
    below = {"nt": nt, "nx": nx}
    if src["grid"] != below:
        raise ConfigError(f"{where}: a cascade level sits on half the intervals of the grid above, so "
                          f"'{source}' needs grid nt={below['nt']}, nx={below['nx']} (it has "
                          f"nt={src['grid']['nt']}, nx={src['grid']['nx']})")


def _check_experiment(name: str, exp: dict[str, Any]) -> None:
    p, g, m, t, s = exp["problem"], exp["grid"], exp["model"], exp["train"], exp["sampling"]
    where = f"experiments.{name}"
    if not p["c_min"] < p["c_max"]:
        raise ConfigError(
            f"config field '{where}.problem.c_min': c range [{p['c_min']}, {p['c_max']}] is empty or "
            "reversed; set c_min < c_max"
        )
    from diffnet.models.cascade import coarse_shape

    coarsest = {"nt": g["nt"], "nx": g["nx"]}
    for _ in range(m["cascade_levels"]):
        coarsest["nt"], coarsest["nx"] = coarse_shape((coarsest["nt"], coarsest["nx"]))
    for axis in ("nx", "nt"):
        if coarsest[axis] < 2 ** (m["depth"] + 1):
            if m["cascade_levels"]:
                raise ConfigError(
                    f"config field '{where}.model.cascade_levels': the coarsest of {m['cascade_levels']} levels "
                    f"below {g[axis]} nodes has {coarsest[axis]}, too coarse for a U-Net of depth {m['depth']}; "
                    "use fewer levels")
            raise ConfigError(
                f"config field '{where}.grid.{axis}': {g[axis]} nodes is too coarse for a U-Net of depth "
                f"{m['depth']}; use at least {2 ** (m['depth'] + 1)} or lower model.depth"
            )
    _check_reach(where, p, g, m)
    if m["norm"] == "batch" and t["micro_batch"]:
        raise ConfigError(
            f"config field '{where}.train.micro_batch': batch norm statistics would cover one micro-batch, "
            "not the global batch; use model.norm: none with micro-batching, or micro_batch: 0"
        )
    if t["batch_size"] > s["n_train"]:
        raise ConfigError(
            f"config field '{where}.train.batch_size': {t['batch_size']} exceeds sampling.n_train="
            f"{s['n_train']}; lower the batch or sample more training ICs"
        )


def _check_reach(where: str, p: dict[str, Any], g: dict[str, Any], m: dict[str, Any]) -> None:
    """Warn when the U-Net cannot see as far along x as information travels.

    Burgers: u(x, t) is decided by u0 on [x - t max|u0|, x], and the cosine family has max|u0| = 1, so a
    network that sees fewer than t_end (nx - 1) nodes cannot, for a general IC, know what decides its
    output. A warning rather than an error: this family's IC is a cosine, which a network can recognise
    from a local window, and measured at 256^2 depth 5 did no better than depth 3 under the same short
    training budget (benchmarks/results/accuracy.md).
    """
    from diffnet.models.unet import receptive_radius  # torch is needed only once a config is checked

    if p["name"] != "burgers":
        return
    need = math.ceil(p["t_end"] * (g["nx"] - 1) - 1e-9)
    # Each cascade level below works on half the nodes, so it sees twice as far in fine nodes.
    scale = 2 ** m["cascade_levels"]
    sees = receptive_radius(m["depth"]) * scale
    if sees < need:
        enough = next(d for d in range(1, 16) if receptive_radius(d) * scale >= need)
        warnings.warn(
            f"config field '{where}.model.depth': a depth-{m['depth']} U-Net sees {sees} "
            f"nodes to each side, but characteristics travel up to {need} nodes over t_end on this grid; "
            f"depth >= {enough} sees them all", ReachWarning, stacklevel=2)


def _build(cls: type, values: dict[str, Any]) -> Any:
    return cls(**{f.name: values[f.name] for f in fields(cls)})


def experiment_from_dict(name: str, exp: dict[str, Any]) -> ExperimentConfig:
    """Dataclass view of one validated experiment entry."""
    return ExperimentConfig(
        name=name,
        problem=_build(ProblemConfig, exp["problem"]),
        grid=_build(GridConfig, exp["grid"]),
        sampling=_build(SamplingConfig, exp["sampling"]),
        model=_build(ModelConfig, exp["model"]),
        loss=_build(LossConfig, exp["loss"]),
        train=_build(TrainConfig, exp["train"]),
        reference=_build(ReferenceConfig, exp["reference"]),
    )


def load_document(path: str | Path, *, resolved: bool = False) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found; pass --config with an existing YAML file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {exc}".splitlines()[0]) from None
    return validate(raw, resolved=resolved)


def load_experiment(path: str | Path, experiment: str | None = None) -> ExperimentConfig:
    """Load one experiment from a config file.

    experiment=None is allowed when the file defines exactly one experiment (as the per-run
    results/<exp>/config.yaml does).
    """
    doc = load_document(path, resolved=True)
    names = sorted(doc["experiments"])
    if experiment is None:
        if len(names) != 1:
            raise ConfigError(f"config file '{path}' defines {len(names)} experiments; pick one with "
                              f"--experiment ({', '.join(names)})")
        experiment = names[0]
    if experiment not in doc["experiments"]:
        raise ConfigError(f"--experiment '{experiment}' does not exist in '{path}' (defined: {', '.join(names)})")
    return experiment_from_dict(experiment, doc["experiments"][experiment])

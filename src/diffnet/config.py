"""Typed experiment configuration, loaded from YAML and validated against the JSON Schema.

The schema (workflow/schemas/config.schema.yaml, shipped in the package as config.schema.yaml) is the
single source of truth for fields and defaults; `problem.name` selects the family's own fields there.
This module adds what JSON Schema cannot say (c_min < c_max, the grid fits the U-Net) and turns the
result into frozen dataclasses, so a bad config fails with one line naming the field before any
expensive work starts. It imports neither torch nor the package's numerics: the Snakemake driver on a
login node parses configs with it.
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

from diffnet.shapes import coarse_shape, receptive_radius


class ReachWarning(UserWarning):
    """The model cannot see the whole domain of dependence (see ``_check_reach``)."""


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that names the field and the fix."""


# Fields of the loss section that only a residual-trained family reads; an energy-trained family
# rejects them when a config sets them (the schema's defaults fill them for every family).
RESIDUAL_LOSS_FIELDS = ("scheme", "residual_form", "warm_start_steps", "constraint", "penalty_weight",
                        "viscosity")
# Which grid axis a family has besides x; the schema gives each family its own.
SECOND_AXIS = {"burgers": "nt", "poisson": "ny", "reaction_diffusion": "ny", "darcy": "ny"}


@dataclass(frozen=True)
class FamilyFields:
    """A config section whose fields depend on the family (the schema selects them by problem.name).

    Fields read as attributes (``exp.problem.c_min``); a field the family does not have is an
    AttributeError naming it.
    """

    fields: dict[str, Any]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self.__dict__["fields"][key]
        except KeyError:
            raise AttributeError(f"this family's {type(self).__name__} has no field '{key}'") from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.fields)


@dataclass(frozen=True)
class ProblemConfig(FamilyFields):
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.fields}


@dataclass(frozen=True)
class ReferenceConfig(FamilyFields):
    pass


@dataclass(frozen=True)
class GridConfig:
    """Nodes per axis: nx, and nt (space-time families) or ny (families on the unit square)."""

    nx: int
    nt: int | None = None
    ny: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(outer, x) node counts: (nt, nx) or (ny, nx)."""
        return (self.nt if self.nt is not None else self.ny, self.nx)

    def to_dict(self) -> dict[str, int]:
        return {k: v for k, v in (("nx", self.nx), ("nt", self.nt), ("ny", self.ny)) if v is not None}


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
    compile: bool
    optimizer: str
    lbfgs_max_iter: int
    init_from: str
    micro_batch: int


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
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        return {k: v.to_dict() if hasattr(v, "to_dict") else asdict(v) for k, v in d.items()}

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
        # A resolved document carries the schema's defaults for every section, which the raw-field checks
        # would read as the user's own.
        _check_experiment(name, exp, {} if resolved else raw["experiments"][name] or {})
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
    if "scaling" in doc:
        _check_scaling(doc["scaling"], doc["experiments"])
    for name, ens in (doc.get("ensembles") or {}).items():
        check_ensemble(f"ensembles.{name}", ens)
        if name not in doc["experiments"]:
            known = ", ".join(sorted(doc["experiments"]))
            raise ConfigError(f"config field 'ensembles.{name}': experiment '{name}' does not exist (defined: "
                              f"{known}); key each ensemble by the experiment whose model it queries")
    run = doc.get("run", sorted(doc["experiments"]))
    doc["run"] = [run] if isinstance(run, str) else list(run)
    for name in doc["run"]:
        if name not in doc["experiments"]:
            known = ", ".join(sorted(doc["experiments"]))
            raise ConfigError(f"config field 'run': experiment '{name}' does not exist (defined: {known})")
    return doc


def _check_scaling(scaling: dict[str, Any], experiments: dict[str, Any]) -> None:
    name = scaling["experiment"]
    if name not in experiments:
        known = ", ".join(sorted(experiments))
        raise ConfigError(f"config field 'scaling.experiment': experiment '{name}' does not exist (defined: {known})")
    if scaling["mode"] == "weak":
        exp = experiments[name]
        largest = exp["train"]["batch_size"] * max(scaling["ranks"])
        if largest > exp["sampling"]["n_train"]:
            raise ConfigError(
                f"config field 'scaling.ranks': weak scaling keeps {name}'s batch_size "
                f"{exp['train']['batch_size']} per rank, so {max(scaling['ranks'])} ranks need {largest} training "
                f"samples but sampling.n_train is {exp['sampling']['n_train']}; raise n_train or use mode: strong")


def _power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def check_ensemble(where: str, ens: dict[str, Any], *, cli: bool = False) -> None:
    """What the schema cannot say of an ensemble: powers of two that fit into each other. ``cli``: name the
    command-line options (--n) instead of the config fields."""

    def field(key: str) -> str:
        return f"--{key.replace('_', '-')}" if cli else f"config field '{where}.{key}'"

    for key in ("n", "chunks", "batch"):
        if not _power_of_two(ens[key]):
            below = 1 << (ens[key].bit_length() - 1)
            raise ConfigError(f"{field(key)}: {ens[key]} is not a power of two (scrambled Sobol points are "
                              f"balanced in powers of two); use {below} or {below * 2}")
    if ens["chunks"] > ens["n"]:
        raise ConfigError(f"{field('chunks')}: {ens['chunks']} chunks for n = {ens['n']} draws; use at most "
                          f"{ens['n']}")
    if not 0 <= ens["spot_checks"] <= ens["n"]:
        raise ConfigError(f"{field('spot_checks')}: {ens['spot_checks']} spot checks for n = {ens['n']} draws; "
                          f"use 0 to {ens['n']}")


def scaling_experiment(exp: dict[str, Any], *, ranks: int, steps: int, mode: str) -> dict[str, Any]:
    """One run of a scaling study: the experiment (a validated dict) for ``steps`` steps at ``ranks`` ranks.

    strong: the global batch stays the experiment's, so each rank's shard shrinks as ranks grow (and the
    loss trajectory must not change: loss integrity). weak: the experiment's batch is per rank, so the
    global batch grows with the ranks.
    """
    run = copy.deepcopy(exp)
    t = run["train"]
    t["steps"] = steps
    t["checkpoint_every"] = steps
    t["warmup_steps"] = min(t["warmup_steps"], steps)
    if mode == "weak":
        t["batch_size"] *= ranks
    return run


def _check_init_from(name: str, exp: dict[str, Any], source: str, src: dict[str, Any]) -> None:
    """Coarse-to-fine: same architecture (weights carried over), or one cascade level more on twice the grid."""
    where = f"config field 'experiments.{name}.train.init_from'"
    levels = exp["model"]["cascade_levels"]
    # Activation checkpointing changes memory, not weights: a coarse run without it may seed a fine run with it.
    mine = {**exp["model"], "activation_checkpointing": None}
    theirs = {**src["model"], "activation_checkpointing": None}
    if not levels:
        if theirs != mine:
            raise ConfigError(f"{where}: '{source}' has a different model section; coarse-to-fine needs the "
                              "same architecture")
        return
    if {**theirs, "cascade_levels": levels} != mine or theirs["cascade_levels"] != levels - 1:
        raise ConfigError(f"{where}: with model.cascade_levels={levels}, '{source}' must have the same model "
                          f"section with cascade_levels={levels - 1}")
    axis = SECOND_AXIS[exp["problem"]["name"]]
    n0, nx = coarse_shape((exp["grid"][axis], exp["grid"]["nx"]))
    below = {axis: n0, "nx": nx}
    if src["grid"] != below:
        raise ConfigError(f"{where}: a cascade level sits on half the intervals of the grid above, so "
                          f"'{source}' needs grid {axis}={below[axis]}, nx={below['nx']} (it has "
                          f"{', '.join(f'{k}={v}' for k, v in sorted(src['grid'].items()))})")


def _check_experiment(name: str, exp: dict[str, Any], raw: dict[str, Any]) -> None:
    p, g, m, t, s = exp["problem"], exp["grid"], exp["model"], exp["train"], exp["sampling"]
    where = f"experiments.{name}"
    for low, high, what in (("c_min", "c_max", "c"), ("kappa_min", "kappa_max", "kappa"),
                           ("nu_low", "nu_high", "nu")):
        if low in p and not p[low] < p[high]:
            raise ConfigError(
                f"config field '{where}.problem.{low}': {what} range [{p[low]}, {p[high]}] is empty or "
                f"reversed; set {low} < {high}"
            )
    axis = SECOND_AXIS[p["name"]]
    for other in set(SECOND_AXIS.values()) - {axis}:
        if other in g:
            raise ConfigError(f"config field '{where}.grid.{other}': the {p['name']} family's grid has nx and "
                              f"{axis}, not {other}; rename it to {axis}")
    if p["name"] != "burgers":
        if g["ny"] != g["nx"]:
            raise ConfigError(f"config field '{where}.grid.ny': the {p['name']} family solves on a square grid; "
                              f"set ny = nx = {g['nx']}")
        given = sorted(set(raw.get("loss") or {}) & set(RESIDUAL_LOSS_FIELDS))
        if given:
            raise ConfigError(f"config field '{where}.loss.{given[0]}': the {p['name']} family is trained on its "
                              "energy, not on a scheme's residual; remove the field")
        r = exp["reference"]
        too_fine = [f for f in r["ladder_factors"] if f >= r["fine_refine"]]
        if too_fine:
            raise ConfigError(f"config field '{where}.reference.ladder_factors': factor {too_fine[0]:g} is not "
                              f"coarser than the truth (fine_refine = {r['fine_refine']}); use factors below "
                              f"{r['fine_refine']} or raise fine_refine")
    else:
        _check_preconditioned(where, exp["loss"])
    coarsest = {axis: g[axis], "nx": g["nx"]}
    for _ in range(m["cascade_levels"]):
        coarsest[axis], coarsest["nx"] = coarse_shape((coarsest[axis], coarsest["nx"]))
    for key in ("nx", axis):
        if coarsest[key] < 2 ** (m["depth"] + 1):
            if m["cascade_levels"]:
                raise ConfigError(
                    f"config field '{where}.model.cascade_levels': the coarsest of {m['cascade_levels']} levels "
                    f"below {g[key]} nodes has {coarsest[key]}, too coarse for a U-Net of depth {m['depth']}; "
                    "use fewer levels")
            raise ConfigError(
                f"config field '{where}.grid.{key}': {g[key]} nodes is too coarse for a U-Net of depth "
                f"{m['depth']}; use at least {2 ** (m['depth'] + 1)} or lower model.depth"
            )
    _check_reach(where, p, g, m, axis)
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


def _check_preconditioned(where: str, loss: dict[str, Any]) -> None:
    """The preconditioned residual inverts the scheme's row-by-row Jacobian over the unknown nodes."""
    if loss["residual_form"] != "preconditioned":
        return
    if loss["scheme"] == "sobel":
        raise ConfigError(f"config field '{where}.loss.residual_form': preconditioned needs a scheme that defines "
                          "each time row from the ones before it, and sobel does not; use pointwise with sobel")
    if loss["constraint"] != "hard":
        raise ConfigError(f"config field '{where}.loss.constraint': the preconditioned residual corrects only "
                          "the unknown nodes, so the IC and boundary must be imposed; set constraint: hard")


def information_reach(p: dict[str, Any], g: dict[str, Any], axis: str) -> tuple[int, str]:
    """Nodes that information travels on this grid, and why (the generator should see that far).

    Burgers: u(x, t) is decided by u0 on [x - t max|u0|, x], and the cosine family has max|u0| = 1, so a
    network that sees fewer than t_end (nx - 1) nodes cannot, for a general IC, know what decides its
    output. Elliptic families: the solution at any node depends on the coefficient and the boundary
    data everywhere, so the whole width, n - 1 nodes along the longer axis.
    """
    if p["name"] == "burgers":
        return math.ceil(p["t_end"] * (g["nx"] - 1) - 1e-9), "characteristics travel"
    return max(g["nx"], g[axis]) - 1, "the boundary data reach across the domain, which spans"


def _check_reach(where: str, p: dict[str, Any], g: dict[str, Any], m: dict[str, Any], axis: str) -> None:
    """Warn when the U-Net cannot see as far as information travels (``information_reach``).

    A warning rather than an error: the Burgers IC is a cosine, which a network can recognise from a
    local window, and measured at 256^2 depth 5 did no better than depth 3 under the same short
    training budget (benchmarks/results/accuracy.md).
    """
    need, why = information_reach(p, g, axis)
    # Each cascade level below works on half the nodes, so it sees twice as far in fine nodes.
    scale = 2 ** m["cascade_levels"]
    sees = receptive_radius(m["depth"]) * scale
    if sees < need:
        enough = next(d for d in range(1, 16) if receptive_radius(d) * scale >= need)
        warnings.warn(
            f"config field '{where}.model.depth': a depth-{m['depth']} U-Net sees {sees} "
            f"nodes to each side, but {why} up to {need} nodes on this grid; "
            f"depth >= {enough} sees them all", ReachWarning, stacklevel=2)


def _build(cls: type, values: dict[str, Any]) -> Any:
    return cls(**{f.name: values[f.name] for f in fields(cls)})


def experiment_from_dict(name: str, exp: dict[str, Any]) -> ExperimentConfig:
    """Dataclass view of one validated experiment entry."""
    return ExperimentConfig(
        name=name,
        problem=ProblemConfig(name=exp["problem"]["name"],
                              fields={k: v for k, v in exp["problem"].items() if k != "name"}),
        grid=GridConfig(**exp["grid"]),
        sampling=_build(SamplingConfig, exp["sampling"]),
        model=_build(ModelConfig, exp["model"]),
        loss=_build(LossConfig, exp["loss"]),
        train=_build(TrainConfig, exp["train"]),
        reference=ReferenceConfig(fields=dict(exp["reference"])),
    )


def config_from_yaml(text: str, experiment: str) -> ExperimentConfig:
    """One experiment from a resolved config stored as text (in a model.pt or a NetCDF file's attributes)."""
    doc = validate(yaml.safe_load(text), resolved=True)
    return experiment_from_dict(experiment, doc["experiments"][experiment])


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

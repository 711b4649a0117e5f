"""Stage `ensemble`: a trained model answers many queries, the job a surrogate exists for.

n parameter sets are drawn from the family's trained ranges by scrambled, seeded Sobol points. Each chunk
(one Snakemake/Slurm job) predicts its share in batches, with the same self-check as ``infer``, and
keeps per sample the parameters, the quantity of interest (QoI), the residual and the trusted flag, and
per node the running mean and sum of squared deviations in float64 (Chan et al.'s pairwise update), so
memory does not grow with n. The gather merges the chunks' statistics with the same update, in chunk
order: the result does not depend on the chunk count (up to float64 rounding), and the predictions are
bitwise the same because every batch holds the same samples whatever the chunking.

The first ``spot_checks`` draws (a Sobol prefix, itself balanced) are also solved by the family's
reference solver in the gather: their QoI and field errors, and a Monte Carlo estimate of the QoI's mean
and standard deviation from the solves alone beside the network's estimate from all n draws.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats

from diffnet import breakeven, io, problems, selfcheck
from diffnet.config import ConfigError, check_ensemble
from diffnet.progress import track

# A chunk saves its progress at most this often: a killed job loses at most this much work.
SAVE_SECONDS = 30.0


@dataclass(frozen=True)
class EnsembleSettings:
    n: int = 1024
    seed: int = 0
    chunks: int = 1
    spot_checks: int = 16
    keep_fields: bool = False
    batch: int = 16
    precision: str = "auto"  # as `diffnet infer --precision`: auto follows the model where bf16 is native
    compile: bool = False  # torch.compile the model first: tens of seconds, paid back only by large ensembles

    def check(self) -> None:
        check_ensemble("ensemble", {"n": self.n, "chunks": self.chunks, "batch": self.batch,
                                    "spot_checks": self.spot_checks}, cli=True)

    def chunk_range(self, chunk: int) -> range:
        if not 0 <= chunk < self.chunks:
            raise ConfigError(f"--chunk {chunk}: this ensemble has chunks 0 to {self.chunks - 1}")
        size = self.n // self.chunks
        return range(chunk * size, (chunk + 1) * size)


def draws(problem: problems.Problem, n: int, seed: int) -> dict[str, np.ndarray]:
    """n parameter sets spread over the trained range of every parameter: one scrambled Sobol sequence over
    all their components (a vector parameter is one dimension per component)."""
    from scipy.stats import qmc

    specs = problem.parameters
    unranged = [name for name, spec in specs.items() if spec.low is None or spec.high is None]
    if unranged:
        # Darcy's seed names a random medium: there is no range to spread Sobol points over.
        raise ConfigError(f"ensemble: the {problem.name} family's parameter '{unranged[0]}' has no trained range "
                          "to draw from; predict your own samples with `diffnet infer --samples` or `--inputs`")
    widths = {name: int(np.prod(spec.shape)) if spec.shape else 1 for name, spec in specs.items()}
    unit = qmc.Sobol(sum(widths.values()), scramble=True, seed=np.random.default_rng(seed)).random(n)
    out, col = {}, 0
    for name, spec in specs.items():
        w = widths[name]
        values = spec.low + (spec.high - spec.low) * unit[:, col : col + w]
        out[name] = values.reshape(n, *spec.shape) if spec.shape else values[:, 0]
        col += w
    return out


def _subset(params: Mapping[str, np.ndarray], index) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[index] for k, v in params.items()}


@dataclass
class FieldStatistics:
    """Count, mean and sum of squared deviations per node, in float64."""

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, u: np.ndarray) -> FieldStatistics:
        u = np.asarray(u, dtype=np.float64)
        mean = u.mean(axis=0)
        return cls(len(u), mean, np.square(u - mean).sum(axis=0))

    def merge(self, other: FieldStatistics) -> FieldStatistics:
        """Chan, Golub and LeVeque's pairwise update: exact up to rounding, stable for any sizes."""
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        return FieldStatistics(n, self.mean + delta * (other.count / n),
                               self.m2 + other.m2 + np.square(delta) * (self.count * other.count / n))

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.count - 1, 1))


def run_chunk(model_path: str | Path, settings: EnsembleSettings, chunk: int, out: str | Path,
              threads: int | None = None) -> None:
    """Predict one chunk of the draws; resumable from ``<out>.partial.npz`` (saved every few batches)."""
    import torch

    from diffnet.infer import compiled, model_from_state, read_model, resolve_precision

    settings.check()
    rows = settings.chunk_range(chunk)
    if threads:
        torch.set_num_threads(threads)
    exp, state = read_model(model_path)
    problem = problems.from_config(exp)
    params = _subset(draws(problem, settings.n, settings.seed), slice(rows.start, rows.stop))
    model = model_from_state(exp, state)
    arithmetic = resolve_precision(settings.precision, state.get("precision", exp.train.precision))
    bf16 = arithmetic == "bfloat16"
    batch = min(settings.batch, len(rows))
    compile_mode, compile_seconds = "none", 0.0
    if settings.compile:  # before the loop, on its batch shape: the compile time is a cost of its own
        first = _subset(params, slice(0, batch))
        clock = time.perf_counter()
        model, compile_mode = compiled(problem, model, problem.condition({**first, **problem.input_fields(first)}),
                                       exp.train.channels_last, bf16)
        compile_seconds = time.perf_counter() - clock
    partial = Path(str(out) + ".partial.npz")
    key = f"{exp.digest()} {settings} {chunk}"
    saved = _load_partial(partial, key)
    start = int(saved["next"]) if saved else 0
    stats_ = FieldStatistics(int(saved["count"]), saved["mean"], saved["m2"]) if saved else \
        FieldStatistics(0, np.zeros(exp.grid.shape), np.zeros(exp.grid.shape))
    per_sample = {k: list(saved[k]) if saved else [] for k in ("qoi", "residual", "trusted", "seconds")}
    spot_u = list(saved["spot_u"]) if saved else []
    kept = list(saved["u"]) if saved and settings.keep_fields else []
    if start:
        print(f"ensemble chunk {chunk}: resuming at draw {rows.start + start} from {partial}", file=sys.stderr)
    last_save = time.monotonic()
    starts = range(start, len(rows), batch)
    for b in track(starts, len(starts), f"ensemble chunk {chunk} (batches)"):
        part = _subset(params, slice(b, b + batch))
        record = {**part, **problem.input_fields(part)}
        cond = problem.condition(record)
        clock = time.perf_counter()
        u = selfcheck.predict(problem, model, cond, exp.train.channels_last, batch=batch, progress=False, bf16=bf16)
        per_sample["seconds"] += [(time.perf_counter() - clock) / len(u)] * len(u)
        residual = selfcheck.residuals(problem, u, cond)
        trusted, _ = selfcheck.assess(problem, part, residual, state.get("self_check"))
        per_sample["qoi"] += list(problem.qoi(u, part))
        per_sample["residual"] += list(residual)
        per_sample["trusted"] += list(trusted.astype(np.int8))
        stats_ = stats_.merge(FieldStatistics.of(u))
        first = rows.start + b
        spot_u += [u[k] for k in range(len(u)) if first + k < settings.spot_checks]
        if settings.keep_fields:
            kept += list(u.astype(np.float32))
        if time.monotonic() - last_save >= SAVE_SECONDS:
            _save_partial(partial, key, b + batch, stats_, per_sample, spot_u, kept)
            last_save = time.monotonic()
    ds = io.ensemble_chunk_dataset(exp, problem, params, np.arange(rows.start, rows.stop),
                                   {k: np.asarray(v) for k, v in per_sample.items()},
                                   stats_.count, stats_.mean, stats_.m2,
                                   np.asarray(spot_u).reshape(-1, *exp.grid.shape),
                                   np.asarray(kept) if settings.keep_fields else None)
    ds.attrs.update(_settings_attrs(settings))
    ds.attrs["chunk"] = chunk
    ds.attrs["precision"] = arithmetic
    ds.attrs["compile"] = compile_mode
    ds.attrs["compile_seconds"] = compile_seconds
    io.write_dataset(ds, out)
    partial.unlink(missing_ok=True)
    print(f"ensemble chunk {chunk}: {len(rows)} draws, {1e3 * np.mean(per_sample['seconds']):.3g} ms per "
          f"prediction in {arithmetic} (compile: {compile_mode}), "
          f"{len(rows) - int(np.sum(per_sample['trusted']))} untrusted", file=sys.stderr)


def _settings_attrs(settings: EnsembleSettings) -> dict[str, int]:
    return {"ensemble_n": settings.n, "ensemble_seed": settings.seed, "ensemble_chunks": settings.chunks,
            "ensemble_spot_checks": settings.spot_checks, "ensemble_batch": settings.batch,
            "ensemble_keep_fields": int(settings.keep_fields), "ensemble_precision": settings.precision,
            "ensemble_compile": int(settings.compile)}


def _save_partial(path: Path, key: str, next_row: int, st: FieldStatistics, per_sample, spot_u, kept) -> None:
    with io.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, key=key, next=next_row, count=st.count, mean=st.mean, m2=st.m2,
                 spot_u=np.asarray(spot_u), u=np.asarray(kept), **{k: np.asarray(v) for k, v in per_sample.items()})


def _load_partial(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            saved = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        print(f"ensemble: ignoring unreadable {path}; starting the chunk afresh", file=sys.stderr)
        return None
    if str(saved["key"]) != key:
        print(f"ensemble: {path} belongs to another model or settings; starting the chunk afresh", file=sys.stderr)
        return None
    return saved


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Sample mean and its Student-t confidence interval (the draws taken as independent)."""
    values = np.asarray(values, dtype=np.float64)
    m = float(values.mean())
    if len(values) < 2:
        return m, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return m, m - half, m + half


def std_interval(values: np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0
                 ) -> tuple[float, float, float]:
    """Sample standard deviation and a percentile-bootstrap confidence interval (no normality assumed)."""
    values = np.asarray(values, dtype=np.float64)
    s = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    if len(values) < 3:
        return s, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boot = values[rng.integers(0, len(values), size=(resamples, len(values)))].std(axis=1, ddof=1)
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return s, float(lo), float(hi)


def merge(parts: list[str | Path], out: str | Path, *, metrics_path: str | Path | None = None,
          training: list[str | Path] | None = None, figures: str | Path | None = None) -> xr.Dataset:
    """Gather the chunks into ensemble.nc: statistics, per-draw QoIs, spot checks against the reference
    solver, the two Monte Carlo estimates, and (given metrics.nc and the training chain) the break-even."""
    chunks = sorted((io.read_ensemble_chunk(p) for p in parts), key=lambda ds: int(ds.attrs["chunk"]))
    first = chunks[0]
    expected = int(first.attrs["ensemble_chunks"])
    found = [int(ds.attrs["chunk"]) for ds in chunks]
    if found != list(range(expected)):
        raise io.ContractError(f"ensemble chunks {found} given, but the ensemble has chunks 0 to {expected - 1}; "
                               "pass every chunk file once")
    for ds in chunks[1:]:
        for attr in ("config_sha256", "ensemble_n", "ensemble_seed", "ensemble_chunks", "ensemble_batch"):
            if ds.attrs[attr] != first.attrs[attr]:
                raise io.ContractError(f"ensemble chunk {ds.attrs['chunk']} has another {attr} than chunk 0; "
                                       "rerun every chunk with the same model and settings")
    from diffnet.config import config_from_yaml

    exp = config_from_yaml(first.attrs["config"], first.attrs["experiment"])
    problem = problems.from_config(exp)
    axes = [a.name for a in problem.axes]
    stats_ = FieldStatistics(0, np.zeros(exp.grid.shape), np.zeros(exp.grid.shape))
    for ds in chunks:
        stats_ = stats_.merge(FieldStatistics(int(ds.attrs["stat_count"]), ds["u_mean"].values.astype(np.float64),
                                              ds["u_m2"].values.astype(np.float64)))
    per_draw = xr.concat([ds.drop_vars(["u_mean", "u_m2", "u_spot", *axes], errors="ignore") for ds in chunks],
                         dim="sample",
                         data_vars="minimal", coords="minimal", compat="override", join="override",
                         combine_attrs="drop_conflicts")
    spot_u = np.concatenate([ds["u_spot"].values for ds in chunks if "spot" in ds.dims]) if \
        any("spot" in ds.dims for ds in chunks) else np.zeros((0, *exp.grid.shape))
    params = {name: per_draw[name].values for name in problem.parameters}
    qoi = per_draw["qoi"].values
    data = {name: per_draw[name] for name in per_draw.data_vars}
    data["u_mean"] = (tuple(axes), stats_.mean, {**problem.field_attrs,
                                                 "long_name": "mean of the predicted u over the draws"})
    data["u_std"] = (tuple(axes), stats_.std, {**problem.field_attrs,
                                               "long_name": "standard deviation of the predicted u over the draws"})
    estimates = {"network": qoi}
    spot = _spot_checks(problem, exp, params, qoi, spot_u)
    if spot is not None:
        data.update(spot["data"])
        estimates["reference_spot_checks"] = spot["truth_qoi"]
    rows = []
    for source, values in estimates.items():
        m, m_lo, m_hi = mean_interval(values)
        s, s_lo, s_hi = std_interval(values)
        rows.append((source, len(values), m, m_lo, m_hi, s, s_lo, s_hi))
    est = np.array([r[1:] for r in rows], dtype=np.float64)
    q = problem.qoi_attrs
    names = ("draws", "qoi_mean", "qoi_mean_low", "qoi_mean_high", "qoi_std", "qoi_std_low", "qoi_std_high")
    for k, name in enumerate(names):
        what = {"draws": "draws used", "qoi_mean": "mean", "qoi_mean_low": "95% interval low end of the mean",
                "qoi_mean_high": "95% interval high end of the mean", "qoi_std": "standard deviation",
                "qoi_std_low": "95% interval low end of the standard deviation",
                "qoi_std_high": "95% interval high end of the standard deviation"}[name]
        data[f"estimate_{name}"] = ("estimator", est[:, k], {"units": "1" if name == "draws" else q["units"],
                                                             "long_name": f"Monte Carlo estimate of the QoI: {what}"})
    coords = {"sample": per_draw["sample"], **{a.name: xr.DataArray(a.values, dims=a.name, attrs=dict(a.attrs))
                                               for a in problem.axes},
              "estimator": ("estimator", [r[0] for r in rows], {"long_name": "Monte Carlo estimator"})}
    coords.update({c: per_draw[c] for c in per_draw.coords if c not in coords and c != "sample"})
    result = xr.Dataset(data, coords=coords,
                        attrs=io.provenance(exp, "DiffNet ensemble: many queries of a trained model"))
    result.attrs.update({k: v for k, v in first.attrs.items() if k.startswith("ensemble_")})
    result.attrs["problem"] = problem.name
    result.attrs["parameters"] = " ".join(problem.parameters)
    result.attrs["qoi_definition"] = q.get("definition", "")
    result.attrs["intervals"] = ("mean: Student t; standard deviation: percentile bootstrap (2000 resamples); "
                                 "both treat the Sobol draws as independent, which is conservative for the "
                                 "mean of a smooth QoI; the network's intervals do not include its bias, which "
                                 "the spot checks estimate")
    result.attrs["inference_seconds"] = float(per_draw["seconds"].sum())
    # Chunks on different nodes may resolve precision auto differently: the record says so rather than hide it.
    result.attrs["precision"] = ",".join(sorted({str(ds.attrs.get("precision", "float32")) for ds in chunks}))
    result.attrs["compile"] = ",".join(sorted({str(ds.attrs.get("compile", "none")) for ds in chunks}))
    result.attrs["compile_seconds"] = float(sum(float(ds.attrs.get("compile_seconds", 0.0)) for ds in chunks))
    if metrics_path is not None and training:
        result.attrs.update(_ensemble_break_even(metrics_path, training, result))
    io.write_dataset(result, out)
    if figures is not None:
        from diffnet.report import plot_ensemble

        plot_ensemble(result, problem, Path(figures))
    print(summary(result), file=sys.stderr)
    return result


def _spot_checks(problem, exp, params, qoi, spot_u) -> dict | None:
    k = len(spot_u)
    if k == 0:
        return None
    from diffnet.evaluate import all_errors, metric_attrs

    spot_params = _subset(params, slice(0, k))
    truth = problem.solvers.truth
    solved = problem.reference(spot_params, methods=(truth,))
    attrs = metric_attrs(problem)
    errors = all_errors(problem, spot_u, qoi[:k], solved.fields[truth], solved.qoi[truth], spot_params)
    data = {f"spot_{name}": ("spot", errors[name], {**a, "long_name": f"{a['long_name']} of the spot check's "
                                                    f"prediction against the {truth} solution"})
            for name, a in attrs.items()}
    q = problem.qoi_attrs
    data["spot_qoi_reference"] = ("spot", solved.qoi[truth], {**q, "long_name": f"{q['long_name']} ({truth})"})
    data["spot_seconds_reference"] = ("spot", solved.seconds[truth],
                                      {"units": "s", "long_name": f"{truth} solve wall time per spot check"})
    data["spot_sample"] = ("spot", np.arange(k, dtype=np.int32), {"long_name": "draw index of the spot check"})
    return {"data": data, "truth_qoi": solved.qoi[truth]}


def _ensemble_break_even(metrics_path, training, result: xr.Dataset) -> dict[str, str | float]:
    metrics = io.read_metrics(metrics_path)
    if "matched_seconds" not in metrics:
        return {}
    cost = breakeven.training_cost(training)
    # Compiling is paid once per chunk, like training once per model: both are fixed costs of the ensemble.
    fixed = cost.wall_seconds + float(result.attrs.get("compile_seconds", 0.0))
    row = metrics.sel(metric="qoi_error")
    n = int(result.sizes["sample"])
    t_net = float(result.attrs["inference_seconds"]) / n
    t_c = float(row["matched_seconds"])
    n_star = breakeven.break_even(fixed, t_c, t_net)
    head = f"{n} draws: DiffNet {n * t_net:.4g} s of inference + {cost.wall_seconds:.4g} s of training"
    if fixed > cost.wall_seconds:
        head += f" + {fixed - cost.wall_seconds:.4g} s of compiling"
    if math.isnan(t_c):
        verdict = "no classical rung of the ladder is as accurate in the QoI"
    elif math.isinf(n_star):
        verdict = (f"the classical solves of equal QoI error {n * t_c:.4g} s; training never pays off (a classical "
                   "solve is faster than an inference)")
    else:
        verdict = f"the classical solves of equal QoI error {n * t_c:.4g} s; training pays off after " \
                  f"{breakeven.describe(n_star)} queries"
    return {"break_even_queries_qoi": breakeven.describe(n_star), "training_seconds": cost.wall_seconds,
            "break_even": f"{head}; {verdict}"}


def summary(ds: xr.Dataset) -> str:
    lines = []
    for source in ds["estimator"].values:
        row = ds.sel(estimator=source)
        lines.append(f"{source} ({int(row['estimate_draws'])} draws): E[QoI] = {float(row['estimate_qoi_mean']):.6g} "
                     f"[{float(row['estimate_qoi_mean_low']):.6g}, {float(row['estimate_qoi_mean_high']):.6g}], "
                     f"std = {float(row['estimate_qoi_std']):.4g} [{float(row['estimate_qoi_std_low']):.4g}, "
                     f"{float(row['estimate_qoi_std_high']):.4g}]")
    if "spot_qoi_error" in ds:
        lines.append(f"spot checks: QoI relative error median {np.median(ds['spot_qoi_error'].values):.3g}, "
                     f"max {np.max(ds['spot_qoi_error'].values):.3g}; rel L2 median "
                     f"{np.median(ds['spot_rel_l2'].values):.3g}")
    untrusted = int(ds.sizes["sample"] - ds["trusted"].values.sum())
    lines.append(f"{untrusted} of {ds.sizes['sample']} draws untrusted by the self-check")
    if "break_even" in ds.attrs:
        lines.append(str(ds.attrs["break_even"]))
    return "\n".join(lines)

"""``diffnet <stage>``: argv -> stage functions. Bad input becomes one line and a non-zero exit."""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from pathlib import Path

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument error is one line naming the stage and the argument, not a usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


_SAMPLES_HELP = "the samples file written by `diffnet sample` (samples.nc; --ics is its former name)"


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="config YAML (config/config.yaml or a run's config.yaml)")
    p.add_argument("--experiment", help="experiment name (optional when the file defines exactly one)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _vectors(text: str) -> list[list[float]]:
    """'3.3,4.7' -> [[3.3, 4.7]]; '0.5,-1;1,2' -> [[0.5, -1], [1, 2]] (vectors separated by ';')."""
    rows = []
    for chunk in text.split(";"):
        items = [v.strip() for v in chunk.split(",")]
        if any(not v for v in items):
            raise argparse.ArgumentTypeError(f"empty item in '{text}'; write numbers separated by ',' "
                                             "(and vectors by ';'), e.g. 3.3,4.7")
        try:
            rows.append([float(v) for v in items])
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 3.3,4.7, got '{text}'") from None
    return rows


def _scalars(text: str) -> list[list[float]]:
    """A scalar parameter: each comma-separated value is one sample."""
    return [[v] for row in _vectors(text) for v in row]


def _add_config(subparsers) -> None:
    p = subparsers.add_parser("config", help="validate a config and write one experiment's resolved config")
    p.add_argument("--config", help="config YAML file")
    p.add_argument("--yaml", dest="yaml_text", help="config document as YAML text (instead of --config)")
    p.add_argument("--experiment", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_config)


def _add_config_docs(subparsers) -> None:
    p = subparsers.add_parser("config-docs", help="render config/README.md from the config schema")
    p.add_argument("--out", type=Path, help="write here (default: stdout)")
    p.set_defaults(func=_config_docs)


def _add_resources(subparsers) -> None:
    p = subparsers.add_parser("resources",
                              help="memory to request per training rank, for every experiment of a config")
    p.add_argument("--config", required=True, help="config YAML")
    p.add_argument("--ranks", type=_positive_int, default=1,
                   help="ranks sharing the global batch (matters only without micro-batching)")
    p.set_defaults(func=_resources)


def _add_sample(subparsers) -> None:
    p = subparsers.add_parser("sample", help="draw the family's parameters and input fields -> samples.nc")
    _config_args(p)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_sample)


def _add_train(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the generator (run under mpiexec/srun for several ranks)")
    _config_args(p)
    p.add_argument("--samples", "--ics", required=True, type=Path, help=_SAMPLES_HELP)
    p.add_argument("--out-dir", required=True, type=Path, help="writes model.pt, training.csv, checkpoints/")
    p.add_argument("--threads", type=_positive_int, help="torch threads per rank (default: Slurm or cores/ranks)")
    p.add_argument("--init-from", type=Path, help="start from this model.pt (coarse-to-fine); ignored on resume")
    p.add_argument("--stop-after", type=_positive_int, help=argparse.SUPPRESS)
    p.set_defaults(func=_train)


def _add_infer(subparsers) -> None:
    p = subparsers.add_parser("infer", help="predict fields for stored samples or given parameters -> prediction.nc")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--samples", "--ics", type=Path, help=_SAMPLES_HELP + " (use with --split)")
    p.add_argument("--c", type=_scalars, help="burgers: comma-separated IC wavenumbers, e.g. 3.3,4.7")
    p.add_argument("--omega", type=_vectors,
                   help="elliptic families: KL coefficient vectors, ';' between samples, e.g. '0.5,-1,2,0;1,1,0,-2'")
    p.add_argument("--kappa", type=_scalars, help="reaction_diffusion: reaction coefficients, e.g. 2,5")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--inputs", type=Path, help="your own input fields on the model's grid, for families whose "
                   "input is a field (darcy: a NetCDF with nu(sample, y, x))")
    p.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's, i.e. all cores)")
    p.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="auto (default): bfloat16 for a bfloat16-trained model on a CPU with native bf16, else "
                   "float32; bfloat16 on a float32 model is faster but less accurate")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model first (inductor; costs seconds up front, pays off on many "
                   "samples); falls back to eager with one warning where it fails")
    p.set_defaults(func=_infer)


def _add_reference(subparsers) -> None:
    p = subparsers.add_parser("reference", help="the family's classical solutions of the test samples -> reference.nc")
    _config_args(p)
    p.add_argument("--samples", "--ics", required=True, type=Path, help=_SAMPLES_HELP)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's, i.e. all cores)")
    p.set_defaults(func=_reference)


def _add_evaluate(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="errors against the family's truth -> metrics.nc, metrics.csv")
    _config_args(p)
    p.add_argument("--prediction", required=True, type=Path)
    p.add_argument("--reference", required=True, type=Path)
    p.add_argument("--out-nc", required=True, type=Path)
    p.add_argument("--out-csv", required=True, type=Path)
    p.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's, i.e. all cores)")
    p.set_defaults(func=_evaluate)


def _add_scaling(subparsers) -> None:
    p = subparsers.add_parser("scaling", help="step time, throughput, efficiency and loss integrity of training runs "
                       "at several rank counts -> NetCDF, CSV, plot")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="directories with config.yaml and "
                   "training.csv, one per rank count")
    p.add_argument("--mode", required=True, choices=["strong", "weak"])
    p.add_argument("--out-nc", required=True, type=Path)
    p.add_argument("--out-csv", required=True, type=Path)
    p.add_argument("--out-png", required=True, type=Path)
    p.set_defaults(func=_scaling)


def _add_archive(subparsers) -> None:
    p = subparsers.add_parser("archive", help="pack a run with a sha256 MANIFEST, or --verify an archive")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="RUN_DIR DEST, or DEST with --verify")
    p.add_argument("--verify", action="store_true", help="check an archive against its MANIFEST")
    p.set_defaults(func=_archive)


def _add_compare(subparsers) -> None:
    p = subparsers.add_parser("compare", help="table of errors and timings across runs (same problem and grid)")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    p.set_defaults(func=_compare)


def _add_ensemble(subparsers) -> None:
    p = subparsers.add_parser("ensemble",
                              help="predict one chunk of n Sobol draws of the family's parameters -> chunk .nc")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=_positive_int, default=1024, help="draws in the whole ensemble (a power of two)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scrambled Sobol sequence")
    p.add_argument("--chunks", type=_positive_int, default=1, help="chunks the draws are split over")
    p.add_argument("--chunk", type=int, default=0, help="which chunk this job predicts (0-based)")
    p.add_argument("--spot-checks", type=int, default=16, help="first draws also solved by the reference solver")
    p.add_argument("--batch", type=_positive_int, default=16, help="samples per inference batch (a power of two)")
    p.add_argument("--keep-fields", action="store_true", help="also store every predicted field")
    p.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="as `diffnet infer --precision` (auto: the model's training precision where bf16 is native)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model first (tens of seconds, counted in the break-even; pays off only "
                        "for large ensembles on large grids: benchmarks/results/inference_speed.md)")
    p.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's, i.e. all cores)")
    p.set_defaults(func=_ensemble)


def _add_ensemble_merge(subparsers) -> None:
    p = subparsers.add_parser("ensemble-merge", help="gather ensemble chunks -> ensemble.nc (+ spot checks, figures)")
    p.add_argument("chunks", nargs="+", type=Path, metavar="CHUNK_NC")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--figures", type=Path, help="directory for qoi.png, fields.png, spot_checks.csv")
    p.add_argument("--metrics", type=Path, help="the model's metrics.nc: adds the break-even line")
    p.add_argument("--training", nargs="*", type=Path, default=[], metavar="TRAINING_CSV",
                   help="training.csv of the model and of every model it was initialised from")
    p.set_defaults(func=_ensemble_merge)


def _add_report(subparsers) -> None:
    p = subparsers.add_parser("report", help="figures and timing table -> report/")
    p.add_argument("--prediction", required=True, type=Path)
    p.add_argument("--reference", required=True, type=Path)
    p.add_argument("--metrics", required=True, type=Path)
    p.add_argument("--training", required=True, type=Path)
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--stage-benchmarks", type=Path, help="directory of Snakemake benchmark .tsv files to tabulate")
    p.add_argument("--chain", nargs="*", type=Path, default=[], metavar="TRAINING_CSV",
                   help="training.csv of every model this one was initialised from: the break-even counts "
                   "their training too")
    p.set_defaults(func=_report)


# The subcommands in `diffnet --help` order: one parser function per stage.
STAGES = (_add_config, _add_config_docs, _add_resources, _add_sample, _add_train, _add_infer, _add_reference,
          _add_evaluate, _add_scaling, _add_archive, _add_compare, _add_ensemble, _add_ensemble_merge, _add_report)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="diffnet",
        description="Data-free neural PDE solvers (DiffNet) trained data-parallel over MPI. Stages: "
        "sample -> train -> infer; reference -> evaluate -> report.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for add in STAGES:
        add(sub)
    return parser



# One function per stage: argv -> the package. Imports are deferred so `diffnet --help` and argument
# errors are instant (and need no torch).
def _experiment(args: argparse.Namespace):
    from diffnet import config

    return config.load_experiment(args.config, args.experiment)


def _config(args: argparse.Namespace) -> int:
    import yaml

    from diffnet import config
    from diffnet.io import atomic_path

    if (args.config is None) == (args.yaml_text is None):
        raise config.ConfigError("config: give exactly one of --config FILE or --yaml TEXT")
    # --yaml is how the workflow passes one experiment taken out of the validated config (defaults filled,
    # train.init_from naming an experiment outside it): a resolved document.
    doc = config.load_document(args.config) if args.config else \
        config.validate(yaml.safe_load(args.yaml_text), resolved=True)
    if args.experiment not in doc["experiments"]:
        raise config.ConfigError(f"--experiment '{args.experiment}' does not exist "
                                 f"(defined: {', '.join(sorted(doc['experiments']))})")
    exp = config.experiment_from_dict(args.experiment, doc["experiments"][args.experiment])
    with atomic_path(args.out) as tmp:
        tmp.write_text(exp.to_yaml())
    return 0


def _resources(args: argparse.Namespace) -> int:
    from diffnet import config
    from diffnet.resources import parameter_count, samples_in_flight, train_memory_mib

    doc = config.load_document(args.config)
    print("experiment  grid  samples_in_flight_per_rank  parameters  request_MiB_per_rank")
    for name, entry in doc["experiments"].items():
        exp = config.experiment_from_dict(name, entry)
        n0, nx = exp.grid.shape
        print(f"{name}  {n0}x{nx}  {samples_in_flight(exp, args.ranks)}  "
              f"{parameter_count(exp)}  {train_memory_mib(exp, args.ranks)}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from diffnet.sample import sample

    sample(_experiment(args), args.out)
    return 0


def _train(args: argparse.Namespace) -> int:
    import signal

    # Slurm may signal a step while its ranks still import torch: record it now, and the training loop
    # turns it into a checkpoint and the resume exit code at its first step, instead of dying mid-import.
    early: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, lambda received, frame: early.append(received))
    from diffnet.train import train

    result = train(_experiment(args), args.samples, args.out_dir, threads=args.threads, stop_after=args.stop_after,
                   init_from=args.init_from, early_signals=early)
    if result.rank == 0:
        print(f"trained {result.steps} steps on {result.ranks} rank(s) x {result.threads} thread(s) in "
              f"{result.seconds:.1f} s; final loss {result.final_loss:.4e}", file=sys.stderr)
    return 0


def _infer(args: argparse.Namespace) -> int:
    from diffnet.config import ConfigError
    from diffnet.infer import infer

    given = {k: getattr(args, k) for k in ("c", "omega", "kappa") if getattr(args, k) is not None}
    if args.samples is not None and given:
        raise ConfigError("infer: give either --samples FILE or parameter values (--c, --omega, --kappa), not both")
    infer(args.model, args.out, samples_path=args.samples, split=args.split, params=given or None, threads=args.threads,
          precision=args.precision, compile_model=args.compile, inputs_path=args.inputs)
    return 0


def _reference(args: argparse.Namespace) -> int:
    from diffnet.reference import reference

    _limit_threads(args.threads)
    reference(_experiment(args), args.samples, args.out)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from diffnet.evaluate import evaluate, summary

    _limit_threads(args.threads)
    print(summary(evaluate(_experiment(args), args.prediction, args.reference, args.out_nc, args.out_csv)))
    return 0


def _archive(args: argparse.Namespace) -> int:
    from diffnet.archive import archive, verify
    from diffnet.config import ConfigError

    if args.verify:
        if len(args.paths) != 1:
            raise ConfigError("archive --verify takes exactly one archive directory")
        problems = verify(args.paths[0])
        for line in problems:
            print(line, file=sys.stderr)
        print(f"{args.paths[0]}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if len(args.paths) != 2:
        raise ConfigError("archive takes RUN_DIR DEST (or --verify DEST)")
    print(archive(*args.paths))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from diffnet.compare import compare

    print(compare(args.runs).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def _config_docs(args: argparse.Namespace) -> int:
    from diffnet.config import schema
    from diffnet.config_docs import render

    page = render(schema())
    if args.out is None:
        print(page, end="")
        return 0
    from diffnet.io import atomic_path

    with atomic_path(args.out) as tmp:
        tmp.write_text(page)
    return 0


def _limit_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _scaling(args: argparse.Namespace) -> int:
    from diffnet.scaling import study

    ds = study(args.runs, args.mode, args.out_nc, args.out_csv, args.out_png)
    print(ds[["step_seconds", "samples_per_second", "efficiency", "loss_max_rel_deviation"]].to_dataframe())
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from diffnet.ensemble import EnsembleSettings, run_chunk

    settings = EnsembleSettings(n=args.n, seed=args.seed, chunks=args.chunks, spot_checks=args.spot_checks,
                                keep_fields=args.keep_fields, batch=args.batch, precision=args.precision,
                                compile=args.compile)
    settings.check()
    settings.chunk_range(args.chunk)
    run_chunk(args.model, settings, args.chunk, args.out, threads=args.threads)
    return 0


def _ensemble_merge(args: argparse.Namespace) -> int:
    from diffnet.ensemble import merge

    merge(args.chunks, args.out, metrics_path=args.metrics, training=args.training, figures=args.figures)
    return 0


def _report(args: argparse.Namespace) -> int:
    from diffnet.report import report

    report(args.prediction, args.reference, args.metrics, args.training, args.out_dir, args.stage_benchmarks,
           chain=args.chain)
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"diffnet: warning: {message}\n"


def _usage_errors() -> tuple[type[Exception], ...]:
    # Imported only once something failed: these modules pull in torch and xarray, which `diffnet --help`,
    # `config` and `config-docs` do not need.
    from diffnet.archive import ArchiveError
    from diffnet.checkpoint import CheckpointError
    from diffnet.compare import CompareError
    from diffnet.config import ConfigError
    from diffnet.io import ContractError
    from diffnet.scaling import ScalingError

    return ConfigError, ContractError, CheckpointError, ArchiveError, CompareError, ScalingError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        return args.func(args)
    except Exception as exc:
        from diffnet.checkpoint import TrainingLocked

        if isinstance(exc, TrainingLocked):  # every rank exits by itself: nothing to abort, one line to print
            if str(exc):
                print(f"diffnet {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, _usage_errors()):
            return _fail(args.command, str(exc), EXIT_USAGE)
        from diffnet.io import OutputError

        if isinstance(exc, OutputError):
            return _fail(args.command, str(exc), 1)
        from diffnet.train import TrainingDiverged, TrainingStopped

        if isinstance(exc, TrainingStopped):
            print(f"diffnet {args.command}: {exc}", file=sys.stderr)
            return exc.exit_code
        if isinstance(exc, TrainingDiverged):
            return _fail(args.command, str(exc), 1)
        traceback.print_exc()
        return _fail(args.command, f"unexpected {type(exc).__name__}: {exc}", 1)


def _fail(command: str, message: str, code: int) -> int:
    print(f"diffnet {command}: error: {message}", file=sys.stderr)
    if command == "train":
        # A rank that fails alone must take the others down, or they wait forever in the all-reduce.
        from diffnet.parallel.comm import abort_world

        abort_world(code)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""``diffnet <stage>``: argv -> stage functions. Bad input becomes one line and a non-zero exit."""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from pathlib import Path

EXIT_USAGE = 2


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


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 3.3,4.7, got '{text}'") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffnet",
        description="Data-free neural PDE solvers (DiffNet) trained data-parallel over MPI. Stages: "
        "sample -> train -> infer; reference -> evaluate -> report.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")

    p = sub.add_parser("config", help="validate a config and write one experiment's resolved config")
    p.add_argument("--config", help="config YAML file")
    p.add_argument("--yaml", dest="yaml_text", help="config document as YAML text (instead of --config)")
    p.add_argument("--experiment", required=True)
    p.add_argument("--out", required=True, type=Path)

    p = sub.add_parser("resources", help="memory to request per training rank, for every experiment of a config")
    p.add_argument("--config", required=True, help="config YAML")
    p.add_argument("--ranks", type=_positive_int, default=1,
                   help="ranks sharing the global batch (matters only without micro-batching)")

    p = sub.add_parser("sample", help="draw initial conditions -> ics.nc")
    _config_args(p)
    p.add_argument("--out", required=True, type=Path)

    p = sub.add_parser("train", help="train the generator (run under mpiexec/srun for several ranks)")
    _config_args(p)
    p.add_argument("--ics", required=True, type=Path)
    p.add_argument("--out-dir", required=True, type=Path, help="writes model.pt, training.csv, checkpoints/")
    p.add_argument("--threads", type=_positive_int, help="torch threads per rank (default: Slurm or cores/ranks)")
    p.add_argument("--init-from", type=Path, help="start from this model.pt (coarse-to-fine); ignored on resume")
    p.add_argument("--stop-after", type=_positive_int, help=argparse.SUPPRESS)

    p = sub.add_parser("infer", help="predict fields for test ICs or given parameters -> prediction.nc")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ics", type=Path, help="ics.nc (use with --split)")
    src.add_argument("--c", type=_float_list, help="comma-separated IC parameters, e.g. 3.3,4.7")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--threads", type=_positive_int)

    p = sub.add_parser("reference", help="exact and FEM solutions of the test ICs -> reference.nc")
    _config_args(p)
    p.add_argument("--ics", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)

    p = sub.add_parser("evaluate", help="errors against the exact solution -> metrics.nc, metrics.csv")
    _config_args(p)
    p.add_argument("--prediction", required=True, type=Path)
    p.add_argument("--reference", required=True, type=Path)
    p.add_argument("--out-nc", required=True, type=Path)
    p.add_argument("--out-csv", required=True, type=Path)

    p = sub.add_parser("archive", help="pack a run with a sha256 MANIFEST, or --verify an archive")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="RUN_DIR DEST, or DEST with --verify")
    p.add_argument("--verify", action="store_true", help="check an archive against its MANIFEST")

    p = sub.add_parser("compare", help="table of errors and timings across runs (same problem and grid)")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")

    p = sub.add_parser("report", help="figures and timing table -> report/")
    p.add_argument("--prediction", required=True, type=Path)
    p.add_argument("--reference", required=True, type=Path)
    p.add_argument("--metrics", required=True, type=Path)
    p.add_argument("--training", required=True, type=Path)
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--stage-benchmarks", type=Path, help="directory of Snakemake benchmark .tsv files to tabulate")
    return parser


def _run(args: argparse.Namespace) -> int:
    # Imports are deferred so `diffnet --help` and argument errors are instant.
    from diffnet import config

    if args.command == "config":
        import yaml

        if (args.config is None) == (args.yaml_text is None):
            raise config.ConfigError("config: give exactly one of --config FILE or --yaml TEXT")
        doc = config.load_document(args.config) if args.config else config.validate(yaml.safe_load(args.yaml_text))
        if args.experiment not in doc["experiments"]:
            raise config.ConfigError(f"--experiment '{args.experiment}' does not exist "
                                     f"(defined: {', '.join(sorted(doc['experiments']))})")
        exp = config.experiment_from_dict(args.experiment, doc["experiments"][args.experiment])
        from diffnet.io import atomic_path

        with atomic_path(args.out) as tmp:
            tmp.write_text(exp.to_yaml())
        return 0

    if args.command == "resources":
        from diffnet.resources import parameter_count, samples_in_flight, train_memory_mib

        doc = config.load_document(args.config)
        print("experiment  grid  samples_in_flight_per_rank  parameters  request_MiB_per_rank")
        for name, entry in doc["experiments"].items():
            exp = config.experiment_from_dict(name, entry)
            print(f"{name}  {exp.grid.nt}x{exp.grid.nx}  {samples_in_flight(exp, args.ranks)}  "
                  f"{parameter_count(exp)}  {train_memory_mib(exp, args.ranks)}")
        return 0
    if args.command == "infer":
        from diffnet.infer import infer

        infer(args.model, args.out, ics_path=args.ics, split=args.split, params=args.c, threads=args.threads)
        return 0
    if args.command == "archive":
        from diffnet.archive import archive, verify

        if args.verify:
            if len(args.paths) != 1:
                raise config.ConfigError("archive --verify takes exactly one archive directory")
            problems = verify(args.paths[0])
            for line in problems:
                print(line, file=sys.stderr)
            print(f"{args.paths[0]}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            return 1 if problems else 0
        if len(args.paths) != 2:
            raise config.ConfigError("archive takes RUN_DIR DEST (or --verify DEST)")
        print(archive(*args.paths))
        return 0
    if args.command == "compare":
        from diffnet.compare import compare

        print(compare(args.runs).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        return 0
    if args.command == "report":
        from diffnet.report import report

        report(args.prediction, args.reference, args.metrics, args.training, args.out_dir, args.stage_benchmarks)
        return 0

    exp = config.load_experiment(args.config, args.experiment)
    if args.command == "sample":
        from diffnet.sample import sample

        sample(exp, args.out)
    elif args.command == "train":
        from diffnet.train import train

        result = train(exp, args.ics, args.out_dir, threads=args.threads, stop_after=args.stop_after,
                       init_from=args.init_from)
        if result.rank == 0:
            print(f"trained {result.steps} steps on {result.ranks} rank(s) x {result.threads} thread(s) in "
                  f"{result.seconds:.1f} s; final loss {result.final_loss:.4e}", file=sys.stderr)
    elif args.command == "reference":
        from diffnet.reference import reference

        reference(exp, args.ics, args.out)
    elif args.command == "evaluate":
        from diffnet.evaluate import evaluate, summary

        print(summary(evaluate(exp, args.prediction, args.reference, args.out_nc, args.out_csv)))
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"diffnet: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    from diffnet.archive import ArchiveError
    from diffnet.checkpoint import CheckpointError
    from diffnet.compare import CompareError
    from diffnet.config import ConfigError
    from diffnet.io import ContractError

    expected = (ConfigError, ContractError, CheckpointError, ArchiveError, CompareError)
    try:
        return _run(args)
    except expected as exc:
        return _fail(args.command, str(exc), EXIT_USAGE)
    except Exception as exc:
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

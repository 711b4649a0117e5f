"""Learning error (network vs its scheme's discrete solution) against the grid, from accuracy reports.

    python benchmarks/plot_learning_error.py --series "pointwise=benchmarks/results/accuracy.md" \\
        --series "preconditioned=benchmarks/results/accuracy_preconditioned.md" --out docs/learning_error.png

Reads the network rows of each `accuracy.py` report (several reports per series may be joined with
commas) and draws the median and max over the held-out ICs per grid, with the scheme's own error
against the exact solution for scale.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# | 256^2 | tvd2_cn | disc-exact med / max | L1 | net-disc med / max | ...
ROW = re.compile(r"^\| (\d+)\^2 \| (\w+) \| ([\d.]+) / [\d.]+ \| [^|]+ \| ([\d.]+) / ([\d.]+) \|")


def read_rows(paths: list[Path]) -> dict[int, tuple[float, float, float]]:
    """grid -> (scheme vs exact median, network vs discrete median, max) from the reports' tables."""
    rows = {}
    for path in paths:
        for line in path.read_text().splitlines():
            m = ROW.match(line)
            if m:
                rows[int(m[1])] = (float(m[3]), float(m[4]), float(m[5]))
    if not rows:
        raise SystemExit(f"plot_learning_error: no network rows in {', '.join(map(str, paths))}")
    return dict(sorted(rows.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", action="append", required=True, metavar="LABEL=REPORT[,REPORT]")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    scheme = {}
    for item in a.series:
        label, _, files = item.partition("=")
        if not files:
            p.error(f"--series '{item}': expected LABEL=REPORT[,REPORT]")
        rows = read_rows([Path(f) for f in files.split(",")])
        grids = list(rows)
        line, = ax.plot(grids, [100 * rows[n][1] for n in grids], "o-", label=f"{label}: network vs scheme")
        ax.plot(grids, [100 * rows[n][2] for n in grids], "v:", color=line.get_color(), alpha=0.6,
                label=f"{label}: max over held-out ICs")
        scheme.update({n: rows[n][0] for n in grids})
    ax.plot(list(scheme), [100 * v for v in scheme.values()], "k--", label="scheme vs exact (discretisation)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(scheme), [f"{n}^2" for n in scheme])
    ax.set_xlabel("grid (nodes)")
    ax.set_ylabel("rel L2 error (%), held-out c")
    ax.set_title("Burgers, tvd2_cn: learning error against the grid")
    ax.grid(True, which="both", alpha=0.3)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

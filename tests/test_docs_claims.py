"""Docs that cannot drift: every result README.md and docs/*.md quote is checked against its report.

The unit of a claim is a *block*: a paragraph, a list item (with its continuation lines) or a table row
(a table also inherits the reports named in the paragraph just above it). Fenced code and headings are
not claims. A block *sources* its figures by naming committed reports in benchmarks/results/: a link
(`[engine.md](../benchmarks/results/engine.md)`) or the bare file name (`engine.md`, a glob such as
`learning_curve_256_cascade_*.md` names every match).

1. Sourced blocks: every number left after the set-up exclusions (SETUP below: grids such as 256^2,
   ranks, threads, cores, steps, seeds, depths, dates, versions, commits; anything in `code` or in a
   link target) must appear in one of the named reports (RESULT lines, tables, prose), equal up to the
   doc's rounding: the doc's digits are the report's value rounded to the doc's last digit, in the
   report's unit or, by the doc's unit, a percentage from a fraction (0.41% vs 0.0041; a range's unit
   covers both ends, 1.1-1.8%) and ms, minutes and hours from seconds.
   So 0.93 matches 0.930, 2.0% matches 0.01992, 59,000 matches 5.892e+04; derived figures (a ratio of
   two report values) do not match: quote the report's own numbers instead.
2. Unsourced blocks: a number that looks measured (a decimal, or a number with a unit such as s, ms,
   min, %, x, KiB/MiB/GiB, GFLOP/s, core-hours) fails unless the block names a report or is listed in
   EXEMPT (a phrase and its reason).
"""

from __future__ import annotations

import glob
import math
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# A number: 59,000 / 0.930 / 5.892e+04 / 3e-3. Ranges like 0.92-0.95 are two numbers.
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.]*\w)")
NUMBER_IN_TEXT = re.compile(r"(?<![\w.^])(\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?(?:e[+-]?\d+)?)")
UNIT = (
    r"(?:\s?(?:%|x\b|s\b|ms\b|min\b|minutes?\b|h\b|hours?\b|core-hours\b|KiB|MiB|GiB|KB\b|MB\b|GB\b"
    r"|GFLOP/s|samples/s))"
)
MEASURED = re.compile(r"(?<![\w.^/])\d+(?:\.\d+)?" + UNIT + r"|(?<![\w.^/-])\d*\.\d+(?![\w.])")
REPORT_NAME = re.compile(r"(?<![\w/])(?:benchmarks/results/|\.\./benchmarks/results/)?([\w*.-]+\.md)\b")

# Set-up, not results: removed from a block before its numbers are read. Each is a pattern and why.
SETUP = [
    (r"`[^`]*`", "code: config keys, commands, file names"),
    (r"\]\([^)]*\)", "link targets"),
    (r"https?://\S+", "URLs"),
    (r"!\[[^\]]*\]", "image alt text"),
    (r"\b[\w*.-]+\.(?:md|py|png|nc|csv|yaml|pt)\b", "file names"),
    (r"\d+\s?(?:\^|\*\*)\s?\d+|\d+²|\d+\s?x\s?\d+\s?(?:grid|nodes)", "grid sizes (256^2, 2^d)"),
    (r"\b\d+(?:\s?(?:->|→)\s?\d+(?:\^2)?)+", "grid or rank chains (64 -> 128 -> 256, 1 -> 2 ranks)"),
    (r"\b\d+\s?(?:ranks?|threads?|cores?|processe?s?|single-core|CPUs?)\b", "ranks, threads, cores"),
    (r"\b(?:rank|thread|core|process)\s?x\s?\d+", "ranks x threads"),
    (r"\b\d+\s?x\s?\d+\s?(?:thread|core)", "ranks x threads"),
    (
        r"\b(?:depth|batch|seed|seeds|micro-batch|base|level|levels|n|lr|c|omega|kappa|nx|nt|eta|omega_max)\s?[=:]?\s?"
        r"\d+(?:\.\d+)?(?:e-?\d+)?",
        "model and recipe settings",
    ),
    (
        r"\b\d+\s?(?:seeds?|steps?|held-out|ICs?|draws?|modes?|chunks?|samples?(?! ?/)|rungs?|stages?|"
        r"epochs?|layers?|channels?|inner|runs?|levels?|tests?|passed|sessions?|machines?|times)\b",
        "counts of set-up",
    ),
    (r"\b(?:arXiv:)?\d{4}\.\d{5}\b", "arXiv ids"),
    (r"\b10\.\d+\.\d+\.\d+/\d+", "addresses"),
    (r"\bat most (?:about )?\d+ min(?:utes)?\b", "time limits asked of a script"),
    (r"\btested (?:to|within) \d+(?:\.\d+)?%?", "test tolerances"),
    (r"\b0\.\d+ quantile\b", "calibration settings"),
    (r"\b\d+ MiB all-reduce\b", "message sizes"),
    (r"\b(?:19|20)\d\d(?:-\d\d(?:-\d\d)?)?(?:\s\d\d:\d\d)?", "years and dates"),
    (r"\b\d+\.\d+\.\d+\b|\b(?:Python|PyTorch|torch|Slurm|Debian|SC)\s?(?:>=\s?)?\d+(?:\.\d+)?", "versions"),
    (r"\bc in \[\d+(?:\.\d+)?, \d+(?:\.\d+)?\]|\[\d+, \d+\]", "parameter ranges"),
    (r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b", "commit ids"),
    (
        r"(?:avx|AVX)-?\d+\w*|\bbf16\b|\bfp32\b|float32|float64|bfloat16|\bL[12]\b|\bH1\b|\b[A-Z][a-z]*\d\w*",
        "names with digits (AVX-512, bf16, L2, Q1)",
    ),
    (
        r"\b(?:first|second)-order|\b\d+(?:st|nd|rd|th)\b|\b\d+-(?:point|mode|node|cell|rank|core|bit)\b",
        "orders and adjectives",
    ),
    (r"(?:--?\w[\w-]*)[ =]\S+", "CLI options"),
]
SETUP_RE = [(re.compile(p), why) for p, why in SETUP]

# Phrases whose numbers are not checked, by (file, regex over the block's text): each with its reason.
# Keep this list short: a new measurement belongs in a report. The phrase is cut from the block before
# both checks, so the rest of the block is still checked.
EXEMPT = {
    ("docs/testing.md", r"353 tests\s+in 228 s.*"): "test-suite durations, measured on fresh clones (commit named)",
    ("docs/testing.md", r"`bash \.ci/run` on a fresh clone at commit 2f02d8b.*"): "test-suite durations (commit named)",
    ("docs/testing.md", r"`bash \.ci/run` on a fresh clone at commit ab4700a.*"): "test-suite durations (commit named)",
    ("docs/testing.md", r"`bash \.ci/run` on a fresh clone \(commit 15dc827.*"): "test-suite durations (commit named)",
    ("README.md", r"ran 356 tests in\s+255 s in a fresh clone of [0-9a-f]+"): "test-suite duration (commit named)",
    (
        "docs/high-resolution.md",
        r"about 335 core-hours.*?at perfect efficiency",
    ): "arithmetic on the quoted 3000 steps x 201 s x 2 cores",
    ("docs/high-resolution.md", r"\| (?:682|2203|2871) MiB \|"): "what `diffnet resources` prints, not a measurement",
    ("docs/numerics.md", r"an FEM taking 23 s and 396 s"): "the source talk's own figures, quoted, not measured here",
    ("docs/high-resolution.md", r"SIGUSR1 120 s before|120 min in the profile"): "Slurm settings, not measurements",
    ("docs/slurm.md", r"\*\*Time limits\.\*\*.*"): "Slurm settings and defaults (USR1@120, KillWait), not measurements",
}


@dataclass
class Block:
    path: Path
    line: int
    text: str
    reports: list[Path] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def report_paths(text: str) -> list[Path]:
    found = []
    for name in REPORT_NAME.findall(text):
        for p in sorted(glob.glob(str(RESULTS / name))):
            if Path(p) not in found:
                found.append(Path(p))
    return found


def blocks(path: Path, text: str | None = None) -> list[Block]:
    """Paragraphs, list items and table rows of a markdown file, fenced code and headings left out."""
    lines = (path.read_text() if text is None else text).splitlines()
    out: list[Block] = []
    cur: Block | None = None
    fenced = False
    table_reports: list[Path] | None = None
    prev_para: Block | None = None

    def close():
        nonlocal cur, prev_para
        if cur is not None:
            cur.reports = report_paths(cur.text)
            out.append(cur)
            prev_para = cur
        cur = None

    for i, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("```"):
            close()
            fenced = not fenced
            continue
        if fenced:
            continue
        if s.startswith("|"):
            if cur is not None:
                close()
            if table_reports is None:
                table_reports = prev_para.reports if prev_para is not None else []
                header = s
                table_reports = table_reports + report_paths(header)
                continue  # the header row names columns
            if set(s) <= set("|-: "):
                continue
            row = Block(path, i, s)
            row.reports = report_paths(s) or table_reports
            out.append(row)
            continue
        table_reports = None
        if not s or s.startswith("#"):
            close()
            if s.startswith("#"):
                prev_para = None
            continue
        if re.match(r"([-*]|\d+\.)\s", s):
            close()
            cur = Block(path, i, s)
            continue
        if cur is None:
            cur = Block(path, i, s)
        else:
            cur.text += " " + s
    close()
    return out


def strip_setup(text: str) -> str:
    for rx, _ in SETUP_RE:
        text = rx.sub(" ", text)
    return text


@dataclass(frozen=True)
class Quoted:
    token: str
    value: float
    half_ulp: float
    unit: str


_UNITS = r"(%|x\b|ms\b|s\b|min\b|minutes?\b|h\b|hours?\b|core-hours\b|KiB|MiB|GiB)"
QUOTED_UNIT = re.compile(r"\s?" + _UNITS)
RANGE_UNIT = re.compile(r"\s?[-–]\s?\d[\d.,]*\s?" + _UNITS)


def quoted_numbers(text: str) -> list[Quoted]:
    text = strip_setup(text)
    out = []
    for m in NUMBER_IN_TEXT.finditer(text):
        tok = m.group(1)
        plain = tok.replace(",", "")
        value = float(plain)
        mantissa = plain.lower().split("e")[0]
        exp = int(plain.lower().split("e")[1]) if "e" in plain.lower() else 0
        if "." in mantissa:
            last = -len(mantissa.split(".")[1])
        else:  # trailing zeros of an integer are not significant: 59,000 is 59 thousand
            stripped = mantissa.rstrip("0")
            last = len(mantissa) - len(stripped) if stripped and len(mantissa) > 2 else 0
        rest = text[m.end() : m.end() + 40]
        unit = QUOTED_UNIT.match(rest) or RANGE_UNIT.match(rest)  # 1.1-1.8%: both ends are percentages
        out.append(Quoted(tok, value, 0.5 * 10.0 ** (last + exp), unit.group(1) or "" if unit else ""))
    return out


@cache
def report_values(path: Path) -> tuple[float, ...]:
    """The numbers of a report: its RESULT lines, table rows and the prose lines that state results (the
    title line, with the date and the run's mode, is left out)."""
    vals = []
    for line in path.read_text().splitlines():
        s = line.strip()
        if not s.startswith("# "):
            for tok in NUMBER.findall(s.replace("−", "-")):
                try:
                    vals.append(float(tok.replace(",", "")))
                except ValueError:
                    pass
    return tuple(vals)


def matches(q: Quoted, values: tuple[float, ...]) -> bool:
    scales = [1.0]  # the report's own unit; a percentage may be a fraction there, ms may be seconds
    if q.unit == "%":
        scales += [100.0]
    if q.unit == "ms":
        scales += [1000.0]
    if q.unit in ("min", "minute", "minutes"):
        scales += [1 / 60]
    if q.unit in ("h", "hour", "hours", "core-hours"):
        scales += [1 / 3600]
    tol = q.half_ulp * (1 + 1e-9) + 1e-12
    return any(math.isfinite(v) and abs(v * f - q.value) <= tol for v in values for f in scales)


def unsupported(block: Block) -> list[str]:
    values = tuple(v for r in block.reports for v in report_values(r))
    return [q.token + q.unit for q in quoted_numbers(claims(block)) if not matches(q, values)]


def measured_looking(text: str) -> list[str]:
    return [m.group(0) for m in MEASURED.finditer(strip_setup(text))]


def claims(block: Block) -> str:
    """The block's text less its EXEMPT phrases."""
    rel = str(block.path.relative_to(REPO))
    text = block.text
    for f, rx in EXEMPT:
        if f == rel:
            text = re.sub(rx, " ", text)
    return text


def all_blocks() -> list[Block]:
    return [b for p in DOCS for b in blocks(p)]


# ---------------------------------------------------------------------------------------------- tests


def test_reports_named_exist():
    """A report named as a source must be committed (a typo would otherwise silence the check)."""
    missing = []
    for b in all_blocks():
        for name in REPORT_NAME.findall(b.text):
            if "benchmarks/results/" in b.text.split(name)[0][-40:] and not glob.glob(str(RESULTS / name)):
                missing.append(f"{b.where}: {name}")
    assert not missing, "named reports that are not committed:\n" + "\n".join(missing)


def test_every_quoted_number_is_in_its_report():
    bad = []
    for b in all_blocks():
        if b.reports:
            wrong = unsupported(b)
            if wrong:
                names = ", ".join(r.name for r in b.reports)
                bad.append(f"{b.where}: {wrong} not in {names}\n    {b.text[:160]}")
    assert not bad, f"{len(bad)} blocks quote numbers their reports do not hold:\n" + "\n".join(bad)


def test_no_measured_number_without_a_report():
    bad = []
    for b in all_blocks():
        if not b.reports:
            found = measured_looking(claims(b))
            if found:
                bad.append(f"{b.where}: {found}\n    {b.text[:160]}")
    assert not bad, f"{len(bad)} blocks quote measured-looking numbers and name no report:\n" + "\n".join(bad)


def test_exemptions_are_used():
    texts = [(str(b.path.relative_to(REPO)), b.text) for b in all_blocks()]
    unused = [k for k in EXEMPT if not any(f == k[0] and re.search(k[1], t) for f, t in texts)]
    assert not unused, f"stale EXEMPT entries: {unused}"


def test_claims_counted():
    """The check is not vacuous: README.md and docs/ quote sourced figures, and each is checked."""
    n = {p.name: sum(len(quoted_numbers(claims(b))) for b in blocks(p) if b.reports) for p in DOCS}
    assert n["README.md"] >= 20 and sum(n.values()) >= 300, n


# Self-tests: the checks must be able to fail.


@pytest.fixture
def fake_doc(tmp_path):
    def make(text):
        p = REPO / "docs" / "_synthetic_.md"  # a path under the repo, never written
        return blocks(p, text)

    return make


def test_self_wrong_number_is_flagged(fake_doc):
    # engine.md has efficiencies 0.853 and 0.959; 0.77 is in none of its RESULT lines or tables.
    (b,) = fake_doc("Strong-scaling efficiency 0.77 at 256^2 on 2 ranks (`engine.md`).")
    assert b.reports == [RESULTS / "engine.md"]
    assert unsupported(b) == ["0.77"]
    (ok,) = fake_doc("Strong-scaling efficiency 0.85 and 0.959 ([engine.md](../benchmarks/results/engine.md)).")
    assert unsupported(ok) == []


def test_self_rounding_and_scale():
    values = (0.01992, 5.892e04, 1.371, 240.7)
    assert matches(quoted_numbers("2.0%")[0], values)
    assert matches(quoted_numbers("about 59,000 queries")[0], values)
    assert matches(quoted_numbers("1.37x")[0], values)
    assert matches(quoted_numbers("4.0 min")[0], values)
    assert not matches(quoted_numbers("2.1%")[0], values)
    assert matches(quoted_numbers("1.4x")[0], values)  # 1.371 to the doc's one decimal
    assert not matches(quoted_numbers("1.36x")[0], values)
    assert not matches(quoted_numbers("2.35x")[0], values)  # 240.7 / 102.5: derived, not quoted


def test_self_unsourced_number_is_flagged(fake_doc):
    (b,) = fake_doc("Training took 9 minutes and reached 0.058 (max 0.067).")
    assert b.reports == []
    assert measured_looking(b.text) == ["9 minutes", "0.058", "0.067"]
    (setup,) = fake_doc("Run on 2 ranks x 1 thread at 256^2 with `--steps 400`, batch 8 and 3 seeds.")
    assert measured_looking(setup.text) == [] and quoted_numbers(setup.text) == []


def test_self_table_inherits_report(fake_doc):
    rows = fake_doc("Measured (`engine.md`):\n\n| grid | eff |\n|---|---|\n| 128^2 | 0.853 |\n| 256^2 | 0.77 |\n")
    assert [unsupported(r) for r in rows[1:]] == [[], ["0.77"]]

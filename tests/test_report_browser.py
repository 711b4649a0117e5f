"""The HTML report in a real browser: headless Chromium renders it, and every figure is in it.

Marked `browser` (needs /usr/bin/chromium: `apt-get install chromium`); `make test` installs Chromium and
runs these when it can, and says so when it cannot.
"""

import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import BIN, REPO, write_scaling_config

FIGURES = ("fields.png", "error_vs_parameter.png", "loss.png", "self_check.png", "timing.csv", "metrics.csv",
           "scaling.png", "scaling.csv")
# Opens the scaling study's figure once the report's app has rendered: the screenshot shows what a user
# sees after clicking "scaling" and its plot.
SHOW_SCALING = """<script>setTimeout(() => {
  const [, entry] = Object.entries(results).find(([path]) => path.endsWith("scaling.png"));
  app.showCategory("scaling");
  app.setView({content: "img", contentPath: entry.data_uri});
}, 1000);</script>"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(*args, profile) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium not found: apt-get install chromium (make test does this as root)")
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.browser
@pytest.mark.slow
def test_html_report_renders_with_every_figure(tmp_path):
    write_scaling_config(tmp_path / "config.yaml")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}
    base = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
            str(tmp_path / "config.yaml"), "--cores", "2"]
    for extra in ([], ["--report", str(tmp_path / "report.html")]):
        proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "report.html").as_uri()
    dom = chromium("--virtual-time-budget=15000", "--dump-dom", page, profile=tmp_path / "chrome").stdout
    app = re.search(r'<div id="app">(.*)', dom, re.S)
    assert app and "<nav" in app.group(1), "the report's app did not render"
    text = re.sub(r"<[^>]+>", " ", app.group(1))
    assert "tiny" in text and "scaling" in text, "a category is missing"
    for name in FIGURES:
        assert f'"filename": "{name}"' in dom, f"{name} is not in the report"
        if name.endswith(".png"):  # embedded as a data URI with a real payload
            payload = re.search(rf"filename={re.escape(name)};base64,([A-Za-z0-9+/=]+)", dom)
            assert payload and len(payload.group(1)) > 10_000, f"{name} has no embedded image"
    staged = tmp_path / "report_scaling.html"
    html = (tmp_path / "report.html").read_text()
    cut = html.rindex("</body>")  # the page's own end (embedded scripts contain the string too)
    staged.write_text(html[:cut] + SHOW_SCALING + html[cut:])
    shot = tmp_path / "report.png"
    chromium("--window-size=1400,900", "--virtual-time-budget=15000", f"--screenshot={shot}", staged.as_uri(),
             profile=tmp_path / "chrome")
    assert shot.is_file() and shot.stat().st_size > 10_000
    if os.environ.get("DIFFNET_SCREENSHOT"):  # refresh the README's picture: DIFFNET_SCREENSHOT=docs/report.png
        shutil.copy(shot, REPO / os.environ["DIFFNET_SCREENSHOT"])

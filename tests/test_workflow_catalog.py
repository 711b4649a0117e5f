"""What a Snakemake user or a workflow catalog relies on: generated config docs, environment files that
match the tested pins, a driver without torch, deployment as a module, and threads that follow the ranks."""

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from diffnet.config import schema, validate
from diffnet.config_docs import families, render
from tests.conftest import BIN, REPO, write_config
from tests.test_pipeline import _snakemake


def _lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


LOCK = _lock(REPO / "envs" / "requirements.lock")


def test_config_readme_is_the_schema_rendered():
    page = (REPO / "config" / "README.md").read_text()
    assert page == render(schema()), "config/README.md is stale: run `diffnet config-docs --out config/README.md`"
    example = re.search(r"```yaml\n(.*?)```", page, re.S).group(1)
    validate(yaml.safe_load(example))
    family_enum = schema()["$defs"]["experiment"]["properties"]["problem"]["properties"]["name"]["enum"]
    assert sorted(families(schema())) == sorted(family_enum)


@pytest.mark.parametrize("env_file", ["diffnet.yaml", "train.yaml"])
def test_conda_envs_pin_what_ci_tests(env_file):
    # conda itself cannot run here (no conda channel is reachable): everything up to it is checked.
    env = yaml.safe_load((REPO / "envs" / env_file).read_text())
    assert "nodefaults" in env["channels"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = dict(p.split("==") for p in pip if not p.startswith("-"))
    assert pins, env_file
    for name, version in pins.items():
        assert LOCK.get(name.lower().replace("_", "-")) == version, f"{env_file}: {name}=={version} not in the lock"
    compute = yaml.safe_load("[" + re.search(r"compute = \[(.*?)\]", (REPO / "pyproject.toml").read_text(),
                                                  re.S).group(1) + "]")
    wanted = {re.split(r"[<>=]", req)[0].lower() for req in compute}
    assert wanted <= {n.lower() for n in pins}, f"{env_file} misses {wanted - {n.lower() for n in pins}}"
    assert not any(p.startswith("-e") or p.startswith(".") for p in pip), "no install from a relative path"
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    if env_file == "train.yaml":
        assert f"mpi4py={LOCK['mpi4py']}" in conda and any(d.startswith("mpich=") and "external" in d for d in conda)


def test_driver_lock_agrees_with_the_full_lock():
    driver = _lock(REPO / "envs" / "driver.lock")
    assert {"snakemake", "snakemake-executor-plugin-slurm", "pyyaml", "jsonschema"} <= set(driver)
    assert "torch" not in driver
    assert {n: v for n, v in driver.items() if LOCK.get(n) != v} == {}


def test_every_rule_runs_the_workflows_own_source():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        assert not re.search(r'"diffnet \w', text), f"{smk.name} calls an installed `diffnet`"
        for env in re.findall(r'"\.\./\.\./envs/([\w.]+)"', text):
            assert (REPO / "envs" / env).is_file(), f"{smk.name}: envs/{env}"


def _driver_venv(path: Path) -> Path:
    venv.create(path, with_pip=True)
    py = path / "bin" / "python"
    # The package from a copy: setuptools builds in the source tree, and the checkout must stay clean.
    source = path.parent / "source"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "README.md", source)
    shutil.copytree(REPO / "src", source / "src")  # follows the schema's symlink: a real file in the copy
    for args in (["-r", str(REPO / "envs" / "driver.lock")], ["--no-deps", str(source)]):
        proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", *args], capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return path / "bin"


@pytest.mark.slow
def test_driver_without_torch_dry_runs_default_and_slurm_profile(tmp_path):
    bin_dir = _driver_venv(tmp_path / "driver")
    probe = subprocess.run([str(bin_dir / "python"), "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "None"
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    for extra in ([], ["--profile", "profiles/slurm"]):
        proc = subprocess.run([str(bin_dir / "snakemake"), "-n", "--directory", str(tmp_path / "work"), "-s",
                               str(REPO / "Snakefile"), "--configfile", str(REPO / "config" / "config.yaml"), *extra],
                              cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "rule train:" in proc.stdout and "scaling_train" in proc.stdout


@pytest.mark.slow
def test_deployed_as_a_module_dry_runs(tmp_path):
    # As the Snakemake docs prescribe for using a published workflow: a module by path (a clone of a
    # release; github(...) names the same files remotely), the config copied next to it.
    clone = tmp_path / "diffnet"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    for path in ("src", "workflow", "envs", "profiles", "config", "Snakefile"):  # the working tree under test
        target = clone / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        (shutil.copytree if (REPO / path).is_dir() else shutil.copy)(REPO / path, target)
    deploy = tmp_path / "deploy"
    (deploy / "workflow").mkdir(parents=True)
    shutil.copytree(clone / "config", deploy / "config")
    (deploy / "workflow" / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        f'module diffnet:\n    snakefile:\n        "{clone / "Snakefile"}"\n    config:\n        config\n\n\n'
        "use rule * from diffnet\n")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "--cores", "2"], cwd=deploy, capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"PYTHONPATH={clone / 'src'}" in proc.stdout  # the deployed copy's code, not the test's
    assert "results/burgers64/model.pt" in proc.stdout


@pytest.mark.slow
@pytest.mark.mpi
def test_torch_threads_follow_cores_and_resources(tmp_path):
    write_config(tmp_path / "config.yaml")
    log = tmp_path / "results" / "tiny" / "logs"
    _snakemake(tmp_path, "--cores", "1", "results/tiny/prediction.nc")
    assert "on 2 rank(s) x 1 thread(s)" in (log / "train.log").read_text()  # 2 ranks share the 1 core granted
    assert "on 1 thread(s)" in (log / "infer.log").read_text()
    _snakemake(tmp_path, "--cores", "4", "--set-resources", "train:tasks=1", "train:cpus_per_task=3",
               "--forcerun", "train", "infer", "--", "results/tiny/prediction.nc")
    assert "on 1 rank(s) x 3 thread(s)" in (log / "train.log").read_text()
    assert "on 2 thread(s)" in (log / "infer.log").read_text()


def test_python_m_diffnet_is_the_cli():
    proc = subprocess.run([sys.executable, "-m", "diffnet", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0 and "sample -> train -> infer" in proc.stdout


def test_catalog_license_and_citation_files():
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert 'text = "MIT"' in (REPO / "pyproject.toml").read_text()
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    assert {"mandatory-flags", "software-stack-deployment", "report"} <= set(catalog["usage"])
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    cited = [citation["preferred-citation"], *citation["references"]]
    assert any("2007.12792" in c["url"] for c in cited) and any("2104.14538" in c["url"] for c in cited)


def test_a_run_from_before_0_4_keeps_its_samples_file_and_its_model(tmp_path):
    # 0.3 named the samples file ics.nc. The workflow renames it in place (mtime kept), so the trained
    # model downstream of it stays up to date instead of being retrained from a resampled file.
    write_config(tmp_path / "config.yaml")
    run = tmp_path / "results" / "tiny"
    run.mkdir(parents=True)
    (run / "ics.nc").write_bytes(b"stand-in for a 0.3 samples file")
    os.utime(run / "ics.nc", (1_700_000_000, 1_700_000_000))
    proc = _snakemake(tmp_path, "-n", "results/tiny/samples.nc")
    assert not (run / "ics.nc").exists()
    assert (run / "samples.nc").read_bytes() == b"stand-in for a 0.3 samples file"
    assert (run / "samples.nc").stat().st_mtime == 1_700_000_000
    assert "Nothing to be done" in proc.stdout + proc.stderr
    # A CLI user's old command line still works: --ics is the samples option's former name.
    from diffnet.cli import build_parser

    args = build_parser().parse_args(["reference", "--config", "c.yaml", "--ics", "old.nc", "--out", "r.nc"])
    assert args.samples == Path("old.nc")

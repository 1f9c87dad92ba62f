"""xray-seg predict / listen / serve make idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the user chose
otherwise; training keeps OpenMP's default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.runtime import OPENMP_DEFAULTS, configure_openmp

PROBE = (
    "import os, sys; from pipeline.runtime import configure_openmp; early = configure_openmp(); import torch; "
    "print(os.environ.get('OMP_WAIT_POLICY'), early, configure_openmp())"
)


def run_probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                          env={**clean, **env})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def test_passive_by_default_before_torch_loads_and_too_late_after():
    assert run_probe() == ["PASSIVE", "True", "False"]


def test_a_users_choice_is_kept():
    assert run_probe(OMP_WAIT_POLICY="ACTIVE") == ["ACTIVE", "True", "False"]


COMMAND_PROBE = """
import os, sys
import pipeline.cli as cli
def spy():  # the sub-command modules (and torch) are imported from here on: record the state, stop
    print(os.environ.get("OMP_WAIT_POLICY"), "torch" in sys.modules)
    raise SystemExit(0)
cli.build_parser = spy
cli.main(sys.argv[1:])
"""


@pytest.mark.parametrize(("words", "expected"), [
    (["-v", "predict", "--help"], ["PASSIVE", "False"]),  # the command word after the global flags
    (["train", "--help"], ["None", "False"]),  # training keeps OpenMP's default: spinning pays there
])
def test_the_serving_commands_set_it_before_their_modules_import_torch(words, expected):
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", COMMAND_PROBE, *words], capture_output=True, text=True, timeout=120,
                          env=clean)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == expected


def test_configure_openmp_on_a_given_environment():
    environ: dict[str, str] = {"OMP_WAIT_POLICY": "ACTIVE"}
    configure_openmp(environ)
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE"}
    environ = {}
    configure_openmp(environ)
    assert environ == OPENMP_DEFAULTS

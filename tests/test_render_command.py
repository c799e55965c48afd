"""render_command: placeholders in a job's command, and file names that try to inject.

The shell form is run for real by /bin/sh: the job must receive each file name as exactly
one argument, and nothing a name smuggles in may run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stratoflow.execution.jobs import render_command

HOSTILE = [
    "/d/plain.root",
    "/d/with space.root",
    "/d/semi;touch {pwned}",
    "/d/$(touch {pwned})",
    "/d/`touch {pwned}`",
    "/d/quote'; touch {pwned}; '",
    '/d/dq"$(touch {pwned})"',
    "/d/new\nline;touch {pwned}",
    "/d/{input};touch {pwned}",
    "/d/{inputs}{index}",
]
ECHO_ARGV = f"{sys.executable} -c 'import json,sys; print(json.dumps(sys.argv[1:]))'"


def names(tmp_path: Path) -> list[str]:
    return [n.replace("{pwned}", str(tmp_path / "pwned")) for n in HOSTILE]


def run_shell(command: str) -> list[str]:
    out = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_shell_form_passes_each_name_as_one_argument_and_runs_nothing(tmp_path):
    files = names(tmp_path)
    got = run_shell(render_command(f"{ECHO_ARGV} {{inputs}}", inputs=files, index=0))
    assert got == files
    assert not (tmp_path / "pwned").exists()


def test_a_name_holding_a_placeholder_cannot_unquote_another(tmp_path):
    # {inputs} is quoted first; were {input} then substituted inside that quoted text,
    # the first name's own quotes would close the quoting and its ';' would run.
    files = [str(tmp_path / "x;touch pwned"), "/d/{input}"]
    got = run_shell(
        f"cd {tmp_path} && " + render_command(f"{ECHO_ARGV} {{inputs}}", inputs=files, index=0)
    )
    assert got == files
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_shell_form_input_and_index(tmp_path, i):
    files = names(tmp_path)[i:]
    got = run_shell(render_command(f"{ECHO_ARGV} {{input}} n{{index}}", inputs=files, index=7))
    assert got == [files[0], "n7"]
    assert not (tmp_path / "pwned").exists()


def test_argv_form_expands_a_lone_inputs_item_and_never_rescans_values():
    files = ["/d/{index}", "/d/{input}"]
    argv = render_command(
        ["prog", "--first={input}", "{inputs}", "-n{index}"], inputs=files, index=3
    )
    assert argv == ["prog", "--first=/d/{index}", "/d/{index}", "/d/{input}", "-n3"]


def test_runner_placeholders_are_left_for_the_site():
    assert render_command("run {outdir} {artifacts}/a.py {input}", inputs=["/x"], index=0) == (
        "run {outdir} {artifacts}/a.py /x"
    )
    assert render_command(["{artifacts}/a.py", "{outdir}"], inputs=[], index=0) == [
        "{artifacts}/a.py",
        "{outdir}",
    ]


def test_no_inputs():
    assert render_command("echo {inputs}|{input}", inputs=[], index=0) == "echo |''"
    assert render_command(["echo", "{inputs}", "{input}"], inputs=[], index=0) == ["echo", ""]

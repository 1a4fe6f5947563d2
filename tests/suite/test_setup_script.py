"""scripts/setup.sh speaks plain text into logs and pipes, bold/red only on a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"


def test_a_log_gets_no_escape_codes() -> None:
    # a fresh-clone default run's log read "\x1b[1m[setup]\x1b[0m creating the venv ..."
    res = subprocess.run(["bash", str(SETUP), "bogus"], capture_output=True, text=True, check=False)
    assert res.returncode == 2
    assert res.stderr == "[setup] error: unknown mode 'bogus'; use: run | test | deps\n"


def test_a_terminal_gets_them_unless_no_color() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    for extra, coloured in (({}, True), ({"NO_COLOR": "1"}, False)):
        main, sub = pty.openpty()
        try:
            proc = subprocess.run(
                ["bash", str(SETUP), "bogus"], stderr=sub, env={**env, **extra}, check=False
            )
        finally:
            os.close(sub)
        text = os.read(main, 4096).decode()
        os.close(main)
        assert proc.returncode == 2 and "unknown mode 'bogus'" in text
        assert ("\x1b[1;31m[setup] error:\x1b[0m" in text) is coloured

#!/usr/bin/env python3
"""Crust's entry point: ./build.py --help."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

# Use the project's virtual environment (made by ./setup.sh) when it exists.
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve() and not os.environ.get("CRUST_NO_VENV"):
    os.environ.setdefault("PYTHONUTF8", "1")  # text files and pipes are UTF-8 whatever the caller's locale
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])

sys.path.insert(0, str(ROOT))
from crust.cli import main  # noqa: E402

sys.exit(main())

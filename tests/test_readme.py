"""The README's quickstart runs as written, and its API table names what fluxml exports."""

import importlib
import re
from pathlib import Path

import fluxml as fl

README = Path(__file__).resolve().parent.parent / "README.md"


def _text():
    return README.read_text(encoding="utf-8")


def test_quickstart_runs():
    blocks = re.findall(r"^```python\n(.*?)^```", _text(), re.S | re.M)
    assert blocks, "README.md has no ```python block"
    for block in blocks:
        code = compile(block, str(README), "exec")
        exec(code, {"__name__": "readme_quickstart"})


def test_api_table_names_exist():
    rows = [line for line in _text().splitlines() if line.startswith("| `")]
    assert rows, "README.md has no API table"
    for row in rows:
        first_cell = row.split("|")[1]
        for name in re.findall(r"`([\w.]+)", first_cell):
            module, _, attr = name.rpartition(".")
            owner = importlib.import_module(f"fluxml.{module}") if module else fl
            assert hasattr(owner, attr), f"README names fluxml.{name}, which does not exist"

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


def test_compile_example_shows_a_line_of_its_ir():
    """The IR line that the compile example's comment quotes is one that step.ir prints (the
    comment showed v7 = tanh v6 while the program numbered it v26 = tanh v25)."""
    block = next(b for b in re.findall(r"^```python\n(.*?)^```", _text(), re.S | re.M)
                 if "print(step.ir)" in b)
    quoted = re.search(r"print\(step\.ir\) +# [^:]*: (.*?) \.\.\.$", block, re.M).group(1)
    namespace = {"__name__": "readme_compile"}
    exec(compile(block, str(README), "exec"), namespace)
    assert quoted in [line.strip() for line in str(namespace["step"].ir).splitlines()]


def test_api_table_names_exist():
    rows = [line for line in _text().splitlines() if line.startswith("| `")]
    assert rows, "README.md has no API table"
    for row in rows:
        first_cell = row.split("|")[1]
        for name in re.findall(r"`([\w.]+)", first_cell):
            module, _, attr = name.rpartition(".")
            owner = importlib.import_module(f"fluxml.{module}") if module else fl
            assert hasattr(owner, attr), f"README names fluxml.{name}, which does not exist"

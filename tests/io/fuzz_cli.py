"""The command line the io fuzzers share: ``python -m tests.io.<fuzzer> N FIRST``, cases
``FIRST .. FIRST + N - 1``, each failure printed with its seed."""

from __future__ import annotations

import tempfile
import warnings


def run_seeds(run_case, argv, default_n: int, in_folder: bool = False) -> int:
    """Run ``run_case(seed)`` (``run_case(seed, folder)``, a temporary folder shared by the
    cases, with ``in_folder``) for the seeds ``argv`` asks for; returns how many failed. A
    case returns its failures' descriptions; an exception is one."""
    warnings.simplefilter("ignore")
    n = int(argv[0]) if argv else default_n
    first = int(argv[1]) if len(argv) > 1 else 0
    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(first, first + n):
            try:
                fails = run_case(seed, folder) if in_folder else run_case(seed)
            except Exception as err:  # noqa: BLE001 - reported with its case
                fails = [f"raised {type(err).__name__}: {err}"[:300]]
            for fail in fails:
                print(f"seed {seed}: {fail}")
            failed += bool(fails)
    print(f"{failed} of {n} cases failed")
    return failed

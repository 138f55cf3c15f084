"""Which instruction set each library's kernels run with, and ``--isa=avx2`` to match them.

A ratio against PyTorch or JAX compares two libraries only where both run the same width of
vector instructions. On an AVX-512 CPU that need not hold: NumPy's OpenBLAS takes the kernels
``OPENBLAS_CORETYPE`` names where it is set (some machines pin ``Haswell``, AVX2, and the
project must not change that), while PyTorch's oneDNN and ATen kernels and XLA detect the CPU
and run AVX-512 code, twice the multiply-adds per instruction. Every benchmark prints what ran
(:func:`describe`); ``--isa=avx2`` caps the peers at AVX2 (:func:`cap_peers`, before they are
imported), so that both sides of a ratio run the same instruction set. Without it each library
runs as installed.

    PYTHONPATH=src python benchmarks/layers.py --isa=avx2
"""

from __future__ import annotations

import os
import sys

# what each peer reads, once, when it is imported
_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: PyTorch's convolutions, RNNs, ...
         "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL: PyTorch's matrix products
         "ATEN_CPU_CAPABILITY": "avx2"}  # PyTorch's own element-wise kernels


def requested(argv=None) -> str | None:
    """The ``--isa=`` value on the command line (lower case), else None."""
    for a in (sys.argv[1:] if argv is None else argv):
        if a.startswith("--isa="):
            value = a.split("=", 1)[1].lower()
            if value != "avx2":
                raise SystemExit(f"--isa: only avx2 can be matched (NumPy's BLAS cannot be "
                                 f"raised from here); got {value!r}")
            return value
    return None


def cap_peers(isa: str | None) -> None:
    """Cap PyTorch and XLA at ``isa`` (only ``"avx2"``; None: leave them as installed).
    Must run before either is imported; refuses otherwise, for they read it once."""
    if isa is None:
        return
    late = [m for m in ("torch", "jax", "jaxlib") if m in sys.modules]
    if late:
        raise RuntimeError(f"cap_peers: {', '.join(late)} already imported; the cap would "
                           f"not take effect")
    os.environ.update(_AVX2)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_max_isa=AVX2").strip()


def _cpu_has_avx512() -> bool | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return " avx512f" in line
    except OSError:
        return None
    return None


def describe() -> str:
    """One line per library: the kernels that run (NumPy's BLAS by threadpoolctl, PyTorch's
    CPU capability, XLA's cap), and whether the CPU has AVX-512."""
    lines = []
    avx512 = _cpu_has_avx512()
    if avx512 is not None:
        lines.append(f"CPU: {'AVX-512' if avx512 else 'no AVX-512'}")
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{i['internal_api']} {i.get('architecture')} kernels" for i in
                threadpool_info() if i["user_api"] == "blas"]
    except ImportError:
        blas = ["(threadpoolctl not installed: kernels unknown)"]
    pin = os.environ.get("OPENBLAS_CORETYPE")
    lines.append("NumPy's BLAS: " + ", ".join(blas) +
                 (f" (OPENBLAS_CORETYPE={pin})" if pin else ""))
    if "torch" in sys.modules:
        lines.append(f"PyTorch: {sys.modules['torch'].backends.cpu.get_cpu_capability()} "
                     f"kernels" + (" (capped by --isa)" if os.environ.get(
                         "ATEN_CPU_CAPABILITY") else ""))
    if "jax" in sys.modules:
        cap = [f for f in os.environ.get("XLA_FLAGS", "").split() if "max_isa" in f]
        lines.append("XLA: " + (cap[0].split("=", 1)[1] if cap else "the host's") +
                     " instructions")
    return "\n".join(lines)

"""Engine primitives written out as the NumPy expression their kernel is, in generated code:
``x.transpose((1, 0))`` instead of a call of the primitive's kernel. Each entry formats the
source of the operands and parameters; it must compute exactly what the kernel computes."""

from __future__ import annotations

from fluxml.ad.rules.indexing import GETITEM
from fluxml.ad.rules.reductions import SUM
from fluxml.ad.rules.shape import ASTYPE, RESHAPE, TRANSPOSE

INLINE = {  # each entry: (xp, *operands, **parameters) -> source; xp names the array module
    SUM: lambda xp, x, axis, keepdims: f"{xp}.add.reduce({x}, axis={axis}, keepdims={keepdims})",
    TRANSPOSE: lambda xp, x, axes: f"{x}.transpose({axes})",
    RESHAPE: lambda xp, x, shape, order: f"{x}.reshape({shape}, order={order})",
    ASTYPE: lambda xp, x, dtype, order="'K'": f"{x}.astype({dtype}, order={order})",
    GETITEM: lambda xp, x, idx: f"{x}[{idx}]",
}

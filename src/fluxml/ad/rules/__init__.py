"""Derivative rules, one family a file. Importing this package registers them all."""

from fluxml.ad.rules import elementwise, indexing, reductions, shape  # noqa: F401

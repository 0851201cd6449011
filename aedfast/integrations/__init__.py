"""Integrations of aedfast with other frameworks, each an optional extra.

- `aedfast.integrations.anomalib`: an anomalib ``AnomalibModule`` around an aedfast checkpoint
  for anomalib's video datamodules and ``Engine`` (``pip install "aedfast[anomalib]"``).

Nothing here is imported by the rest of aedfast, and this package imports none of its
submodules: the core never needs a framework installed. Import a submodule by its full name.
"""

"""Old home of the losses, kept importable (public API): they live in :mod:`src.core.losses`."""

from src.core.losses import *  # noqa: F403
from src.core.losses import __all__  # noqa: F401

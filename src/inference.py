"""Old home of inference, kept importable (public API): it lives in :mod:`src.core.inference`."""

from src.core.inference import *  # noqa: F403
from src.core.inference import __all__  # noqa: F401

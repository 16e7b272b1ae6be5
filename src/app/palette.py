"""The class colours of a run's data config, for predictions, overlays and exported models."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from src.data.base import bit_palette

log = logging.getLogger(__name__)


def class_palette(data_cfg: DictConfig, num_classes: int) -> tuple[list[list[int]], str]:
    """The class colours and where they came from.

    First the ``data.dataset`` class's own ``palette`` (Cityscapes, LIP: no data needed), then
    the data module's (datasets whose colours depend on their arguments: synthetic, COCO),
    else distinct generated colours. A palette must hold one colour per checkpoint class.
    """
    target = OmegaConf.select(data_cfg, "dataset._target_", default=None)
    if target:
        palette = getattr(hydra.utils.get_class(target), "palette", None)
        if _fits(palette, num_classes):
            return [list(c) for c in palette], target
    try:
        palette = hydra.utils.instantiate(data_cfg).palette
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        log.warning("no palette from the data config (%s); using generated colours", err)
        return bit_palette(num_classes), "generated"
    if _fits(palette, num_classes):
        return [list(c) for c in palette], f"{target} (data module)"
    log.warning(
        "the data config's palette does not fit %d classes; using generated colours", num_classes
    )
    return bit_palette(num_classes), "generated"


def _fits(palette: object, num_classes: int) -> bool:
    """Whether ``palette`` is a sequence of at least ``num_classes`` RGB triples."""
    if not isinstance(palette, Sequence) or len(palette) < num_classes:
        return False
    return all(isinstance(c, Sequence) and len(c) == 3 for c in palette)

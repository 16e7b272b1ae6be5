"""The context modules, in one place: name → builder, and the checks of their config keys.

Every context maps features (B, C, *S) to (B, C, *S) and is the identity when fresh:

- ``rcca``: one shared criss-cross attention applied ``recurrence`` times (the paper's RCCA);
  with ``recurrence=0`` it is never applied and its parameters are frozen. That is the FCN
  baseline of the paper's ablation: the same convs and parameter count as RCCA.
- ``nonlocal``: the embedded-Gaussian non-local block (2D only).
- ``none``: no context module at all (``nn.Identity``, no parameters).

``recurrence`` and ``kernel`` (the criss-cross op's forward path, ``model.attention_kernel``:
see :func:`src.models.attention.criss_cross_attention`) only concern ``rcca``; the others
ignore them (they are still checked). A new context (e.g. axial attention) is one more
builder in :data:`CONTEXTS` plus a config.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from typing import Any

from torch import Tensor, nn

from .attention import CrissCrossAttention, CrissCrossAttention3d, NonLocalBlock, check_kernel


def check_recurrence(value: Any) -> int:
    """``value`` as the number of criss-cross passes: an int >= 0 (a bool is not an int)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"model.recurrence must be an int >= 0; got {value!r}")
    return int(value)


class RecurrentCrissCross(nn.Module):
    """RCCA: one criss-cross attention module ``cca`` (shared weights) applied ``recurrence``
    times, each pass a separate call of ``cca`` (hooks on it see every pass).

    ``recurrence=0`` freezes ``cca`` (requires_grad False), so that DDP and weight decay
    leave the unused parameters alone; setting it above 0 again unfreezes them. ``kernel``:
    the op's forward path (``lines`` or ``fused``), stored on ``cca``.
    """

    def __init__(
        self, channels: int, recurrence: int = 2, dims: int = 2, kernel: str = "lines"
    ) -> None:
        super().__init__()
        attention = {2: CrissCrossAttention, 3: CrissCrossAttention3d}[dims]
        self.cca = attention(channels, kernel)
        self.recurrence = recurrence

    @property
    def recurrence(self) -> int:
        return self._recurrence

    @recurrence.setter
    def recurrence(self, value: int) -> None:
        self._recurrence = check_recurrence(value)
        self.cca.requires_grad_(self._recurrence > 0)

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self._recurrence):
            x = self.cca(x)
        return x

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Read checkpoints from before ``cca`` was a child: ``<prefix>query.weight`` (and
        key, value, gamma) become ``<prefix>cca.query.weight``."""
        own = {name.split(".", 1)[0] for name in self.cca.state_dict()}
        for name in [k for k in state_dict if k.startswith(prefix)]:
            if name[len(prefix) :].split(".", 1)[0] in own:
                state_dict[f"{prefix}cca.{name[len(prefix) :]}"] = state_dict.pop(name)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"recurrence={self.recurrence}"


def _rcca(channels: int, recurrence: int, dims: int, kernel: str) -> nn.Module:
    return RecurrentCrissCross(channels, recurrence, dims, kernel)


def _nonlocal(channels: int, recurrence: int, dims: int, kernel: str) -> nn.Module:
    if dims != 2:
        raise ValueError(f"model.context=nonlocal is a 2D block; it has no {dims}D version")
    return NonLocalBlock(channels)


def _none(channels: int, recurrence: int, dims: int, kernel: str) -> nn.Module:
    return nn.Identity()


CONTEXTS: dict[str, Callable[[int, int, int, str], nn.Module]] = {
    "rcca": _rcca,
    "nonlocal": _nonlocal,
    "none": _none,
}
"""``model.context`` name → builder ``(channels, recurrence, dims, kernel) -> module``."""


def check_context(name: Any) -> str:
    """``name`` if it is a known context (a key of :data:`CONTEXTS`)."""
    if not isinstance(name, str) or name not in CONTEXTS:
        raise ValueError(f"model.context must be one of {', '.join(CONTEXTS)}; got {name!r}")
    return name


def build_context(
    name: str, channels: int, recurrence: int = 2, dims: int = 2, kernel: str = "lines"
) -> nn.Module:
    """The context module ``name`` on ``channels`` features of ``dims`` (2 or 3) spatial axes;
    ``kernel``: the criss-cross op's forward path (``model.attention_kernel``)."""
    check_context(name)
    recurrence = check_recurrence(recurrence)
    kernel = check_kernel(kernel)
    if dims not in (2, 3):
        raise ValueError(f"a context module works on 2 or 3 spatial dims; got dims={dims!r}")
    return CONTEXTS[name](channels, recurrence, dims, kernel)


def gamma_names(module: nn.Module) -> set[str]:
    """Names of the attention scales γ in ``module`` (parameters called ``gamma``): a scalar
    that starts at 0 and must not be pulled back to it by weight decay (timm's
    ``no_weight_decay`` convention)."""
    return {name for name, _ in module.named_parameters() if name.rsplit(".", 1)[-1] == "gamma"}


__all__ = [
    "CONTEXTS",
    "RecurrentCrissCross",
    "build_context",
    "check_context",
    "check_recurrence",
    "gamma_names",
]

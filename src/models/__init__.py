"""CCNet models: criss-cross attention, heads, the dilated backbone and the full network."""

from .attention import CrissCrossAttention, CrissCrossAttention3d, NonLocalBlock
from .backbone import create_backbone
from .ccnet import CCNet
from .heads import FCNHead, NonLocalHead, RCCAHead

__all__ = [
    "CCNet",
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "FCNHead",
    "NonLocalBlock",
    "NonLocalHead",
    "RCCAHead",
    "create_backbone",
]

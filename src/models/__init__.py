"""CCNet models: criss-cross attention, the context table, heads, the dilated backbone and the
full network."""

from .attention import CrissCrossAttention, CrissCrossAttention3d, NonLocalBlock
from .backbone import create_backbone
from .ccnet import CCNet
from .ccnet3d import CCNet3D
from .context import RecurrentCrissCross, build_context
from .heads import FCNHead, NonLocalHead, RCCAHead

__all__ = [
    "CCNet",
    "CCNet3D",
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "FCNHead",
    "NonLocalBlock",
    "NonLocalHead",
    "RCCAHead",
    "RecurrentCrissCross",
    "build_context",
    "create_backbone",
]

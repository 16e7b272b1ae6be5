"""Helpers of the instance segmentation tests: a Mask R-CNN small enough for a shared 2-core
CPU (resnet10t, narrow FPN and heads, tiny images, few RPN/ROI samples and detections)."""

from __future__ import annotations

TINY_DETECTOR = dict(
    backbone="resnet10t",
    fpn_channels=32,
    box_head_dim=64,
    mask_head_channels=32,
    trainable_stages=5,
    freeze_bn=False,
    min_size=64,
    max_size=96,
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=100,
    rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=50,
    rpn_batch_size_per_image=32,
    box_batch_size_per_image=32,
    box_detections_per_img=20,
)

# The same as command-line overrides of conf/model/mask_rcnn.yaml (plus no download).
TINY_DETECTOR_OVERRIDES = ["model.pretrained=false"] + [
    f"model.{key}={str(value).lower() if isinstance(value, bool) else value}"
    for key, value in TINY_DETECTOR.items()
]

"""COCO instance segmentation with criss-cross attention: Mask R-CNN whose backbone carries RCCA
after its last stage (the paper's COCO experiment), its COCO data and its LightningModule."""

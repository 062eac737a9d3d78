"""Class maps and label maps as every stage after the CAMs handles them: read beside their image,
scored against the ground truth (confusion matrices, mIoU, mAP), the background channel, the dense CRF."""

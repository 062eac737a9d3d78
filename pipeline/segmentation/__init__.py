"""Stage family `train_segmentation`, `predict`: the segmentation network's training and loss,
its predictions on a split or on a folder of images."""

"""Stage family `train_classifier`: the multi-label classifier's training."""

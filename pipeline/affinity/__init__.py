"""Stage family `affinity_labels`, `train_affinity`, `propagate`: confident labels, AffinityNet's
training and the random walk."""

"""Diagnostics: measurements of the product stages against ground truth (the walk over ground-truth
affinities, the attention-fusion diagnosis, the demo anatomy). Run by hand, never by the DAG."""

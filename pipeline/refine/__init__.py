"""Stage family `refine`: the final pseudo-labels through PAMR, the dense CRF and saliency."""

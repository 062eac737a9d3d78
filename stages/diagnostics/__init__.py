"""The diagnostics as command-line programs (pipeline/diagnostics/): run by hand, not by a rule."""

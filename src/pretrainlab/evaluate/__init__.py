"""Evaluation of finished runs beyond the in-loop probes: lm-evaluation-harness on the HF export."""

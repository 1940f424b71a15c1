"""Controlled experiments on data designs: first, how a compute budget splits between data and training."""

"""Training: the model zoo, one training loop with callbacks, in-loop probe scoring, checkpoints, DDP."""

"""pretrainlab: a workbench for synthetic pretraining."""

__version__ = "0.1.0"

"""Exports of trained models to formats other tools load; `hf` writes a transformers model folder."""

from pretrainlab.export.hf import export_hf, hf_architecture, to_hf

__all__ = ["export_hf", "hf_architecture", "to_hf"]

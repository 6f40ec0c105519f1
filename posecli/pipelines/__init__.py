"""Inference pipelines (swap, encode, animate, composite): never import training code."""

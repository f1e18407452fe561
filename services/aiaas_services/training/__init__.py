"""Training service: PyTorch training jobs."""

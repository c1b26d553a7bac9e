"""Run the real Triton server (from the nvidia-pytriton wheel) on a model repository."""

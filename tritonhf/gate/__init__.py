"""The acceptance gate: whether a variant (int8, fp16, a served ensemble) agrees with PyTorch."""

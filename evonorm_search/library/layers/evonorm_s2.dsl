# EvoNorm-S2 (Liu et al., 2020): Swish over the group root mean square. Batch-free.
y = x * sigmoid(x) / rms(x, group)

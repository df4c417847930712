# EvoNorm-S1 (Liu et al., 2020): Swish over the group standard deviation. Batch-free.
y = x * sigmoid(x) / std(x, group)

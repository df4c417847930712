# EvoNorm-S0 (Liu et al., 2020): a learnable Swish over the group standard deviation. Batch-free.
y = x * sigmoid(v1 * x) / std(x, group)

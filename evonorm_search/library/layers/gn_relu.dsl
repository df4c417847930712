# GroupNorm followed by ReLU (Wu & He, 2018); v1/v0 are GroupNorm's affine, applied before the ReLU.
y = relu(v1 * (x - mean(x, group)) / std(x, group) + v0)

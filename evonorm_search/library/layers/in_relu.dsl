# InstanceNorm followed by ReLU; v1/v0 are InstanceNorm's affine, applied before the ReLU.
y = relu(v1 * (x - mean(x, instance)) / std(x, instance) + v0)

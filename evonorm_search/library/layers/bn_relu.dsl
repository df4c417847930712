# BatchNorm followed by ReLU. v1/v0 play BatchNorm's scale and shift (before the ReLU);
# with affine=False the layer is exactly BatchNorm2d + ReLU.
y = relu(v1 * (x - mean(x, batch)) / std(x, batch) + v0)

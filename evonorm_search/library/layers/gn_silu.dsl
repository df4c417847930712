# GroupNorm followed by SiLU (Swish), the pairing of many diffusion and vision models.
t = v1 * (x - mean(x, group)) / std(x, group) + v0
y = t * sigmoid(t)

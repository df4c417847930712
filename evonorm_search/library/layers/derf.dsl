# Dynamic erf (Derf; Chen et al., 2025, "Stronger Normalization-Free Transformers"): erf(alpha * x + s),
# the point-wise function a search over point-wise replacements of LayerNorm found. Here alpha is v1
# (starts at 1) and the shift s is v0 (starts at 0), both per channel (one scalar each in the paper).
y = erf(v1 * x + v0)

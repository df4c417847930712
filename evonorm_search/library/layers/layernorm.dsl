# LayerNorm over C and the spatial dims (GroupNorm with one group), with a per-channel affine.
y = (x - mean(x, layer)) / std(x, layer)

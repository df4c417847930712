# LayerNorm over the channels at every position, as transformers and ConvNeXt use it.
y = (x - mean(x, channel)) / std(x, channel)

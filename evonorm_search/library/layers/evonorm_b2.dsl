# EvoNorm-B2 (Liu et al., 2020), with the instance second moment.
y = x / max(std(x, batch), rms(x, instance) - x)

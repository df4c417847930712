# EvoNorm-B1 (Liu et al., 2020), with the instance second moment.
y = x / max(std(x, batch), (x + 1) * rms(x, instance))

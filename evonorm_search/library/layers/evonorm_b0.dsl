# EvoNorm-B0 (Liu et al., 2020): batch variance against an instance-dependent term.
y = x / max(std(x, batch), v1 * x + std(x, instance))

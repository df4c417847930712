# Dynamic Tanh (DyT; Zhu et al., 2025, "Transformers without Normalization"): tanh(alpha * x) in place
# of LayerNorm. DyT's alpha starts at 0.5 and v1 at 1, so the program scales v1 by 0.5 to start where
# DyT does: the effective alpha is 0.5 * v1 (per channel here, one scalar in the paper). Its SGD step
# is half that of a plain v1; Adam's step does not depend on that scale.
y = tanh(0.5 * v1 * x)

# No normalization and no non-linearity: the input itself (then the per-channel affine). A control that
# every normalization layer must beat; a proxy that ranks it high does not measure normalization.
y = x

# No normalization: ReLU alone, the floor every normalization layer should beat.
y = relu(x)

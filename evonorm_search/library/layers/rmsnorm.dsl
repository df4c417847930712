# RMSNorm over the channels at every position (Zhang & Sennrich, 2019).
y = x / rms(x, channel)

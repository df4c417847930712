"""Triton helpers every generated kernel calls: addressing, moments, cross-program combines, running updates.

This file is never imported. Its text is executed together with each layer's generated kernels
(`compiler.cache`) and copied into standalone exports, so the helpers are decorated in the mode that
is active when a layer is compiled (`TRITON_INTERPRET=1` runs them on the CPU interpreter). Keep it
self-contained: `triton` and `tl` are its only names from outside, and nothing newer than Triton 3.6.

Statistics are accumulated as moments (count, mean, M2) and merged with Chan et al.'s pairwise
formula, tile by tile (inlined by the code generator) and partial by partial (here): one pass over
memory per variance, without the cancellation of E[a^2] - E[a]^2, in float32 (or float64) whatever
the input dtype. Helpers called once per program live here; per-tile work is inlined, because the
CPU interpreter pays about a millisecond per helper call.
"""

import triton
import triton.language as tl

# tl.sum is tl.reduce with this combine function; calling tl.reduce directly is the same code on a GPU,
# and the CPU interpreter runs it as numpy instead of as an interpreted device-function call.
add_combine = tl.standard._sum_combine


@triton.jit
def merge_moments_across(n_r, mean_r, m2_r, valid, AXIS: tl.constexpr):
    """Merge many sets of moments (along AXIS) at once: total count, mean and M2, keeping dims."""
    cnt = tl.where(valid, n_r, 0.0)
    n = tl.reduce(cnt, AXIS, add_combine, keep_dims=True)
    mean = tl.reduce(cnt * tl.where(valid, mean_r, 0.0), AXIS, add_combine, keep_dims=True) / tl.maximum(n, 1.0)
    d = tl.where(valid, mean_r - mean, 0.0)
    m2 = tl.reduce(tl.where(valid, m2_r, 0.0) + cnt * d * d, AXIS, add_combine, keep_dims=True)
    return n, mean, m2


@triton.jit
def combine_channels(
    pt_ptr,
    local,
    N,
    C,
    S,
    CHUNK,
    NSC,
    ALL_SAMPLES: tl.constexpr,
    MOMENTS: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """Per-channel statistics from partial rows (sample, chunk) x channels.

    ALL_SAMPLES reduces every sample's rows (a `batch` statistic: one program per channel block reads
    the partials of all programs that saw those channels); otherwise one sample's rows (`instance`).
    Returns (statistic index, mask, sum or mean, biased variance, count).
    """
    blocks = (C + BLOCK_C - 1) // BLOCK_C
    if ALL_SAMPLES:
        n0 = local * 0
        cb = local
        rows = N * NSC
    else:
        n0 = local // blocks
        cb = local % blocks
        rows = NSC
    c = cb * BLOCK_C + tl.arange(0, BLOCK_C)[None, :]
    c_in = c < C
    plane = N * NSC * C
    count = tl.full([1, BLOCK_C], 0.0, COMPUTE)
    total = tl.full([1, BLOCK_C], 0.0, COMPUTE)
    for r0 in range(0, rows, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)[:, None]
        valid = (r < rows) & c_in
        cnt = tl.minimum(CHUNK, S - (r % NSC) * CHUNK).to(COMPUTE)
        v = tl.load(pt_ptr + (n0 * NSC + r) * C + c, mask=valid, other=0.0)
        count += tl.reduce(tl.where(valid, cnt, 0.0), 0, add_combine, keep_dims=True)
        if MOMENTS:
            total += tl.reduce(tl.where(valid, cnt * v, 0.0), 0, add_combine, keep_dims=True)
        else:
            total += tl.reduce(v, 0, add_combine, keep_dims=True)
    m2 = tl.full([1, BLOCK_C], 0.0, COMPUTE)
    if MOMENTS:
        total = total / tl.maximum(count, 1.0)
        for r0 in range(0, rows, BLOCK_R):
            r = r0 + tl.arange(0, BLOCK_R)[:, None]
            valid = (r < rows) & c_in
            cnt = tl.minimum(CHUNK, S - (r % NSC) * CHUNK).to(COMPUTE)
            index = (n0 * NSC + r) * C + c
            mean = tl.load(pt_ptr + index, mask=valid, other=0.0)
            part = tl.load(pt_ptr + plane + index, mask=valid, other=0.0)
            d = mean - total
            m2 += tl.reduce(tl.where(valid, part + cnt * d * d, 0.0), 0, add_combine, keep_dims=True)
    return n0 * C + c, c_in, total, m2 / tl.maximum(count, 1.0), count


@triton.jit
def combine_scalar(
    pt_ptr,
    local,
    N,
    C,
    S,
    G,
    CG,
    CHUNK,
    NSC,
    GROUPED: tl.constexpr,
    MOMENTS: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """One statistic per sample (`layer`) or per sample and group (`group`) from partial rows x channels.

    Returns (statistic index, sum or mean, biased variance, count) as [1, 1] blocks.
    """
    if GROUPED:
        n = local // G
        c_lo = (local % G) * CG
        width = CG
    else:
        n = local
        c_lo = local * 0
        width = C
    plane = N * NSC * C
    count = tl.full([1, 1], 0.0, COMPUTE)
    total = tl.full([1, 1], 0.0, COMPUTE)
    for k0 in range(0, NSC, BLOCK_R):
        k = k0 + tl.arange(0, BLOCK_R)[:, None]
        cnt = tl.minimum(CHUNK, S - k * CHUNK).to(COMPUTE)
        for c0 in range(0, width, BLOCK_C):
            cc = c0 + tl.arange(0, BLOCK_C)[None, :]
            valid = (k < NSC) & (cc < width)
            v = tl.load(pt_ptr + (n * NSC + k) * C + c_lo + cc, mask=valid, other=0.0)
            count += tl.reduce(
                tl.reduce(tl.where(valid, cnt, 0.0), 1, add_combine, keep_dims=True), 0, add_combine, keep_dims=True
            )
            if MOMENTS:
                v = cnt * v
            total += tl.reduce(
                tl.reduce(tl.where(valid, v, 0.0), 1, add_combine, keep_dims=True), 0, add_combine, keep_dims=True
            )
    m2 = tl.full([1, 1], 0.0, COMPUTE)
    if MOMENTS:
        total = total / tl.maximum(count, 1.0)
        for k0 in range(0, NSC, BLOCK_R):
            k = k0 + tl.arange(0, BLOCK_R)[:, None]
            cnt = tl.minimum(CHUNK, S - k * CHUNK).to(COMPUTE)
            for c0 in range(0, width, BLOCK_C):
                cc = c0 + tl.arange(0, BLOCK_C)[None, :]
                valid = (k < NSC) & (cc < width)
                index = (n * NSC + k) * C + c_lo + cc
                mean = tl.load(pt_ptr + index, mask=valid, other=0.0)
                part = tl.load(pt_ptr + plane + index, mask=valid, other=0.0)
                d = mean - total
                term = tl.where(valid, part + cnt * d * d, 0.0)
                m2 += tl.reduce(tl.reduce(term, 1, add_combine, keep_dims=True), 0, add_combine, keep_dims=True)
    return local + tl.full([1, 1], 0, tl.int32), total, m2 / tl.maximum(count, 1.0), count


@triton.jit
def update_running_estimate(run_ptr, index, mask, value, count, UNBIASED: tl.constexpr, MOMENTUM: tl.constexpr):
    """BatchNorm's running estimate: (1 - momentum) * running + momentum * value, in the buffer's dtype.

    UNBIASED scales a variance by n / (n - 1), as BatchNorm stores it.
    """
    old = tl.load(run_ptr + index, mask=mask, other=0.0)
    v = value.to(old.dtype)
    if UNBIASED:
        v = v * (count / (count - 1.0)).to(old.dtype)
    tl.store(run_ptr + index, old * (1.0 - MOMENTUM) + v * MOMENTUM, mask=mask)


@triton.jit
def accurate_tanh(a):
    """tanh without the cancellation of 2 * sigmoid(2a) - 1 near 0 (Cephes' rational form for |a| < 0.625)."""
    z = a * a
    p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z - 1.61468768441708447952e3
    q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3
    small = a + a * z * p / q
    e = tl.exp(-2.0 * tl.abs(a))
    large = (1.0 - e) / (1.0 + e)
    large = tl.where(a < 0, -large, large)
    return tl.where(tl.abs(a) < 0.625, small, large)

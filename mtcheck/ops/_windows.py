"""Sliding and adaptive windows for convolution and pooling, as index arrays."""

from __future__ import annotations

import math

import numpy as np


def _tup(v, n):
    if isinstance(v, int):
        return (v,) * n
    v = tuple(v)
    if len(v) == 1 and n > 1:
        return v * n
    return v


def pool_out_size(L, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length (pooling_output_shape in ATen)."""
    num = L + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= L + p:
        out -= 1
    return out


def sliding(spatial, kernel, stride, padding, dilation, ceil_mode=False):
    """Windows over an N-d spatial grid (cached per geometry; the index array is read-only).

    Returns (out_spatial, idx) where idx has shape ``out_spatial + (prod(kernel),)``
    and holds flat indices into the spatial grid, or -1 for a position in the
    padding or past the end (ceil_mode).
    """
    n = len(spatial)
    key = (tuple(spatial), _tup(kernel, n), _tup(stride if stride else kernel, n), _tup(padding, n),
           _tup(dilation, n), bool(ceil_mode))
    hit = _SLIDING.get(key)
    if hit is None:
        if len(_SLIDING) > 256:
            _SLIDING.clear()
        hit = _SLIDING[key] = _sliding(*key)
        hit[1].setflags(write=False)
    return hit


_SLIDING: dict = {}


def _sliding(spatial, kernel, stride, padding, dilation, ceil_mode):
    n = len(spatial)
    kernel, stride = _tup(kernel, n), _tup(stride if stride else kernel, n)
    padding, dilation = _tup(padding, n), _tup(dilation, n)
    outs, per_dim = [], []
    for L, k, s, p, d in zip(spatial, kernel, stride, padding, dilation):
        o = pool_out_size(L, k, s, p, d, ceil_mode)
        pos = np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d   # (o, k)
        outs.append(o)
        per_dim.append(pos)
    # broadcast every dim's (o_i, k_i) into (o_1..o_n, k_1..k_n)
    flat = np.zeros(tuple(outs) + tuple(kernel), dtype=np.int64)
    valid = np.ones(tuple(outs) + tuple(kernel), dtype=bool)
    stride_flat = 1
    for i in reversed(range(n)):
        shape = [1] * (2 * n)
        shape[i] = outs[i]
        shape[n + i] = kernel[i]
        pos = per_dim[i].reshape(shape)
        valid &= (pos >= 0) & (pos < spatial[i])
        flat = flat + pos * stride_flat
        stride_flat *= spatial[i]
    flat = np.where(valid, flat, -1)
    return tuple(outs), flat.reshape(tuple(outs) + (-1,))


def adaptive(spatial, out_size):
    """Adaptive pooling windows: start = floor(i*L/o), end = ceil((i+1)*L/o)."""
    n = len(spatial)
    out_size = tuple(L if o is None else o for o, L in zip(_tup(out_size, n), spatial))
    per_dim, kmax = [], []
    for L, o in zip(spatial, out_size):
        starts = [(i * L) // o for i in range(o)]
        ends = [math.ceil((i + 1) * L / o) for i in range(o)]
        k = max(e - s for s, e in zip(starts, ends))
        pos = np.full((o, k), -1, dtype=np.int64)
        for i, (s, e) in enumerate(zip(starts, ends)):
            pos[i, : e - s] = np.arange(s, e)
        per_dim.append(pos)
        kmax.append(k)
    flat = np.zeros(tuple(out_size) + tuple(kmax), dtype=np.int64)
    valid = np.ones_like(flat, dtype=bool)
    stride_flat = 1
    for i in reversed(range(n)):
        shape = [1] * (2 * n)
        shape[i] = out_size[i]
        shape[n + i] = kmax[i]
        pos = per_dim[i].reshape(shape)
        valid &= pos >= 0
        flat = flat + np.where(pos >= 0, pos, 0) * stride_flat
        stride_flat *= spatial[i]
    flat = np.where(valid, flat, -1)
    return tuple(out_size), flat.reshape(tuple(out_size) + (-1,))

"""Helpers shared by the op rules."""

from __future__ import annotations

import numpy as np

from .._exact import Q0, q, zeros


def tensor_leaves(obj):
    """The tensor-valued leaves (numpy arrays) of a nested args structure, in order."""
    out = []

    def walk(o):
        if isinstance(o, np.ndarray):
            out.append(o)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(obj)
    return out


def bcast_tangent(t, arg_shape, out_shape):
    """Tangent of an argument of shape ``arg_shape`` broadcast to ``(B,) + out_shape``."""
    if t is None:
        return None
    B = t.shape[0]
    pad = len(out_shape) - len(arg_shape)
    t = t.reshape((B,) + (1,) * pad + tuple(arg_shape))
    return np.broadcast_to(t, (B,) + tuple(out_shape))


def bcast_index(arg_shape, out_shape) -> np.ndarray:
    """For each element of ``out_shape`` (flat), the flat index of the argument element."""
    idx = np.arange(int(np.prod(arg_shape, dtype=np.int64)), dtype=np.int64).reshape(arg_shape)
    return np.broadcast_to(idx, out_shape).ravel()


def add_t(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def scale_t(t, c):
    if t is None:
        return None
    return t * q(c)


def zeros_t(B, shape, like=None):
    """Zero tangents, of the same kind (exact objects or verified floats) as ``like``."""
    from .._fastfloat import FT, wrap

    if isinstance(like, FT):
        return wrap(np.zeros((B,) + tuple(shape)))
    return zeros((B,) + tuple(shape))


def tan(x):
    """A tangent result as an array of its own kind (verified floats stay verified floats)."""
    from .._fastfloat import FT

    if x is None or isinstance(x, FT):
        return x
    return np.asarray(x, dtype=object)


def shape_of(v):
    return tuple(np.shape(v))


def exact_scalar(v, dtype=None):
    """A Python scalar argument as the exact value the framework uses.

    PyTorch applies a Python float to a tensor of dtype ``dtype`` after rounding it
    to that dtype, so the exact model does the same.
    """
    if isinstance(v, (bool, np.bool_)):
        return q(int(v))
    if isinstance(v, (int, np.integer)):
        return q(int(v))
    if dtype is not None:
        import torch

        if dtype.is_floating_point:
            return q(torch.tensor(float(v), dtype=dtype).item())
    return q(float(v))


def where_mask(mask, a, b):
    """Elementwise select on object arrays (numpy.where keeps object dtype)."""
    return np.where(mask, a, b)


def ensure_obj(a):
    a = np.asarray(a)
    if a.dtype == object:
        return a
    from .._exact import as_exact

    return as_exact(a)


__all__ = ["Q0", "tensor_leaves", "bcast_tangent", "bcast_index", "add_t", "scale_t", "zeros_t", "tan",
           "shape_of", "exact_scalar", "where_mask", "ensure_obj"]

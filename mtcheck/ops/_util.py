"""Helpers shared by the op rules."""

from __future__ import annotations

import numpy as np

from .._exact import Q0, q, zeros


def tensor_leaves(obj, kind=np.ndarray):
    """The tensor-valued leaves (numpy arrays, or ``kind``) of a nested args structure, in order."""
    out = []

    def walk(o):
        if isinstance(o, kind):
            out.append(o)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(obj)
    return out


def arg_grads(args, by_pos: dict) -> list:
    """The list a ``vjp`` returns, from cotangents keyed by top-level argument position
    (a list of cotangents for a list argument, e.g. ``cat``'s tensors)."""
    out = []
    for i, a in enumerate(args):
        g = by_pos.get(i)
        if isinstance(a, np.ndarray):
            out.append(g)
        elif isinstance(a, (list, tuple)):
            for j, v in enumerate(a):
                if isinstance(v, np.ndarray):
                    out.append(None if g is None else g[j])
    return out


def obj(x):
    """``x`` as an object array, keeping exact array subclasses (fixed point, verified floats)."""
    if isinstance(x, np.ndarray) and x.dtype == object:
        return x
    from .._ball import Ball
    from .._fixed import Fx, Mod

    if isinstance(x, (Fx, Mod, Ball)):
        return x
    return np.asarray(x, dtype=object)


def lift_like(v, like):
    """A constant operand in the exact kind of the cotangent ``like``: converted to fixed point
    when ``like`` is, before any reshape (conversions of constants are cached per array)."""
    from .._fixed import Fx, Mod, from_exact, mod_wrap, to_mod

    if isinstance(like, Mod) and isinstance(v, np.ndarray) and not isinstance(v, Mod):
        res, e, bits = to_mod(v, like.p)
        return mod_wrap(res, like.p, e, bits)
    if isinstance(like, Fx) and isinstance(v, np.ndarray) and v.dtype == object and not isinstance(v, Fx):
        return from_exact(v)
    return v


def zeros_like_cot(shape, like):
    """Zeros of the same exact kind as the cotangent ``like`` (fixed point or rationals)."""
    from .._ball import Ball, ball
    from .._fixed import Fx, Mod, mod_zeros, zeros as fzeros

    if isinstance(like, Ball):
        return ball(np.zeros(shape))
    if isinstance(like, Mod):
        return mod_zeros(shape, like)
    if isinstance(like, Fx):
        return fzeros(shape, like.e)
    return zeros(shape)


def unbroadcast(g, arg_shape):
    """Cotangent ``g`` of shape ``(B,) + out_shape`` summed back to ``(B,) + arg_shape``."""
    if g is None:
        return None
    arg_shape = tuple(arg_shape)
    out_shape = g.shape[1:]
    if out_shape == arg_shape:
        return g
    pad = len(out_shape) - len(arg_shape)
    axes = tuple(range(1, 1 + pad)) + tuple(1 + pad + i for i, s in enumerate(arg_shape)
                                                if s == 1 and out_shape[pad + i] != 1)
    r = np.sum(g, axis=axes, keepdims=True) if axes else g
    return r.reshape((g.shape[0],) + arg_shape)


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
    from .._ball import Ball, ball
    from .._fastfloat import FT, wrap
    from .._support import Dep

    if isinstance(like, Ball):
        return ball(np.zeros((B,) + tuple(shape)))
    if isinstance(like, Dep):
        return np.zeros((B,) + tuple(shape)).view(Dep)
    if isinstance(like, FT):
        return wrap(np.zeros((B,) + tuple(shape)))
    return zeros((B,) + tuple(shape))


def tan(x):
    """A tangent result as an array of its own kind (verified floats stay verified floats)."""
    from .._fastfloat import FT
    from .._support import Dep

    from .._ball import Ball
    from .._fixed import Fx, Mod

    # fixed point too: np.asarray would drop its exponent (the integers without their scale), and
    # a fixed-point pass (directional derivatives) would then fall back to rationals at this rule
    if x is None or isinstance(x, (FT, Dep, Fx, Mod, Ball)):
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
    if isinstance(v, (float, np.floating)) and not np.isfinite(v):
        from . import NotModelled

        raise NotModelled(f"a non-finite scalar argument ({float(v)!r}) has no exact rational value")
    if dtype is not None:
        import torch

        if dtype.is_floating_point:
            return q(torch.tensor(float(v), dtype=dtype).item())
    return q(float(v))


def where_mask(mask, a, b):
    """Elementwise select on object arrays (numpy.where keeps object dtype)."""
    return np.where(mask, a, b)


def ensure_obj(a):
    from .._ball import Ball

    if isinstance(a, Ball):
        return a
    a = np.asarray(a)
    if a.dtype == object:
        return a
    from .._exact import as_exact

    return as_exact(a)


__all__ = ["Q0", "tensor_leaves", "arg_grads", "unbroadcast", "obj", "zeros_like_cot", "bcast_tangent", "bcast_index", "add_t", "scale_t", "zeros_t", "tan",
           "shape_of", "exact_scalar", "where_mask", "ensure_obj"]

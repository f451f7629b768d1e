"""Structural zeros of derivatives: which entries of a tangent *may* be nonzero.

A :class:`Dep` array holds 0/1 flags. Run through the same forward-mode rules as exact
tangents, with one direction that moves every input, every linear operation is replaced by
"may be nonzero" logic: a sum may be nonzero when a term may, a product when both factors
may, a selection keeps the flag of what it selects. A flag of 0 is a proof that the entry's
derivative is exactly zero in every direction (no cancellation is ever assumed); a flag of 1
proves nothing. This is how mtcheck shows that the tie rows of dead units (a max-pool window
of relus that are all off) vanish without computing them.
"""

from __future__ import annotations

import flint
import numpy as np


class NotStructural(Exception):
    """An operation Dep does not model: the caller treats every flag as 'may be nonzero'."""


def _flags(x):
    """0/1 float flags of an operand: Dep as is, exact constants by being nonzero."""
    if isinstance(x, Dep):
        return x.view(np.ndarray)
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            return (x != 0).astype(np.float64)
        return (x != 0).astype(np.float64)
    if isinstance(x, (list, tuple)):
        return type(x)(_flags(v) for v in x)
    if isinstance(x, (flint.fmpq, flint.fmpz, int, float, np.integer, np.floating, bool, np.bool_)):
        return float(x != 0)
    return x


def _move_arg(x):
    """Arguments of a data-movement function: arrays and exact scalars become flags, while
    shapes, axes and index arrays of integers stay as they are."""
    if isinstance(x, Dep):
        return x.view(np.ndarray)
    if isinstance(x, np.ndarray):
        return (x != 0).astype(np.float64) if x.dtype == object or x.dtype.kind == "f" else x
    if isinstance(x, (list, tuple)) and any(isinstance(v, (Dep, np.ndarray)) for v in x):
        return type(x)(_move_arg(v) for v in x)
    if isinstance(x, (flint.fmpq, flint.fmpz)):
        return float(x != 0)
    return x


def wrap(a) -> "Dep":
    return np.asarray(a, dtype=np.float64).view(Dep)


def ones(shape) -> "Dep":
    return wrap(np.ones(shape))


def matmul(a, b) -> "Dep":
    fa, fb = np.asarray(_flags(a), dtype=np.float64), np.asarray(_flags(b), dtype=np.float64)
    return wrap((np.matmul(fa, fb) > 0).astype(np.float64))


_MOVE = {np.where, np.concatenate, np.stack, np.broadcast_to, np.take, np.moveaxis, np.transpose, np.reshape,
         np.ascontiguousarray, np.squeeze, np.expand_dims, np.swapaxes, np.repeat, np.tile, np.flip, np.copy,
         np.shape, np.ndim, np.size, np.result_type, np.broadcast_arrays, np.atleast_1d, np.take_along_axis,
         np.roll, np.pad}


class Dep(np.ndarray):
    """0/1 flags: 0 = the derivative is structurally zero."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if kwargs.get("out") is not None:
            raise NotStructural("in-place ufunc")
        args = [_flags(x) for x in inputs]
        if method == "reduce" and ufunc is np.add:
            kw = {k: v for k, v in kwargs.items() if k in ("axis", "keepdims")}
            return wrap((np.add.reduce(args[0], **kw) > 0).astype(np.float64))
        if method == "at" and ufunc is np.add:
            raise NotStructural("add.at")
        if method != "__call__":
            raise NotStructural(f"{ufunc.__name__}.{method}")
        if ufunc in (np.negative, np.positive, np.absolute):
            return wrap(args[0])
        if ufunc in (np.add, np.subtract):
            return wrap(np.maximum(np.asarray(args[0], dtype=np.float64), np.asarray(args[1], dtype=np.float64)))
        if ufunc is np.multiply:
            return wrap(np.asarray(args[0], dtype=np.float64) * np.asarray(args[1], dtype=np.float64))
        raise NotStructural(f"ufunc {ufunc.__name__}")

    def __array_function__(self, func, types, args, kwargs):
        if func in _MOVE:
            res = func(*[_move_arg(a) for a in args], **{k: _move_arg(v) for k, v in kwargs.items()})
            return wrap(res) if isinstance(res, np.ndarray) and res.dtype.kind == "f" else res
        if func in (np.sum,):
            a = np.asarray(_flags(args[0]), dtype=np.float64)
            axis = kwargs.get("axis", args[1] if len(args) > 1 else None)
            return wrap((np.sum(a, axis=axis, keepdims=kwargs.get("keepdims", False)) > 0).astype(np.float64))
        if func is np.cumsum:
            a = np.asarray(_flags(args[0]), dtype=np.float64)
            axis = kwargs.get("axis", args[1] if len(args) > 1 else None)
            return wrap(np.maximum.accumulate(a, axis=axis))
        if func is np.matmul:
            return matmul(args[0], args[1])
        raise NotStructural(f"numpy function {getattr(func, '__name__', func)}")

    def __setitem__(self, key, value):
        super().__setitem__(key, _flags(value))

    def sum(self, axis=None, keepdims=False, **kw):
        return wrap((np.sum(self.view(np.ndarray), axis=axis, keepdims=keepdims) > 0).astype(np.float64))

"""Verified float64 arithmetic for exact tangents (a fast path of the exact model).

Tangent arrays hold exact dyadic numbers. When every coefficient is dyadic and
every partial sum stays within float64's 53-bit significand, float64 arithmetic
(BLAS included, in any summation order) computes them *exactly*. :class:`FT` is
an ``ndarray`` subclass whose arithmetic checks a sufficient condition for that
before each operation, from two quantities of its operands: the *granularity*
(the exponent of the lowest set bit over all entries, so every entry is a multiple
of ``2**g``) and a bound on the magnitude of every partial sum. When the condition
fails, or an operation outside the whitelist is attempted, :class:`Inexact` is
raised and the caller redoes the work in rational arithmetic. Nothing is ever
rounded silently.
"""

from __future__ import annotations

import flint
import numpy as np

_MARGIN = 1.0 + 2.0 ** -20   # covers the rounding of the bound computations themselves
_LIMIT = 2.0 ** 53


class Inexact(Exception):
    """Float64 cannot be shown to compute this exactly: use rational arithmetic."""


def granularity(a: np.ndarray):
    """Exponent g of the lowest set bit over the nonzero entries (every entry is k * 2**g), or None.

    For an :class:`FT` a cached lower bound is used when one is known (a gather or a
    selection of an array has at least the granularity of its source)."""
    if isinstance(a, FT) and getattr(a, "_gran", _UNKNOWN) is not _UNKNOWN:
        return a._gran
    g = _granularity(a)
    if isinstance(a, FT):
        a._gran = g
    return g


_UNKNOWN = object()


def _granularity(a):
    a = np.asarray(a, dtype=np.float64).ravel()
    a = a[a != 0]
    if a.size == 0:
        return None
    if not np.isfinite(a).all():
        raise Inexact("non-finite value")
    m, e = np.frexp(a)
    im = (np.abs(m) * 2.0 ** 53).astype(np.int64)
    low = im & -im
    tz = np.log2(low.astype(np.float64)).astype(np.int64)
    return int((e.astype(np.int64) - 53 + tz).min())


def _g_sum(*gs):
    gs = [g for g in gs if g is not None]
    return None if not gs else sum(gs) if len(gs) > 1 else gs[0]


def _check(bound_max: float, g) -> None:
    if g is None or bound_max == 0:
        return
    if not np.isfinite(bound_max) or bound_max * _MARGIN >= np.ldexp(_LIMIT, g):
        raise Inexact(f"partial sums up to {bound_max:g} at granularity 2^{g} exceed 53 bits")


_CACHE: dict = {}   # id(object array) -> (the array, its exact float64 copy); arrays are not mutated


def to_float_exact(v):
    """An exact value (fmpq, int, object array of fmpq/int, float array) as float64, or Inexact."""
    if isinstance(v, FT):
        return v.view(np.ndarray)
    from ._ball import Ball

    if isinstance(v, Ball):
        raise Inexact("an enclosure of irrational values")
    if isinstance(v, np.ndarray):
        if v.dtype == np.float64:
            return v
        if v.dtype == bool or np.issubdtype(v.dtype, np.integer):
            f = v.astype(np.float64)
            if np.abs(v).max(initial=0) >= 2 ** 53:
                raise Inexact("integer too large")
            return f
        if v.dtype == object:
            hit = _CACHE.get(id(v))
            if hit is not None and hit[0] is v:
                return hit[1]
            out = np.empty(v.shape, dtype=np.float64)
            flat = out.reshape(-1)
            for i, x in enumerate(v.reshape(-1).tolist()):
                flat[i] = _scalar(x)
            if v.size >= 256:               # weights: converted once per model, not once per product
                if len(_CACHE) > 512:
                    _CACHE.clear()
                _CACHE[id(v)] = (v, out)
            return out
        raise Inexact(f"dtype {v.dtype}")
    return _scalar(v)


def _scalar(x) -> float:
    if isinstance(x, flint.fmpq):
        den = int(x.q)
        if den & (den - 1):
            raise Inexact("a non-dyadic coefficient")
        f = float(int(x.p)) / den if abs(int(x.p)) < 2 ** 53 else None
        if f is None or flint.fmpq(*f.as_integer_ratio()) != x:
            raise Inexact("a coefficient not representable in float64")
        return f
    if isinstance(x, (bool, np.bool_)):
        return float(x)
    if isinstance(x, (int, np.integer)):
        if abs(int(x)) >= 2 ** 53:
            raise Inexact("integer too large")
        return float(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    raise Inexact(f"value of type {type(x).__name__}")


def wrap(a, gran=_UNKNOWN) -> "FT":
    out = np.asarray(a, dtype=np.float64).view(FT)
    out._gran = gran
    return out


_MOVE = {np.where, np.concatenate, np.stack, np.broadcast_to, np.take, np.moveaxis, np.transpose, np.reshape,
         np.ascontiguousarray, np.squeeze, np.expand_dims, np.swapaxes, np.repeat, np.tile, np.flip,
         np.copy, np.array_equal, np.shape, np.ndim, np.size, np.result_type, np.broadcast_arrays, np.atleast_1d,
         np.take_along_axis, np.roll, np.pad}
_COMPARE = {np.greater, np.greater_equal, np.less, np.less_equal, np.equal, np.not_equal, np.isfinite}


def _plain(x):
    if isinstance(x, FT):
        return x.view(np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, np.ndarray) and x.dtype == object:
        return to_float_exact(x)
    if isinstance(x, flint.fmpq):
        return _scalar(x)
    return x


class FT(np.ndarray):
    """float64 array of exact dyadic values; arithmetic is verified or refused."""

    def __array_finalize__(self, obj):
        # views, slices and gathers keep (a lower bound of) their source's granularity
        self._gran = getattr(obj, "_gran", _UNKNOWN)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if kwargs.get("out") is not None:
            raise Inexact("in-place ufunc")
        args = [_plain(x) for x in inputs]
        if method == "reduce" and ufunc is np.add:
            return _reduce_sum(args[0], kwargs.get("axis"), kwargs.get("keepdims", False))
        if method != "__call__":
            raise Inexact(f"{ufunc.__name__}.{method}")
        if ufunc in _COMPARE:
            return ufunc(*args, **kwargs)
        if ufunc in (np.negative, np.positive, np.absolute):
            return wrap(ufunc(*args))
        if ufunc in (np.add, np.subtract):
            a, b = (np.asarray(v, dtype=np.float64) for v in args)
            g = _min_g(granularity(a), granularity(b))
            _check(float((np.abs(a) + np.abs(b)).max(initial=0)), g)
            return wrap(ufunc(a, b))
        if ufunc is np.multiply:
            a, b = (np.asarray(v, dtype=np.float64) for v in args)
            _check(float(np.abs(a * b).max(initial=0)), _g_sum(granularity(a), granularity(b)))
            return wrap(a * b)
        raise Inexact(f"ufunc {ufunc.__name__}")

    def __array_function__(self, func, types, args, kwargs):
        if func in _MOVE:
            res = func(*_plain(list(args)), **{k: _plain(v) for k, v in kwargs.items()})
            if isinstance(res, np.ndarray) and res.dtype.kind == "f":
                gs = [a._gran for a in _fts(args) if a._gran is not _UNKNOWN]
                known = len(gs) == len(_fts(args)) and func is not np.where
                return wrap(res, _min_all(gs) if known else _UNKNOWN)
            return res
        if func is np.sum:
            a = _plain(args[0])
            return _reduce_sum(a, kwargs.get("axis", args[1] if len(args) > 1 else None), kwargs.get("keepdims", False))
        if func is np.cumsum:
            a = _plain(args[0])
            axis = kwargs.get("axis", args[1] if len(args) > 1 else None)
            _check(float(np.sum(np.abs(a), axis=axis).max(initial=0)), granularity(a))
            return wrap(np.cumsum(a, axis=axis))
        raise Inexact(f"numpy function {getattr(func, '__name__', func)}")

    def __setitem__(self, key, value):
        # an assignment changes values behind the cached granularity: forget it, and
        # accept only values that are exact in float64
        self._gran = _UNKNOWN
        super().__setitem__(key, _plain(value) if not isinstance(value, (int, float)) else value)

    def sum(self, axis=None, keepdims=False, **kw):
        return _reduce_sum(self.view(np.ndarray), axis, keepdims)


def _fts(args):
    out = []
    for a in args:
        if isinstance(a, FT):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(_fts(a))
    return out


def _min_all(gs):
    gs = [g for g in gs if g is not None]
    return min(gs) if gs else None


def _absmax(a) -> float:
    return float(max(a.max(), -a.min())) if a.size else 0.0


def remember(exact: np.ndarray, floats: np.ndarray) -> None:
    """Record that the object array ``exact`` holds exactly the values of float64 ``floats``
    (constants converted from float tensors), so products need not convert it again."""
    if exact.size >= 256:
        if len(_CACHE) > 512:
            _CACHE.clear()
        _CACHE[id(exact)] = (exact, floats)


def _min_g(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _reduce_sum(a, axis, keepdims):
    a = np.asarray(a, dtype=np.float64)
    _check(float(np.sum(np.abs(a), axis=axis).max(initial=0)) if a.size else 0.0, granularity(a))
    return wrap(np.sum(a, axis=axis, keepdims=keepdims))


def matmul(a, b):
    """Exact product when one operand is an FT (the other is converted exactly)."""
    ga = granularity(a) if isinstance(a, FT) else None
    gb = granularity(b) if isinstance(b, FT) else None
    fa, fb = to_float_exact(a), to_float_exact(b)
    if ga is None and not isinstance(a, FT):
        ga = granularity(fa)
    if gb is None and not isinstance(b, FT):
        gb = granularity(fb)
    g = _g_sum(ga, gb)
    if fa.size and fb.size and g is not None:
        # cheap bound first: max|a| * max column sum of |b| bounds every partial sum
        # (a 1-D b is a column: its "column sum" is its whole sum, axis 0)
        cheap = _absmax(fa) * float(np.abs(fb).sum(axis=-2 if fb.ndim > 1 else 0).max()) if fb.size < fa.size else \
            float(np.abs(fa).sum(axis=-1).max()) * _absmax(fb)
        if not (np.isfinite(cheap) and cheap * _MARGIN < np.ldexp(_LIMIT, g)):
            _check(float(np.matmul(np.abs(fa), np.abs(fb)).max(initial=0)), g)
    return wrap(np.matmul(fa, fb))


def to_exact(a) -> np.ndarray:
    """An FT's values as an fmpq object array (exact: they are dyadic floats)."""
    from ._exact import from_floats

    return from_floats(np.asarray(a, dtype=np.float64))

"""Exact dyadic fixed point: integer arrays with one shared binary scale.

An :class:`Fx` holds integers (``flint.fmpz`` or Python ``int``, numpy object dtype) and an
exponent ``e``: its value is ``ints * 2**-e``, exactly. Every finite float is dyadic, and so
is every product and sum of them, so the derivatives of a program whose constants are floats
(weights, biases, dyadic scalars) stay in fixed point: additions align exponents by shifting,
multiplications add them, and matrix products are one FLINT ``fmpz_mat`` product — no
rational (gcd) arithmetic per entry. A non-dyadic constant (``1/3``) raises
:class:`NotDyadic`; the caller then redoes the work in rationals.

The op rules are written against numpy; ``Fx`` implements the numpy functions they use on
derivatives (elementwise add/sub/mul/neg, ``where``, gathers, reshapes, sums, ``add.at``,
assignment) and refuses anything else with :class:`NotDyadic`, so nothing is ever rounded.
"""

from __future__ import annotations

import flint
import numpy as np


class NotDyadic(Exception):
    """A value or operation outside exact dyadic fixed point: use rational arithmetic."""


def _dyadic(v):
    """(int, e) with v = int * 2**-e for an exact scalar (fmpq, int, float), or NotDyadic."""
    if isinstance(v, Fx):
        raise NotDyadic("array where a scalar was expected")
    if isinstance(v, (bool, np.bool_)):
        return int(v), 0
    if isinstance(v, (int, np.integer, flint.fmpz)):
        return int(v), 0
    if isinstance(v, flint.fmpq):
        den = int(v.q)
        if den & (den - 1):
            raise NotDyadic("a non-dyadic constant")
        return int(v.p), den.bit_length() - 1
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            raise NotDyadic("non-finite value")
        n, d = float(v).as_integer_ratio()
        return n, d.bit_length() - 1
    raise NotDyadic(f"value of type {type(v).__name__}")


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    """Integers times 2**k (k >= 0), elementwise, as a plain object array."""
    if k == 0:
        return a
    m = flint.fmpz(1) << k
    return np.multiply(a, m, dtype=object)


def wrap(ints, e: int) -> "Fx":
    out = np.asarray(ints, dtype=object).view(Fx)
    out.e = int(e)
    return out


def zeros(shape, e: int = 0) -> "Fx":
    a = np.empty(shape, dtype=object)
    a.fill(flint.fmpz(0))
    return wrap(a, e)


def _plain(x):
    return x.view(np.ndarray) if isinstance(x, Fx) else x


def lift(x, e_hint=None):
    """Any exact operand as (plain object int array or int scalar, exponent)."""
    if isinstance(x, Fx):
        return x.view(np.ndarray), x.e
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            return from_exact(x).view(np.ndarray), from_exact(x).e
        if x.dtype == bool or np.issubdtype(x.dtype, np.integer):
            return x.astype(object), 0
        if np.issubdtype(x.dtype, np.floating):
            f = from_floats(x)
            return f.view(np.ndarray), f.e
        raise NotDyadic(f"dtype {x.dtype}")
    return _dyadic(x)


def _align(items):
    """Operands at one common exponent: (list of plain arrays/ints, e)."""
    lifted = [lift(v) for v in items]
    E = max(e for _, e in lifted)
    out = []
    for a, e in lifted:
        if e == E:
            out.append(a)
        elif isinstance(a, np.ndarray):
            out.append(_shift(a, E - e))
        else:
            out.append(a << (E - e))
    return out, E


_CACHE: dict = {}      # id(exact constant array) -> (the array, its Fx): constants are never mutated


def from_exact(a: np.ndarray) -> "Fx":
    """An object array of exact dyadic rationals (fmpq/int) as Fx, or NotDyadic. Cached per array
    for large constants (weights are converted once per model)."""
    if isinstance(a, Fx):
        return a
    hit = _CACHE.get(id(a))
    if hit is not None and hit[0] is a:
        return hit[1]
    flat = a.ravel().tolist()
    pairs = [_dyadic(v) for v in flat]
    E = max((e for _, e in pairs), default=0)
    ints = np.empty(len(flat), dtype=object)
    ints[:] = [flint.fmpz(n) << (E - e) for n, e in pairs]
    out = wrap(ints.reshape(a.shape), E)
    if a.size >= 256:
        if len(_CACHE) > 512:
            _CACHE.clear()
        _CACHE[id(a)] = (a, out)
    return out


def remember(exact: np.ndarray, floats: np.ndarray) -> None:
    """Record the Fx form of an exact constant converted from the float array ``floats``."""
    if exact.size >= 256 and exact.dtype == object:
        hit = _CACHE.get(id(exact))
        if hit is not None and hit[0] is exact:
            return
        if len(_CACHE) > 512:
            _CACHE.clear()
        _CACHE[id(exact)] = (exact, from_floats(floats))


def from_floats(f: np.ndarray) -> "Fx":
    """Exact Fx of a float array (vectorized: mantissas and exponents by frexp)."""
    f = np.asarray(f, dtype=np.float64)
    if not np.isfinite(f).all():
        raise NotDyadic("non-finite value")
    m, ex = np.frexp(f)
    mant = (m * 2.0 ** 53).astype(np.int64)            # exact: |m| < 1
    ex = ex.astype(np.int64) - 53
    nz = mant != 0
    if not nz.any():
        return wrap(np.full(f.shape, flint.fmpz(0), dtype=object), 0)
    tz = np.zeros_like(mant)
    low = mant[nz] & -mant[nz]
    tz[nz] = np.log2(np.abs(low).astype(np.float64)).astype(np.int64)
    mant = np.where(nz, mant >> np.where(nz, tz, 0), 0)
    ex = ex + tz
    E = max(int(-ex[nz].min()), 0)                    # integers keep e = 0 (no negative exponents)
    sh = np.where(nz, ex + E, 0)                       # >= 0
    ints = np.empty(f.size, dtype=object)
    ints[:] = [flint.fmpz(int(a)) << int(s) for a, s in zip(mant.ravel().tolist(), sh.ravel().tolist())]
    return wrap(ints.reshape(f.shape), E)


def to_exact(a: "Fx") -> np.ndarray:
    """The values as an fmpq object array."""
    den = flint.fmpz(1) << a.e
    flat = [flint.fmpq(v, den) for v in a.view(np.ndarray).ravel().tolist()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(a.shape)


def to_float(a: "Fx") -> np.ndarray:
    from fractions import Fraction

    d = 1 << a.e
    return np.array([float(Fraction(int(v), d)) for v in a.view(np.ndarray).ravel().tolist()],
                    dtype=np.float64).reshape(a.shape)


def int_matrix(a: "Fx") -> "flint.fmpz_mat":
    r, c = a.shape
    return flint.fmpz_mat(r, c, a.view(np.ndarray).ravel().tolist())


def matmul2d(a, b) -> "Fx":
    """Exact product of two 2-D operands, at least one an Fx (the other converted, cached)."""
    (pa, ea), (pb, eb) = lift(a), lift(b)
    r, k = pa.shape
    k2, c = pb.shape
    assert k == k2, (pa.shape, pb.shape)
    if r == 0 or c == 0 or k == 0:
        return zeros((r, c), ea + eb)
    prod = flint.fmpz_mat(r, k, pa.ravel().tolist()) * flint.fmpz_mat(k, c, pb.ravel().tolist())
    out = np.empty(r * c, dtype=object)
    out[:] = prod.entries()
    return wrap(out.reshape(r, c), ea + eb)


_MOVE = {np.reshape, np.transpose, np.moveaxis, np.swapaxes, np.squeeze, np.expand_dims, np.broadcast_to,
         np.take, np.take_along_axis, np.flip, np.roll, np.repeat, np.tile, np.copy, np.ascontiguousarray,
         np.atleast_1d, np.shape, np.ndim, np.size, np.result_type}
_ALIGN = {np.where, np.concatenate, np.stack}


def _fxs(args):
    out = []
    for a in args:
        if isinstance(a, Fx):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(_fxs(a))
    return out


class Fx(np.ndarray):
    """Integers times ``2**-e`` (see the module docstring)."""

    e: int = 0

    def __array_finalize__(self, obj):
        self.e = getattr(obj, "e", 0)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "at":
            if ufunc is not np.add and ufunc is not np.subtract:
                raise NotDyadic(f"{ufunc.__name__}.at")
            target, idx = inputs[0], inputs[1]
            if not isinstance(target, Fx):
                raise NotDyadic("add.at into an array that is not fixed point")
            vals, e = lift(inputs[2])
            if e > target.e:
                target.rescale(e)
            elif e < target.e:
                vals = _shift(vals, target.e - e) if isinstance(vals, np.ndarray) else vals << (target.e - e)
            ufunc.at(target.view(np.ndarray), idx, vals)
            return None
        if kwargs.get("out") is not None:
            raise NotDyadic("in-place ufunc")
        if method == "reduce" and ufunc is np.add:
            a, e = lift(inputs[0])
            return wrap(np.add.reduce(a, **kwargs), e)
        if method != "__call__":
            raise NotDyadic(f"{ufunc.__name__}.{method}")
        if ufunc in (np.add, np.subtract):
            (a, b), e = _align(inputs)
            return wrap(ufunc(a, b, dtype=object), e)
        if ufunc is np.multiply:
            (a, ea), (b, eb) = lift(inputs[0]), lift(inputs[1])
            return wrap(np.multiply(a, b, dtype=object), ea + eb)
        if ufunc in (np.negative, np.positive):
            a, e = lift(inputs[0])
            return wrap(ufunc(a, dtype=object), e)
        if ufunc in (np.greater, np.greater_equal, np.less, np.less_equal, np.equal, np.not_equal):
            (a, b), _ = _align(inputs)
            return ufunc(a, b)
        raise NotDyadic(f"ufunc {ufunc.__name__}")

    def __array_function__(self, func, types, args, kwargs):
        if func in _MOVE:
            fx = _fxs(args)
            res = func(*[_plain(a) for a in args], **kwargs)
            return wrap(res, fx[0].e) if isinstance(res, np.ndarray) and res.dtype == object else res
        if func in _ALIGN:
            if func is np.where:
                cond, rest = args[0], list(args[1:])
                items, e = _align(rest)
                return wrap(np.where(_plain(cond), *items), e)
            seq = list(args[0])
            items, e = _align(seq)
            items = [np.asarray(v, dtype=object) if not isinstance(v, np.ndarray) else v for v in items]
            return wrap(func(items, *args[1:], **kwargs), e)
        if func is np.sum:
            a, e = lift(args[0])
            return wrap(np.asarray(np.sum(a, *args[1:], **kwargs), dtype=object), e)
        if func is np.cumsum:
            a, e = lift(args[0])
            return wrap(np.cumsum(a, *args[1:], **kwargs), e)
        if func is np.matmul:
            from ._exact import matmul

            return matmul(args[0], args[1])
        raise NotDyadic(f"numpy function {getattr(func, '__name__', func)}")

    def rescale(self, e: int) -> None:
        """Raise the exponent to ``e`` in place (the values do not change)."""
        if e > self.e:
            plain = self.view(np.ndarray)
            plain[...] = _shift(plain, e - self.e)
            self.e = e

    def __setitem__(self, key, value):
        vals, e = lift(value)
        if e > self.e:
            self.rescale(e)
        elif e < self.e:
            vals = _shift(vals, self.e - e) if isinstance(vals, np.ndarray) else vals << (self.e - e)
        self.view(np.ndarray)[key] = vals

    def sum(self, axis=None, keepdims=False, **kw):
        return wrap(np.asarray(np.sum(self.view(np.ndarray), axis=axis, keepdims=keepdims), dtype=object), self.e)

    def __reduce__(self):  # pragma: no cover - never pickled
        raise TypeError("Fx arrays are not picklable")

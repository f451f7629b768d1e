"""Exact rational arrays: numpy object arrays of ``flint.fmpq``.

Every finite float is a dyadic rational; :func:`from_tensor` converts a tensor
to its exact value. Matrix products go through FLINT (``fmpq_mat``) because a
Python-level object ``dot`` is two orders of magnitude slower.
"""

from __future__ import annotations

import math

import flint
import numpy as np

Q = flint.fmpq
Q0 = Q(0)
Q1 = Q(1)

# Below this many multiply-adds, numpy's object dot is cheaper than converting to FLINT.
_FLINT_MIN_WORK = 2048


def q(v) -> "flint.fmpq":
    """Exact rational from a Python int, float (finite) or fmpq."""
    if isinstance(v, flint.fmpq):
        return v
    if isinstance(v, (bool, np.bool_)):
        return Q(int(v))
    if isinstance(v, (int, np.integer)):
        return Q(int(v))
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"non-finite value {f!r}")
    n, d = f.as_integer_ratio()
    return Q(n, d)


def objects(seq, shape=None) -> np.ndarray:
    """A 1-D object array of the items of ``seq`` (a list), reshaped to ``shape``.

    ``np.fromiter`` stores each item as it is; the obvious ``out[:] = seq`` asks every FLINT
    number whether it is a sequence first, which costs 10x more than the copy (13 ms for a
    65,000-entry matrix product, the bulk of a conv layer's exact reverse pass)."""
    out = np.fromiter(seq, dtype=object, count=len(seq))
    return out if shape is None else out.reshape(shape)


def from_floats(arr: np.ndarray) -> np.ndarray:
    """Exact values of a float numpy array (any float dtype), as an fmpq object array."""
    a = np.asarray(arr, dtype=np.float64)
    return objects([Q(*v.as_integer_ratio()) for v in a.ravel().tolist()], a.shape)


class NonFiniteValue(ArithmeticError):
    """Arithmetic, a comparison or a conversion met a :class:`NonFinite` constant."""


class NonFinite:
    """A NaN or an infinity held by a constant of the program (``logdet``'s ``where(sign == -1, nan,
    logabsdet)``): carried by data movement and selections, and refused by every arithmetic
    operation, comparison and conversion (the model turns that into a NonFiniteError naming the
    op). A program whose exact values never use it is checked as any other."""

    __slots__ = ("value",)

    def __init__(self, value: float):
        self.value = value

    def __repr__(self):
        return f"NonFinite({self.value!r})"

    def _refuse(self, *_args, **_kw):
        raise NonFiniteValue(f"a non-finite constant ({self.value!r})")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _refuse
    __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = __float__ = __int__ = __index__ = __bool__ = _refuse

    def __eq__(self, other):
        self._refuse()

    def __ne__(self, other):
        self._refuse()

    __hash__ = object.__hash__


def from_floats_nonfinite(arr: np.ndarray) -> np.ndarray:
    """:func:`from_floats`, with a :class:`NonFinite` in place of each NaN or infinity."""
    a = np.asarray(arr, dtype=np.float64)
    return objects([Q(*v.as_integer_ratio()) if math.isfinite(v) else NonFinite(v) for v in a.ravel().tolist()],
                   a.shape)


def has_nonfinite(v) -> bool:
    from ._ball import Ball

    return (isinstance(v, np.ndarray) and not isinstance(v, Ball) and v.dtype == object
            and any(isinstance(e, NonFinite) for e in v.ravel().tolist()))


_BY_CONTENT: "dict" = {}     # content digest -> exact array (weights seen again by later checks)


def from_tensor(t):
    """Exact value of a tensor: fmpq object array for floats, numpy int/bool otherwise.

    Large float tensors are cached by content (dtype, shape and a digest of their bytes):
    the weights of a model checked many times are converted once. The cached arrays are
    never mutated by mtcheck."""
    import hashlib

    import torch

    t = t.detach()
    if t.is_complex():
        raise TypeError("complex tensors are not supported")
    if t.dtype == torch.bool:
        return t.cpu().numpy().astype(bool)
    if not t.is_floating_point():
        return t.cpu().numpy().astype(np.int64)
    a = t.cpu().to(torch.float64).numpy()
    if a.size < 1024:
        return from_floats(a)
    key = (a.shape, hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=20).digest())
    hit = _BY_CONTENT.get(key)
    if hit is None:
        if len(_BY_CONTENT) > 256:
            _BY_CONTENT.clear()
        hit = _BY_CONTENT[key] = from_floats(a)
    return hit


def zeros(shape) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(Q0)
    return out


def full(shape, value) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(q(value))
    return out


def as_exact(a) -> np.ndarray:
    """Lift an int/bool array to fmpq (used when integer tensors meet float ones)."""
    a = np.asarray(a)
    if a.dtype == object:
        return a
    return objects([Q(int(v)) for v in a.ravel().tolist()], a.shape)


def to_float(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != object:
        return a.astype(np.float64)
    return np.array([float(int(v.p)) / float(int(v.q)) if abs(int(v.p)) < 2**1000 else _big_float(v)
                     for v in a.ravel().tolist()], dtype=np.float64).reshape(a.shape)


def _big_float(v) -> float:
    from fractions import Fraction

    return float(Fraction(int(v.p), int(v.q)))


def sign(a) -> np.ndarray:
    """Elementwise sign (-1, 0, 1) as int8, decided exactly."""
    from ._ball import Ball, sign as ball_sign

    if isinstance(a, Ball):
        return ball_sign(a)
    a = np.asarray(a)
    if a.dtype == object and a.size >= 256:
        # the float nearest a rational has its sign unless it underflows to 0: those few are
        # decided again exactly (a comparison per element costs 5x a conversion to float)
        f = near_floats(a.reshape(-1))
        if f is not None:
            s = np.sign(f).astype(np.int8)
            zero = np.flatnonzero(f == 0)
            if zero.size:
                # exact zeros (ties: most of them) and underflows, compared exactly all at once
                sub = a.reshape(-1)[zero]
                s[zero] = np.asarray(sub > 0, dtype=np.int8) - np.asarray(sub < 0, dtype=np.int8)
            return s.reshape(a.shape)
    return (a > 0).astype(np.int8) - (a < 0).astype(np.int8)


FLOAT_SLACK = 2.0 ** -50      # relative: a conversion within a few ulps of the rational


def near_floats(flat):
    """float64 values within ``FLOAT_SLACK`` (relative, or 2**-1070 absolute) of the exact
    values of ``flat`` (fmpq or int; a list or a 1-D object array), each with the exact value's
    sign or 0; None when one overflows or is not a number. For *pruning* only: the candidates for
    a maximum are the entries within the slack of the float maximum, and exact comparisons decide
    among them. (``float()`` of each value either way; numpy's conversion loop is the faster.)"""
    try:
        if isinstance(flat, np.ndarray):
            f = np.asarray(flat, dtype=object).astype(np.float64)
        else:
            f = np.fromiter((float(v) for v in flat), dtype=np.float64, count=len(flat))
    except (OverflowError, TypeError, ValueError):
        return None
    if not np.isfinite(f).all():
        return None
    return f


def matmul2d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact product of two 2-D object arrays."""
    if _is_ball(a) or _is_ball(b):
        from ._ball import matmul as _bm

        return _bm(a, b)
    if _is_mod(a) or _is_mod(b):
        from ._fixed import mod_matmul2d

        return mod_matmul2d(a, b)
    if _is_fx(a) or _is_fx(b):
        from ._fixed import matmul2d as _xm

        return _xm(a, b)
    if _is_dep(a) or _is_dep(b):
        from ._support import matmul as _dm

        return _dm(a, b)
    if _is_ft(a) or _is_ft(b):
        from ._fastfloat import matmul as _fm

        return _fm(a, b)
    r, k = a.shape
    k2, c = b.shape
    assert k == k2, (a.shape, b.shape)
    if r == 0 or c == 0:
        return zeros((r, c))
    if k == 0:
        return zeros((r, c))
    if r * k * c < _FLINT_MIN_WORK:
        out = a.dot(b)
        return _fix_ints(out)
    from ._fixed import cached_matrix

    build = (lambda m: flint.fmpq_mat(m.shape[0], m.shape[1], m.ravel().tolist()))
    ma = cached_matrix(a, "fmpq", build)
    mb = cached_matrix(b, "fmpq", build)
    return objects((ma * mb).entries(), (r, c))


def _fix_ints(a: np.ndarray) -> np.ndarray:
    """Make sure every entry is an fmpq (object dot of all-int data yields ints)."""
    flat = a.ravel()
    if flat.size and not all(isinstance(v, flint.fmpq) for v in flat.tolist()):
        a = np.array([q(v) for v in flat.tolist()], dtype=object).reshape(a.shape)
    return a


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact ``a @ b`` with numpy's matmul broadcasting rules (a, b at least 1-D)."""
    if _is_ball(a) or _is_ball(b):
        from ._ball import matmul as _bm

        return _bm(a, b)
    if _is_ft(a) or _is_ft(b):
        from ._fastfloat import matmul as _fm

        return _fm(a, b)
    if _is_dep(a) or _is_dep(b):
        from ._support import matmul as _dm

        return _dm(a, b)
    if not (_is_fx(a) or _is_fx(b) or _is_mod(a) or _is_mod(b)):
        a = np.asarray(a, dtype=object)
        b = np.asarray(b, dtype=object)
    squeeze_a = squeeze_b = False
    if a.ndim == 1:
        a = a[None, :]
        squeeze_a = True
    if b.ndim == 1:
        b = b[:, None]
        squeeze_b = True
    if a.ndim == 2 and b.ndim == 2:
        out = matmul2d(a, b)
    elif b.ndim == 2:
        lead = a.shape[:-1]
        out = matmul2d(a.reshape(-1, a.shape[-1]), b).reshape(lead + (b.shape[-1],))
    else:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a2 = np.broadcast_to(a, batch + a.shape[-2:])
        b2 = np.broadcast_to(b, batch + b.shape[-2:])
        parts = [matmul2d(a2[idx], b2[idx]) for idx in np.ndindex(*batch)]
        if parts and _is_mod(parts[0]):
            out = np.stack(parts).reshape(batch + parts[0].shape)
        elif parts and _is_fx(parts[0]):
            from ._fixed import wrap

            e = max(p.e for p in parts)
            for p in parts:
                p.rescale(e)
            out = wrap(np.stack([p.view(np.ndarray) for p in parts]).reshape(batch + parts[0].shape), e)
        else:
            out = zeros(batch + (a.shape[-2], b.shape[-1]))
            for idx, p in zip(np.ndindex(*batch), parts):
                out[idx] = p
    if squeeze_a:
        out = out[..., 0, :]
    if squeeze_b:
        out = out[..., 0]
    return out


def _is_ball(a) -> bool:
    from ._ball import Ball

    return isinstance(a, Ball)


def _is_dep(a) -> bool:
    from ._support import Dep

    return isinstance(a, Dep)


def _is_mod(a) -> bool:
    from ._fixed import Mod

    return isinstance(a, Mod)


def _is_fx(a) -> bool:
    from ._fixed import Fx

    return isinstance(a, Fx)


def _is_ft(a) -> bool:
    from ._fastfloat import FT

    return isinstance(a, FT)


def identity(n: int) -> np.ndarray:
    out = zeros((n, n))
    for i in range(n):
        out[i, i] = Q1
    return out


def is_zero(a) -> bool:
    if _is_ball(a):
        return bool(a.size == 0 or not ((a.mid != 0) | (a.rad != 0)).any())
    a = np.asarray(a)
    return bool(a.size == 0 or not (a != 0).any())


def fmt(v) -> str:
    """A short exact text for a rational: '3/4', '-2', '1/1024'."""
    v = q(v)
    return str(int(v.p)) if int(v.q) == 1 else f"{int(v.p)}/{int(v.q)}"

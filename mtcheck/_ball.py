"""Rigorous enclosures of irrational values: arrays of balls ``mid +- rad``.

A smooth op with irrational values (exp, log, tanh, erf, a square root, a softmax) cannot be
evaluated in rationals. Its values are enclosed instead: a :class:`Ball` array holds, for every
element, a float64 midpoint and a float64 radius with ``|true value - mid| <= rad``, proven. The
storage is one complex128 array (``mid + 1j * rad``), so every pure data movement numpy does
(reshape, transpose, indexing, gathers, concatenation, broadcasting, padding) moves a radius with
its midpoint for free; arithmetic is intercepted (``__array_ufunc__`` / ``__array_function__``)
and done on midpoints in float64 with the rounding error of each operation added to the radius
(every float64 operation rounds to nearest: relative error at most ``u = 2**-53``, plus ``2**-1074``
below the normal range; a dot product of length ``k`` errs by at most ``gamma_k |a|.|b|``,
``gamma_k = k u / (1 - k u)``, in any summation order, FMA or not). Anything else a rule might do
to a Ball is refused with :class:`NotEnclosed`, never computed as complex arithmetic.

Irrational functions (exp, erf, ...) are evaluated element by element with FLINT's Arb balls
(python-flint) and converted back with outward rounding. A radius of exactly 0 means the value is
the float midpoint exactly: ``exp(0) = 1``, ``gelu(0) = 0`` and ``0 * anything`` stay exact.

Cases are decided by comparisons: ``ball > 0`` is decided when the ball lies on one side, and
``sign`` is 0 only for an exact zero. An undecided comparison raises :class:`Undecided`; the model
turns it into an ``UNKNOWN`` verdict naming the node. A tie is never decided by a tolerance.
"""

from __future__ import annotations

import math

import flint
import numpy as np

U = 2.0 ** -53                 # unit roundoff of float64, round to nearest
ETA = 2.0 ** -1074             # smallest subnormal: the absolute error of an underflowing product
_UP = 1.0 + 2.0 ** -50         # a sum of a few nonnegative float terms, rounded up


class Undecided(Exception):
    """A comparison the enclosures cannot decide (a ball that contains the other side)."""


class NotEnclosed(TypeError):
    """A numpy operation on a Ball that has no rigorous enclosure rule here."""


def up(x):
    """An upper bound of a nonnegative quantity computed by a few rounded float operations."""
    return x * _UP + ETA


def gamma(k: int) -> float:
    ku = k * U
    if ku >= 0.5:
        raise NotEnclosed(f"a dot product of length {k} is too long for the float64 error bound")
    return up(ku / (1.0 - ku))


# ----------------------------------------------------------------------------- construction

def ball(mid, rad=None) -> "Ball":
    mid = np.asarray(mid, dtype=np.float64)
    out = np.empty(mid.shape, dtype=np.complex128)
    out.real = mid
    out.imag = 0.0 if rad is None else np.broadcast_to(np.asarray(rad, dtype=np.float64), mid.shape)
    if not (np.isfinite(out.real).all() and np.isfinite(out.imag).all()):
        raise NotEnclosed("an enclosure overflowed float64 (a value or radius is not finite)")
    return out.view(Ball)


def is_ball(x) -> bool:
    return isinstance(x, Ball)


def any_ball(*xs) -> bool:
    """Whether any of the (nested) operands is a Ball."""
    for x in xs:
        if isinstance(x, Ball):
            return True
        if isinstance(x, (list, tuple)) and any_ball(*x):
            return True
        if isinstance(x, dict) and any_ball(*x.values()):
            return True
    return False


def _scalar_ball(v):
    """(mid, rad) floats enclosing an exact scalar (fmpq, fmpz, int, float, bool)."""
    if isinstance(v, (bool, np.bool_)):
        return float(v), 0.0
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            raise NotEnclosed("a non-finite value")
        return f, 0.0
    if isinstance(v, (int, np.integer, flint.fmpz)):
        n = int(v)
        f = float(n)
        return f, (0.0 if int(f) == n else up(abs(f) * U))
    if isinstance(v, flint.fmpq):
        p, d = int(v.p), int(v.q)
        if d & (d - 1) == 0 and abs(p) < (1 << 53):
            return math.ldexp(float(p), -(d.bit_length() - 1)), 0.0
        from fractions import Fraction

        f = float(Fraction(p, d))      # correctly rounded
        return f, up(abs(f) * U) + ETA
    if isinstance(v, complex):
        raise NotEnclosed("a complex Python number (a Ball converted to objects by a rule)")
    raise NotEnclosed(f"no enclosure for a value of type {type(v).__name__}")


_CACHE: dict = {}     # id(exact object array) -> (the array, its Ball)


_ROOT_SOURCES: dict = {}     # id(memory owner) -> (owner, the constant, its float64 values)


def _float_view_of_constant(x: np.ndarray, sources: dict):
    """The float64 values of a view (``w.T``, a slice) of an exact constant known by its float64
    values, as the same view of those floats, or None. Object and float64 items are both 8 bytes,
    so the view's byte offset and strides apply to the floats unchanged. (Views are new objects at
    every call: each product of a transformer's weights with an enclosure converted them again,
    element by element.)"""
    if x.size < 256 or not isinstance(x.base, np.ndarray):
        return None
    root = x.base
    while isinstance(root.base, np.ndarray):
        root = root.base
    src = _ROOT_SOURCES.get(id(root))
    if src is None or _ROOT_SOURCES.get("n") != len(sources):
        # numpy points every view at the memory's owner, so a view of a constant (itself often a
        # reshaped view) is matched to it by the owner: the index is rebuilt when sources change
        _ROOT_SOURCES.clear()
        for e, fl in list(sources.values()):
            o = e
            while isinstance(o.base, np.ndarray):
                o = o.base
            _ROOT_SOURCES[id(o)] = (o, e, fl)
        _ROOT_SOURCES["n"] = len(sources)
        src = _ROOT_SOURCES.get(id(root))
    if src is None or src[0] is not root:
        return None
    _, r, fl = src
    if r.dtype != object or r.itemsize != 8 or not r.flags.c_contiguous:
        return None
    f = np.ascontiguousarray(fl, dtype=np.float64).reshape(-1)
    off = x.__array_interface__["data"][0] - r.__array_interface__["data"][0]
    if f.size != r.size or off < 0 or off % 8 or any(st < 0 for st in x.strides):
        return None
    hi = off // 8 + sum((n - 1) * st for n, st in zip(x.shape, x.strides) if n) // 8
    if hi >= f.size:
        return None
    return np.lib.stride_tricks.as_strided(f[off // 8:], shape=x.shape, strides=x.strides, writeable=False)


def to_ball(x) -> "Ball":
    """Any exact operand (or a Ball) as a Ball: exact floats and integers get radius 0."""
    if isinstance(x, Ball):
        return x
    from ._fixed import Fx, Mod

    if isinstance(x, Mod):
        from ._fixed import NotModular

        raise NotModular("residues modulo a prime met an enclosure: the exact rows are computed instead")
    if isinstance(x, Fx):
        ints = x.view(np.ndarray)
        flat = [_scalar_ball(int(v)) for v in ints.ravel().tolist()]
        mid = np.array([m for m, _ in flat], dtype=np.float64).reshape(ints.shape)
        rad = np.array([r for _, r in flat], dtype=np.float64).reshape(ints.shape)
        s = 2.0 ** -x.e
        if x.e > 1000:
            raise NotEnclosed("a fixed-point scale below the float64 range")
        m2 = mid * s
        tiny = (np.abs(m2) < 2.0 ** -1021) & (mid != 0)
        return ball(m2, np.where(rad > 0, up(rad * s), 0.0) + np.where(tiny, ETA, 0.0))
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            from ._fixed import _FLOAT_SOURCE

            src = _FLOAT_SOURCE.get(id(x))
            if src is not None and src[0] is x:
                return ball(src[1])             # an exact constant known by its float64 values
            view = _float_view_of_constant(x, _FLOAT_SOURCE)
            if view is not None:
                return ball(view)               # a view of one (``w.T``): the same view of its floats
            hit = _CACHE.get(id(x))
            if hit is not None and hit[0] is x:
                return hit[1]
            # only the nonzero entries are converted one by one (cotangent seeds are one-hot)
            nz = np.flatnonzero(np.asarray(x.ravel() != 0, dtype=bool)) if x.size >= 4096 else None
            vals = x.ravel().tolist() if nz is None else x.ravel()[nz].tolist()
            flat = [_scalar_ball(v) for v in vals]
            mids = np.array([m for m, _ in flat], dtype=np.float64)
            rads = np.array([r for _, r in flat], dtype=np.float64)
            if nz is None:
                mid, rad = mids.reshape(x.shape), rads.reshape(x.shape)
            else:
                mid, rad = np.zeros(x.size), np.zeros(x.size)
                mid[nz], rad[nz] = mids, rads
                mid, rad = mid.reshape(x.shape), rad.reshape(x.shape)
            out = ball(mid, rad)
            if x.size >= 256:                   # exact arrays are never mutated: convert once
                if len(_CACHE) > 512:
                    _CACHE.clear()
                out.flags.writeable = False
                _CACHE[id(x)] = (x, out)
            return out
        if x.dtype == bool or np.issubdtype(x.dtype, np.integer):
            f = x.astype(np.float64)
            big = np.abs(x.astype(np.float64)) >= 2.0 ** 53
            return ball(f, np.where(big, up(np.abs(f) * U), 0.0))
        if np.issubdtype(x.dtype, np.floating):
            return ball(x.astype(np.float64))
        raise NotEnclosed(f"no enclosure for dtype {x.dtype}")
    m, r = _scalar_ball(x)
    return ball(np.float64(m), np.float64(r))


def exactify(x):
    """A Ball whose every radius is 0 as exact rationals (fmpq objects); other values unchanged."""
    if not isinstance(x, Ball) or (x.rad != 0).any():
        return x
    from ._exact import from_floats

    return from_floats(x.mid)


def is_exact(x) -> bool:
    return not isinstance(x, Ball) or not (x.rad != 0).any()


# ----------------------------------------------------------------------------- the array type

def _parts(x):
    """(mid, rad) float64 arrays (or scalars) of an operand."""
    if isinstance(x, Ball):
        v = x.view(np.ndarray)
        return v.real, v.imag
    if isinstance(x, (float, np.floating)) and math.isfinite(float(x)):
        return float(x), 0.0
    if isinstance(x, (int, np.integer, bool, np.bool_)) and abs(int(x)) < (1 << 53):
        return float(x), 0.0
    b = to_ball(x)
    v = b.view(np.ndarray)
    if v.ndim == 0:
        return float(v.real), float(v.imag)
    return v.real, v.imag


def _wrap(mid, rad) -> "Ball":
    return ball(mid, rad)


# ----------------------------------------------------------------------------- structural identity
#
# A Ball may carry ``_keys``: an int64 array of its shape where two elements with the same key
# >= 0 are *proven* equal (the same enclosed coefficient applied to equal exact values, keyed by
# the rule that made them: eval batch norm). -1 means "no key". Keys move with their values
# through data movement only (reshape, transpose, indexing, where, concatenation, padding, ...);
# arithmetic and every in-place write drop them, so a key is never stale. A comparison whose
# enclosures overlap is decided as "equal" where the keys prove it, and a difference of two
# keyed elements with the same key is an exact 0.

_NEXT_KEY = [0]


def new_keys(groups: list) -> np.ndarray:
    """Fresh keys for hashable ``groups`` (one per element): equal groups, equal keys; keys never
    seen before (no two calls share a key)."""
    ids: dict = {}
    base = _NEXT_KEY[0]
    out = np.fromiter((ids.setdefault(g, base + len(ids)) for g in groups), dtype=np.int64, count=len(groups))
    _NEXT_KEY[0] = base + len(ids)
    return out


def keys_of(x):
    """The keys of an operand broadcastable like it, or None."""
    k = getattr(x, "_keys", None) if isinstance(x, Ball) else None
    return k if k is not None and k.shape == x.shape else None


def with_keys(b: "Ball", keys) -> "Ball":
    """``b`` with ``keys``, made read-only: a write through any view would leave the keys stale,
    so it fails loudly instead (:meth:`Ball.__setitem__` of the array itself drops them first)."""
    if keys is not None:
        b._keys = np.asarray(keys, dtype=np.int64)
        b.flags.writeable = False
    return b


def _drop_keys(b) -> None:
    """Before an in-place write into ``b``: forget its keys and make it writable again (raises
    for a view of a keyed array, whose base keeps its keys)."""
    if isinstance(b, Ball) and getattr(b, "_keys", None) is not None:
        b._keys = None
        b.flags.writeable = True


def _same_keys(a, b):
    """Where operands a and b are proven equal (a boolean array of their broadcast shape), or None."""
    ka, kb = keys_of(a), keys_of(b)
    if ka is None or kb is None:
        return None
    ka, kb = np.broadcast_arrays(ka, kb)
    return (ka == kb) & (ka >= 0)


def _is_zero_ball(x) -> bool:
    """A large Ball that is exactly 0 everywhere (mid and radius): adding it changes nothing."""
    if not isinstance(x, Ball) or x.size < 4096:
        return False
    v = x.view(np.ndarray)
    return not v.real.any() and not v.imag.any()


def _add(a, b, sign=1.0):
    if sign < 0:
        eq = _same_keys(a, b)
        if eq is not None and eq.any():
            v = np.array(_add_plain(a, b, sign).view(np.ndarray))      # a fresh array, without keys
            v[eq] = 0
            return v.view(Ball)
    return _add_plain(a, b, sign)


def _add_plain(a, b, sign=1.0):
    if _is_zero_ball(a) and np.shape(a) == np.broadcast_shapes(np.shape(a), np.shape(b)) == np.shape(b):
        return to_ball(b).copy() if sign > 0 else _wrap(-np.asarray(_parts(b)[0]), _parts(b)[1])
    if _is_zero_ball(b) and np.shape(b) == np.broadcast_shapes(np.shape(a), np.shape(b)) == np.shape(a):
        return to_ball(a).copy()
    am, ar = _parts(a)
    bm, br = _parts(b)
    if sign < 0:
        bm = -np.asarray(bm) if np.ndim(bm) else -bm
    z = am + bm
    r = ar + br
    if np.ndim(r) and np.size(r) >= 4096 and (np.asarray(r) > 0).all():
        # every radius positive: the rounding error of z is at most u|z| (round to nearest; a sum in
        # the subnormal range is exact), so the exact TwoSum error is not needed
        return _wrap(z, up(r + U * np.abs(z)))
    # TwoSum: the exact rounding error of z (zero when the float sum is exact)
    bb = z - am
    err = (am - (z - bb)) + (bm - bb)
    rnd = np.abs(err)
    return _wrap(z, np.where(np.asarray(r) > 0, up(r + U * np.abs(z) + rnd), np.where(rnd > 0, up(rnd), 0.0)))


def _mul(a, b):
    am, ar = _parts(a)
    bm, br = _parts(b)
    z = am * bm
    if np.size(z) >= 65536:
        return _mul_large(am, ar, bm, br, z)
    aam, abm = np.abs(am), np.abs(bm)
    prop = aam * br + ar * abm + ar * br
    # the rounding error of the product of two floats: zero when it is exact (checked by FMA-free
    # splitting is costly; bound it instead unless an operand is an exact zero or a power of two)
    exact = (np.asarray(am) == 0) | (np.asarray(bm) == 0)
    rnd = np.where(exact, 0.0, U * np.abs(z) + ETA)
    exact_pow2 = _pow2(am) | _pow2(bm)
    rnd = np.where(exact_pow2 & (np.abs(z) >= 2.0 ** -1021), 0.0, rnd)
    return _wrap(z, np.where((np.asarray(prop) > 0) | (np.asarray(rnd) > 0), up(prop + rnd), 0.0))


def _mul_large(am, ar, bm, br, z):
    """:func:`_mul` for large arrays, with the same bounds and fewer passes: the exactness of a
    product (an operand 0 or +-2**k) is looked at only where the propagated radius is 0, since
    elsewhere the radius is positive anyway and ``u|z|`` bounds the rounding."""
    absz = np.abs(z)
    prop = 0.0
    if np.any(br):
        prop = prop + np.abs(am) * br
    if np.any(ar):
        prop = prop + ar * (np.abs(bm) + br)
    rad = np.where(np.asarray(prop) > 0, up(prop + U * absz + ETA), 0.0) if np.ndim(prop) else \
        np.zeros(np.shape(z)) if prop == 0 else up(prop + U * absz + ETA)
    rad = np.broadcast_to(rad, np.shape(z)).copy()
    shape = np.shape(z)
    need = (rad == 0) & (np.broadcast_to(am, shape) != 0) & (np.broadcast_to(bm, shape) != 0)
    if need.any():
        idx = np.nonzero(need)
        ma, mb, zz = np.broadcast_to(am, shape)[idx], np.broadcast_to(bm, shape)[idx], absz[idx]
        exact = (_pow2(ma) | _pow2(mb)) & (zz >= 2.0 ** -1021)
        rad[idx] = np.where(exact, 0.0, up(U * zz + ETA))
    return _wrap(z, rad)


def _pow2(m):
    """Whether each float is +-2**k (a product with it is exact, barring underflow/overflow)."""
    m = np.asarray(m, dtype=np.float64)
    fr, _ = np.frexp(np.abs(m))
    return fr == 0.5


def _div(a, b):
    am, ar = _parts(a)
    bm, br = _parts(b)
    lo = np.abs(bm) - br
    if (np.asarray(lo) <= 0).any():
        raise Undecided("a division by a value whose enclosure contains 0")
    z = am / bm
    # |a/b - am/bm| <= (ar + |am/bm| br) / (|bm| - br); |am/bm| <= |z| (1 + u)
    prop = (ar + np.abs(z) * _UP * br) / (lo * (1 - 2 * U))
    exact = (np.asarray(am) == 0) | (_pow2(bm) & (np.abs(z) >= 2.0 ** -1021))
    rnd = np.where(exact, 0.0, U * np.abs(z) + ETA)
    return _wrap(z, np.where((np.asarray(prop) > 0) | (np.asarray(rnd) > 0), up(prop + rnd), 0.0))


def _cmp(ufunc, a, b):
    am, ar = _parts(a)
    bm, br = _parts(b)
    dm = np.asarray(am - bm)
    exact = (np.asarray(ar) == 0) & (np.asarray(br) == 0)
    # exact operands: the rounded difference of two floats has the sign of the exact one
    R = np.where(exact, 0.0, up(np.asarray(ar + br) + U * np.abs(dm)))
    pos = np.where(exact, dm > 0, dm - R > 0)
    neg = np.where(exact, dm < 0, dm + R < 0)
    zero = exact & (dm == 0)
    eq = _same_keys(a, b)
    if eq is not None:
        zero = zero | eq
        pos, neg = pos & ~eq, neg & ~eq
    nonpos = neg | zero | (dm + R <= 0)      # surely a - b <= 0
    nonneg = pos | zero | (dm - R >= 0)      # surely a - b >= 0
    if ufunc is np.greater:
        res, ok = pos, pos | nonpos
    elif ufunc is np.less:
        res, ok = neg, neg | nonneg
    elif ufunc is np.greater_equal:
        res, ok = nonneg, nonneg | neg
    elif ufunc is np.less_equal:
        res, ok = nonpos, nonpos | pos
    elif ufunc is np.equal:
        res, ok = zero, zero | pos | neg
    else:
        res, ok = ~zero, zero | pos | neg
    if not np.all(ok):
        raise Undecided("a comparison of values whose enclosures overlap")
    return np.asarray(res, dtype=bool)


def _sum(x, axis=None, keepdims=False):
    m, r = _parts(x)
    m = np.asarray(m)
    z = np.sum(m, axis=axis, keepdims=keepdims)
    k = m.size if axis is None else int(np.prod([m.shape[a] for a in (axis if isinstance(axis, tuple) else (axis,))]))
    absum = np.sum(np.abs(m), axis=axis, keepdims=keepdims)
    rs = np.sum(r, axis=axis, keepdims=keepdims)
    rad = np.where((rs > 0) | (absum > 0), up(rs * (1 + gamma(max(k, 1))) + gamma(max(k, 1)) * absum), 0.0)
    exact = _exact_int_sum(m, r, axis, keepdims)
    if exact is not None:
        rad = np.where(exact, 0.0, rad)
    return _wrap(z, rad)


def _exact_int_sum(m, r, axis, keepdims):
    """Where a sum of exact floats is exact in float64: every term an integer multiple of a
    common power of two and the total of magnitudes below 2**53 of it (checked, not assumed)."""
    if np.any(r):
        return None
    with np.errstate(all="ignore"):
        fr, ex = np.frexp(m)
        # each float is an odd-or-even integer times 2**(ex - 53); the smallest granule decides
        gran = np.where(m == 0, 10 ** 6, ex - 53).min(axis=axis, keepdims=True)
        mag = np.sum(np.ldexp(np.abs(m), -np.minimum(gran, 1023)), axis=axis, keepdims=keepdims)
    return mag < 2.0 ** 52


def _mean(x, axis=None, keepdims=False):
    m, _ = _parts(x)
    k = np.asarray(m).size if axis is None else int(np.prod([np.asarray(m).shape[a] for a in
                                                            (axis if isinstance(axis, tuple) else (axis,))]))
    return _div(_sum(x, axis, keepdims), float(k))


def _exact_floats(x):
    """The float64 values of an operand that is exactly a float array (a float ndarray, or an exact
    constant known by its float64 values, or a view of one), else None: a product with a weight
    matrix then reads its floats directly instead of building a Ball of radius 0 at every call."""
    if not isinstance(x, np.ndarray) or isinstance(x, Ball) or x.ndim == 0:
        return None
    if x.dtype == np.float64:
        return x
    if x.dtype == np.float32 or x.dtype == np.float16:
        return x.astype(np.float64)
    if x.dtype != object:
        return None
    from ._fixed import _FLOAT_SOURCE

    src = _FLOAT_SOURCE.get(id(x))
    if src is not None and src[0] is x:
        return src[1]
    return _float_view_of_constant(x, _FLOAT_SOURCE)


def matmul(a, b) -> "Ball":
    """Enclosure of ``a @ b`` (numpy matmul broadcasting) by four float64 products."""
    if isinstance(a, Ball) and a.ndim >= 2 and np.ndim(b) == 2:
        # rows of a that are exactly 0 (mid and radius) give exact zero rows: reverse passes carry
        # one-hot cotangents, zero outside the rows their seeds reach (a token, a pixel), so only
        # the rest is multiplied. The test reads a's complex storage once, without splitting it.
        k, n = a.shape[-1], np.shape(b)[1]
        if max(a.size, (a.size // max(k, 1)) * n) >= 65536:
            st = a.view(np.ndarray).reshape(-1, k)
            live = (st != 0).any(axis=1)
            if live.mean() < 0.5:
                rows = np.flatnonzero(live)
                sub = matmul(st[rows].view(Ball), b).view(np.ndarray)
                out = np.zeros((st.shape[0], n), dtype=np.complex128)
                out[rows] = sub
                return out.reshape(a.shape[:-1] + (n,)).view(Ball)
    am, ar = _parts(a)
    fb = _exact_floats(b)
    bm, br = (fb, 0.0) if fb is not None else _parts(b)
    am, bm, ar, br = (np.asarray(v, dtype=np.float64) for v in (am, bm, ar, br))
    k = am.shape[-1]
    z = np.matmul(am, bm)
    aam, abm = np.abs(am), np.abs(bm)
    g = gamma(k + 2)
    acc = np.matmul(aam, abm) * g
    if ar.any():
        acc = acc + np.matmul(ar, abm + br) * (1 + g)
    if br.any():
        acc = acc + np.matmul(aam, br) * (1 + g)
    return _wrap(z, np.where(acc > 0, up(acc) + k * ETA, 0.0))


def einsum(subscripts, a, b) -> "Ball":
    am, ar = _parts(a)
    bm, br = _parts(b)
    am, bm, ar, br = (np.asarray(v, dtype=np.float64) for v in (am, bm, ar, br))
    ins, out = subscripts.replace(" ", "").split("->")
    sa, sb = ins.split(",")
    sizes = {}
    for s, arr in ((sa, am), (sb, bm)):
        for c, d in zip(s, arr.shape):
            sizes[c] = d
    k = int(np.prod([sizes[c] for c in set(sa + sb) - set(out)] or [1]))
    z = np.einsum(subscripts, am, bm)
    g = gamma(k + 2)
    acc = np.einsum(subscripts, np.abs(am), np.abs(bm)) * g
    if ar.any():
        acc = acc + np.einsum(subscripts, ar, np.abs(bm) + br) * (1 + g)
    if br.any():
        acc = acc + np.einsum(subscripts, np.abs(am), br) * (1 + g)
    return _wrap(z, np.where(acc > 0, up(acc) + k * ETA, 0.0))


def _is_zero_scalar(v) -> bool:
    return (isinstance(v, (int, float, np.integer, np.floating, flint.fmpq, flint.fmpz))
            and not isinstance(v, (bool, np.bool_)) and v == 0) or (isinstance(v, Ball) and v.ndim == 0
                                                                  and v.view(np.ndarray)[()] == 0)


def _where_zero(args, kwargs):
    """``where(cond, b, 0)`` / ``where(cond, 0, b)`` for a Ball b without structural keys, as the
    product of b's storage with a 0/1 float mask: exact (mid and radius times 1.0 or 0.0), and an
    order of magnitude faster than numpy's where on complex storage (2.2 s for a (1024, 16, 2048)
    cotangent masked by a relu). None when it does not apply."""
    if kwargs or len(args) != 3 or not isinstance(args[0], np.ndarray) or args[0].dtype != bool:
        return None
    cond, x, y = args
    if isinstance(x, Ball) and _is_zero_scalar(y) and x.ndim > 0:
        b, mask = x, cond
    elif isinstance(y, Ball) and _is_zero_scalar(x) and y.ndim > 0:
        b, mask = y, ~cond
    else:
        return None
    if keys_of(b) is not None or b.size < 65536:
        return None
    st = b.view(np.ndarray)
    if mask.shape == st.shape and st.ndim >= 2:
        # a one-hot cotangent batch is zero outside the rows its seeds reach: mask only the rest
        flat = st.reshape(-1, st.shape[-1])
        live = (flat != 0).any(axis=1)
        if live.mean() < 0.5:
            rows = np.flatnonzero(live)
            out = np.zeros_like(flat)
            out[rows] = flat[rows] * mask.reshape(flat.shape)[rows]
            return out.reshape(st.shape).view(Ball)
    out = st * mask.astype(np.float64)
    return out.view(Ball)


def _passthrough(func, args, kwargs):
    """Run a data-movement numpy function on the complex storage, every operand a Ball."""
    if func is np.where:
        fast = _where_zero(args, kwargs)
        if fast is not None:
            return fast
    def conv(v):
        if isinstance(v, Ball):
            return v.view(np.ndarray)
        if isinstance(v, np.ndarray) and v.dtype != bool and not np.issubdtype(v.dtype, np.integer):
            return to_ball(v).view(np.ndarray)
        if isinstance(v, (flint.fmpq, flint.fmpz)):
            return to_ball(v).view(np.ndarray)[()]
        if isinstance(v, (list, tuple)):
            return type(v)(conv(x) for x in v)
        return v

    if func in (np.copyto, np.put_along_axis):          # in place: the target's keys would go stale
        _drop_keys(args[0])
    out = func(*[conv(a) for a in args], **{k: conv(v) for k, v in kwargs.items()})
    if func in (np.copyto, np.put_along_axis):
        return out
    if not (isinstance(out, np.ndarray) and out.dtype == np.complex128):
        return out
    out = out.view(Ball)
    if any(keys_of(a) is not None for a in _flat_operands(args, kwargs)):
        def kconv(v):
            if isinstance(v, Ball):
                k = keys_of(v)
                return k if k is not None else np.full(v.shape, -1, dtype=np.int64)
            if isinstance(v, np.ndarray) and v.dtype != bool and not np.issubdtype(v.dtype, np.integer):
                return np.full(v.shape, -1, dtype=np.int64)
            if isinstance(v, (flint.fmpq, flint.fmpz, float, np.floating)):
                return np.int64(-1)
            if isinstance(v, (list, tuple)):
                return type(v)(kconv(x) for x in v)
            return v

        try:
            kk = func(*[kconv(a) for a in args], **{k: kconv(v) for k, v in kwargs.items()})
        except Exception:  # noqa: BLE001 - keys are an optimisation of decisions: without them, undecided
            kk = None
        if isinstance(kk, np.ndarray) and kk.shape == out.shape and np.issubdtype(kk.dtype, np.integer):
            with_keys(out, kk)
    return out


def _flat_operands(args, kwargs):
    for v in list(args) + list(kwargs.values()):
        if isinstance(v, (list, tuple)):
            yield from v
        else:
            yield v


# numpy functions that only move, select or copy elements: safe on the complex storage
_MOVE = {np.reshape, np.transpose, np.moveaxis, np.swapaxes, np.squeeze, np.expand_dims, np.ravel,
         np.broadcast_to, np.take, np.take_along_axis, np.flip, np.roll, np.repeat, np.tile, np.copy,
         np.ascontiguousarray, np.atleast_1d, np.atleast_2d, np.diagonal, np.triu, np.tril, np.pad,
         np.zeros_like, np.shape, np.ndim, np.size, np.split, np.array_split,
         np.broadcast_arrays, np.result_type, np.may_share_memory, np.shares_memory, np.rot90,
         np.fliplr, np.flipud, np.concatenate, np.stack, np.hstack, np.vstack, np.where, np.select,
         np.put_along_axis, np.copyto, np.array_equal, np.delete, np.insert, np.append, np.flatnonzero}


class Ball(np.ndarray):
    """Enclosures ``mid +- rad`` stored as complex128 (see the module docstring).

    ``dtype`` reads as ``object``: to the op rules a Ball is an array of real numbers, like the
    exact (fmpq object) arrays it stands in for, so their "is this a float value" tests hold;
    numpy's own C code sees the complex storage, and every numpy function is intercepted."""

    @property
    def dtype(self):
        return np.dtype(object)

    @property
    def mid(self) -> np.ndarray:
        return self.view(np.ndarray).real

    @property
    def rad(self) -> np.ndarray:
        return self.view(np.ndarray).imag

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.pop("out", None)
        if kwargs.get("where", True) is not True or kwargs.get("dtype") is not None:
            raise NotEnclosed(f"numpy.{ufunc.__name__} with where=/dtype= on enclosures")
        kwargs.pop("casting", None)
        if method == "__call__":
            res = self._call(ufunc, inputs)
        elif method == "reduce" and ufunc is np.add:
            res = _sum(inputs[0], axis=kwargs.get("axis", 0), keepdims=kwargs.get("keepdims", False))
        elif method == "at" and ufunc in (np.add, np.subtract):
            target, idx = inputs[0], inputs[1]
            if not isinstance(target, Ball):
                raise NotEnclosed("numpy.add.at into an exact array with enclosed values")
            _drop_keys(target)
            vals = inputs[2] if len(inputs) > 2 else 0.0
            vm, vr = _parts(vals)
            if ufunc is np.subtract:
                vm = -np.asarray(vm)
            t = target.view(np.ndarray)
            tm, tr = t.real.copy(), t.imag.copy()
            cnt = np.zeros(t.shape, dtype=np.float64)
            np.add.at(cnt, idx, 1.0)
            absum = np.abs(tm)
            np.add.at(absum, idx, np.abs(np.broadcast_to(vm, np.shape(t[idx])) if np.ndim(vm) else vm))
            np.add.at(tm, idx, vm)
            np.add.at(tr, idx, vr)
            g = np.array([gamma(int(c) + 1) if c else 0.0 for c in np.unique(cnt)])
            gk = g[np.searchsorted(np.unique(cnt), cnt)]
            rad = np.where((tr > 0) | (cnt > 0), up(tr * (1 + gk) + gk * absum), tr)
            t.real[...] = tm
            t.imag[...] = np.where(cnt > 0, rad, tr)
            return None
        else:
            raise NotEnclosed(f"numpy.{ufunc.__name__}.{method} on enclosures")
        if out is not None:
            (o,) = out
            o[...] = res
            return o
        return res

    @staticmethod
    def _call(ufunc, inputs):
        if ufunc is np.add:
            return _add(*inputs)
        if ufunc is np.subtract:
            return _add(inputs[0], inputs[1], -1.0)
        if ufunc is np.multiply:
            return _mul(*inputs)
        if ufunc in (np.true_divide, np.divide):
            return _div(*inputs)
        if ufunc is np.negative:
            m, r = _parts(inputs[0])
            return _wrap(-np.asarray(m), r)
        if ufunc is np.positive:
            return to_ball(inputs[0])
        if ufunc is np.absolute:
            m, r = _parts(inputs[0])       # | |a| - |m| | <= |a - m|: abs is 1-Lipschitz
            return _wrap(np.abs(m), r)
        if ufunc is np.square:
            return _mul(inputs[0], inputs[0])
        if ufunc in (np.greater, np.less, np.greater_equal, np.less_equal, np.equal, np.not_equal):
            return _cmp(ufunc, *inputs)
        if ufunc in (np.maximum, np.minimum):
            a, b = inputs
            gt = _cmp(np.greater_equal, a, b)
            pick = gt if ufunc is np.maximum else ~gt
            return np.where(pick, to_ball(a), to_ball(b)).view(Ball)
        if ufunc is np.matmul:
            return matmul(*inputs)
        if ufunc in (np.isfinite,):
            return np.ones(np.shape(inputs[0]), dtype=bool)
        if ufunc in (np.isnan, np.isinf):
            return np.zeros(np.shape(inputs[0]), dtype=bool)
        raise NotEnclosed(f"numpy.{ufunc.__name__} on enclosures")

    def __array_function__(self, func, types, args, kwargs):
        if func is np.sum:
            return _sum(args[0], axis=kwargs.get("axis", args[1] if len(args) > 1 else None),
                        keepdims=kwargs.get("keepdims", False))
        if func is np.mean:
            return _mean(args[0], axis=kwargs.get("axis", args[1] if len(args) > 1 else None),
                         keepdims=kwargs.get("keepdims", False))
        if func in (np.dot, np.matmul):
            a, b = args[:2]
            if np.ndim(a) == 0 or np.ndim(b) == 0:
                return _mul(a, b)
            return matmul(a, b)
        if func is np.einsum:
            if len(args) != 3 or not isinstance(args[0], str):
                raise NotEnclosed("numpy.einsum on enclosures takes a subscripts string and two operands")
            return einsum(*args)
        if func is np.tensordot:
            a, b = args[:2]
            axes = kwargs.get("axes", args[2] if len(args) > 2 else 2)
            return _tensordot(a, b, axes)
        if func is np.abs:
            return Ball._call(np.absolute, args)
        if func is np.ones_like:
            # not a data movement (on the complex storage it would give 1 + 1j): exact ones,
            # mid 1 and radius 0; another dtype asked for is an array of that dtype
            dt = kwargs.get("dtype", args[1] if len(args) > 1 else None)
            shape = kwargs.get("shape", np.shape(args[0]))
            if dt is not None and np.dtype(dt) != np.dtype(object):
                return np.ones(shape, dtype=dt)
            return ball(np.ones(shape))
        if func is np.where and len(args) == 1:
            raise NotEnclosed("numpy.where(cond) on enclosures")
        if func in _MOVE:
            return _passthrough(func, args, kwargs)
        raise NotEnclosed(f"numpy.{func.__name__} on enclosures")

    # methods that numpy implements without the function protocol
    def sum(self, axis=None, keepdims=False, **kw):
        return _sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False, **kw):
        return _mean(self, axis, keepdims)

    def dot(self, other):
        return matmul(self, other)

    def prod(self, *a, **k):
        raise NotEnclosed("prod on enclosures")

    def cumsum(self, *a, **k):
        raise NotEnclosed("cumsum on enclosures")

    def max(self, *a, **k):
        raise NotEnclosed("max on enclosures (use the op's discriminants)")

    def min(self, *a, **k):
        raise NotEnclosed("min on enclosures (use the op's discriminants)")

    def astype(self, dtype, *a, **k):
        if np.dtype(dtype) == np.complex128:
            return self.copy()
        raise NotEnclosed(f"astype({dtype}) on enclosures")

    def item(self, *a):
        raise NotEnclosed("item() of an enclosure")

    def tolist(self):
        raise NotEnclosed("tolist() on enclosures")

    def __getitem__(self, key):
        out = super().__getitem__(key)
        k = keys_of(self)
        if k is not None and isinstance(out, Ball):
            kk = k[key]
            if isinstance(kk, np.ndarray) and kk.shape == out.shape:
                with_keys(out, kk)
        return out

    def reshape(self, *shape, **kw):
        out = super().reshape(*shape, **kw)
        k = keys_of(self)
        return with_keys(out, k.reshape(*shape, **kw)) if k is not None and isinstance(out, Ball) else out

    def transpose(self, *axes):
        out = super().transpose(*axes)
        k = keys_of(self)
        return with_keys(out, k.transpose(*axes)) if k is not None and isinstance(out, Ball) else out

    def copy(self, *a, **kw):
        out = super().copy(*a, **kw)
        k = keys_of(self)
        return with_keys(out, k.copy()) if k is not None else out

    def __setitem__(self, key, value):
        _drop_keys(self)                   # an in-place write: the keys would go stale
        if isinstance(value, Ball):
            self.view(np.ndarray)[key] = value.view(np.ndarray)
            return
        if isinstance(value, (int, float)) and value == 0:
            self.view(np.ndarray)[key] = 0
            return
        self.view(np.ndarray)[key] = to_ball(np.asarray(value) if not np.isscalar(value) else value).view(np.ndarray)

    def __bool__(self):
        raise NotEnclosed("the truth value of an enclosure")

    def __float__(self):
        raise NotEnclosed("float() of an enclosure")

    def __reduce__(self):  # pragma: no cover - never pickled
        raise TypeError("enclosures are not pickled")

    def __repr__(self):
        return f"Ball(mid={self.mid!r}, rad={self.rad!r})"


def _tensordot(a, b, axes):
    am, ar = _parts(a)
    bm, br = _parts(b)
    am, bm, ar, br = (np.asarray(v, dtype=np.float64) for v in (am, bm, ar, br))
    if isinstance(axes, int):
        k = int(np.prod(am.shape[am.ndim - axes:])) if axes else 1
    else:
        k = int(np.prod([am.shape[i] for i in np.atleast_1d(axes[0])]))
    z = np.tensordot(am, bm, axes)
    g = gamma(k + 2)
    acc = np.tensordot(np.abs(am), np.abs(bm), axes) * g
    if ar.any():
        acc = acc + np.tensordot(ar, np.abs(bm) + br, axes) * (1 + g)
    if br.any():
        acc = acc + np.tensordot(np.abs(am), br, axes) * (1 + g)
    return _wrap(z, np.where(acc > 0, up(acc) + k * ETA, 0.0))


# ----------------------------------------------------------------------------- irrational functions

def _arb_of(m: float, r: float):
    return flint.arb(m, r) if r else flint.arb(m)


def _from_arb(v) -> tuple:
    """(mid, rad) floats with the arb ball inside [mid - rad, mid + rad]."""
    if not v.is_finite():
        raise NotEnclosed("an enclosure is not finite (a value outside the function's domain?)")
    mid = v.mid()
    f = float(mid)
    if v.is_exact() and flint.arb(f) == v:
        return f, 0.0
    err = abs(mid - flint.arb(f)) + v.rad()          # exact arithmetic on arf/mag values
    e = float(err.upper()) if hasattr(err, "upper") else float(err)
    return f, up(e) + ETA


class precision:
    """``with precision(bits):`` Arb works at ``bits`` bits inside (python-flint's global
    context), and the previous precision is restored after."""

    def __init__(self, bits: int):
        self.bits = bits

    def __enter__(self):
        self.old = flint.ctx.prec
        flint.ctx.prec = self.bits

    def __exit__(self, *a):
        flint.ctx.prec = self.old


def apply(fn, x) -> "Ball":
    """Enclosure of ``fn`` applied elementwise, ``fn`` mapping an ``flint.arb`` to an ``flint.arb``
    (it may take ``exact=True`` paths itself). ``x``: a Ball or an exact operand. Raises
    :class:`NotEnclosed` for a value outside the function's domain (a non-finite enclosure)."""
    if isinstance(x, Ball):
        m, r = x.mid, x.rad
        items = zip(m.ravel().tolist(), r.ravel().tolist())
        args = [_arb_of(a, b) for a, b in items]
        shape = m.shape
    else:
        xa = np.asarray(x)
        shape = xa.shape
        args = [_exact_arb(v) for v in (xa.ravel().tolist() if xa.dtype == object else xa.ravel().tolist())]
    mids = np.empty(len(args))
    rads = np.empty(len(args))
    for i, a in enumerate(args):
        mids[i], rads[i] = _from_arb(fn(a))
    return ball(mids.reshape(shape), rads.reshape(shape))


def _exact_arb(v):
    """An exact operand as an exact (or, for an fmpq with a non-dyadic denominator, tight) arb."""
    if isinstance(v, flint.fmpq):
        d = int(v.q)
        if d & (d - 1) == 0:
            return flint.arb(flint.fmpz(int(v.p))) / flint.arb(flint.fmpz(d))   # exact: a power of 2
        ctx = flint.ctx
        old = ctx.prec
        ctx.prec = 128
        try:
            return flint.arb(v)
        finally:
            ctx.prec = old
    if isinstance(v, (int, np.integer, flint.fmpz)):
        return flint.arb(flint.fmpz(int(v)))
    if isinstance(v, (float, np.floating, bool, np.bool_)):
        return flint.arb(float(v))
    raise NotEnclosed(f"no enclosure for a value of type {type(v).__name__}")


def sign(x) -> np.ndarray:
    """Decided sign (-1, 0, 1) of every element, int8; 0 only for an exact zero."""
    b = to_ball(x)
    m, r = b.mid, b.rad
    pos = m - r * _UP > 0
    neg = m + r * _UP < 0
    zero = (r == 0) & (m == 0)
    if not (pos | neg | zero).all():
        raise Undecided("the sign of a value whose enclosure contains 0")
    return pos.astype(np.int8) - neg.astype(np.int8)


def radius_l1_rows(x) -> np.ndarray:
    """Upper bounds of every row's L1 radius of a 2-D Ball (float64, rounded up)."""
    b = to_ball(x)
    return up(b.rad.sum(axis=1) * (1 + gamma(max(b.shape[1], 1)))) if b.size else np.zeros(b.shape[0])

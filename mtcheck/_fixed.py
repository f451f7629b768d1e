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

from ._exact import objects


class NotDyadic(Exception):
    """A value or operation outside exact dyadic fixed point: use rational arithmetic."""


def _dyadic(v):
    """(int, e) with v = int * 2**-e for an exact scalar (fmpq, int, float), or NotDyadic."""
    if type(v) is flint.fmpq:             # the common case first
        den = int(v.q)
        if den & (den - 1):
            raise NotDyadic("a non-dyadic constant")
        return int(v.p), den.bit_length() - 1
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


def _is_ball(a) -> bool:
    from ._ball import Ball

    return isinstance(a, Ball)


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    """Integers times 2**k (k >= 0), elementwise, as a plain object array. A shift keeps each
    integer's type: a Python int times an fmpz would convert the int to FLINT at every entry
    (10x the cost of the product)."""
    if k == 0:
        return a
    return np.left_shift(a, int(k), dtype=object)


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
    if _is_ball(x):
        raise NotDyadic("an enclosure of irrational values is not dyadic")
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
_CONST_ROOTS: dict = {}   # id(root buffer) -> the root: arrays (and their views) mtcheck never mutates
_MATS: dict = {}          # (id(root), data pointer, shape, strides, kind) -> (root, FLINT matrix)
_MATS_ENTRIES = [0]
_MATS_LIMIT = 30_000_000  # matrix entries kept converted (the weights of a VGG11 are 9.2M)


def _root(a: np.ndarray) -> np.ndarray:
    r = a
    while isinstance(r.base, np.ndarray):
        r = r.base
    return r


def constant(a: np.ndarray) -> None:
    """Declare ``a`` (and every view of it) a constant: FLINT matrices of its 2-D views are cached."""
    r = _root(a)
    if len(_CONST_ROOTS) > 4096:
        _CONST_ROOTS.clear()
        _MATS.clear()
        _MATS_ENTRIES[0] = 0
    _CONST_ROOTS[id(r)] = r


def cached_matrix(a: np.ndarray, kind: str, build):
    """``build(a)`` (a FLINT matrix of the 2-D array ``a``), cached when ``a`` views a constant."""
    r = _root(a)
    if _CONST_ROOTS.get(id(r)) is not r or a.size < 256:
        return build(a)
    key = (id(r), a.__array_interface__["data"][0], a.shape, a.strides, kind)
    hit = _MATS.get(key)
    if hit is not None and hit[0] is r:
        return hit[1]
    m = build(a)
    if _MATS_ENTRIES[0] + a.size > _MATS_LIMIT:
        _MATS.clear()
        _MATS_ENTRIES[0] = 0
    _MATS[key] = (r, m)
    _MATS_ENTRIES[0] += a.size
    return m


def from_exact(a: np.ndarray) -> "Fx":
    """An object array of exact dyadic rationals (fmpq/int) as Fx, or NotDyadic. Cached per array
    for large constants (weights are converted once per model)."""
    if isinstance(a, Fx):
        return a
    if _is_ball(a):
        raise NotDyadic("an enclosure of irrational values is not dyadic")
    hit = _CACHE.get(id(a))
    if hit is not None and hit[0] is a:
        return hit[1]
    view = _view_of_constant(a)
    if view is not None:
        return view
    if a.size >= 4096:
        # mostly zeros (reverse-mode seeds: one-hot rows): only the nonzero entries are converted
        nz = np.flatnonzero(np.asarray(a.ravel() != 0, dtype=bool))
        if nz.size * 8 < a.size:
            pairs = [_dyadic(v) for v in a.ravel()[nz].tolist()]
            E = max((e for _, e in pairs), default=0)
            ints = np.zeros(a.size, dtype=object)
            ints[nz] = [int(n) << (E - e) for n, e in pairs]
            return wrap(ints.reshape(a.shape), E)
    flat = a.ravel().tolist()
    pairs = [_dyadic(v) for v in flat]
    E = max((e for _, e in pairs), default=0)
    out = wrap(objects([int(n) << (E - e) for n, e in pairs], a.shape), E)
    if a.size >= 64:
        _cache(a, out)
        if _CONST_ROOTS.get(id(_root(a))) is _root(a):
            constant(out.view(np.ndarray))
    return out


_ROOT_FX: dict = {}       # id(root buffer) -> (the root, the Fx of an array covering it in memory order)


def _cache(a: np.ndarray, fx: "Fx") -> None:
    """Remember ``fx`` as the Fx of ``a``, and of ``a``'s whole buffer when ``a`` covers it in
    memory order (a reshape of a contiguous root: what :func:`_view_of_constant` slices)."""
    if len(_CACHE) > 512:
        _CACHE.clear()
        _ROOT_FX.clear()
    _CACHE[id(a)] = (a, fx)
    r = _root(a)
    if a.size == r.size and a.flags.c_contiguous and r.flags.c_contiguous:
        _ROOT_FX[id(r)] = (r, fx)


def _view_of_constant(a: np.ndarray):
    """The Fx of a view of a constant (``w.T``, a slice of the weights) as the same view of the
    constant's Fx (converted once, cached), or None. Views are new objects at every call, so the
    cache by identity misses them, and the weights of a layer were converted again at every
    product with them. The view's exponent is the constant's (the same values)."""
    r = _root(a)
    if r is a or r.dtype != object or _CONST_ROOTS.get(id(r)) is not r or not r.flags.c_contiguous \
            or any(st < 0 for st in a.strides) or a.size < 64:
        return None
    hit = _ROOT_FX.get(id(r))              # the constant's own Fx (weights are converted at model set-up)
    fr = hit[1] if hit is not None and hit[0] is r else from_exact(r)
    off = (a.__array_interface__["data"][0] - r.__array_interface__["data"][0]) // r.itemsize
    flat = fr.view(np.ndarray).reshape(-1)[off:]
    return wrap(np.lib.stride_tricks.as_strided(flat, shape=a.shape, strides=a.strides, writeable=False), fr.e)


def remember(exact: np.ndarray, floats: np.ndarray) -> None:
    """Record the Fx form of an exact constant converted from the float array ``floats``."""
    if exact.size >= 256 and exact.dtype == object:
        hit = _CACHE.get(id(exact))
        if hit is not None and hit[0] is exact:
            return
        fx = from_floats(floats)
        _cache(exact, fx)
        constant(fx.view(np.ndarray))


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
    # Python integers (the shifts of the int64 mantissas, in numpy's object loop): the integers of
    # derived fixed point (sums, digit passes, CRT) are Python ints too, and mixing them with fmpz
    # converts every big int to FLINT at each operation
    ints = np.left_shift(mant.ravel().astype(object), sh.ravel().astype(object), dtype=object)
    return wrap(ints.reshape(f.shape), E)


def to_exact(a: "Fx") -> np.ndarray:
    """The values as an fmpq object array."""
    den = flint.fmpz(1) << a.e
    return objects([flint.fmpq(v, den) for v in a.view(np.ndarray).ravel().tolist()], a.shape)


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
    small = _word_product(pa, pb, k)
    if small is not None:
        return wrap(small, ea + eb)
    build = (lambda m: flint.fmpz_mat(m.shape[0], m.shape[1], m.ravel().tolist()))
    prod = cached_matrix(pa, "fmpz", build) * cached_matrix(pb, "fmpz", build)
    return wrap(objects(prod.entries(), (r, c)), ea + eb)


_WORD_LIMIT = 1 << 62


def _words(m: np.ndarray):
    """(the integers of ``m`` as int64, their bit bound: |v| < 2**bits), or None when one is
    2**62 or more. The conversion raises on an integer past int64, so nothing is ever wrapped."""
    try:
        a = m.astype(np.int64)
    except OverflowError:
        return None
    lo, hi = int(a.min()), int(a.max())
    if lo <= -_WORD_LIMIT or hi >= _WORD_LIMIT:
        return None
    return a, max(-lo, hi).bit_length()


def _word_product(pa: np.ndarray, pb: np.ndarray, k: int):
    """The exact product of two integer matrices in machine words when it provably fits, else
    None. With |a| < 2**ba, |b| < 2**bb and k terms, every partial sum is an integer below
    2**(ba + bb + ceil(log2 k)): under 2**53 a float64 product (BLAS) is exact, every partial sum
    being representable; under 2**63 an int64 product is (no wrap-around). A FLINT product
    costs ~0.4 us per entry to convert in and out: for the small integers of one direction's
    tangents (the directional derivatives) or of small weights that conversion was the cost."""
    A = _words(pa)
    if A is None:
        return None
    B = cached_matrix(pb, "int64", _words)
    if B is None:
        return None
    (a, ba), (b, bb) = A, B
    need = ba + bb + _clog2(k)
    if need <= 53:
        prod = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    elif need <= 63:
        prod = a @ b
    else:
        return None
    return prod.astype(object)


# ---------------------------------------------------------------------------------------------
# Machine-word digits of big integers, for sums of products with small integers.
#
# The exact reverse pass of a convolution multiplies cotangents of ~150 bits by weights of ~35
# bits, then adds each window's products into the input positions (col2im). Through FLINT every
# product entry is created as a Python object (~0.4 us in and out) and the scatter adds objects;
# the products are K times more than the results. Split into base-2**16 digits, the cotangents
# are int64 rows, each digit's products and sums are exact int64 arithmetic below 2**62 (the
# caller proves the bound), and only the results become Python integers again, by carries.

DIGIT_BITS = 16


def digits(ints: np.ndarray):
    """(digits (nd, size) int64, nd, bits) of an integer object array: ``v = sum_j d[j] 2**(16 j)``,
    the two's complement digits of ``v`` (the low ones in [0, 2**16), the top one signed, in
    [-2**15, 2**15)); ``|v| < 2**bits``."""
    a = ints.reshape(-1)
    nz = np.flatnonzero(a != 0)                      # zeros (most cotangent entries) stay zero digits
    flat = [int(v) for v in a[nz].tolist()]
    bits = max(flat, default=0).bit_length()
    bits = max(bits, (-min(flat, default=0)).bit_length())
    nd = bits // DIGIT_BITS + 1                      # 16 nd >= bits + 1: room for the sign
    w = 2 * nd
    buf = b"".join([v.to_bytes(w, "little", signed=True) for v in flat])
    d = np.zeros((nd, a.size), dtype=np.int64)
    if flat:
        low = np.frombuffer(buf, dtype="<u2").reshape(len(flat), nd).astype(np.int64)
        top = low[:, -1]
        low[:, -1] = np.where(top >= 1 << 15, top - (1 << 16), top)
        d[:, nz] = low.T
    return d, nd, bits


def word_matmul(a: np.ndarray, abits: int, b: np.ndarray, bbits: int, fa=None) -> np.ndarray:
    """``a @ b`` exactly, int64 matrices with ``|a| < 2**abits``, ``|b| < 2**bbits`` and
    ``abits + bbits + ceil(log2 k) <= 61``: through float64 BLAS, ``b`` split into base-2**r
    parts small enough that every float partial sum is an integer below 2**53 (so exact); the
    parts' products are recombined in int64, every partial sum below 2**62. ``fa``: ``a`` as
    float64 already (for several products with one ``a``)."""
    k = a.shape[1]
    t = _clog2(max(k, 1))
    if abits + bbits + t > 61:
        raise ValueError("the product may not fit in int64")
    room = 53 - abits - t                          # the bits of b one float product can take
    fa = a.astype(np.float64) if fa is None else fa
    if room >= bbits:
        return (fa @ b.astype(np.float64)).astype(np.int64)
    if room < 1:                                   # pragma: no cover - callers keep abits small
        return a @ b
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    rest, shift, mask = b, 0, (1 << room) - 1
    while True:
        lo, hi = int(rest.min()), int(rest.max())
        if -(1 << room) < lo and hi < 1 << room:   # the top part: |rest| < 2**room
            return out + ((fa @ rest.astype(np.float64)).astype(np.int64) << shift)
        out += (fa @ (rest & mask).astype(np.float64)).astype(np.int64) << shift
        rest = rest >> room                        # floor: rest = (rest & mask) + 2**room (rest >> room)
        shift += room


def from_digits(d: np.ndarray, bits: int) -> np.ndarray:
    """The integers ``sum_j d[j] 2**(16 j)`` (an object array of the shape of ``d[0]``) from int64
    digits with ``|d| < 2**62`` of values with ``|v| < 2**bits``: the carries are propagated in
    int64 (floor division keeps ``v`` and leaves each low digit in [0, 2**16); a carry is below
    2**47, so no sum reaches 2**63), until the top digit is the signed top digit of ``v``'s two's
    complement; then each value is read from its bytes."""
    nd = max(d.shape[0], bits // DIGIT_BITS + 1)
    shape = d.shape[1:]
    D = np.zeros((nd, int(np.prod(shape, dtype=np.int64))), dtype=np.int64)
    D[:d.shape[0]] = d.reshape(d.shape[0], -1)
    for j in range(nd - 1):
        c = D[j] >> DIGIT_BITS
        D[j] -= c << DIGIT_BITS
        D[j + 1] += c
    top = D[-1]
    if top.size and (int(top.min()) < -(1 << 15) or int(top.max()) >= 1 << 15):   # pragma: no cover - bound
        raise AssertionError("a value past its proven bound")
    raw = np.ascontiguousarray((D & 0xFFFF).astype("<u2").T).tobytes()
    w = 2 * nd
    fb = int.from_bytes
    return objects([fb(raw[i:i + w], "little", signed=True) for i in range(0, len(raw), w)], shape)


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


# ---------------------------------------------------------------------------------------------
# Modular images of fixed point: the same numbers modulo one word-size prime.
#
# A :class:`Mod` holds residues (int64, in [0, p)) of the integers of a fixed-point array, its
# exponent ``e`` and a proven bound ``bits`` (every integer has |int| < 2**bits). Derivative
# passes run once per prime in numpy (no Python object per entry); the integers are then
# reconstructed by the Chinese remainder theorem from enough primes for the bound: the result is
# exact, because the bound is propagated through every operation (sums add a bit, products add
# the operands' bits, a matrix product adds log2 of its inner dimension). Anything Mod cannot do
# exactly (a comparison, a non-dyadic constant, an unknown numpy function) raises NotModular and
# the caller uses Fx.

class NotModular(NotDyadic):
    """An operation modular arithmetic cannot do exactly (a comparison, an unknown function)."""


def _primes(count: int, below: int = 1 << 20) -> list:
    out, v = [], below - 1
    while len(out) < count:
        if flint.fmpz(v).is_prime():
            out.append(v)
        v -= 2
    return out


MOD_PRIMES = _primes(160)          # p < 2**20: products < 2**40, float64 BLAS sums of 2**13 terms are exact
_BLAS_K = 1 << 13
_FLOAT_SOURCE: dict = {}           # id(exact constant) -> (the array, its float64 values)
_MOD_CACHE: dict = {}              # (id(exact constant), p) -> (the array, its Mod)


def remember_floats(exact: np.ndarray, floats: np.ndarray) -> None:
    """Record the float64 values an exact constant was converted from (for vectorized residues)."""
    if exact.dtype == object and exact.size >= 64:
        constant(exact)
        if len(_FLOAT_SOURCE) > 1024:
            _FLOAT_SOURCE.clear()
            _MOD_CACHE.clear()
        _FLOAT_SOURCE[id(exact)] = (exact, np.asarray(floats, dtype=np.float64))


def _pow2_table(p: int, k: int) -> np.ndarray:
    t = np.empty(k + 1, dtype=np.int64)
    v = 1
    for i in range(k + 1):
        t[i] = v
        v = (v * 2) % p
    return t


def _max_bits(ints: np.ndarray) -> int:
    """Bits of the largest |entry| of an integer object array (0-d included)."""
    if not ints.size:
        return 0
    return _bits_of(int(np.asarray(np.abs(np.asarray(ints, dtype=object)), dtype=object).max()))


def _bits_of(n: int) -> int:
    return abs(int(n)).bit_length()


def mod_wrap(res, p: int, e: int, bits: int) -> "Mod":
    out = np.asarray(res, dtype=np.int64).view(Mod)
    out.p, out.e, out.bits = int(p), int(e), int(bits)
    return out


def _mod_from_floats(f: np.ndarray, p: int) -> "Mod":
    f = np.asarray(f, dtype=np.float64)
    if not np.isfinite(f).all():
        raise NotModular("non-finite value")
    m, ex = np.frexp(f)
    mant = (m * 2.0 ** 53).astype(np.int64)
    ex = ex.astype(np.int64) - 53
    nz = mant != 0
    if not nz.any():
        return mod_wrap(np.zeros(f.shape, dtype=np.int64), p, 0, 0)
    E = max(int(-ex[nz].min()), 0)
    sh = np.where(nz, ex + E, 0)                       # >= 0 where nonzero
    if (sh < 0).any():                                 # pragma: no cover - E makes every shift >= 0
        raise NotModular("negative shift")
    table = _pow2_table(p, int(sh.max()))
    res = ((mant % p) * table[sh]) % p
    bits = int(sh[nz].max()) + 54
    return mod_wrap(res.reshape(f.shape), p, E, bits)


def to_mod(x, p: int):
    """An exact operand (Mod, Fx, fmpq/int object array, bool/int array, scalar) modulo ``p``:
    (residues: int64 array or int, exponent, bits)."""
    if _is_ball(x):
        raise NotModular("an enclosure of irrational values has no residues")
    if isinstance(x, Mod):
        if x.p != p:
            raise NotModular("residues modulo two different primes")
        return x.view(np.ndarray), x.e, x.bits
    if isinstance(x, Fx):
        ints = x.view(np.ndarray)
        if not ints.size:
            return np.zeros(ints.shape, dtype=np.int64), x.e, 0
        return np.asarray(ints % p, dtype=np.int64).reshape(ints.shape), x.e, _max_bits(ints)
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            hit = _MOD_CACHE.get((id(x), p))
            if hit is not None and hit[0] is x:
                m = hit[1]
                return m.view(np.ndarray), m.e, m.bits
            src = _FLOAT_SOURCE.get(id(x))
            if src is not None and src[0] is x:
                m = _mod_from_floats(src[1], p)
            else:
                flat = x.ravel().tolist()
                if flat and not all(isinstance(v, (flint.fmpq, flint.fmpz, int)) and not isinstance(v, bool)
                                    for v in flat):
                    # a plain object array of numpy integers is a leaked residue array: refuse it
                    raise NotModular("an object array that is not exact rationals")
                fx = from_exact(x)                      # once per array (cached), then C loops per prime
                ints = fx.view(np.ndarray)
                bits = _max_bits(ints)
                res = np.asarray(ints % p, dtype=np.int64).reshape(x.shape) if ints.size else \
                    np.zeros(x.shape, dtype=np.int64)
                m = mod_wrap(res, p, fx.e, bits)
            if x.size >= 64:
                if len(_MOD_CACHE) > 4096:
                    _MOD_CACHE.clear()
                _MOD_CACHE[(id(x), p)] = (x, m)
            return m.view(np.ndarray), m.e, m.bits
        if x.dtype == bool or np.issubdtype(x.dtype, np.integer):
            v = x.astype(np.int64)
            return v % p, 0, int(np.abs(v).max()).bit_length() if v.size else 0
        if np.issubdtype(x.dtype, np.floating):
            m = _mod_from_floats(x, p)
            return m.view(np.ndarray), m.e, m.bits
        raise NotModular(f"dtype {x.dtype}")
    n, e = _dyadic(x)
    return n % p, e, _bits_of(n)


def _mod_align(items, p):
    """Operands at one exponent: (residue arrays/ints, e, bits of the largest after the shift)."""
    lifted = [to_mod(v, p) for v in items]
    E = max(e for _, e, _ in lifted)
    out, bits = [], 0
    for r, e, b in lifted:
        k = E - e
        if k:
            r = (r * pow(2, k, p)) % p
        out.append(r)
        bits = max(bits, b + k)
    return out, E, bits


def _column_index(idx, plain):
    """The columns of an ``add.at`` index ``(slice(None), ints)`` into a 2-D array (non-negative,
    1-D), or None for any other index."""
    if plain.ndim != 2 or not isinstance(idx, tuple) or len(idx) != 2 or not isinstance(idx[0], slice) \
            or idx[0] != slice(None):
        return None
    cols = np.asarray(idx[1])
    if cols.ndim != 1 or cols.dtype.kind not in "iu" or not cols.size:
        return None
    cols = cols.astype(np.int64)
    n = plain.shape[1]
    if int(cols.min()) < -n or int(cols.max()) >= n:
        return None                          # out of range: numpy's own add.at raises
    return np.where(cols < 0, cols + n, cols)


def _multiplicity(idx, shape, vals) -> int:
    """How many of the values ``add.at`` may add into one target entry (an upper bound)."""
    parts = idx if isinstance(idx, tuple) else (idx,)
    arrays = [np.asarray(a) for a in parts if not isinstance(a, slice) and a is not None and a is not Ellipsis]
    if len(arrays) == 1 and arrays[0].dtype != bool and arrays[0].size:
        a = arrays[0].ravel()
        return int(np.bincount(a - a.min()).max())
    return int(np.size(vals)) if isinstance(vals, np.ndarray) else 1 << 62


def _clog2(n: int) -> int:
    return max(int(n) - 1, 0).bit_length()


def mod_matmul2d(a, b, p=None) -> "Mod":
    """Exact residues of a 2-D product (float64 BLAS on residues < 2**20, in blocks of 2**13)."""
    if p is None:
        p = (a if isinstance(a, Mod) else b).p
    (ra, ea, ba), (rb, eb, bb) = to_mod(a, p), to_mod(b, p)
    r, k = ra.shape
    k2, c = rb.shape
    assert k == k2, (ra.shape, rb.shape)
    fa, fb = ra.astype(np.float64), rb.astype(np.float64)
    if k <= _BLAS_K:
        acc = np.dot(fa, fb).astype(np.int64) % p
    else:
        acc = np.zeros((r, c), dtype=np.int64)
        for s in range(0, k, _BLAS_K):
            part = np.dot(fa[:, s:s + _BLAS_K], fb[s:s + _BLAS_K])
            acc = (acc + part.astype(np.int64) % p) % p
    return mod_wrap(acc, p, ea + eb, ba + bb + _clog2(max(k, 1)))


_MOD_REDUCE = {np.sum, np.cumsum}


class Mod(np.ndarray):
    """Residues modulo ``p`` of fixed-point integers, exponent ``e``, |ints| < 2**bits."""

    p: int = 2
    e: int = 0
    bits: int = 0

    def __array_finalize__(self, obj):
        self.p = getattr(obj, "p", 2)
        self.e = getattr(obj, "e", 0)
        self.bits = getattr(obj, "bits", 0)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        p = self.p
        if method == "at":
            if ufunc is not np.add and ufunc is not np.subtract:
                raise NotModular(f"{ufunc.__name__}.at")
            target, idx = inputs[0], inputs[1]
            if not isinstance(target, Mod):
                raise NotModular("add.at into an array that is not modular")
            vals, e, b = to_mod(inputs[2], p)
            if e > target.e:
                target.rescale(e)
            elif e < target.e:
                vals = (vals * pow(2, target.e - e, p)) % p
                b += target.e - e
            count = _multiplicity(idx, target.shape, vals)
            plain = target.view(np.ndarray)
            vals = vals if ufunc is np.add else (p - vals) % p
            cols = _column_index(idx, plain)
            if cols is not None:
                # ``g[:, cols] += vals`` with repeated columns (a reverse pass's discriminant seeds):
                # the values of one column summed in int64 (fewer than 2**43 residues < 2**20),
                # by one sort; only the touched columns are reduced
                v2 = np.broadcast_to(np.asarray(vals, dtype=np.int64), (plain.shape[0], cols.size))
                order = np.argsort(cols, kind="stable")
                cs = cols[order]
                starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
                u = cs[starts]
                plain[:, u] = (plain[:, u] + np.add.reduceat(v2[:, order], starts, axis=1) % p) % p
                target.bits = max(target.bits, b) + _clog2(count + 1)
                return None
            # scatter-add by bincount: float64 sums of residues < 2**20 are exact up to 2**33 terms
            where = np.arange(plain.size, dtype=np.int64).reshape(plain.shape)[idx]
            w = np.broadcast_to(np.asarray(vals, dtype=np.float64), where.shape)
            add = np.bincount(where.ravel(), weights=w.ravel(), minlength=plain.size)
            plain += (add.astype(np.int64) % p).reshape(plain.shape)
            plain %= p
            target.bits = max(target.bits, b) + _clog2(count + 1)
            return None
        if kwargs.get("out") is not None:
            raise NotModular("in-place ufunc")
        if method == "reduce" and ufunc is np.add:
            a, e, b = to_mod(inputs[0], p)
            axis = kwargs.get("axis", 0)
            n = a.shape[axis] if axis is not None else a.size
            return mod_wrap(np.add.reduce(a, **kwargs) % p, p, e, b + _clog2(max(n, 1)))
        if method != "__call__":
            raise NotModular(f"{ufunc.__name__}.{method}")
        if ufunc in (np.add, np.subtract):
            (a, c), e, b = _mod_align(inputs, p)
            r = (a + c) % p if ufunc is np.add else (a - c) % p
            return mod_wrap(r, p, e, b + 1)
        if ufunc is np.multiply:
            (a, ea, ba), (c, ec, bc) = to_mod(inputs[0], p), to_mod(inputs[1], p)
            return mod_wrap((np.asarray(a, dtype=np.int64) * c) % p, p, ea + ec, ba + bc)
        if ufunc is np.negative:
            a, e, b = to_mod(inputs[0], p)
            return mod_wrap((-np.asarray(a, dtype=np.int64)) % p, p, e, b)
        if ufunc is np.positive:
            a, e, b = to_mod(inputs[0], p)
            return mod_wrap(np.asarray(a, dtype=np.int64), p, e, b)
        raise NotModular(f"ufunc {ufunc.__name__} on residues")

    def __array_function__(self, func, types, args, kwargs):
        p = self.p
        if func in _MOVE and func is not np.result_type:
            mods = [a for a in _flat_args(args) if isinstance(a, Mod)]
            res = func(*[a.view(np.ndarray) if isinstance(a, Mod) else a for a in args], **kwargs)
            if isinstance(res, np.ndarray) and res.dtype == np.int64:
                return mod_wrap(res, p, mods[0].e, mods[0].bits)
            return res
        if func is np.where:
            cond, rest = args[0], list(args[1:])
            items, e, b = _mod_align(rest, p)
            return mod_wrap(np.where(cond.view(np.ndarray) if isinstance(cond, np.ndarray) else cond, *items),
                            p, e, b)
        if func in (np.concatenate, np.stack):
            items, e, b = _mod_align(list(args[0]), p)
            items = [np.asarray(v, dtype=np.int64) for v in items]
            return mod_wrap(func(items, *args[1:], **kwargs), p, e, b)
        if func is np.sum:
            a, e, b = to_mod(args[0], p)
            axis = kwargs.get("axis", args[1] if len(args) > 1 else None)
            if axis is None:
                n = a.size
            else:
                axes = axis if isinstance(axis, tuple) else (axis,)
                n = int(np.prod([a.shape[ax] for ax in axes], dtype=np.int64))
            r = np.asarray(np.sum(a, *args[1:], **kwargs), dtype=np.int64) % p
            return mod_wrap(r, p, e, b + _clog2(max(n, 1)))
        if func is np.cumsum:
            a, e, b = to_mod(args[0], p)
            axis = kwargs.get("axis", args[1] if len(args) > 1 else None)
            n = a.size if axis is None else a.shape[axis]
            return mod_wrap(np.cumsum(a, *args[1:], **kwargs) % p, p, e, b + _clog2(max(n, 1)))
        if func is np.matmul:
            from ._exact import matmul

            return matmul(args[0], args[1])
        raise NotModular(f"numpy function {getattr(func, '__name__', func)} on residues")

    def rescale(self, e: int) -> None:
        if e > self.e:
            plain = self.view(np.ndarray)
            plain[...] = (plain * pow(2, e - self.e, self.p)) % self.p
            self.bits += e - self.e
            self.e = e

    def __setitem__(self, key, value):
        vals, e, b = to_mod(value, self.p)
        if e > self.e:
            self.rescale(e)
        elif e < self.e:
            vals = (vals * pow(2, self.e - e, self.p)) % self.p
            b += self.e - e
        self.view(np.ndarray)[key] = vals
        self.bits = max(self.bits, b)

    def sum(self, axis=None, keepdims=False, **kw):
        return np.sum(self, axis=axis, keepdims=keepdims)

    def copy(self, order="C"):
        return mod_wrap(self.view(np.ndarray).copy(order), self.p, self.e, self.bits)

    def __reduce__(self):  # pragma: no cover - never pickled
        raise TypeError("Mod arrays are not picklable")


def _flat_args(args):
    out = []
    for a in args:
        if isinstance(a, (list, tuple)):
            out.extend(_flat_args(a))
        else:
            out.append(a)
    return out


def mod_zeros(shape, like: "Mod") -> "Mod":
    return mod_wrap(np.zeros(shape, dtype=np.int64), like.p, like.e, 0)


def primes_for(bits: int) -> int:
    """How many of MOD_PRIMES make a modulus above 2**(bits + 1) (room for the sign)."""
    need, have, k = bits + 2, 0.0, 0
    import math

    while have < need:
        if k >= len(MOD_PRIMES):
            raise NotModular(f"integers of {bits} bits need more than {len(MOD_PRIMES)} primes")
        have += math.log2(MOD_PRIMES[k])
        k += 1
    return k


def crt(parts: list, cols=None) -> "Fx":
    """The exact Fx from its images modulo the first len(parts) primes, optionally only the last
    axis' entries ``cols``: Garner's mixed-radix digits in int64, grouped three primes to a
    digit (< 2**60), then Horner in Python integers. All parts share one exponent and bound."""
    ps = [m.p for m in parts]
    e = parts[0].e
    if any(m.e != e for m in parts):
        raise NotModular("images with different exponents")   # pragma: no cover - passes are identical
    res = [m.view(np.ndarray) if cols is None else m.view(np.ndarray)[..., cols] for m in parts]
    shape = res[0].shape
    digits = []
    for i, r in enumerate(res):
        t = r.astype(np.int64) % ps[i]
        for j in range(i):
            t = ((t - digits[j]) % ps[i] * pow(ps[j], -1, ps[i])) % ps[i]
        digits.append(t)
    # x = d0 + p0 (d1 + p1 (d2 + ...)): fold each group of three digits into one int64 digit
    groups, radices = [], []
    for g in range(0, len(ps), 3):
        d = digits[g:g + 3]
        q_ = ps[g:g + 3]
        v = d[-1].copy()
        for k in range(len(d) - 2, -1, -1):
            v = v * q_[k] + d[k]
        groups.append(v)
        r = 1
        for v_ in q_:
            r *= v_
        radices.append(r)
    x = groups[-1].astype(object)
    for g in range(len(groups) - 2, -1, -1):
        x = x * radices[g] + groups[g].astype(object)
    M = 1
    for v in ps:
        M *= v
    x = np.asarray(x, dtype=object).reshape(shape)
    neg = x > M // 2
    if neg.any():
        x = np.where(neg, x - M, x)
    return wrap(np.asarray(x, dtype=object).reshape(shape), e)

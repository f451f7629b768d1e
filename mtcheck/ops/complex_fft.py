"""Complex tensors as (re, im) pairs, and the discrete Fourier transforms, exact or enclosed.

The exact model holds a complex tensor of shape ``S`` as real values of shape ``S + (2,)``:
``v[..., 0]`` the real parts, ``v[..., 1]`` the imaginary parts (the layout of
``torch.view_as_real``). Only the rules of this module know that layout, so a complex value
reaching any other rule is refused (:func:`refuse_complex`, called by the model for every node):
a real rule would read the trailing axis as data. Every op here is real-linear in the (re, im)
parts except ``polar``, so the functions checked are real functions of real inputs: a program's
complex output is checked through ``torch.view_as_real(out)`` (what ``gradcheck`` does too), and
PyTorch's gradient of that real function is what its autograd returns for a real cotangent on the
real view.

Modelled:

* ``view_as_real``, ``view_as_complex``: the identity on the layout;
* ``_conj``, ``_conj_physical``, ``conj_physical``, ``resolve_conj``, ``resolve_neg``: the values
  are the logical ones (a lazily conjugated tensor holds its conjugate), so ``_conj`` negates the
  imaginary parts and ``resolve_conj`` is the identity;
* ``complex(re, im)`` and ``polar(abs, angle) = abs (cos angle, sin angle)`` (enclosed: the cosine
  and sine of a rational are irrational except at 0; derivatives ``(cos, sin)`` in abs and
  ``abs (-sin, cos)`` in angle);
* ``_to_copy`` / ``to`` into or out of a complex dtype (real -> complex: imaginary part 0;
  complex -> complex: the value kept, rounding is the exactness check's business as for real
  copies; complex -> real: the real part, as PyTorch does);
* the data-movement ops of :mod:`mtcheck.ops.index` (views, slices, ``clone``, ``cat``, padding
  by 0 ...) on complex tensors: their index maps are computed on the complex elements and applied
  to both parts;
* ``_fft_r2c(x, dim, normalization, onesided)``, ``_fft_c2c(x, dim, normalization, forward)``,
  ``_fft_c2r(x, dim, normalization, last_dim_size)``: separable real-linear maps, one axis at a
  time, with matrix entries ``cos(2 pi jk / n)`` and ``sin(2 pi jk / n)``. By Niven's theorem those
  are rational only at 0, +-1/2, +-1, where they are used exactly; elsewhere they are Arb balls
  (``cos_pi``/``sin_pi`` of the exact rational ``2jk/n``), so a transform of length 1, 2 or 4 stays
  exact and others are enclosed. ``normalization`` 0 (none), 1 (``1/sqrt(N)``: exact when ``N`` is
  a square) or 2 (``1/N``), ``N`` the product of the signal sizes. ``_fft_r2c`` computes
  ``X[k] = sum_j x[j] exp(-2 pi i jk/n)`` (only ``k <= n//2`` along the last dim when onesided);
  ``_fft_c2c`` the same with sign ``+`` when not forward; ``_fft_c2r`` first the inverse ``c2c``
  along all but the last dim, then along the last, from the half spectrum ``Y[0..n//2]``::

      y[j] = sum_k w_k (Re Y[k] cos(2 pi jk/n) - Im Y[k] sin(2 pi jk/n)),  w_0 = w_{n/2} = 1, else 2

  as pocketfft computes it: the imaginary parts of the DC term and, for even n, of the Nyquist term
  are ignored (their sines vanish: their derivative is 0). The reverse rules are the transposes of
  these real matrices.
"""

from __future__ import annotations

import math
from fractions import Fraction

import flint
import numpy as np
import torch
import torch.utils._pytree as pytree

from . import _RULES, NotModelled, Rule, register
from .._ball import ball, exactify, is_ball
from .._exact import Q0
from ._util import add_t, arg_grads, unbroadcast
from .arith import Positive

_PREC = 96

LAYOUT = ("mtcheck models complex tensors only through the ops that know their (re, im) layout: "
          "view_as_real, view_as_complex, complex, polar, conj, copies into and out of complex dtypes, "
          "data movement (views, slices, clone, cat, padding by 0), and the FFTs (_fft_r2c, _fft_c2c, "
          "_fft_c2r); compute on torch.view_as_real(z) to use other ops on the real and imaginary parts")


def _is_c(dtype) -> bool:
    return isinstance(dtype, torch.dtype) and dtype.is_complex


# ---------------------------------------------------------------- the model's guard

def _leaf_dtypes(tr, node):
    from ..trace import Ref

    out = []
    for v in pytree.tree_leaves((node.args, node.kwargs), is_leaf=lambda v: isinstance(v, Ref)):
        if isinstance(v, Ref):
            if v.kind == "in":
                out.append(tr.inputs[v.index].dtype)
            elif v.kind == "const":
                out.append(tr.consts[v.index].dtype)
            else:
                rec = tr.nodes[v.index].recorded
                rec = rec[v.out] if isinstance(rec, tuple) else rec
                out.append(getattr(rec, "dtype", None))
        elif isinstance(v, complex):
            out.append(torch.complex128)     # a Python complex scalar argument
    return out


def refuse_complex(tr, node, rule) -> None:
    """Called by :class:`mtcheck.model.ExactModel` for every node: a complex argument or result
    may only reach a rule that knows the (re, im) layout (``complex_aware``); anything else is
    refused with :class:`~mtcheck.errors.UnsupportedOpError` naming the op."""
    from ..errors import UnsupportedOpError

    ins = _leaf_dtypes(tr, node)
    rec = node.recorded if isinstance(node.recorded, tuple) else (node.recorded,)
    outs = [getattr(r, "dtype", None) for r in rec]
    if not any(_is_c(d) for d in ins + outs):
        return
    if not getattr(rule, "complex_aware", False):
        raise UnsupportedOpError(node.op, node.where, f"complex values reach {node.op}; {LAYOUT}")
    check = getattr(rule, "complex_check", None)
    if check is not None:
        why = check(ins, outs)
        if why:
            raise UnsupportedOpError(node.op, node.where, f"{why}; {LAYOUT}")


def const_value(c):
    """The exact value of a constant tensor; a complex one in the (re, im) layout."""
    from .._exact import from_tensor

    if c.is_complex():
        return from_tensor(torch.view_as_real(c.detach().resolve_conj().resolve_neg()))
    return from_tensor(c)


# ---------------------------------------------------------------- kinds of tangents

def _linear_kind(t):
    """``t`` when the enclosed matrix products below take it (exact rationals, a Ball); for other
    kinds the model's fallback is asked for: verified floats and fixed point redo the pass in
    rationals, structural flags treat every entry as possibly nonzero."""
    if t is None or is_ball(t):
        return t
    from .._fastfloat import FT, Inexact
    from .._fixed import Fx, Mod, NotDyadic, NotModular
    from .._support import Dep, NotStructural

    if isinstance(t, Dep):
        raise NotStructural("an FFT mixes every entry along its dims")   # (handled by _dep_fft before)
    if isinstance(t, FT):
        raise Inexact("the FFT's matrix products are computed in rationals or enclosures")
    if isinstance(t, Mod):
        raise NotModular("the FFT's matrix products are computed in rationals or enclosures")
    if isinstance(t, Fx):
        raise NotDyadic("the FFT's matrix products are computed in rationals or enclosures")
    return np.asarray(t, dtype=object)


def _zeros(shape, like):
    from ._util import zeros_like_cot, zeros_t
    from .._fastfloat import FT
    from .._support import Dep

    if isinstance(like, (FT, Dep)):
        return zeros_t(shape[0], shape[1:], like=like)
    return zeros_like_cot(shape, like)


def _re(v):
    return v[..., 0]


def _im(v):
    return v[..., 1]


def _pair(re, im):
    """Real and imaginary parts (one shape) in the (re, im) layout."""
    re, im = (v if isinstance(v, np.ndarray) else np.asarray(v, dtype=object) for v in (re, im))
    return np.concatenate([re.reshape(re.shape + (1,)), im.reshape(im.shape + (1,))], axis=-1)


def _fin(v):
    return exactify(v) if is_ball(v) else v


def _neg(v):
    return -v


# ---------------------------------------------------------------- identities and conjugation

class _Complex(Rule):
    balls = True
    complex_aware = True


@register("aten.view_as_real.default", "aten.view_as_complex.default", "aten.resolve_conj.default",
          "aten.resolve_neg.default", "aten.view_as_real_copy.default", "aten.view_as_complex_copy.default")
class ComplexIdentity(_Complex, Positive):
    """The identity on complex tensors (arith's ``Positive``): the (re, im) layout is view_as_real's,
    so these ops leave the values as they are; also detach's complex route."""


@register("aten._conj.default", "aten._conj_physical.default", "aten.conj_physical.default",
          "aten.conj_physical_.default", "aten._conj_copy.default")
class Conj(_Complex):
    """The complex conjugate: the imaginary parts negated (the identity on a real tensor)."""

    def _cplx(self, ctx):
        return _is_c(ctx.dtype)

    def _map(self, ctx, v):
        if v is None or not self._cplx(ctx):
            return v
        return _pair(_re(v), _neg(_im(v)))

    def forward(self, ctx, args, kwargs):
        return self._map(ctx, args[0])

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return self._map(ctx, targs[0])

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: self._map(ctx, cot)})


def _bshape(a, b):
    return np.broadcast_shapes(np.shape(a), np.shape(b))


def _bcast(v, shape, batch=False):
    if v is None:
        return None
    if batch:
        return np.broadcast_to(v.reshape((v.shape[0],) + (1,) * (len(shape) - v.ndim + 1) + v.shape[1:]),
                               (v.shape[0],) + tuple(shape))
    return np.broadcast_to(v, shape)


@register("aten.complex.default")
class ComplexOf(_Complex):
    """complex(re, im): the two real tensors (broadcast) as the two parts."""

    def forward(self, ctx, args, kwargs):
        re, im = args[0], args[1]
        shape = _bshape(re, im)
        return _pair(_bcast(re, shape), _bcast(im, shape))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        shape = out.shape[:-1]
        tr, ti = targs[0], targs[1]
        like = tr if tr is not None else ti
        B = like.shape[0]
        tr = _zeros((B,) + tuple(shape), like) if tr is None else _bcast(tr, shape, batch=True)
        ti = _zeros((B,) + tuple(shape), like) if ti is None else _bcast(ti, shape, batch=True)
        return _pair(tr, ti)

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: unbroadcast(_re(cot), np.shape(args[0])),
                                1: unbroadcast(_im(cot), np.shape(args[1]))})


def _enclose(fn, x):
    from .smooth import enclose

    return enclose(fn, x)


@register("aten.polar.default")
class Polar(_Complex):
    """polar(abs, angle) = abs (cos angle, sin angle), enclosed; derivatives (cos, sin) in abs and
    abs (-sin, cos) in angle."""

    def _parts(self, ctx, args):
        hit = ctx.aux.get("polar")
        if hit is None:
            r, th = args[0], args[1]
            from .._exact import sign

            if (np.asarray(sign(r)) < 0).any():
                raise NotModelled("polar with a negative abs (PyTorch documents the result as undefined)")
            shape = _bshape(r, th)
            c = _enclose(lambda a: a.cos(), th)
            s = _enclose(lambda a: a.sin(), th)
            r, c, s = (np.broadcast_to(v, shape) for v in (r, c, s))
            hit = ctx.aux["polar"] = (r, c, s, shape)
        return hit

    def forward(self, ctx, args, kwargs):
        r, c, s, shape = self._parts(ctx, args)
        # enclosures unless cos and sin are exact (angle 0), even where the values are exact (abs 0):
        # the derivatives are irrational there
        return _pair(r * c, r * s)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        from .smooth import times

        r, c, s, shape = self._parts(ctx, args)
        tr = _bcast(targs[0], shape, batch=True)
        tt = _bcast(targs[1], shape, batch=True)
        re = im = None
        if tr is not None:
            re, im = times(c, tr), times(s, tr)
        if tt is not None:
            a, b = times(_fin(-(r * s)), tt), times(_fin(r * c), tt)
            re = a if re is None else re + a
            im = b if im is None else im + b
        return _pair(_fin(re), _fin(im))

    def vjp(self, ctx, args, kwargs, out, cot):
        from .smooth import times

        r, c, s, shape = self._parts(ctx, args)
        gr, gi = _re(cot), _im(cot)
        live = ctx.aux.get("live") or [True, True]
        by = {}
        if live[0]:
            by[0] = unbroadcast(_fin(times(c, gr) + times(s, gi)), np.shape(args[0]))
        if len(live) > 1 and live[1]:
            by[1] = unbroadcast(_fin(times(_fin(-(r * s)), gr) + times(_fin(r * c), gi)), np.shape(args[1]))
        return arg_grads(args, by)


# ---------------------------------------------------------------- routes: complex variants of real rules

class _Route(_Complex):
    """A real rule's names with their complex variants routed to ``alt`` (``base``: the real rule,
    as :func:`mtcheck.ops.register` expects of a wrapper)."""

    def __init__(self, base, alt):
        self.base, self.alt = base, alt
        self.names = getattr(base, "names", ())
        self.nonsmooth = base.nonsmooth
        self.balls = getattr(base, "balls", False) or alt.balls
        if getattr(base, "vjp", None) is None:
            self.vjp = None

    def _pick(self, ctx):
        return self.alt if _is_c(ctx.dtype) or _is_c(ctx.aux.get("arg_dtype")) else self.base

    def complex_check(self, ins, outs):
        return self.alt.complex_check(ins, outs) if hasattr(self.alt, "complex_check") else None

    def forward(self, ctx, args, kwargs):
        return self._pick(ctx).forward(ctx, args, kwargs)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return self._pick(ctx).jvp(ctx, args, kwargs, out, targs, tkwargs)

    def discs(self, ctx, args, kwargs, out):
        return self._pick(ctx).discs(ctx, args, kwargs, out)

    def vjp(self, ctx, args, kwargs, out, cot):  # noqa: F811 - replaced by None above where the base has none
        return self._pick(ctx).vjp(ctx, args, kwargs, out, cot)


class ComplexCopy(_Complex):
    """``_to_copy`` into or out of a complex dtype: real -> complex takes imaginary part 0,
    complex -> complex keeps the value, complex -> real keeps the real part (PyTorch discards the
    imaginary part, with a warning)."""

    def complex_check(self, ins, outs):
        if outs and not (outs[0].is_floating_point or _is_c(outs[0])):
            return "a complex tensor converted to an integer or boolean dtype"
        return None

    def _mode(self, ctx):
        return (_is_c(ctx.aux.get("arg_dtype")), _is_c(ctx.dtype))

    def _map(self, ctx, v, B=None):
        cin, cout = self._mode(ctx)
        if v is None or cin == cout:
            return v
        if cout:
            return _pair(v, _zeros(v.shape, v))
        return _re(v)

    def _unmap(self, ctx, g):
        cin, cout = self._mode(ctx)
        if g is None or cin == cout:
            return g
        if cin:              # the transpose of "take the real part": (g, 0)
            return _pair(g, _zeros(g.shape, g))
        return _re(g)        # ... of "imaginary part 0": the real part of the cotangent

    def forward(self, ctx, args, kwargs):
        x = args[0]
        if x.dtype != object:
            raise NotModelled("an integer or boolean tensor converted to a complex dtype")
        return self._map(ctx, x)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return self._map(ctx, targs[0])

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: self._unmap(ctx, cot)})


class ComplexMove(_Complex):
    """Data movement of complex tensors: the op's index map is computed on the complex elements
    (each element's index is that of its real part) and applied to both parts; the derivatives are
    :class:`mtcheck.ops.index.IndexMap`'s, which read only the map."""

    def __init__(self, base):
        self.base = base

    def complex_check(self, ins, outs):
        fl = [d for d in ins if isinstance(d, torch.dtype) and (d.is_floating_point or d.is_complex)]
        if any(not _is_c(d) for d in fl) or any(isinstance(d, torch.dtype) and d.is_floating_point for d in outs):
            return "real and complex tensors mixed in one data-movement op"
        return None

    def forward(self, ctx, args, kwargs):
        from .index import _flat_values, _gather, _index_maps

        if ctx.aux["func"].__name__.startswith("constant_pad_nd"):
            value = args[2] if len(args) > 2 else kwargs.get("value", 0)
            if value != 0:
                raise NotModelled("a complex tensor padded with a value other than 0")
        idx, _, seq = _index_maps(ctx, args, kwargs, pairs=True)
        maps = [np.stack([m, np.where(m >= 0, m + 1, -1)], axis=-1) for m in idx]
        ctx.aux["maps"] = maps
        res = _gather(maps, _flat_values(args), Q0)
        return tuple(res) if seq else res[0]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return self.base.jvp(ctx, args, kwargs, out, targs, tkwargs)

    def vjp(self, ctx, args, kwargs, out, cot):
        return self.base.vjp(ctx, args, kwargs, out, cot)


def _route(names, make_alt):
    for n in names:
        base = _RULES.get(n)
        if base is None or getattr(base, "complex_aware", False):
            continue
        _RULES[n] = _Route(base, make_alt(base))


def _install_routes():
    from .index import _INDEX_OPS

    _route(_INDEX_OPS, ComplexMove)
    _route(("aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout"), lambda b: ComplexCopy())
    _route(("aten.detach.default", "aten.detach_.default"), lambda b: ComplexIdentity())


_install_routes()


# ---------------------------------------------------------------- the Fourier matrices

# Niven: the rational values of cos(pi t) for rational t, with t mod 2 in units of 1/6
_COS6 = {0: Fraction(1), 2: Fraction(1, 2), 3: Fraction(0), 4: Fraction(-1, 2), 6: Fraction(-1),
         8: Fraction(-1, 2), 9: Fraction(0), 10: Fraction(1, 2)}


def _cos_pi(num: int, den: int):
    """cos(pi num/den) as an exact Fraction (Niven's cases) or an arb ball."""
    num %= 2 * den
    if (6 * num) % den == 0 and (6 * num) // den in _COS6:
        return _COS6[(6 * num) // den]
    return flint.arb.cos_pi_fmpq(flint.fmpq(num, den))


def _sin_pi(num: int, den: int):
    # sin(pi t) = cos(pi (t - 1/2))
    return _cos_pi(2 * num - den, 2 * den)


def _matrix(entries):
    """A 2-D list of Fractions / arb balls as an exact object array (all rational) or a Ball."""
    rows, cols = len(entries), len(entries[0]) if entries else 0
    if all(isinstance(e, Fraction) for row in entries for e in row):
        out = np.empty((rows, cols), dtype=object)
        for i, row in enumerate(entries):
            for j, e in enumerate(row):
                out[i, j] = flint.fmpq(e.numerator, e.denominator)
        return out
    from .._ball import _from_arb

    mid = np.empty((rows, cols))
    rad = np.empty((rows, cols))
    for i, row in enumerate(entries):
        for j, e in enumerate(row):
            if isinstance(e, Fraction):
                f = float(e)       # 0, +-1/2, +-1: exact floats
                mid[i, j], rad[i, j] = f, 0.0
            else:
                mid[i, j], rad[i, j] = _from_arb(e)
    return ball(mid, rad)


_MATS: dict = {}


def _cs(rows: int, cols: int, n: int):
    """(C, S): C[k, j] = cos(2 pi kj/n), S[k, j] = sin(2 pi kj/n), k < rows, j < cols."""
    key = (rows, cols, n)
    hit = _MATS.get(key)
    if hit is None:
        old = flint.ctx.prec
        flint.ctx.prec = _PREC
        try:
            C = _matrix([[_cos_pi(2 * k * j, n) for j in range(cols)] for k in range(rows)])
            S = _matrix([[_sin_pi(2 * k * j, n) for j in range(cols)] for k in range(rows)])
        finally:
            flint.ctx.prec = old
        hit = _MATS[key] = (C, S)
    return hit


def _c2r_mats(n: int):
    """(A, Bm) of the one-axis c2r: y = A Re Y + Bm Im Y from the half spectrum (n//2 + 1 entries)."""
    key = ("c2r", n)
    hit = _MATS.get(key)
    if hit is None:
        m = n // 2 + 1
        old = flint.ctx.prec
        flint.ctx.prec = _PREC
        try:
            def w(k):
                return 1 if k == 0 or 2 * k == n else 2

            A = _matrix([[w(k) * _cos_pi(2 * j * k, n) for k in range(m)] for j in range(n)])
            Bm = _matrix([[-w(k) * _sin_pi(2 * j * k, n) for k in range(m)] for j in range(n)])
        finally:
            flint.ctx.prec = old
        hit = _MATS[key] = (A, Bm)
    return hit


def _scale(norm: int, N: int):
    """The normalization factor: 1, 1/sqrt(N) (exact for a square N) or 1/N."""
    if norm == 0:
        return None
    if norm == 2:
        return flint.fmpq(1, N)
    if norm == 1:
        r = math.isqrt(N)
        if r * r == N:
            return flint.fmpq(1, r)
        from .._ball import _from_arb

        old = flint.ctx.prec
        flint.ctx.prec = _PREC
        try:
            m, rad = _from_arb(flint.arb(N).rsqrt())
        finally:
            flint.ctx.prec = old
        return ball(np.float64(m), np.float64(rad))
    raise NotModelled(f"an FFT normalization mode {norm!r}")


def _mat(v, axis: int, M):
    """``M`` (out, in) applied along ``axis`` of ``v``."""
    if v is None:
        return None
    w = np.moveaxis(v, axis, -1)
    if is_ball(M) or is_ball(w):
        r = np.matmul(w, np.swapaxes(M, 0, 1))
    else:
        r = np.matmul(np.asarray(w, dtype=object), np.asarray(M, dtype=object).T)
    return np.moveaxis(r, -1, axis)


def _sub(a, b):
    if b is None:
        return a
    if a is None:
        return -b
    return a - b


def _c2c_axis(re, im, axis, n, sign):
    """(re, im) of the complex DFT with exponent sign ``sign`` along ``axis`` (length n)."""
    C, S = _cs(n, n, n)
    cr, ci, sr, si = _mat(re, axis, C), _mat(im, axis, C), _mat(re, axis, S), _mat(im, axis, S)
    if sign < 0:        # (C - iS)(re + i im)
        return add_t(cr, si), _sub(ci, sr)
    return _sub(cr, si), add_t(sr, ci)        # (C + iS)(re + i im)


def _r2c_axis(x, axis, n, m):
    """(re, im) of the forward DFT of real ``x`` along ``axis`` (length n), the first m bins."""
    C, S = _cs(m, n, n)
    return _mat(x, axis, C), -_mat(x, axis, S)


def _r2c_axis_t(gre, gim, axis, n, m):
    C, S = _cs(m, n, n)
    return _sub(_mat(gre, axis, C.T), _mat(gim, axis, S.T))


def _c2r_axis(re, im, axis, n):
    A, Bm = _c2r_mats(n)
    return add_t(_mat(re, axis, A), _mat(im, axis, Bm))


def _c2r_axis_t(g, axis, n):
    A, Bm = _c2r_mats(n)
    return _mat(g, axis, A.T), _mat(g, axis, Bm.T)


def _times(v, f):
    if f is None or v is None:
        return v
    return v * f


def _dims(dims, ndim):
    ds = [dims] if isinstance(dims, int) else list(dims)
    if not ds:
        raise NotModelled("an FFT over no dimension")
    out = [d % ndim for d in ds]
    if len(set(out)) != len(out):
        raise NotModelled("an FFT over a repeated dimension")
    return out


def _dep_fft(t, dims, cin, cout, out_shape):
    """Structural flags through an FFT: an output entry may be nonzero where any entry of its
    group (every index along the transformed dims, both parts) may be (a sound over-approximation:
    the DFT matrices' zeros, as the sine row of the DC bin, are not used)."""
    from .._support import wrap

    f = t.view(np.ndarray)
    axes = tuple(d + 1 for d in dims) + ((f.ndim - 1,) if cin else ())
    f = f.max(axis=axes, keepdims=True)
    if cin and not cout:
        f = f[..., 0]
    elif cout and not cin:
        f = f[..., None]
    return wrap(np.broadcast_to(f, (f.shape[0],) + tuple(out_shape)).copy())


class _FFT(_Complex):
    """Shared: the transform as a function of the value (or a batch of tangents, ``b = 1``)."""

    io = (True, True)        # (complex input, complex output)

    def _p(self, ctx, args, kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, ctx, args, kwargs):
        # not exactified: with an irrational matrix the values stay enclosures even where they are
        # exact (an input of zeros), so the checker treats the coefficients as irrational
        p = self._p(ctx, args, kwargs)
        return self._apply(p, args[0], 0)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        from .._support import Dep

        if isinstance(targs[0], Dep):
            return _dep_fft(targs[0], self._p(ctx, args, kwargs)[0], *self.io, np.shape(out))
        t = _linear_kind(targs[0])
        return None if t is None else _fin(self._apply(self._p(ctx, args, kwargs), t, 1))

    def vjp(self, ctx, args, kwargs, out, cot):
        g = _linear_kind(cot)
        return arg_grads(args, {0: None if g is None else _fin(self._transpose(self._p(ctx, args, kwargs), g, 1))})


@register("aten._fft_r2c.default")
class FftR2C(_FFT):
    """_fft_r2c(x real, dim, normalization, onesided): X[k] = sum_j x[j] exp(-2 pi i jk/n) over
    ``dim``, the last of them cut to n//2 + 1 bins when onesided."""

    io = (False, True)

    def _p(self, ctx, args, kwargs):
        x = args[0]
        dims = _dims(args[1] if len(args) > 1 else kwargs["dim"], x.ndim)
        norm = int(args[2] if len(args) > 2 else kwargs["normalization"])
        onesided = bool(args[3] if len(args) > 3 else kwargs["onesided"])
        sizes = [x.shape[d] for d in dims]
        if min(sizes) == 0:
            raise NotModelled("an FFT of an empty dimension")
        last = dims[-1]
        m = x.shape[last] // 2 + 1 if onesided else x.shape[last]
        return dims, sizes, m, _scale(norm, int(np.prod(sizes)))

    def _apply(self, p, x, b):
        dims, sizes, m, f = p
        re, im = _r2c_axis(x, dims[-1] + b, sizes[-1], m)
        for d, n in zip(dims[:-1], sizes[:-1]):
            re, im = _c2c_axis(re, im, d + b, n, -1)
        return _pair(_times(re, f), _times(im, f))

    def _transpose(self, p, g, b):
        dims, sizes, m, f = p
        re, im = _times(_re(g), f), _times(_im(g), f)
        for d, n in zip(dims[:-1], sizes[:-1]):
            re, im = _c2c_axis(re, im, d + b, n, +1)      # the transpose of sign -1 is sign +1
        return _r2c_axis_t(re, im, dims[-1] + b, sizes[-1], m)


@register("aten._fft_c2c.default")
class FftC2C(_FFT):
    """_fft_c2c(x complex, dim, normalization, forward): exponent -2 pi i jk/n when forward, else +."""

    def _p(self, ctx, args, kwargs):
        x = args[0]
        ndim = x.ndim - 1
        dims = _dims(args[1] if len(args) > 1 else kwargs["dim"], ndim)
        norm = int(args[2] if len(args) > 2 else kwargs["normalization"])
        fwd = bool(args[3] if len(args) > 3 else kwargs["forward"])
        sizes = [x.shape[d] for d in dims]
        if min(sizes) == 0:
            raise NotModelled("an FFT of an empty dimension")
        return dims, sizes, -1 if fwd else 1, _scale(norm, int(np.prod(sizes)))

    def _run(self, dims, sizes, sign, f, z, b):
        re, im = _re(z), _im(z)
        for d, n in zip(dims, sizes):
            re, im = _c2c_axis(re, im, d + b, n, sign)
        return _pair(_times(re, f), _times(im, f))

    def _apply(self, p, z, b):
        dims, sizes, sign, f = p
        return self._run(dims, sizes, sign, f, z, b)

    def _transpose(self, p, g, b):
        dims, sizes, sign, f = p
        return self._run(dims, sizes, -sign, f, g, b)


@register("aten._fft_c2r.default")
class FftC2R(_FFT):
    """_fft_c2r(x complex half spectrum, dim, normalization, last_dim_size): the inverse c2c along
    all but the last dim, then the hermitian inverse along the last (see the module docstring)."""

    io = (True, False)

    def _p(self, ctx, args, kwargs):
        x = args[0]
        ndim = x.ndim - 1
        dims = _dims(args[1] if len(args) > 1 else kwargs["dim"], ndim)
        norm = int(args[2] if len(args) > 2 else kwargs["normalization"])
        n = int(args[3] if len(args) > 3 else kwargs["last_dim_size"])
        sizes = [x.shape[d] for d in dims[:-1]]
        if n <= 0 or min(sizes + [x.shape[dims[-1]]]) == 0:
            raise NotModelled("an FFT of an empty dimension")
        if x.shape[dims[-1]] != n // 2 + 1:
            raise NotModelled(f"_fft_c2r with {x.shape[dims[-1]]} input bins for last_dim_size {n} "
                              f"(the half spectrum has {n // 2 + 1})")
        return dims, sizes, n, _scale(norm, int(np.prod(sizes + [n])))

    def _apply(self, p, z, b):
        dims, sizes, n, f = p
        re, im = _re(z), _im(z)
        for d, k in zip(dims[:-1], sizes):
            re, im = _c2c_axis(re, im, d + b, k, +1)
        return _times(_c2r_axis(re, im, dims[-1] + b, n), f)

    def _transpose(self, p, g, b):
        dims, sizes, n, f = p
        re, im = _c2r_axis_t(_times(g, f), dims[-1] + b, n)
        for d, k in zip(dims[:-1], sizes):
            re, im = _c2c_axis(re, im, d + b, k, -1)
        return _pair(re, im)

"""Matrix functions with irrational values, enclosed: log|det| (slogdet, logdet), the matrix
exponential and the Cholesky factor.

Values come from FLINT's Arb (``arb_mat`` products, ``exp``, square roots of the pivots), turned
into :class:`~mtcheck._ball.Ball` arrays with outward rounding. Derivatives:

* ``d log|det A| = tr(A^-1 dA)``: ``A^-1`` is exact (rationals);
* ``d exp(A)[E]`` is the top-right block of ``exp([[A, E], [0, A]])`` (the Frechet derivative),
  and its adjoint is the Frechet derivative at ``A^T``;
* ``dL = L Phi(L^-1 dA_s L^-T)`` for ``A_s = L L^T`` (``Phi``: the lower triangle with the
  diagonal halved), where ``A_s`` is the symmetric matrix of the triangle PyTorch reads.

A singular matrix (slogdet, logdet) or one that is not positive definite (cholesky) is refused
with the reason; a pivot whose enclosure contains 0 is ``Undecided`` (an UNKNOWN verdict).
"""

from __future__ import annotations

import flint
import numpy as np

from . import NotLipschitz, NotModelled, Rule, register
from .._ball import Ball, Undecided, _from_arb, ball, to_ball
from .._exact import Q1, as_exact, q
from ._util import arg_grads, tan

_PREC = 128
arb = flint.arb


def _obj(a):
    if isinstance(a, Ball):
        return a
    a = np.asarray(a)
    return a if a.dtype == object else as_exact(a)


def _arb_of(v):
    if isinstance(v, (complex, np.complexfloating)):
        return arb(float(v.real), float(v.imag)) if v.imag else arb(float(v.real))
    if isinstance(v, flint.fmpq):
        return arb(v)
    return arb(flint.fmpq(int(v)) if isinstance(v, (int, flint.fmpz)) else v)


def _arb_matrix(a2):
    """An n x m exact or enclosed matrix as an ``arb_mat``."""
    n, m = a2.shape
    if isinstance(a2, Ball):
        vals = a2.view(np.ndarray).ravel().tolist()
    else:
        vals = a2.ravel().tolist()
    return flint.arb_mat(n, m, [_arb_of(v) for v in vals])


def _to_ball(M, shape):
    mids, rads = [], []
    for v in M.entries():
        m, r = _from_arb(v)
        mids.append(m)
        rads.append(r)
    return ball(np.array(mids).reshape(shape), np.array(rads).reshape(shape))


def _Prec():
    from .._ball import precision

    return precision(_PREC)


def _dep_matrix(t, out_shape):
    """Structural flags (:class:`~mtcheck._support.Dep`): every entry of a matrix output may
    depend on every entry of its input matrix."""
    from .._support import wrap

    f = np.asarray(t.view(np.ndarray)).reshape(t.shape[0], *t.shape[1:-2], -1).max(axis=-1)
    return wrap(np.broadcast_to(f[..., None, None], (t.shape[0],) + tuple(out_shape)).copy())


def _is_dep(t):
    from .._support import Dep

    return isinstance(t, Dep)


# ---------------------------------------------------------------- slogdet

@register("aten._linalg_slogdet.default")
class Slogdet(Rule):
    """_linalg_slogdet(A) = (sign, log|det|, LU, pivots): det exact, its log enclosed; sign is
    locally constant (det = 0 is refused: log|det| is -inf there). LU and pivots are the
    framework's own values (constants: mtcheck models sign and log|det| only)."""

    balls = True

    def forward(self, ctx, args, kwargs):
        a = _obj(args[0])
        if isinstance(a, Ball):
            raise NotModelled("slogdet of an enclosed matrix")
        n = a.shape[-1]
        sgn = np.empty(a.shape[:-2], dtype=object)
        mids, rads = np.zeros(a.shape[:-2]), np.zeros(a.shape[:-2])
        inv = np.empty(a.shape, dtype=object)
        with _Prec():
            for idx in np.ndindex(*a.shape[:-2]):
                M = flint.fmpq_mat(n, n, [q(v) for v in a[idx].ravel().tolist()]) if n else None
                d = M.det() if n else Q1
                if d == 0:
                    raise NotModelled("slogdet of a singular matrix (log|det| is -inf)")
                sgn[idx] = Q1 if d > 0 else -Q1
                mids[idx], rads[idx] = _from_arb(arb(abs(d)).log())
                if n:
                    out = np.empty(n * n, dtype=object)
                    out[:] = M.inv().entries()
                    inv[idx] = out.reshape(n, n)
        ctx.aux["inv"] = inv
        from ._util import obj
        from .._ball import exactify

        rec = ctx.recorded
        lu = as_exact(rec[2].detach().numpy()) if isinstance(rec, (tuple, list)) else np.zeros(a.shape, dtype=object)
        piv = rec[3].numpy() if isinstance(rec, (tuple, list)) else np.zeros(a.shape[:-1], dtype=np.int32)
        return obj(sgn), exactify(ball(mids, rads)), lu, piv

    def _inv(self, ctx, args, kwargs):
        if "inv" not in ctx.aux:
            self.forward(ctx, args, kwargs)
        return ctx.aux["inv"]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        from ._util import zeros_t

        z = zeros_t(t.shape[0], np.shape(out[0]), t)
        if _is_dep(t):
            from .._support import wrap

            return z, wrap(np.asarray(t.view(np.ndarray)).reshape(t.shape[:-2] + (-1,)).max(axis=-1)), None, None
        ainv = self._inv(ctx, args, kwargs)
        # tr(A^-1 T) = sum_ij (A^-1)_ji T_ij
        return z, tan((t * np.swapaxes(ainv, -1, -2)[None]).sum(axis=(-2, -1))), None, None

    def vjp(self, ctx, args, kwargs, out, cot):
        if cot[2] is not None:
            raise NotModelled("a derivative through slogdet's LU output")
        g = cot[1]
        if g is None:
            return arg_grads(args, {})
        ainv = self._inv(ctx, args, kwargs)
        return arg_grads(args, {0: g[..., None, None] * np.swapaxes(ainv, -1, -2)[None]})


# ---------------------------------------------------------------- matrix exponential

def _expm(a2):
    with _Prec():
        return _to_ball(_arb_matrix(a2).exp(), a2.shape)


def _frechet(a2, e2):
    """The Frechet derivative of exp at ``a2`` in the direction ``e2`` (enclosed)."""
    n = a2.shape[0]
    av = _arb_matrix(a2)
    ev = _arb_matrix(e2)
    big = flint.arb_mat(2 * n, 2 * n)
    for i in range(n):
        for j in range(n):
            big[i, j] = av[i, j]
            big[n + i, n + j] = av[i, j]
            big[i, n + j] = ev[i, j]
    with _Prec():
        X = big.exp()
    top = flint.arb_mat(n, n)
    for i in range(n):
        for j in range(n):
            top[i, j] = X[i, n + j]
    return _to_ball(top, (n, n))


@register("aten.linalg_matrix_exp.default")
class MatrixExp(Rule):
    balls = True

    def forward(self, ctx, args, kwargs):
        a = _obj(args[0])
        from .._ball import exactify

        out = ball(np.zeros(a.shape))
        for idx in np.ndindex(*a.shape[:-2]):
            out[idx] = _expm(a[idx])
        return exactify(out)

    def _dir(self, a, t, transpose):
        B = t.shape[0]
        res = ball(np.zeros(t.shape))
        for b in range(B):
            for idx in np.ndindex(*a.shape[:-2]):
                ai = a[idx]
                ti = t[(b,) + idx]
                if transpose:
                    ai = np.swapaxes(ai, -1, -2)
                if not np.any(np.asarray(to_ball(ti).mid != 0) | np.asarray(to_ball(ti).rad != 0)):
                    continue
                with _Prec():
                    res[(b,) + idx] = _frechet(ai, ti)
        from .._ball import exactify

        return exactify(res)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        if _is_dep(t):
            return _dep_matrix(t, np.shape(out))
        return self._dir(_obj(args[0]), t, False)

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: self._dir(_obj(args[0]), cot, True)})


# ---------------------------------------------------------------- Cholesky

def _chol_lower(a2):
    """(L as arb_mat, L^-1 as arb_mat) of the symmetric matrix of a2's lower triangle."""
    n = a2.shape[0]
    A = _arb_matrix(a2)
    L = flint.arb_mat(n, n)
    with _Prec():
        for j in range(n):
            s = A[j, j]
            for k in range(j):
                s -= L[j, k] * L[j, k]
            if s < 0:
                raise NotModelled("cholesky of a matrix that is not positive definite (the framework raises)")
            if not s > 0:
                if s.is_exact() and s == 0:
                    raise NotLipschitz("cholesky of a singular positive semidefinite matrix (sqrt at 0)")
                raise Undecided("a Cholesky pivot whose enclosure contains 0")
            d = s.sqrt()
            L[j, j] = d
            for i in range(j + 1, n):
                s = A[i, j]
                for k in range(j):
                    s -= L[i, k] * L[j, k]
                L[i, j] = s / d
        Linv = L.inv()
    return L, Linv


def _sym_lower(t):
    """dA_s for a tangent t of the matrix whose lower triangle is read: tril(t) + tril(t, -1)^T."""
    return np.tril(t) + np.swapaxes(np.tril(t, -1), -1, -2)


def _phi(x):
    """Lower triangle with the diagonal halved."""
    n = x.shape[-1]
    w = np.tril(np.ones((n, n))) - 0.5 * np.eye(n)
    return x * w


def _mm(a, b):
    return np.matmul(to_ball(a), to_ball(b))


@register("aten.linalg_cholesky_ex.default", "aten.cholesky.default")
class Cholesky(Rule):
    """linalg_cholesky_ex(A, upper, check_errors) = (L, info); cholesky(A, upper). The factor
    of the lower triangle (upper=False) or of the upper one (upper=True, returned transposed)."""

    balls = True

    def _upper(self, ctx, args, kwargs):
        return bool(args[1] if len(args) > 1 else kwargs.get("upper", False))

    def _factors(self, ctx, args, kwargs):
        f = ctx.aux.get("chol")
        if f is None:
            a = _obj(args[0])
            if self._upper(ctx, args, kwargs):
                a = np.swapaxes(a, -1, -2)
            Ls, Li = ball(np.zeros(a.shape)), ball(np.zeros(a.shape))
            for idx in np.ndindex(*a.shape[:-2]):
                L, Linv = _chol_lower(a[idx])
                Ls[idx] = _to_ball(L, a.shape[-2:])
                Li[idx] = _to_ball(Linv, a.shape[-2:])
            f = ctx.aux["chol"] = (Ls, Li)
        return f

    def forward(self, ctx, args, kwargs):
        from .._ball import exactify

        L, _ = self._factors(ctx, args, kwargs)
        out = np.swapaxes(L, -1, -2).copy().view(Ball) if self._upper(ctx, args, kwargs) else L
        out = exactify(out)
        if ctx.op.startswith("aten.linalg_cholesky_ex"):
            return out, np.zeros(np.shape(args[0])[:-2], dtype=np.int32)
        return out

    def _tuple(self, ctx, r):
        return (r, None) if ctx.op.startswith("aten.linalg_cholesky_ex") else r

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        shape = np.shape(args[0])
        if _is_dep(t):
            return self._tuple(ctx, _dep_matrix(t, shape))
        upper = self._upper(ctx, args, kwargs)
        L, Li = self._factors(ctx, args, kwargs)
        tt = np.swapaxes(to_ball(t), -1, -2) if upper else to_ball(t)
        X = _mm(_mm(Li[None], _sym_lower(tt)), np.swapaxes(Li, -1, -2)[None])
        dL = _mm(L[None], _phi(X))
        return self._tuple(ctx, np.swapaxes(dL, -1, -2).copy().view(Ball) if upper else dL)

    def vjp(self, ctx, args, kwargs, out, cot):
        g = cot[0] if isinstance(cot, tuple) else cot
        if g is None:
            return arg_grads(args, {})
        upper = self._upper(ctx, args, kwargs)
        L, Li = self._factors(ctx, args, kwargs)
        gl = np.swapaxes(to_ball(g), -1, -2) if upper else to_ball(g)
        P = _phi(_mm(np.swapaxes(L, -1, -2)[None], gl))
        full = _mm(_mm(np.swapaxes(Li, -1, -2)[None], P), Li[None])
        # adjoint of t -> tril(t) + tril(t, -1)^T
        ga = np.tril(full) + np.tril(np.swapaxes(full, -1, -2), -1)
        return arg_grads(args, {0: np.swapaxes(ga, -1, -2).copy().view(Ball) if upper else ga})

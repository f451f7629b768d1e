"""The symmetric eigendecomposition, enclosed: ``torch.linalg.eigh`` / ``eigvalsh``
(``aten._linalg_eigh``).

PyTorch reads one triangle of its input (``UPLO='L'``: the lower one) and returns the eigenvalues
in ascending order and unit eigenvectors whose signs LAPACK chose. The function modelled is that
one: ``S`` = the symmetric matrix of the triangle read, ``S = V diag(L) V^T``.

Values: FLINT's rigorous eigendecomposition (``acb_mat.eig``, Arb balls), which needs simple
eigenvalues: a repeated (or unresolved) eigenvalue is refused with the reason, as the
eigenvectors are not continuous there and the sorted eigenvalues have a kink. Each eigenvector is
scaled by its largest entry (so the true vector, which is real, lies in the real parts), normalised
to unit length, and given the sign of PyTorch's own eigenvector (its recorded output): the sign is
locally constant, so the modelled function is differentiable wherever the eigenvalues are simple.

Derivatives, with ``F_ij = 1 / (L_j - L_i)`` (0 on the diagonal) and ``dS`` the symmetric
perturbation of the triangle read::

    dL = diag(V^T dS V)          dV = V (F o (V^T dS V))

and the adjoint ``G = V (diag(gL) + F o (V^T gV)) V^T``, folded onto the triangle read
(``gA_ij = G_ij + G_ji`` below the diagonal for 'L', ``G_ii`` on it, 0 elsewhere).
"""

from __future__ import annotations

import flint
import numpy as np

from . import NotModelled, Rule, register
from .._ball import Ball, _from_arb, ball, to_ball
from ._util import arg_grads

_PREC = 128


def _uplo(args, kwargs) -> str:
    u = kwargs.get("UPLO", args[1] if len(args) > 1 else "L")
    if u not in ("L", "U"):
        raise NotModelled(f"UPLO={u!r}")
    return u


def _compute_v(args, kwargs) -> bool:
    return bool(kwargs.get("compute_v", args[2] if len(args) > 2 else True))


def _sym(a, uplo):
    """The symmetric matrix of the triangle read (last two axes; Balls and exact arrays)."""
    n = a.shape[-1]
    low = np.tril(np.ones((n, n), dtype=bool)) if uplo == "L" else np.triu(np.ones((n, n), dtype=bool))
    at = np.swapaxes(a, -1, -2)
    return np.where(low, a, at)


def _arb(v):
    if isinstance(v, (complex, np.complexfloating)):
        return flint.arb(float(v.real), float(v.imag)) if v.imag else flint.arb(float(v.real))
    if isinstance(v, flint.fmpq):
        return flint.arb(v)
    if isinstance(v, (int, flint.fmpz)):
        return flint.arb(flint.fmpq(int(v)))
    return flint.arb(float(v))


def _eig_one(s2, recorded_v):
    """(eigenvalues (n,) Ball, eigenvectors (n, n) Ball, columns) of one symmetric matrix."""
    from .._ball import precision

    n = s2.shape[0]
    vals = s2.view(np.ndarray).ravel().tolist() if isinstance(s2, Ball) else s2.ravel().tolist()
    with precision(_PREC):
        M = flint.acb_mat(flint.arb_mat(n, n, [_arb(v) for v in vals]))
        try:
            E, R = M.eig(right=True)
        except (ValueError, ZeroDivisionError) as e:
            raise NotModelled(f"eigenvalues not isolated ({e}): a repeated eigenvalue, where the "
                              "eigenvectors are not continuous and the sorted eigenvalues have a kink") from None
        lam = [E[i].real for i in range(n)]
        order = sorted(range(n), key=lambda i: float(lam[i].mid()))
        for a, b in zip(order, order[1:]):
            if not (lam[a].upper() < lam[b].lower()):
                raise NotModelled("two eigenvalues are not separated by their enclosures (a repeated "
                                  "eigenvalue, or one too close to tell): the sorted eigenvalues have a kink there")
        lmid, lrad = zip(*[_from_arb(lam[i]) for i in order])
        vm = np.zeros((n, n))
        vr = np.zeros((n, n))
        for col, i in enumerate(order):
            v = [R[k, i] for k in range(n)]
            piv = max(range(n), key=lambda k: abs(complex(v[k].mid())))
            p = v[piv]
            if p.contains(0):
                raise NotModelled("an eigenvector's enclosure is too wide to normalise")
            w = [(x / p).real for x in v]                   # the true (real) vector lies in the real parts
            nrm = sum((x * x for x in w), flint.arb(0)).sqrt()
            w = [x / nrm for x in w]
            sgn = 1.0
            if recorded_v is not None:
                dot = float(sum(float(x.mid()) * float(recorded_v[k, col]) for k, x in enumerate(w)))
                sgn = -1.0 if dot < 0 else 1.0
            for k, x in enumerate(w):
                m, r = _from_arb(x * sgn)
                vm[k, col], vr[k, col] = m, r
    return ball(np.array(lmid), np.array(lrad)), ball(vm, vr)


@register("aten._linalg_eigh.default")
class Eigh(Rule):
    balls = True

    def forward(self, ctx, args, kwargs):
        a = args[0]
        a = a if isinstance(a, Ball) else np.asarray(a, dtype=object)
        if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
            raise NotModelled("eigh of a non-square matrix")
        uplo = _uplo(args, kwargs)
        s = _sym(a, uplo)
        n = a.shape[-1]
        rec = ctx.recorded
        rec_v = rec[1].detach().double().numpy() if isinstance(rec, (tuple, list)) and rec[1].numel() else None
        lam = ball(np.zeros(a.shape[:-1]))
        V = ball(np.zeros(a.shape))
        for idx in np.ndindex(*a.shape[:-2]):
            l1, v1 = _eig_one(s[idx] if idx else s, None if rec_v is None else rec_v[idx])
            lam[idx] = l1
            V[idx] = v1
        ctx.aux["eig"] = (lam, V, n)
        Vout = V if _compute_v(args, kwargs) else ball(np.zeros((0,)))
        return lam, Vout

    def _parts(self, ctx, args, kwargs):
        if "eig" not in ctx.aux:
            self.forward(ctx, args, kwargs)
        lam, V, n = ctx.aux["eig"]
        d = lam[..., None, :] - lam[..., :, None]             # d_ij = L_j - L_i
        eye = np.eye(n, dtype=bool)
        F = np.where(eye, ball(np.zeros(d.shape)), 1.0 / np.where(eye, ball(np.ones(d.shape)), d))
        return lam, V, F

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None, None
        lam, V, F = self._parts(ctx, args, kwargs)
        dS = _sym(to_ball(t), _uplo(args, kwargs))
        M = np.matmul(np.swapaxes(V, -1, -2)[None], np.matmul(dS, V[None]))
        dlam = np.diagonal(M, axis1=-2, axis2=-1)
        dV = np.matmul(V[None], F[None] * M) if _compute_v(args, kwargs) else None
        return dlam, dV

    def vjp(self, ctx, args, kwargs, out, cot):
        gl, gv = cot
        if gl is None and gv is None:
            return arg_grads(args, {})
        lam, V, F = self._parts(ctx, args, kwargs)
        n = lam.shape[-1]
        B = (gl if gl is not None else gv).shape[0]
        inner = ball(np.zeros((B,) + V.shape))
        if gl is not None:
            inner = inner + to_ball(gl)[..., :, None] * np.eye(n)
        if gv is not None and np.size(gv):
            inner = inner + F[None] * np.matmul(np.swapaxes(V, -1, -2)[None], to_ball(gv))
        G = np.matmul(V[None], np.matmul(inner, np.swapaxes(V, -1, -2)[None]))
        Gt = np.swapaxes(G, -1, -2)
        lower = np.tril(np.ones((n, n), dtype=bool), -1)
        if _uplo(args, kwargs) == "U":
            lower = lower.T
        gA = np.where(lower, G + Gt, np.where(np.eye(n, dtype=bool), G, ball(np.zeros(G.shape))))
        return arg_grads(args, {0: gA})

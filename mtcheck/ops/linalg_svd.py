"""The singular value decomposition, enclosed: ``torch.linalg.svd`` / ``svdvals``
(``aten._linalg_svd``), through the symmetric eigendecomposition of the smaller Gram matrix.

For ``A`` (m x n), ``k = min(m, n)``: with ``m >= n``, ``A^T A = V diag(s^2) V^T`` (FLINT's rigorous
eigendecomposition, :mod:`mtcheck.ops.linalg_eigh`), ``s = sqrt(s^2)`` in descending order and
``U = A V diag(1/s)``; with ``m < n`` the same on ``A^T``. Singular values must be simple and
nonzero (a repeated or zero singular value is refused with the reason: the singular vectors are not
continuous there, and the sorted singular values have a kink). Each right singular vector takes the
sign of PyTorch's own (its recorded ``Vh``); the left ones follow from ``U = A V / s``, as LAPACK's
pairs do. ``full_matrices=True`` with ``m != n`` asks for an orthonormal completion that is not a
function of ``A``: refused unless only the singular values are computed.

Derivatives (forward mode), with ``P = U^T dA V`` and ``F_ij = 1 / (s_j^2 - s_i^2)`` (0 on the
diagonal)::

    ds = diag(P)
    dU = U (F o (P S + S P^T)) + (I - U U^T) dA V S^-1
    dV = V (F o (S P + P^T S)) + (I - V V^T) dA^T U S^-1

(no reverse rule: the model differentiates it in forward mode).
"""

from __future__ import annotations

import numpy as np

from . import NotModelled, Rule, register
from .._ball import Ball, apply, ball, to_ball
from .linalg_eigh import _eig_one


def _flags(args, kwargs):
    full = bool(kwargs.get("full_matrices", args[1] if len(args) > 1 else False))
    uv = bool(kwargs.get("compute_uv", args[2] if len(args) > 2 else True))
    return full, uv


def _svd_one(a2, rec_vh):
    """(U (m, k), s (k,), V (n, k)) Balls of one matrix, s descending."""
    m, n = a2.shape
    tall = m >= n
    a = a2 if tall else np.swapaxes(a2, 0, 1)
    g = np.matmul(np.swapaxes(a, 0, 1), a)      # the smaller Gram matrix (exact for exact inputs)
    if not isinstance(g, Ball):
        from .linalg_qr import _exact_rank

        if _exact_rank(g) < g.shape[0]:
            raise NotModelled("a singular value is exactly zero (the matrix has not full rank): the singular "
                              "vectors are not continuous there")
    lam, V = _eig_one(to_ball(g), None)
    k = lam.shape[0]
    order = list(range(k))[::-1]                                       # descending
    lam = lam[order]
    V = V[:, order]
    if not bool((lam.mid - lam.rad > 0).all()):
        raise NotModelled("a singular value is zero (or too close to tell): the singular vectors are not "
                          "continuous there")
    s = apply(lambda v: v.sqrt(), lam)
    U = np.matmul(to_ball(a), V) / s[None, :]
    if not tall:
        U, V = V, U                                                    # of A: swap the roles back
    if rec_vh is not None:
        # PyTorch's signs: each right singular vector as in its Vh, the left one with it
        ref = rec_vh[:k, :].T                                          # (n, k)
        flip = np.where((V.mid * ref).sum(axis=0) < 0, -1.0, 1.0)
        V = V * flip[None, :]
        U = U * flip[None, :]
    return U, s, V


@register("aten._linalg_svd.default")
class Svd(Rule):
    balls = True

    def forward(self, ctx, args, kwargs):
        a = args[0]
        a = a if isinstance(a, Ball) else np.asarray(a, dtype=object)
        full, uv = _flags(args, kwargs)
        m, n = a.shape[-2], a.shape[-1]
        if uv and full and m != n:
            raise NotModelled("full_matrices=True with a non-square matrix: the orthonormal completion is "
                              "not a function of the input")
        if min(m, n) == 0:
            raise NotModelled("an empty matrix")
        import torch

        rec = ctx.recorded
        rec_vh = rec[2].detach().to(torch.float64).numpy() if isinstance(rec, (tuple, list)) and uv \
            and rec[2].numel() else None
        k = min(m, n)
        U = ball(np.zeros(a.shape[:-2] + (m, k)))
        S = ball(np.zeros(a.shape[:-2] + (k,)))
        V = ball(np.zeros(a.shape[:-2] + (n, k)))
        for idx in np.ndindex(*a.shape[:-2]):
            u1, s1, v1 = _svd_one(a[idx] if idx else a, None if rec_vh is None else rec_vh[idx])
            U[idx], S[idx], V[idx] = u1, s1, v1
        ctx.aux["svd"] = (U, S, V)
        if not uv:
            e = ball(np.zeros((0,)))
            return e, S, e
        return U, S, np.swapaxes(V, -1, -2)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None, None, None
        if "svd" not in ctx.aux:
            self.forward(ctx, args, kwargs)
        U, S, V = ctx.aux["svd"]
        _, uv = _flags(args, kwargs)
        dA = to_ball(t)
        Ut, Vt = np.swapaxes(U, -1, -2), np.swapaxes(V, -1, -2)
        P = np.matmul(Ut[None], np.matmul(dA, V[None]))                # (B, ..., k, k)
        ds = np.diagonal(P, axis1=-2, axis2=-1)
        if not uv:
            return None, ds, None
        k = S.shape[-1]
        s2 = S * S
        d = s2[..., None, :] - s2[..., :, None]
        eye = np.eye(k, dtype=bool)
        F = np.where(eye, ball(np.zeros(d.shape)), 1.0 / np.where(eye, ball(np.ones(d.shape)), d))
        Sd = S[..., None, :]                                           # right multiplication by diag(s)
        Sl = S[..., :, None]                                           # left multiplication by diag(s)
        Pt = np.swapaxes(P, -1, -2)
        dU = np.matmul(U[None], F[None] * (P * Sd[None] + Sl[None] * Pt))
        dV = np.matmul(V[None], F[None] * (Sl[None] * P + Pt * Sd[None]))
        m, n = U.shape[-2], V.shape[-2]
        inv_s = 1.0 / S
        if m > k:
            proj = np.eye(m) - np.matmul(U, Ut)
            dU = dU + np.matmul(proj[None], np.matmul(dA, V[None])) * inv_s[None, ..., None, :]
        if n > k:
            proj = np.eye(n) - np.matmul(V, Vt)
            dV = dV + np.matmul(proj[None], np.matmul(np.swapaxes(dA, -1, -2), U[None])) * inv_s[None, ..., None, :]
        return dU, ds, np.swapaxes(dV, -1, -2)

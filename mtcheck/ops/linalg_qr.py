"""The QR decomposition, enclosed: ``torch.linalg.qr`` / ``torch.qr`` (``aten.linalg_qr``).

For ``A`` (m x n) of full column rank with ``m >= n`` (``mode='reduced'``, or ``'complete'`` when
square; ``'r'`` gives R only): the QR factorisation with a positive diagonal is a function of ``A``,
``R+ = chol(A^T A)^T`` (Arb, :func:`mtcheck.ops.linalg_enclosed._chol_lower`) and
``Q+ = A R+^-1``. PyTorch's Householder QR may negate rows of R (and the columns of Q with them):
``Q = Q+ D``, ``R = D R+`` with ``D`` the signs of PyTorch's recorded diagonal of R, locally
constant, so that is the function modelled. Rank deficiency (a zero pivot), ``m < n`` and
``'complete'`` with ``m > n`` (a completion that is not a function of ``A``) are refused.

Derivatives (forward mode), with ``M = Q^T dA R^-1``, ``W`` its strictly lower part and
``Omega = W - W^T``::

    dR = (M - Omega) R          dQ = Q Omega + (I - Q Q^T) dA R^-1

(for the positive factorisation; with the signs, ``dQ D`` and ``D dR``).
"""

from __future__ import annotations

import numpy as np

from . import NotModelled, Rule, register
from .._ball import Ball, ball, to_ball
from .linalg_enclosed import _chol_lower, _Prec, _to_ball


def _mode(args, kwargs) -> str:
    return kwargs.get("mode", args[1] if len(args) > 1 else "reduced")


def _qr_one(a2, rec_r):
    from . import NotLipschitz

    m, n = a2.shape
    g = np.matmul(np.swapaxes(a2, 0, 1), a2)       # exact for exact inputs
    if not isinstance(g, Ball) and _exact_rank(g) < n:
        # (Arb cannot show a pivot exactly 0: it is 0 minus an irrational square; the exact rank can)
        raise NotLipschitz("QR of a matrix without full column rank: Q is not continuous there")
    try:
        with _Prec():
            L, Linv = _chol_lower(g)
    except (NotLipschitz, NotModelled):
        raise NotLipschitz("QR of a matrix without full column rank: Q is not continuous there") from None
    R = np.swapaxes(_to_ball(L, (n, n)), 0, 1)
    Rinv = np.swapaxes(_to_ball(Linv, (n, n)), 0, 1)
    Q = np.matmul(to_ball(a2), Rinv)
    if rec_r is not None:
        d = np.where(np.diagonal(rec_r)[:n] < 0, -1.0, 1.0)
        Q = Q * d[None, :]
        R = R * d[:, None]
        Rinv = Rinv * d[None, :]
    return Q, R, Rinv


def _exact_rank(g) -> int:
    import flint

    from .._exact import q

    n, m = g.shape
    return flint.fmpq_mat(n, m, [q(v) for v in g.ravel().tolist()]).rank()


@register("aten.linalg_qr.default")
class Qr(Rule):
    balls = True

    def forward(self, ctx, args, kwargs):
        import torch

        a = args[0]
        a = a if isinstance(a, Ball) else np.asarray(a, dtype=object)
        m, n = a.shape[-2], a.shape[-1]
        mode = _mode(args, kwargs)
        if m < n:
            raise NotModelled("QR of a wide matrix (m < n): R's last columns and Q are not determined smoothly "
                              "by a full-rank factorisation")
        if mode == "complete" and m > n:
            raise NotModelled("mode='complete' with m > n: the orthonormal completion is not a function of the input")
        if mode not in ("reduced", "complete", "r"):
            raise NotModelled(f"mode={mode!r}")
        rec = ctx.recorded
        rec_r = rec[1].detach().to(torch.float64).numpy() if isinstance(rec, (tuple, list)) and rec[1].numel() else None
        Q = ball(np.zeros(a.shape[:-2] + (m, n)))
        R = ball(np.zeros(a.shape[:-2] + (n, n)))
        Ri = ball(np.zeros(a.shape[:-2] + (n, n)))
        for idx in np.ndindex(*a.shape[:-2]):
            q1, r1, ri1 = _qr_one(a[idx] if idx else a, None if rec_r is None else rec_r[idx])
            Q[idx], R[idx], Ri[idx] = q1, r1, ri1
        ctx.aux["qr"] = (Q, R, Ri)
        if mode == "r":
            return ball(np.zeros((0,))), R
        return Q, R

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None, None
        if "qr" not in ctx.aux:
            self.forward(ctx, args, kwargs)
        Q, R, Ri = ctx.aux["qr"]
        dA = to_ball(t)
        m, n = Q.shape[-2], Q.shape[-1]
        Qt = np.swapaxes(Q, -1, -2)
        dARi = np.matmul(dA, Ri[None])
        M = np.matmul(Qt[None], dARi)
        W = np.tril(M, -1)
        Om = W - np.swapaxes(W, -1, -2)
        dR = np.matmul(M - Om, R[None])
        dQ = np.matmul(Q[None], Om)
        if m > n:
            dQ = dQ + dARi - np.matmul(Q[None], np.matmul(Qt[None], dARi))
        if _mode(args, kwargs) == "r":
            return None, dR
        return dQ, dR

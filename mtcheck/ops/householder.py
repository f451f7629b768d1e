"""Products of Householder reflectors, exact: ``torch.linalg.householder_product`` and ``torch.ormqr``.

Both are polynomials in their inputs (no square root: LAPACK's ``geqrf`` representation already
holds the reflectors). With ``v_i = (0, ..., 0, 1, A[i+1:, i])`` and ``H_i = I - tau_i v_i v_i^T``,
``Q = H_1 H_2 ... H_k``; ``householder_product(A, tau)`` is Q's first n columns, ``ormqr(A, tau, C,
left, transpose)`` is ``op(Q) C`` (left) or ``C op(Q)`` (right), ``op`` the transpose or not.
Derivatives by the product rule, ``dQ = sum_i H_1..H_{i-1} dH_i H_{i+1}..H_k`` with
``dH_i = -dtau_i v_i v_i^T - tau_i (dv_i v_i^T + v_i dv_i^T)``, all exact.
"""

from __future__ import annotations

import numpy as np

from . import NotModelled, Rule, register
from .._exact import Q1, matmul, zeros
from ._util import tan


def _obj(a):
    return np.asarray(a, dtype=object)


def _reflectors(a2, tau1, m):
    """The vectors v_i (k, m) and the factors H_i (k, m, m) of one matrix."""
    k = tau1.shape[0]
    V = zeros((k, m))
    for i in range(k):
        V[i, i] = Q1
        V[i, i + 1:] = a2[i + 1:m, i]
    eye = zeros((m, m))
    for j in range(m):
        eye[j, j] = Q1
    H = np.stack([eye - tau1[i] * np.outer(V[i], V[i]) for i in range(k)]) if k else np.zeros((0, m, m), dtype=object)
    return V, H, eye


def _chain(H, eye):
    """Prefix products P_i = H_1..H_{i-1} and suffix S_i = H_{i+1}..H_k, and the whole product."""
    k = H.shape[0]
    pre = [eye]
    for i in range(k):
        pre.append(matmul(pre[-1], H[i]))
    suf = [eye]
    for i in range(k - 1, -1, -1):
        suf.append(matmul(H[i], suf[-1]))
    suf = suf[::-1]                        # suf[i] = H_i..H_k (0-based: H[i]..H[k-1]); suf[k] = I
    return pre, suf, pre[k]


def _q_and_dq(a2, tau1, m, ta2=None, tt1=None):
    """Q (m, m) and, for tangents ta2 (B, ...a2.shape) / tt1 (B, k) (None: zero), dQ (B, m, m)."""
    V, H, eye = _reflectors(a2, tau1, m)
    pre, suf, Q = _chain(H, eye)
    if ta2 is None and tt1 is None:
        return Q, None
    B = (ta2 if ta2 is not None else tt1).shape[0]
    k = tau1.shape[0]
    dQ = zeros((B, m, m))
    for i in range(k):
        v = V[i]
        dH = zeros((B, m, m))
        if tt1 is not None:
            dH = dH - tt1[:, i][:, None, None] * np.outer(v, v)[None]
        if ta2 is not None:
            dv = zeros((B, m))
            dv[:, i + 1:] = ta2[:, i + 1:m, i]
            dH = dH - tau1[i] * (dv[:, :, None] * v[None, None, :] + v[None, :, None] * dv[:, None, :])
        dQ = dQ + matmul(matmul(np.broadcast_to(pre[i], (B, m, m)), dH), np.broadcast_to(suf[i + 1], (B, m, m)))
    return Q, dQ


@register("aten.linalg_householder_product.default")
class HouseholderProduct(Rule):
    def forward(self, ctx, args, kwargs):
        a, tau = _obj(args[0]), _obj(args[1])
        m, n = a.shape[-2], a.shape[-1]
        if tau.shape[-1] > n or n > m:
            raise NotModelled("householder_product needs tau.shape[-1] <= n <= m")
        out = np.empty(a.shape, dtype=object)
        for idx in np.ndindex(*a.shape[:-2]):
            Q, _ = _q_and_dq(a[idx], tau[idx], m)
            out[idx] = Q[:, :n]
        return out

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a, tau = _obj(args[0]), _obj(args[1])
        ta = targs[0] if isinstance(targs[0], np.ndarray) else None
        tt = targs[1] if len(targs) > 1 and isinstance(targs[1], np.ndarray) else None
        if ta is None and tt is None:
            return None
        m, n = a.shape[-2], a.shape[-1]
        B = (ta if ta is not None else tt).shape[0]
        res = zeros((B,) + a.shape)
        for idx in np.ndindex(*a.shape[:-2]):
            sl = (slice(None),) + idx
            _, dQ = _q_and_dq(a[idx], tau[idx], m, None if ta is None else _obj(ta)[sl],
                              None if tt is None else _obj(tt)[sl])
            res[sl] = dQ[:, :, :n]
        return tan(res)


def _ormqr_flags(args, kwargs):
    left = kwargs.get("left", args[3] if len(args) > 3 else True)
    transpose = kwargs.get("transpose", args[4] if len(args) > 4 else False)
    return bool(left), bool(transpose)


@register("aten.ormqr.default")
class Ormqr(Rule):
    def _apply(self, Q, C, left, transpose):
        Qo = np.swapaxes(Q, -1, -2) if transpose else Q
        return matmul(Qo, C) if left else matmul(C, Qo)

    def forward(self, ctx, args, kwargs):
        a, tau, c = _obj(args[0]), _obj(args[1]), _obj(args[2])
        left, transpose = _ormqr_flags(args, kwargs)
        m = a.shape[-2]
        if (c.shape[-2] if left else c.shape[-1]) != m:
            raise NotModelled("ormqr with mismatched shapes")
        out = np.empty(c.shape, dtype=object)
        for idx in np.ndindex(*c.shape[:-2]):
            Q, _ = _q_and_dq(a[idx], tau[idx], m)
            out[idx] = self._apply(Q, c[idx], left, transpose)
        return out

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a, tau, c = _obj(args[0]), _obj(args[1]), _obj(args[2])
        ta, tt, tc = (targs[i] if len(targs) > i and isinstance(targs[i], np.ndarray) else None for i in range(3))
        if ta is None and tt is None and tc is None:
            return None
        left, transpose = _ormqr_flags(args, kwargs)
        m = a.shape[-2]
        B = next(t for t in (ta, tt, tc) if t is not None).shape[0]
        res = zeros((B,) + c.shape)
        for idx in np.ndindex(*c.shape[:-2]):
            sl = (slice(None),) + idx
            Q, dQ = _q_and_dq(a[idx], tau[idx], m, None if ta is None else _obj(ta)[sl],
                              None if tt is None else _obj(tt)[sl])
            r = zeros((B,) + c[idx].shape)
            if dQ is not None:
                r = r + self._apply(dQ, np.broadcast_to(c[idx], (B,) + c[idx].shape), left, transpose)
            if tc is not None:
                r = r + self._apply(np.broadcast_to(Q, (B, m, m)), _obj(tc)[sl], left, transpose)
            res[sl] = r
        return tan(res)

"""Scaled dot-product attention with enclosures (the CPU ATen variants).

scores = q k^T * scale (+ a float mask; a boolean mask or ``is_causal`` excludes keys exactly),
P = softmax over keys, out = P v. ``scale`` defaults to 1/sqrt(E) (the mathematical value,
enclosed). Softmax values are enclosed with Arb; derivatives are exact formulas in Ball arithmetic:
dP = P * (ds - sum(P ds)), d out = dP v + P dv.
"""

from __future__ import annotations

import numpy as np

from . import NotModelled, Rule, register
from .._ball import apply, ball, is_ball, to_ball
from ._util import arg_grads, unbroadcast


def _b(x):
    return x if is_ball(x) else to_ball(x)


def _mT(x):
    return np.swapaxes(x, -1, -2)


def _scale(E, scale):
    if scale is None:
        return apply(lambda a: 1 / a.sqrt(), np.asarray(float(E)))
    return to_ball(np.asarray(float(scale)))


def _softmax(s, keep):
    """Softmax over the last axis of Ball ``s``; ``keep`` a boolean array (None: all kept).
    Returns (P, lse)."""
    m = s.mid if keep is None else np.where(keep, s.mid, -np.inf)
    shift = np.max(m, axis=-1, keepdims=True)
    if not np.isfinite(shift).all():
        raise NotModelled("an attention row whose keys are all masked (PyTorch returns NaN or 0)")
    e = apply(lambda a: a.exp(), s - shift)
    if keep is not None:
        e = np.where(np.broadcast_to(keep, e.shape), e, ball(np.zeros(e.shape)))
    z = e.sum(axis=-1, keepdims=True)
    P = e / z
    lse = apply(lambda a: a.log(), z)[..., 0] + shift[..., 0]
    return P, lse


class _SDPA(Rule):
    balls = True

    def _params(self, ctx, args, kwargs):
        raise NotImplementedError

    def forward(self, ctx, args, kwargs):
        q, k, v, dp, causal, mask, scale = self._params(ctx, args, kwargs)
        if dp:
            raise NotModelled("attention with dropout_p > 0 (random)")
        L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
        sc = _scale(E, scale)
        s = np.matmul(_b(q), _mT(_b(k))) * sc
        keep = None
        if causal:
            keep = np.tril(np.ones((L, S), dtype=bool))
        if mask is not None:
            if mask.dtype == bool:
                keep = mask if keep is None else (keep & mask)
            else:
                s = s + mask
        P, lse = _softmax(s, keep)
        out = np.matmul(P, _b(v))
        ctx.aux.update(P=P, sc=sc, fmask=mask is not None and mask.dtype != bool)
        return out, lse

    def _tangent(self, ctx, args, out, tq, tk, tv, tm):
        a = ctx.aux
        P, sc = a["P"], a["sc"]
        q, k, v = args[0], args[1], args[2]
        ds = None
        if tq is not None:
            ds = np.matmul(_b(tq), _mT(_b(k))[None]) * sc
        if tk is not None:
            p = np.matmul(_b(q)[None], _mT(_b(tk))) * sc
            ds = p if ds is None else ds + p
        if tm is not None and a["fmask"]:
            ds = tm if ds is None else ds + tm
        res = dlse = dP = None
        if ds is not None:
            Pd = P[None] * ds
            dlse = Pd.sum(axis=-1)
            dP = Pd - P[None] * dlse[..., None]
            res = np.matmul(dP, _b(v)[None])
        if tv is not None:
            p = np.matmul(P[None], _b(tv))
            res = p if res is None else res + p
        a["dP"] = dP
        return res, dlse

    def _vjp(self, ctx, args, out, g, glse):
        a = ctx.aux
        P, sc = a["P"], a["sc"]
        q, k, v = args[0], args[1], args[2]
        gq = gk = gv = gm = None
        gs = None
        if g is not None:
            g = _b(g)
            gP = np.matmul(g, _mT(_b(v))[None])
            gs = P[None] * (gP - (gP * P[None]).sum(axis=-1, keepdims=True))
            gv = unbroadcast(np.matmul(_mT(P)[None], g), v.shape)
        if glse is not None:
            p = P[None] * _b(glse)[..., None]
            gs = p if gs is None else gs + p
        if gs is not None:
            gq = unbroadcast(np.matmul(gs, _b(k)[None]) * sc, q.shape)
            gk = unbroadcast(np.matmul(_mT(gs), _b(q)[None]) * sc, k.shape)
            if a["fmask"]:
                gm = gs
        return gq, gk, gv, gm


@register("aten._scaled_dot_product_flash_attention_for_cpu.default")
class FlashCPU(_SDPA):
    """(q, k, v, dropout_p=0, is_causal=False, *, attn_mask=None, scale=None) -> (out, logsumexp);
    logsumexp has shape (..., L)."""

    def _params(self, ctx, args, kwargs):
        q, k, v = args[:3]
        dp = args[3] if len(args) > 3 else kwargs.get("dropout_p", 0.0)
        causal = args[4] if len(args) > 4 else kwargs.get("is_causal", False)
        return q, k, v, float(dp), bool(causal), kwargs.get("attn_mask"), kwargs.get("scale")

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        tq, tk, tv = (tuple(targs) + (None,) * 3)[:3]
        res, dlse = self._tangent(ctx, args, out, tq, tk, tv, tkwargs.get("attn_mask"))
        return (res, dlse)

    def vjp(self, ctx, args, kwargs, out, cot):
        g, glse = (tuple(cot) + (None,))[:2] if isinstance(cot, tuple) else (cot, None)
        gq, gk, gv, gm = self._vjp(ctx, args, out, g, glse)
        by = {0: gq, 1: gk, 2: gv}
        if gm is not None:
            # the mask is a keyword argument: its cotangent is not in the tensor leaves of args
            raise NotModelled("reverse mode through a float attention mask that depends on the input")
        return arg_grads(args, by)


@register("aten._scaled_dot_product_attention_math.default", "aten.scaled_dot_product_attention.default")
class MathSDPA(_SDPA):
    """(q, k, v, attn_mask=None, dropout_p=0, is_causal=False, dropout_mask=None, *, scale=None)
    -> (out, attn) for the math variant, out for scaled_dot_product_attention."""

    def _params(self, ctx, args, kwargs):
        q, k, v = args[:3]
        mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
        dp = args[4] if len(args) > 4 else kwargs.get("dropout_p", 0.0)
        causal = args[5] if len(args) > 5 else kwargs.get("is_causal", False)
        if (args[6] if len(args) > 6 else kwargs.get("dropout_mask")) is not None:
            raise NotModelled("attention with a dropout mask")
        return q, k, v, float(dp), bool(causal), mask, kwargs.get("scale")

    def forward(self, ctx, args, kwargs):
        out, _ = super().forward(ctx, args, kwargs)
        if ctx.op.startswith("aten._scaled_dot_product_attention_math"):
            return out, ctx.aux["P"]
        return out

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        tq, tk, tv = (tuple(targs) + (None,) * 3)[:3]
        tm = targs[3] if len(targs) > 3 else tkwargs.get("attn_mask")
        res, dlse = self._tangent(ctx, args, out, tq, tk, tv, tm)
        if isinstance(out, tuple):
            return (res, ctx.aux["dP"])
        return res

    def vjp(self, ctx, args, kwargs, out, cot):
        g = cot[0] if isinstance(cot, tuple) else cot
        if isinstance(cot, tuple) and len(cot) > 1 and cot[1] is not None:
            raise NotModelled("reverse mode through the attention weights of the math variant")
        gq, gk, gv, gm = self._vjp(ctx, args, out, g, None)
        by = {0: gq, 1: gk, 2: gv}
        if gm is not None and len(args) > 3:
            by[3] = unbroadcast(gm, args[3].shape)
        return arg_grads(args, by)

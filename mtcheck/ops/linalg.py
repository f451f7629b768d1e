"""Matrix products and convolution (exact, through FLINT)."""

from __future__ import annotations

import numpy as np

from . import NotModelled, Rule, register
from .._exact import Q0, as_exact, matmul
from ._util import add_t, arg_grads, exact_scalar, lift_like, obj, tan, unbroadcast, zeros_like_cot
from ._windows import sliding


def _obj(v):
    return v if v.dtype == object else as_exact(v)


def _tmatmul_left(ta, b):
    """(B, ..., M, K) @ b  ->  (B, ..., M, N)."""
    return matmul(ta, b)


def _tmatmul_right(a, tb):
    """a @ (B, ..., K, N) -> (B, ..., M, N) for a 2-D (or broadcastable) a."""
    B = tb.shape[0]
    if a.ndim == 2 and tb.ndim == 3:
        K, N = tb.shape[1:]
        flat = tb.transpose(1, 0, 2).reshape(K, B * N)
        return matmul(a, flat).reshape(a.shape[0], B, N).transpose(1, 0, 2)
    if a.ndim == 1 and tb.ndim == 2:        # dot: (K,) . (B, K)
        return matmul(tb, a)
    if a.ndim == 2 and tb.ndim == 2:        # mv: (M, K) @ (B, K)
        return matmul(tb, a.T)
    return matmul(a[None], tb)


def _prod_jvp(a, b, ta, tb):
    res = None
    if ta is not None:
        res = _tmatmul_left(ta, b)
    if tb is not None:
        res = add_t(res, _tmatmul_right(a, tb))
    return res


def _matmul_vjp(a, b, cot, want_a=True, want_b=True):
    """Cotangents of ``a @ b`` (numpy matmul semantics, a and b at least 1-D) for ``cot`` of
    shape ``(B,) + out.shape``: (grad_a, grad_b) with the shapes of a and b (and B in front)."""
    # each cotangent needs only the other operand: the unused one is not converted (an activation
    # of the stratum, converted again at every pass)
    a = lift_like(a, cot) if want_b else a
    b = lift_like(b, cot) if want_a else b
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    c = cot
    if a.ndim == 1:
        c = c[..., None, :]
    if b.ndim == 1:
        c = c[..., None]
    ga = gb = None
    if want_a:
        bt = np.swapaxes(b2, -1, -2)
        if bt.ndim == 2:
            ga = matmul(c, bt)                                # (B, ..., M, K)
        else:
            ga = matmul(c, bt[None])
        if a.ndim == 1:
            ga = ga[..., 0, :]
        ga = unbroadcast(obj(ga), a.shape)
    if want_b:
        at = np.swapaxes(a2, -1, -2)
        if at.ndim == 2 and c.ndim == 3:
            gb = _tmatmul_right(at, c)                        # (B, K, N)
        else:
            gb = matmul(at[None] if at.ndim > 2 or c.ndim > 3 else at, c)
        if b.ndim == 1:
            gb = gb[..., 0]
        gb = unbroadcast(obj(gb), b.shape)
    return ga, gb


@register("aten.mm.default", "aten.bmm.default", "aten.mv.default", "aten.dot.default", "aten.matmul.default",
          "aten.vdot.default")
class MatMul(Rule):
    balls = True
    def forward(self, ctx, args, kwargs):
        return matmul(_obj(args[0]), _obj(args[1]))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a, b = _obj(args[0]), _obj(args[1])
        ta, tb = targs[0], targs[1] if len(targs) > 1 else None
        if ctx.op.startswith("aten.dot") or ctx.op.startswith("aten.vdot"):
            res = None
            if ta is not None:
                res = matmul(ta, b)
            if tb is not None:
                res = add_t(res, matmul(tb, a))
            return res
        if ctx.op.startswith("aten.mv"):
            res = None
            if ta is not None:
                res = matmul(ta, b)
            if tb is not None:
                res = add_t(res, matmul(tb, a.T))
            return res
        return _prod_jvp(a, b, ta, tb)

    def vjp(self, ctx, args, kwargs, out, cot):
        a, b = _obj(args[0]), _obj(args[1])
        ga, gb = _matmul_vjp(a, b, cot, _live(ctx, 0), _live(ctx, 1))
        return arg_grads(args, {0: ga, 1: gb})


@register("aten.addmm.default", "aten.addmv.default", "aten.baddbmm.default", "aten.addbmm.default")
class AddMM(Rule):
    balls = True
    def _ab(self, ctx, kwargs):
        return exact_scalar(kwargs.get("beta", 1), ctx.dtype), exact_scalar(kwargs.get("alpha", 1), ctx.dtype)

    def forward(self, ctx, args, kwargs):
        c, a, b = _obj(args[0]), _obj(args[1]), _obj(args[2])
        beta, alpha = self._ab(ctx, kwargs)
        p = matmul(a, b)
        if ctx.op.startswith("aten.addbmm"):
            p = p.sum(axis=0)
        return obj(c * beta + p * alpha) if beta != 0 else obj(p * alpha)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        c, a, b = _obj(args[0]), _obj(args[1]), _obj(args[2])
        beta, alpha = self._ab(ctx, kwargs)
        tc, ta, tb = (list(targs) + [None] * 3)[:3]
        if ctx.op.startswith("aten.addmv"):
            p = None
            if ta is not None:
                p = matmul(ta, b)
            if tb is not None:
                p = add_t(p, matmul(tb, a.T))
        else:
            p = _prod_jvp(a, b, ta, tb)
            if p is not None and ctx.op.startswith("aten.addbmm"):
                p = p.sum(axis=1)
        res = None if p is None else p * alpha
        if tc is not None and beta != 0:
            B = tc.shape[0]
            res = add_t(res, np.broadcast_to(tc.reshape((B,) + (1,) * (out.ndim - c.ndim) + c.shape),
                                             (B,) + out.shape) * beta)
        return res

    def vjp(self, ctx, args, kwargs, out, cot):
        c, a, b = _obj(args[0]), _obj(args[1]), _obj(args[2])
        beta, alpha = self._ab(ctx, kwargs)
        g = {}
        if isinstance(args[0], np.ndarray) and beta != 0 and _live(ctx, 0):
            # (a constant bias gets no cotangent: summing one over a (B, rows, features) batch was
            # the largest cost of a transformer's feed-forward layer)
            g[0] = unbroadcast(cot * beta if beta != 1 else cot, c.shape)
        pc = cot * alpha if alpha != 1 else cot
        if ctx.op.startswith("aten.addbmm"):
            Bn = cot.shape[0]
            pc = np.broadcast_to(pc[:, None], (Bn, a.shape[0]) + cot.shape[1:])
        g[1], g[2] = _matmul_vjp(a, b, obj(pc), _live(ctx, 1), _live(ctx, 2))
        return arg_grads(args, g)


def _conv_windows(x, w, stride, padding, dilation):
    """(out spatial shape, flat window positions (O, K) with -1 for padding, S) of a convolution."""
    if isinstance(padding, str):
        raise NotModelled(f"padding={padding!r}")
    out_sp, idx = sliding(x.shape[2:], w.shape[2:], stride, padding, dilation)
    flat = idx.reshape(-1, idx.shape[-1])
    return out_sp, flat, int(np.prod(x.shape[2:], dtype=np.int64))


def _im2col(x, flat, S):
    """The windows of x (N, C, *sp) as (N, O, K, C): a plain gather, zeros in the padding."""
    N, C = x.shape[:2]
    xt = x.reshape(N, C, S).transpose(0, 2, 1)                         # (N, S, C)
    cols = xt[:, np.where(flat >= 0, flat, 0), :]                       # (N, O, K, C)
    if (flat < 0).any():
        cols = np.where((flat < 0)[None, :, :, None], Q0, cols)
    return cols


_WK: dict = {}


def _wk(w, K):
    """The weights (OC, Cg, *k) as rows ``[oc, (k, c)]`` (OC, K*Cg), the layout im2col multiplies.
    For a constant (weights) the reordered copy is made once and itself declared a constant, so
    its FLINT matrix is cached too."""
    from .._fixed import _CONST_ROOTS, _root, constant

    OC, Cg = w.shape[:2]
    r = _root(w)
    const = _CONST_ROOTS.get(id(r)) is r
    key = (id(r), w.__array_interface__["data"][0], w.shape, w.strides, type(w).__name__, getattr(w, "e", None))
    if const:
        hit = _WK.get(key)
        if hit is not None and hit[0] is r:
            return hit[1]
    out = w.reshape(OC, Cg, K).transpose(0, 2, 1).reshape(OC, K * Cg).copy()
    if const:
        if len(_WK) > 256:
            _WK.clear()
        constant(out)
        _WK[key] = (r, out)
    return out


def _conv(x, w, stride, padding, dilation, groups, bias=None):
    """Exact N-d cross-correlation, PyTorch layout: x (N, C, *sp), w (OC, C/groups, *k).

    im2col is laid out (N, O, K, C) so that it is a plain gather with no transposed
    copy; the weights are reordered to match instead (they are small)."""
    N = x.shape[0]
    OC, Cg = w.shape[:2]
    out_sp, flat, S = _conv_windows(x, w, stride, padding, dilation)
    O, K = flat.shape
    out = _conv_words(x, w, flat, S) if groups == 1 else None
    if out is None:
        cols = _im2col(x, flat, S)
        G = groups
        OCg = OC // G
        wk = _wk(w, K)                                                      # (OC, K*Cg)
        parts = []
        for g in range(G):
            cg = cols if G == 1 else cols[..., g * Cg:(g + 1) * Cg]
            r = matmul(cg.reshape(N * O, K * Cg), wk[g * OCg:(g + 1) * OCg].T)   # (N*O, OCg)
            parts.append(r)
        out = parts[0] if G == 1 else np.concatenate(parts, axis=1)          # (N*O, OC)
        out = out.reshape(N, O, OC).transpose(0, 2, 1)
    if bias is not None:
        out = out + bias.reshape(1, OC, 1)
    return tan(out).reshape((N, OC) + tuple(out_sp))


_WINDOW_WORDS = 1 << 22     # int64 window entries gathered at once by _conv_words (32 MB)


def _conv_words(x, w, flat, S):
    """An ungrouped convolution (N, OC, O) of exact dyadic values in machine words, or None.

    ``x`` is fixed point (a tangent) or rationals that are all dyadic (the exact forward: the
    result is rationals again); the weights are a constant. Each base-2**16 digit of x
    (:func:`mtcheck._fixed.digits`, converted once per entry of x, not per window entry) is
    gathered into windows in int64 and multiplied by the weights exactly
    (:func:`mtcheck._fixed.word_matmul`: a sum of K*C products of a digit and a weight, below
    2**61 by the check here); the results are Python integers again by carries. Through FLINT
    each of the K times more window entries was converted, and for rationals multiplied with
    a gcd per term."""
    from .._fixed import (DIGIT_BITS, Fx, NotDyadic, _clog2, _words, cached_matrix, digits, from_digits,
                          from_exact, to_exact, word_matmul, wrap)

    rational = type(x) is np.ndarray and x.dtype == object
    if not (rational or isinstance(x, Fx)) or type(w) is not np.ndarray or w.dtype != object or not x.size:
        return None
    try:
        wf = from_exact(w)
    except NotDyadic:
        return None
    N, C = x.shape[:2]
    OC = w.shape[0]
    O, K = flat.shape
    wk = _wk(wf, K)                                                     # (OC, K*C)
    W = cached_matrix(wk.view(np.ndarray), "int64", _words)
    if W is None:
        return None
    w64, wbits = W[0].T, W[1]                                           # (K*C, OC)
    terms = _clog2(K * C)
    if DIGIT_BITS + wbits + terms > 61:
        return None                     # (decided on the weights, before x is converted)
    try:
        xf = from_exact(x) if rational else x
    except NotDyadic:
        return None
    d, nd, xbits = digits(xf.view(np.ndarray))
    dt = d.reshape(nd, N, C, S).transpose(0, 1, 3, 2)                   # (nd, N, S, C)
    safe, pad = np.where(flat >= 0, flat, 0), (flat < 0)[None, None, :, :, None]
    prods = np.empty((nd, N, O, OC), dtype=np.int64)
    step = max(1, _WINDOW_WORDS // max(nd * O * K * C, 1))              # the windows of a few images at a time
    for i in range(0, N, step):
        cols = dt[:, i:i + step][:, :, safe, :]                           # (nd, n, O, K, C)
        if pad.any():
            cols = np.where(pad, 0, cols)
        n = cols.shape[1]
        prods[:, i:i + n] = word_matmul(cols.reshape(nd * n * O, K * C), DIGIT_BITS, w64, wbits).reshape(nd, n, O, OC)
    ints = from_digits(prods.reshape(nd, N * O * OC), xbits + wbits + terms)
    out = wrap(ints.reshape(N, O, OC).transpose(0, 2, 1), xf.e + wk.e)
    return to_exact(out) if rational else out


def _live(ctx, pos):
    """Whether tensor argument ``pos`` depends on the inputs (set by the model before a vjp)."""
    live = ctx.aux.get("live")
    return True if live is None or pos >= len(live) else bool(live[pos])


def _conv_vjp(x, w, cot, stride, padding, dilation, groups, want_w=False):
    """Transpose of :func:`_conv`: cotangents of x (B, N, C, *sp) and w (B, *w.shape)
    for ``cot`` (B, N, OC, *out_sp)."""
    N, C = x.shape[:2]
    sp = x.shape[2:]
    OC, Cg = w.shape[:2]
    out_sp, flat, S = _conv_windows(x, w, stride, padding, dilation)
    O, K = flat.shape
    B = cot.shape[0]
    G = groups
    OCg = OC // G
    w = lift_like(w, cot)
    x = lift_like(x, cot) if want_w else x          # only the weights' cotangent reads the values of x
    c = cot.reshape(B, N, OC, O).transpose(0, 1, 3, 2).reshape(B * N * O, OC)     # rows (b, n, o)
    wk = _wk(w, K)                                                               # (OC, K*Cg)
    from .._fixed import Mod

    # only the windows whose cotangent is nonzero (after relu masks and max-pool selections most
    # are zero) are multiplied and scattered; for residues, the windows whose residues are all
    # zero (they add 0 modulo the prime, whatever the integers are)
    rows = None
    if c.shape[0]:
        from .._ball import Ball

        # an enclosure is structurally zero only as an exact 0 (mid and radius 0)
        live = ((c.mid != 0) | (c.rad != 0)).any(axis=1) if isinstance(c, Ball) else \
            (c.view(np.ndarray) != 0).any(axis=1) if isinstance(c, Mod) else np.asarray((c != 0).any(axis=1))
        if live.mean() < 0.75:
            rows = np.flatnonzero(live)
            c = c[rows]
    win = np.arange(B * N * O) if rows is None else rows
    bn, o = win // O, win % O
    gx = _col2im_words(c, wk, flat, bn, o, B * N, S, C) if G == 1 else None
    if gx is None:
        parts = []
        for g in range(G):
            cg = c if G == 1 else c[:, g * OCg:(g + 1) * OCg]
            parts.append(matmul(cg, wk[g * OCg:(g + 1) * OCg]).reshape(-1, K, Cg))
        gwin = parts[0] if G == 1 else np.concatenate(parts, axis=2)                # (windows, K, C)
        if isinstance(gwin, Mod):
            gx = _col2im_residues(gwin, flat, bn, o, B * N, S, C)
        else:
            gx = zeros_like_cot((B * N, S, C), gwin)
            pos = flat[o]                                                            # (windows, K)
            w_i, k_i = np.nonzero(pos >= 0)
            if w_i.size:
                # col2im: every window entry adds into its input position
                np.add.at(gx, (bn[w_i], pos[w_i, k_i]), gwin[w_i, k_i, :])
    gx = gx.transpose(0, 2, 1).reshape((B, N, C) + tuple(sp))
    gw = None
    if want_w:
        if G != 1:
            raise NotModelled("the derivative of a grouped convolution with respect to its weights")
        cols = _im2col(x, flat, S)
        cb = cot.reshape(B, N, OC, O).transpose(0, 2, 1, 3).reshape(B * OC, N * O)
        gwk = matmul(cb, cols.reshape(N * O, K * C)).reshape(B, OC, K, C)
        gw = obj(gwk.transpose(0, 1, 3, 2).reshape((B,) + tuple(w.shape)))
    return obj(gx), gw


def _offsets_distinct(flat) -> bool:
    """Whether each kernel offset reaches every input position from one window at most (the
    windows' positions at one offset are distinct): then an indexed add at one offset is a sum."""
    fs = np.sort(np.where(flat >= 0, flat, -1 - np.arange(flat.shape[0])[:, None]), axis=0)
    return bool((fs[1:] != fs[:-1]).all())


def _col2im_residues(gwin, flat, bn, o, BN, S, C):
    """col2im of window residues ``gwin`` (windows, K, C) modulo p: the sums in plain int64 (each
    of at most K residues below 2**20), reduced once; the bound grows by ceil(log2 K) bits, each
    entry summing at most K window entries."""
    from .._fixed import _clog2, mod_wrap

    K = flat.shape[1]
    g = gwin.view(np.ndarray).reshape(-1, K, C)
    pos = flat[o]
    valid = pos >= 0
    target = bn[:, None] * S + pos
    acc = np.zeros((BN * S, C), dtype=np.int64)
    distinct = _offsets_distinct(flat)
    for k in range(K):
        sel = np.flatnonzero(valid[:, k])
        if not sel.size:
            continue
        if distinct:
            acc[target[sel, k]] += g[sel, k]
        else:   # pragma: no cover - convolution windows are injective at each offset
            np.add.at(acc, target[sel, k], g[sel, k])
    return mod_wrap((acc % gwin.p).reshape(BN, S, C), gwin.p, gwin.e, gwin.bits + _clog2(K))


def _col2im_words(c, wk, flat, bn, o, BN, S, C):
    """The input cotangent of an ungrouped convolution, (BN, S, C) as Fx, from fixed-point
    cotangents ``c`` (windows, OC) of the windows (``bn``, ``o``) and weights ``wk`` (OC, K*C), in
    machine words (:func:`mtcheck._fixed.digits`): every base-2**16 digit of the cotangents is
    multiplied by the weights and added into the input positions in int64, one kernel offset at a
    time (the products of one offset stay in cache; all of them at once were K times the result),
    and only the (BN, S, C) results become Python integers. A result entry sums ``m * OC``
    products, ``m`` the most window entries that land on one input position (counted here, at
    most K), so every int64 entry is below ``m * OC * 2**16 * 2**wbits``: the path is taken only
    when that is at most 2**61. None otherwise (or for anything but fixed point): the caller
    multiplies through FLINT."""
    from .._fixed import DIGIT_BITS, Fx, _clog2, _words, cached_matrix, digits, from_digits, word_matmul, wrap, zeros

    if not isinstance(c, Fx) or not isinstance(wk, Fx) or c.shape[0] == 0:
        return None
    OC = wk.shape[0]
    K = flat.shape[1]
    if OC > K * C:
        # more cotangent entries per window than products: converting the cotangents to digits
        # costs more than FLINT's products (VGG11's first layer: 64 channels onto 3x3x3 windows)
        return None
    W = cached_matrix(wk.view(np.ndarray), "int64", _words)
    if W is None:
        return None
    w64, wbits = W
    pos = flat[o]                                                                    # (windows, K)
    valid = pos >= 0
    target = bn[:, None] * S + pos                                                   # (windows, K)
    if not valid.any():
        return zeros((BN, S, C), c.e + wk.e)
    terms = _clog2(int(np.bincount(target[valid]).max()) * OC)
    if DIGIT_BITS + wbits + terms > 61:
        return None
    # one kernel offset reaches an input position from one window at most (the windows are
    # distinct (bn, o) and a window's position at offset k is injective in o): then an indexed
    # add is exact; checked on the geometry, np.add.at otherwise
    distinct = _offsets_distinct(flat)
    d, nd, cbits = digits(c.view(np.ndarray))
    D = d.reshape(nd * c.shape[0], OC)
    fD = D.astype(np.float64)
    w3 = w64.reshape(OC, K, C)
    acc = np.zeros((nd, BN * S, C), dtype=np.int64)
    for k in range(K):
        sel = np.flatnonzero(valid[:, k])
        if not sel.size:
            continue
        prods = word_matmul(D, DIGIT_BITS, np.ascontiguousarray(w3[:, k, :]), wbits, fD)  # |.| < OC 2**(16+wbits)
        prods = prods.reshape(nd, c.shape[0], C)
        if sel.size < c.shape[0]:
            prods = prods[:, sel, :]
        t = target[sel, k]
        if distinct:
            acc[:, t, :] += prods
        else:   # pragma: no cover - convolution windows are injective at each offset
            np.add.at(acc, (slice(None), t), prods)
    ints = from_digits(acc.reshape(nd, BN * S * C), cbits + wbits + terms)
    return wrap(ints.reshape(BN, S, C), c.e + wk.e)


def _conv_of_identity(tx, off, x, w, stride, padding, dilation, groups, unbatched, out_shape):
    """The convolution's tangent when the input's tangent is a block of the identity
    (tangent[b, j] = [b == off + j]): the convolution's Jacobian itself, built by placing
    each weight where it acts instead of convolving B one-hot images."""
    from .._fastfloat import to_float_exact, wrap

    B = tx.shape[0]
    xb = x[None] if unbatched else x
    N, C = xb.shape[:2]
    OC, Cg = w.shape[:2]
    out_sp, idx = sliding(xb.shape[2:], w.shape[2:], stride, padding, dilation)
    O, K = idx.reshape(-1, idx.shape[-1]).shape
    S = int(np.prod(xb.shape[2:], dtype=np.int64))
    flat = idx.reshape(O, K)
    wf = to_float_exact(w).reshape(OC, Cg, K)
    res = np.zeros((B, N, OC, O))
    o_idx, k_idx = np.nonzero(flat >= 0)
    s_idx = flat[o_idx, k_idx]
    for n in range(N):
        for oc in range(OC):
            g = oc // (OC // groups)
            for cg in range(Cg):
                c = g * Cg + cg
                b = off + (n * C + c) * S + s_idx          # the direction that moves this input entry
                np.add.at(res[:, n, oc, :], (b, o_idx), wf[oc, cg, k_idx])
    # each output entry sums at most K*Cg weights of one input entry each: exact in float64
    return wrap(res.reshape((B,) + tuple(out_shape)))


@register("aten.convolution.default", "aten._convolution.default", "aten.conv1d.default",
          "aten.conv2d.default", "aten.conv3d.default")
class Convolution(Rule):
    balls = True
    def _params(self, ctx, args, kwargs):
        x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
        if ctx.op.startswith("aten.conv") and not ctx.op.startswith("aten.convolution"):
            stride, padding, dilation, groups = (list(args[3:7]) + [1, 0, 1, 1][len(args[3:7]):])
            transposed = False
        else:
            stride, padding, dilation, transposed, _, groups = args[3:9]
        if transposed:
            raise NotModelled("transposed convolution")
        return x, w, b, stride, padding, dilation, groups

    def forward(self, ctx, args, kwargs):
        x, w, b, stride, padding, dilation, groups = self._params(ctx, args, kwargs)
        unbatched = x.ndim == w.ndim - 1
        xx = _obj(x)[None] if unbatched else _obj(x)
        out = _conv(xx, _obj(w), stride, padding, dilation, groups, None if b is None else _obj(b))
        return out[0] if unbatched else out

    def vjp(self, ctx, args, kwargs, out, cot):
        x, w, b, stride, padding, dilation, groups = self._params(ctx, args, kwargs)
        unbatched = x.ndim == w.ndim - 1
        Bc = cot.shape[0]
        xx = _obj(x)[None] if unbatched else _obj(x)
        c = cot[:, None] if unbatched else cot                            # (B, N, OC, *out_sp)
        gx, gw = _conv_vjp(xx, _obj(w), c, stride, padding, dilation, groups,
                           want_w=isinstance(args[1], np.ndarray) and _live(ctx, 1))
        g = {0: gx[:, 0] if unbatched else gx, 1: gw}
        if b is not None and isinstance(args[2], np.ndarray) and _live(ctx, 2):
            axes = tuple(i for i in range(1, c.ndim) if i != 2)
            g[2] = obj(np.sum(c, axis=axes)).reshape((Bc,) + b.shape)
        return arg_grads(args, g)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, w, b, stride, padding, dilation, groups = self._params(ctx, args, kwargs)
        tx, tw, tb = (list(targs) + [None] * 3)[:3]
        unbatched = x.ndim == w.ndim - 1
        res = None
        eye = getattr(tx, "_eye_offset", None) if tx is not None else None
        if eye is not None and tw is None:
            res = _conv_of_identity(tx, eye, x, _obj(w), stride, padding, dilation, groups, unbatched, out.shape)
        elif tx is not None:
            B = tx.shape[0]
            xs = tx.reshape((B,) + ((1,) if unbatched else ()) + x.shape)
            folded = xs.reshape((-1,) + xs.shape[2:])
            r = _conv(folded, _obj(w), stride, padding, dilation, groups)
            res = r.reshape((B,) + out.shape)
        if tw is not None:
            B = tw.shape[0]
            xx = _obj(x)[None] if unbatched else _obj(x)
            parts = [(_conv(xx, tw[i], stride, padding, dilation, groups)) for i in range(B)]
            r = np.stack([p[0] if unbatched else p for p in parts])
            res = add_t(res, r)
        if tb is not None:
            B = tb.shape[0]
            oc = out.shape[1 if not unbatched else 0]
            shape = (B, 1, oc) + (1,) * (out.ndim - 2) if not unbatched else (B, oc) + (1,) * (out.ndim - 1)
            res = add_t(res, np.broadcast_to(tb.reshape(shape), (B,) + out.shape))
        return res

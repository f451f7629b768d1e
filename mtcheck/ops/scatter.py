"""Max/min over index-defined windows: scatter_reduce (amax, amin) and embedding_bag (mode max).

Each output element is a max (min) over a window of candidates that the integer
index tensors define (for scatter_reduce with ``include_self``, the window also holds
the element of ``self``). The case is each window's tie set, as for max-pooling;
the candidates can come from two arguments, so the discriminants are grouped by the
(argument of the entry, argument of the winner) pair.
"""

from __future__ import annotations

import numpy as np

from . import Disc, NotModelled, Rule, register
from .._exact import Q0


def _window_discs(label, cands, vals, winner, take_min):
    """cands: list per window of (arg position, flat index); vals: list of value lists."""
    buckets: dict = {}
    for g, (cs, vs) in enumerate(zip(cands, vals)):
        if not cs:
            continue
        w = winner[g]
        pw, iw = cs[w]
        for k, (pk, ik) in enumerate(cs):
            if k == w:
                continue
            if take_min:   # winner - other <= 0
                key = (pw, pk)
                v = vs[w] - vs[k]
                ia, ib = iw, ik
            else:          # other - winner <= 0
                key = (pk, pw)
                v = vs[k] - vs[w]
                ia, ib = ik, iw
            b = buckets.setdefault(key, ([], [], [], []))
            b[0].append(ia); b[1].append(ib); b[2].append(v); b[3].append(g)
    out = []
    for (pa, pb), (ia, ib, v, g) in sorted(buckets.items()):
        out.append(Disc(label, pa, np.asarray(ia, dtype=np.int64), pb, np.asarray(ib, dtype=np.int64), None,
                        np.asarray(v, dtype=object), np.asarray(g, dtype=np.int64), True))
    return out


def _select(vals, take_min, prefer=None):
    """Winner position in each window (first tied entry, or ``prefer`` where it is tied)."""
    winner = []
    for g, vs in enumerate(vals):
        if not vs:
            winner.append(-1)
            continue
        best = min(vs) if take_min else max(vs)
        w = next(k for k, v in enumerate(vs) if v == best)
        if prefer is not None and prefer[g] is not None and 0 <= prefer[g] < len(vs) and vs[prefer[g]] == best:
            w = prefer[g]
        winner.append(w)
    return winner


@register("aten.scatter_reduce.two", "aten.scatter_reduce_.two")
class ScatterReduce(Rule):
    """scatter_reduce(self, dim, index, src, reduce, include_self) with reduce in {amax, amin}.

    Tensor arguments in order: self (0), index (1), src (2)."""

    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        x, dim, index, src = args[0], args[1], np.asarray(args[2]), args[3]
        reduce = args[4] if len(args) > 4 else kwargs["reduce"]
        include_self = args[5] if len(args) > 5 else kwargs.get("include_self", True)
        if reduce not in ("amax", "amin"):
            raise NotModelled(f"scatter_reduce with reduce={reduce!r} (only amax/amin are modelled here)")
        take_min = reduce == "amin"
        d = dim % x.ndim
        cands = [[] for _ in range(x.size)]
        vals = [[] for _ in range(x.size)]
        if include_self:
            xf = x.ravel()
            for i in range(x.size):
                cands[i].append((0, i)); vals[i].append(xf[i])
        sf = src.ravel() if src.ndim else src.reshape(1)
        src_idx = np.arange(src.size).reshape(src.shape)
        for pos in np.ndindex(*index.shape):
            tgt = list(pos)
            tgt[d] = int(index[pos])
            o = int(np.ravel_multi_index(tuple(tgt), x.shape))
            s = int(src_idx[pos])
            cands[o].append((2, s)); vals[o].append(sf[s])
        winner = _select(vals, take_min)
        ctx.aux.update(cands=cands, vals=vals, winner=winner, take_min=take_min)
        out = np.array(x.ravel(), dtype=object)
        for o, (vs, w) in enumerate(zip(vals, winner)):
            if w >= 0:
                out[o] = vs[w]
        return out.reshape(x.shape)

    def discs(self, ctx, args, kwargs, out):
        a = ctx.aux
        return _window_discs("amin" if a["take_min"] else "amax", a["cands"], a["vals"], a["winner"],
                             a["take_min"])

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a = ctx.aux
        tx = targs[0] if len(targs) > 0 else None
        ts = targs[3] if len(targs) > 3 else None
        live = tx if tx is not None else ts
        if live is None:
            return None
        B = live.shape[0]
        res = np.empty((B, out.size), dtype=object)
        res.fill(Q0)
        txf = tx.reshape(B, -1) if tx is not None else None
        tsf = ts.reshape(B, -1) if ts is not None else None
        for o, (cs, w) in enumerate(zip(a["cands"], a["winner"])):
            if w < 0:
                if txf is not None:
                    res[:, o] = txf[:, o]
                continue
            p, i = cs[w]
            src_t = txf if p == 0 else tsf
            if src_t is not None:
                res[:, o] = src_t[:, i]
        return res.reshape((B,) + out.shape)


@register("aten._embedding_bag.default", "aten._embedding_bag_forward_only.default")
class EmbeddingBagMax(Rule):
    """_embedding_bag(weight, indices, offsets, scale_grad_by_freq, mode, sparse, per_sample_weights,
    include_last_offset, padding_idx) with mode 2 (max): out[b, j] = max over the bag's rows of weight[r, j]."""

    nonsmooth = True

    def forward(self, ctx, args, kwargs):
        w, indices, offsets = args[0], np.asarray(args[1]).reshape(-1), np.asarray(args[2]).reshape(-1)
        mode = args[4] if len(args) > 4 else kwargs.get("mode", 0)
        psw = args[6] if len(args) > 6 else kwargs.get("per_sample_weights")
        last = args[7] if len(args) > 7 else kwargs.get("include_last_offset", False)
        pad = args[8] if len(args) > 8 else kwargs.get("padding_idx", -1)
        if mode != 2:
            raise NotModelled("embedding_bag with mode sum/mean (only mode='max' is modelled here)")
        if psw is not None:
            raise NotModelled("embedding_bag with per_sample_weights")
        if pad is not None and pad >= 0:
            raise NotModelled("embedding_bag with padding_idx")
        V, D = w.shape
        ends = list(offsets[1:]) + ([] if last else [len(indices)])
        starts = list(offsets[: len(ends)])
        nb = len(starts)
        rec_max = None
        if isinstance(ctx.recorded, (tuple, list)) and len(ctx.recorded) > 3:
            rec_max = ctx.recorded[3].numpy().reshape(nb, D) if ctx.recorded[3].numel() == nb * D else None
        cands, vals, prefer = [], [], []
        wf = w.ravel()
        for b in range(nb):
            rows = []
            for r in indices[starts[b]:ends[b]]:
                if int(r) not in rows:
                    rows.append(int(r))
            for j in range(D):
                cands.append([(0, r * D + j) for r in rows])
                vals.append([wf[r * D + j] for r in rows])
                pr = None
                if rec_max is not None and int(rec_max[b, j]) in rows:
                    pr = rows.index(int(rec_max[b, j]))
                prefer.append(pr)
        winner = _select(vals, False, prefer)
        ctx.aux.update(cands=cands, vals=vals, winner=winner)
        out = np.empty(nb * D, dtype=object)
        maxi = np.full(nb * D, -1, dtype=np.int64)
        for g, (cs, vs, k) in enumerate(zip(cands, vals, winner)):
            out[g] = vs[k] if k >= 0 else Q0
            if k >= 0:
                maxi[g] = cs[k][1] // D
        out = out.reshape(nb, D)
        if isinstance(ctx.recorded, (tuple, list)):
            o2b, bsz = ctx.recorded[1].numpy(), ctx.recorded[2].numpy()
            return out, o2b, bsz, maxi.reshape(ctx.recorded[3].shape) if ctx.recorded[3].numel() == maxi.size \
                else ctx.recorded[3].numpy()
        return out

    def discs(self, ctx, args, kwargs, out):
        a = ctx.aux
        return _window_discs("max", a["cands"], a["vals"], a["winner"], False)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        a = ctx.aux
        tw = targs[0]
        if tw is None:
            return None
        B = tw.shape[0]
        y = out[0] if isinstance(out, tuple) else out
        res = np.empty((B, y.size), dtype=object)
        res.fill(Q0)
        twf = tw.reshape(B, -1)
        for g, (cs, k) in enumerate(zip(a["cands"], a["winner"])):
            if k >= 0:
                res[:, g] = twf[:, cs[k][1]]
        res = res.reshape((B,) + y.shape)
        if isinstance(out, tuple):
            return (res,) + (None,) * (len(out) - 1)
        return res

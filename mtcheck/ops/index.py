"""Pure data-movement ops (views, indexing, concatenation, padding).

These ops only move elements. Each is modelled by an *index map*: the op is run
once on integer index tensors (never on values, never through autograd), which
says, for every output element, which input element it copies (or ``-1`` for a
padding constant). The exact forward gathers exact values through the map and
the derivative gathers tangents through the same map.
"""

from __future__ import annotations

import numpy as np

from . import Rule, register
from .._exact import Q0, q
from ._util import zeros_t

_INDEX_OPS = (
    "aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", "aten.alias.default",
    "aten.expand.default", "aten.permute.default", "aten.transpose.int", "aten.t.default",
    "aten.squeeze.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.unsqueeze.default",
    "aten.squeeze_.dim", "aten.squeeze_.default", "aten.squeeze_.dims", "aten.unsqueeze_.default",
    "aten.t_.default", "aten.transpose_.default",
    "aten.select.int", "aten.slice.Tensor", "aten.narrow.default", "aten.split.Tensor",
    "aten.split_with_sizes.default", "aten.unbind.int", "aten.chunk.default", "aten.cat.default",
    "aten.stack.default", "aten.flip.default", "aten.roll.default", "aten.repeat.default",
    "aten.index_select.default", "aten.gather.default", "aten.index.Tensor", "aten.clone.default",
    "aten.contiguous.default", "aten.movedim.int", "aten.diagonal.default", "aten.unfold.default",
    "aten.as_strided.default", "aten.take.default", "aten.tile.default", "aten.expand_copy.default",
    "aten.view_copy.default", "aten.permute_copy.default", "aten.unsqueeze_copy.default",
    "aten.squeeze_copy.dim", "aten.select_copy.int", "aten.slice_copy.Tensor",
    "aten.transpose_copy.int", "aten.t_copy.default", "aten.lift_fresh.default",
    "aten.lift_fresh_copy.default", "aten.constant_pad_nd.default", "aten.masked_select.default",
    "aten.flatten.using_ints", "aten.unflatten.int", "aten.swapaxes.default", "aten.pixel_shuffle.default",
    "aten.pixel_unshuffle.default", "aten.channel_shuffle.default",
    # (the unsafe_ variants differ only in their aliasing contract: GRU's gates split one product)
    "aten.unsafe_split.Tensor", "aten.unsafe_split_with_sizes.default", "aten.unsafe_chunk.default",
)


def _index_maps(ctx, args, kwargs, pairs: bool = False):
    """Run the op on index tensors; returns (list of output index arrays, total input size, whether
    the op returns a sequence). ``pairs``: the values are (re, im) pairs along a last axis of 2 (complex
    tensors, mtcheck.ops.complex_fft): each element's index is that of its real part."""
    import torch
    import torch.utils._pytree as pytree

    func = ctx.aux["func"]
    offset = [0]
    w = 2 if pairs else 1

    def to_index(v):
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                n = v.size
                t = torch.arange(offset[0], offset[0] + n, w, dtype=torch.int64).reshape(v.shape[:-1] if pairs
                                                                                        else v.shape)
                offset[0] += n
                return t
            return torch.from_numpy(np.ascontiguousarray(v))
        return v

    iargs = pytree.tree_map(to_index, args)
    ikwargs = pytree.tree_map(to_index, kwargs)
    if func.__name__.startswith("constant_pad_nd"):
        iargs = list(iargs)
        if len(iargs) > 2:
            iargs[2] = -1
        ikwargs.pop("value", None)
        out = func(iargs[0], iargs[1], -1)
    else:
        out = func(*iargs, **ikwargs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numpy().copy() for o in outs], offset[0], isinstance(out, (tuple, list))


def _gather(maps, flat, pad):
    """The values an index map reads from the flat inputs; entries mapped to -1 (padding) are ``pad``."""
    outs = []
    for m in maps:
        safe = np.where(m >= 0, m, 0)
        o = flat[safe.ravel()].reshape(m.shape) if flat.size else np.empty(m.shape, dtype=object)
        if (m < 0).any():
            o = np.where(m < 0, pad, o)
        outs.append(o)
    return outs


def _move_ints(ctx, args, kwargs):
    import torch
    import torch.utils._pytree as pytree

    conv = lambda v: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v  # noqa: E731
    out = ctx.aux["func"](*pytree.tree_map(conv, args), **pytree.tree_map(conv, kwargs))
    if isinstance(out, (tuple, list)):
        return tuple(o.numpy().copy() for o in out)
    return out.numpy().copy()


def _flat_values(args):
    from ._util import tensor_leaves

    leaves = [v for v in tensor_leaves(args) if v.dtype == object]
    if not leaves:
        return np.empty(0, dtype=object)
    return np.concatenate([v.ravel() for v in leaves])


@register(*_INDEX_OPS)
class IndexMap(Rule):
    balls = True
    def forward(self, ctx, args, kwargs):
        from ._util import tensor_leaves

        if not any(v.dtype == object for v in tensor_leaves(args)):
            # integer or boolean data (indices, masks): move the values themselves
            return _move_ints(ctx, args, kwargs)
        maps, _, is_tuple = _index_maps(ctx, args, kwargs)
        flat = _flat_values(args)
        pad = q(args[2]) if ctx.op.startswith("aten.constant_pad_nd") and len(args) > 2 else Q0
        if ctx.op.startswith("aten.constant_pad_nd") and "value" in kwargs:
            pad = q(kwargs["value"])
        ctx.aux["maps"] = maps
        outs = _gather(maps, flat, pad)
        return tuple(outs) if is_tuple else outs[0]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        from ._util import tensor_leaves

        vals = [v for v in tensor_leaves(args) if v.dtype == object]
        tans = [t for v, t in zip(tensor_leaves(args), _tangent_leaves(args, targs)) if v.dtype == object]
        B = next(t.shape[0] for t in tans if t is not None)
        flat_t = np.concatenate(
            [(t if t is not None else zeros_t(B, v.shape, like=next(x for x in tans if x is not None))).reshape(B, -1)
             for v, t in zip(vals, tans)], axis=1)
        res = []
        for m in ctx.aux["maps"]:
            safe = np.where(m >= 0, m, 0).ravel()
            o = flat_t[:, safe]
            if (m < 0).any():
                o = np.where((m < 0).ravel()[None, :], Q0, o)
            res.append(o.reshape((B,) + m.shape))
        return tuple(res) if isinstance(out, tuple) else res[0]

    def vjp(self, ctx, args, kwargs, out, cot):
        from ._util import tensor_leaves

        leaves = tensor_leaves(args)
        sizes = [v.size if v.dtype == object else 0 for v in leaves]
        cots = cot if isinstance(cot, tuple) else (cot,)
        B = next(c.shape[0] for c in cots if c is not None)
        if len(cots) == 1 and len(leaves) == 1 and cots[0] is not None and _is_identity(ctx, sizes[0]):
            # a plain view (reshape, squeeze, a contiguous flatten): the cotangent is reshaped, not
            # scattered into zeros (on a (1024, 16, 2048) enclosure that scatter took seconds)
            return [cots[0].reshape((B,) + leaves[0].shape)]
        from ._util import zeros_like_cot

        g = zeros_like_cot((B, sum(sizes)), next(c for c in cots if c is not None))
        written = np.zeros(sum(sizes), dtype=bool)
        for m, c in zip(ctx.aux["maps"], cots):
            if c is None:
                continue
            mv = m.ravel()
            cf = c.reshape(B, -1)
            ok = mv >= 0
            if not ok.all():
                mv, cf = mv[ok], cf[:, ok]
            if np.unique(mv).size == mv.size:
                if written[mv].any() or not _same_kind(g, cf):
                    g[:, mv] = g[:, mv] + cf        # each input element is read once by this output
                else:
                    g[:, mv] = cf                   # ... and by no earlier one: g is still 0 there
            else:
                np.add.at(g, (slice(None), mv), cf)
            written[mv] = True
        res, off = [], 0
        for v, n in zip(leaves, sizes):
            if v.dtype != object:
                res.append(None)
                continue
            res.append(g[:, off:off + n].reshape((B,) + v.shape))
            off += n
        return res


def _is_identity(ctx, size: int) -> bool:
    """Whether the op's one index map reads input element i at output position i (cached)."""
    hit = ctx.aux.get("identity")
    if hit is None:
        maps = ctx.aux["maps"]
        hit = (len(maps) == 1 and maps[0].size == size
               and bool((maps[0].ravel() == np.arange(size)).all()))
        ctx.aux["identity"] = hit
    return hit


def _same_kind(g, c) -> bool:
    """Whether ``c`` may be stored into ``g`` as is: two enclosures, or two plain exact arrays
    (fixed point and residues carry a scale that a plain assignment would not align)."""
    from .._ball import Ball

    if isinstance(g, Ball):
        return isinstance(c, Ball)
    return type(g) is np.ndarray and type(c) is np.ndarray and g.dtype == object and c.dtype == object


def _tangent_leaves(args, targs):
    """Tangents aligned with tensor_leaves(args) (None where absent)."""
    out = []

    def walk(a, t):
        if isinstance(a, np.ndarray):
            out.append(t)
        elif isinstance(a, (list, tuple)):
            ts = t if isinstance(t, (list, tuple)) else [None] * len(a)
            for x, y in zip(a, ts):
                walk(x, y)

    walk(args, targs)
    return out

"""Data movement with constants, and linear ops read off the framework (issue 11).

Two generic rules, each modelling many ATen ops exactly:

* :class:`FilledIndexMap`: ops that only move elements, where some outputs are a
  constant (``tril``/``triu``, ``diag_embed``, ``block_diag``, ``max_unpool``, the
  ``*_scatter`` ops, ``index_fill``, ``scatter(value=)``, reflection/replication padding,
  nearest upsampling, ...). The op is run once on float64 *index* tensors holding
  ``1, 2, 3, ...`` (exact in float64) with every scalar fill value replaced by 0: each output
  then names the input element it copies, or 0 for the constant. Like
  :mod:`mtcheck.ops.index`, but the 0 marker allows constants and float64 covers ops
  that have no integer kernel. A result that is not such an index (the op computed
  something) is refused.
* :class:`LinearByBasis`: ops that are affine in their floating-point arguments jointly
  (``index_add``, ``scatter_add``, ``index_put(accumulate=True)``, linear/bilinear/bicubic
  upsampling, ``trace``, ``embedding_bag`` sum/mean, backward ops of pooling and dropout, ...),
  or in each one with the others fixed (multilinear: ``_trilinear``, ``embedding_bag`` with
  per-sample weights; the derivative is then the sum of the partial maps), or in the first
  one only (``nll_loss``: its weights divide; a tangent on them is refused). Each column of
  a map is the op applied by the framework to a one-hot float64 input: the coefficient the
  kernel itself uses (a weight times 1, plus zeros, is exact). The forward is that exact map
  applied to the exact inputs, the tangent the map applied to the tangents. The framework's
  float output is compared with the map at the actual values and at a fixed pseudo-random
  point as a safety net: an op that is not affine is refused. Coefficients that are not short
  dyadic numbers (1/3 rounded) are the float64 values the kernel uses: the report says so and
  compares with the float tolerance.
"""

from __future__ import annotations

import numpy as np

from . import NotModelled, Rule, register
from .._exact import Q0, from_floats, matmul
from ._util import exact_scalar, obj, tensor_leaves


def _obj_leaves(args):
    return [v for v in tensor_leaves(args) if v.dtype == object]


def _tangent_leaves(args, targs):
    """Tangents aligned with ``tensor_leaves(args)`` (None where absent)."""
    out = []

    def walk(a, t):
        if isinstance(a, np.ndarray):
            out.append(t if isinstance(t, np.ndarray) else None)
        elif isinstance(a, (list, tuple)):
            ts = t if isinstance(t, (list, tuple)) else [None] * len(a)
            for x, y in zip(a, ts):
                walk(x, y)

    walk(args, targs)
    return out


def _run_ints(ctx, args, kwargs):
    """The op on integer/boolean data only (masks, indices): run it on the values themselves."""
    import torch
    import torch.utils._pytree as pytree

    conv = lambda v: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v  # noqa: E731
    out = ctx.aux["func"](*pytree.tree_map(conv, args), **pytree.tree_map(conv, kwargs))
    if isinstance(out, (tuple, list)):
        return tuple(o.numpy().copy() if isinstance(o, torch.Tensor) else o for o in out)
    return out.numpy().copy()


# ---------------------------------------------------------------- movement with constants

# op -> where its scalar fill value is: None (the constant is 0), an argument position, or
# (position, kwarg name)
_FILLED = {
    "aten.tril.default": None, "aten.triu.default": None, "aten.tril_.default": None, "aten.triu_.default": None,
    "aten.diag_embed.default": None, "aten.block_diag.default": None, "aten.diag.default": None,
    "aten.diagonal_copy.default": None, "aten.diagonal_scatter.default": None,
    "aten.select_scatter.default": None, "aten.slice_scatter.default": None,
    "aten.as_strided_scatter.default": None, "aten.as_strided_copy.default": None,
    "aten.rot90.default": None, "aten.narrow_copy.default": None,
    "aten.split_copy.Tensor": None,
    "aten.split_with_sizes_copy.default": None, "aten.unbind_copy.int": None, "aten.unfold_copy.default": None,
    "aten.squeeze_copy.default": None, "aten.squeeze_copy.dims": None, "aten.alias_copy.default": None,
    "aten.detach_copy.default": None, "aten.diagonal_backward.default": None,
    "aten.index_copy.default": None, "aten.index_copy_.default": None,
    "aten.masked_scatter.default": None, "aten.masked_scatter_.default": None,
    "aten.scatter.src": None, "aten.scatter_.src": None,
    "aten.scatter.value": (3, "value"), "aten.scatter_.value": (3, "value"),
    "aten.index_fill.int_Scalar": (3, "value"), "aten.index_fill_.int_Scalar": (3, "value"),
    "aten.index_fill.int_Tensor": None, "aten.index_fill_.int_Tensor": None,
    "aten.fill.Scalar": (1, "value"), "aten.fill_.Scalar": (1, "value"),
    "aten.fill.Tensor": None, "aten.fill_.Tensor": None,
    "aten.zero_.default": None,
    "aten._unsafe_masked_index.default": (3, "fill"),
    "aten.max_unpool2d.default": None, "aten.max_unpool3d.default": None,
    "aten.reflection_pad1d.default": None, "aten.reflection_pad2d.default": None,
    "aten.reflection_pad3d.default": None, "aten.replication_pad1d.default": None,
    "aten.replication_pad2d.default": None, "aten.replication_pad3d.default": None,
    "aten._pad_circular.default": None, "aten.pad.default": (3, "value"),
    "aten.upsample_nearest1d.default": None, "aten.upsample_nearest2d.default": None,
    "aten.upsample_nearest3d.default": None, "aten._upsample_nearest_exact1d.default": None,
    "aten._upsample_nearest_exact2d.default": None, "aten._upsample_nearest_exact3d.default": None,
    "aten.upsample_nearest1d.vec": None, "aten.upsample_nearest2d.vec": None,
    "aten.upsample_nearest3d.vec": None, "aten._chunk_cat.default": None,
    "aten.embedding.default": None, "aten.im2col.default": None,
    "aten.index_put.default": None, "aten.index_put_.default": None, "aten._index_put_impl_.default": None,
    "aten.put.default": None, "aten.put_.default": None,
}

# accumulating variants: the same ATen op is linear (sums), not a movement
_ACCUMULATE_ARG = {"aten.index_put.default": (3, "accumulate"), "aten.index_put_.default": (3, "accumulate"),
                   "aten._index_put_impl_.default": (3, "accumulate"),
                   "aten.put.default": (3, "accumulate"), "aten.put_.default": (3, "accumulate")}

_LIMIT = 2 ** 52


def _arg(args, kwargs, spec, default=None):
    pos, name = spec
    if len(args) > pos:
        return args[pos]
    return kwargs.get(name, default)


def _fill_value(ctx, args, kwargs):
    spec = _FILLED.get(ctx.op)
    if spec is None:
        return Q0
    v = _arg(args, kwargs, spec, 0)
    if v is None:
        return Q0
    if isinstance(v, np.ndarray):          # a tensor fill value is an element like any other
        return None
    return exact_scalar(v, ctx.dtype)


def _filled_maps(ctx, args, kwargs):
    """Run the op on float64 index tensors 1, 2, ... (0: the constant). Returns the maps (int64,
    -1 for the constant), whether the op returns a tuple, and the positions of the outputs that are
    moved floats (other outputs are computed directly)."""
    import torch
    import torch.utils._pytree as pytree

    func = ctx.aux["func"]
    offset = [1]

    def to_index(v):
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                n = v.size
                t = torch.arange(offset[0], offset[0] + n, dtype=torch.float64).reshape(v.shape)
                offset[0] += n
                return t
            return torch.from_numpy(np.ascontiguousarray(v))
        return v

    iargs = list(pytree.tree_map(to_index, args))
    ikwargs = dict(pytree.tree_map(to_index, kwargs))
    spec = _FILLED.get(ctx.op)
    if spec is not None:
        pos, name = spec
        if len(iargs) > pos and not isinstance(iargs[pos], torch.Tensor):
            iargs[pos] = 0
        elif name in ikwargs and not isinstance(ikwargs[name], torch.Tensor):
            ikwargs[name] = 0
    if offset[0] >= _LIMIT:
        raise NotModelled("too many elements for an index map")
    out = func(*iargs, **ikwargs)
    is_tuple = isinstance(out, (tuple, list))
    outs = list(out) if is_tuple else [out]
    maps = []
    for o in outs:
        if not isinstance(o, torch.Tensor) or not o.is_floating_point():
            maps.append(None)
            continue
        a = o.detach().to(torch.float64).numpy()
        if not np.isfinite(a).all() or (a != np.round(a)).any() or (a < 0).any() or (a >= offset[0]).any():
            raise NotModelled("the op computes with its values (it is not a movement of elements)")
        maps.append(a.astype(np.int64) - 1)
    return maps, is_tuple, outs


class FilledIndexMap(Rule):
    def forward(self, ctx, args, kwargs):
        if not _obj_leaves(args):
            return _run_ints(ctx, args, kwargs)
        fill = _fill_value(ctx, args, kwargs)
        maps, is_tuple, raw = _filled_maps(ctx, args, kwargs)
        flat = np.concatenate([v.ravel() for v in _obj_leaves(args)])
        ctx.aux["maps"] = maps
        res = []
        for m, r in zip(maps, raw):
            if m is None:
                res.append(_non_float_out(r))
                continue
            o = flat[np.where(m >= 0, m, 0).ravel()].reshape(m.shape) if flat.size else np.empty(m.shape, object)
            if (m < 0).any():
                if fill is None:
                    raise NotModelled("a constant where a tensor fill value was expected")
                o = np.where(m < 0, fill, o)
            res.append(obj(o))
        return tuple(res) if is_tuple else res[0]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        from ._util import zeros_t

        leaves = tensor_leaves(args)
        tl = _tangent_leaves(args, targs)
        vals = [(v, t) for v, t in zip(leaves, tl) if v.dtype == object]
        live = [t for _, t in vals if t is not None]
        if not live:
            return None
        B = live[0].shape[0]
        flat_t = np.concatenate([(t if t is not None else zeros_t(B, v.shape, like=live[0])).reshape(B, -1)
                                 for v, t in vals], axis=1)
        res = []
        for m in ctx.aux["maps"]:
            if m is None:
                res.append(None)
                continue
            o = flat_t[:, np.where(m >= 0, m, 0).ravel()]
            if (m < 0).any():
                o = np.where((m < 0).ravel()[None, :], Q0, o)
            res.append(o.reshape((B,) + m.shape))
        return tuple(res) if isinstance(out, tuple) else res[0]


def _non_float_out(t):
    import torch

    if isinstance(t, torch.Tensor):
        return t.detach().numpy().copy()
    return t


# ---------------------------------------------------------------- linear ops

_LINEAR = (
    "aten.index_add.default", "aten.index_add_.default", "aten.scatter_add.default", "aten.scatter_add_.default",
    "aten.upsample_linear1d.default", "aten.upsample_bilinear2d.default", "aten.upsample_trilinear3d.default",
    "aten.upsample_bicubic2d.default", "aten._upsample_bilinear2d_aa.default", "aten._upsample_bicubic2d_aa.default",
    "aten.upsample_linear1d.vec", "aten.upsample_bilinear2d.vec", "aten.upsample_trilinear3d.vec",
    "aten.upsample_bicubic2d.vec",
    "aten.max_pool2d_with_indices_backward.default", "aten.max_pool3d_with_indices_backward.default",
    "aten.native_dropout_backward.default", "aten.avg_pool2d_backward.default", "aten.avg_pool3d_backward.default",
    "aten._adaptive_avg_pool2d_backward.default", "aten._adaptive_avg_pool3d_backward.default",
    "aten.trace.default", "aten._unsafe_masked_index_put_accumulate.default", "aten.nansum.default",
    "aten.cumulative_trapezoid.x", "aten.trapezoid.x", "aten.trapz.x",
    "aten.cumulative_trapezoid.dx", "aten.trapezoid.dx", "aten.trapz.dx",
    "aten.deg2rad.default", "aten.rad2deg.default", "aten.sum_to_size.default",
    "aten.col2im.default", "aten.nll_loss_forward.default", "aten.nll_loss2d_forward.default",
    "aten._trilinear.default", "aten.embedding_dense_backward.default", "aten.select_backward.default",
    "aten.slice_backward.default",
    "aten.reflection_pad1d_backward.default", "aten.reflection_pad2d_backward.default",
    "aten.replication_pad1d_backward.default", "aten.replication_pad2d_backward.default",
    "aten.upsample_nearest1d_backward.default", "aten.upsample_nearest2d_backward.default",
)

_MAX_BASIS = 2048


def _probe(ctx, args, kwargs, lin):
    """Run the op in float64 with the object leaves numbered ``lin`` set from a vector and the other
    object leaves at their own values; returns ``call(vec) -> (outputs, is_tuple)``."""
    import torch
    import torch.utils._pytree as pytree

    func = ctx.aux["func"]
    dt = ctx.dtype if ctx.dtype is not None and ctx.dtype.is_floating_point else torch.float64

    def call(vec):
        off = [0]
        k_obj = [0]

        def to_t(v):
            if isinstance(v, np.ndarray):
                if v.dtype == object:
                    j = k_obj[0]
                    k_obj[0] += 1
                    if j in lin:
                        k = v.size
                        t = torch.from_numpy(vec[off[0]:off[0] + k].copy()).reshape(v.shape).to(dt)
                        off[0] += k
                        return t
                    return torch.from_numpy(np.array([float(e) for e in v.ravel()], dtype=np.float64)
                                            ).reshape(v.shape).to(dt)
                return torch.from_numpy(np.ascontiguousarray(v))
            return v

        out = func(*pytree.tree_map(to_t, args), **pytree.tree_map(to_t, kwargs))
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        return outs, isinstance(out, (tuple, list))

    return call


def _affine_fit(ctx, args, kwargs, lin):
    """The op as ``c0 + M x`` over the object leaves ``lin`` (x: their values, flattened), read off
    one-hot runs, or None when the framework's own output at the actual values disagrees (the op
    is not affine in those leaves)."""
    import torch

    leaves = _obj_leaves(args)
    n = sum(leaves[j].size for j in lin)
    if n > _MAX_BASIS:
        raise NotModelled(f"an affine op with {n} inputs (more than {_MAX_BASIS}) read off the framework")
    call = _probe(ctx, args, kwargs, lin)
    zero_outs, is_tuple = call(np.zeros(n))
    float_pos = [i for i, o in enumerate(zero_outs) if isinstance(o, torch.Tensor) and o.is_floating_point()]

    def flat(outs):
        return np.concatenate([outs[i].detach().to(torch.float64).reshape(-1).numpy() for i in float_pos]) \
            if float_pos else np.zeros(0)

    c0 = flat(zero_outs)
    cols = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        cols.append(flat(call(e)[0]) - c0)
    M = np.stack(cols, axis=1) if cols else np.zeros((c0.size, 0))
    if not (np.isfinite(M).all() and np.isfinite(c0).all()):
        return None
    xf = np.concatenate([np.asarray(leaves[j].mid, dtype=np.float64).ravel() if hasattr(leaves[j], "rad")
                         else np.array([float(v) for v in leaves[j].ravel()], dtype=np.float64) for j in lin]) \
        if lin else np.zeros(0)
    # the framework's own output agrees with c0 + M x at the actual values and at a fixed
    # pseudo-random point (a point alone can hide a non-linearity: x^2 = x at 0 and 1)
    rnd = np.random.default_rng(12345).integers(-7, 8, size=n) / 4.0
    for pt in (xf, rnd):
        fl = flat(call(pt)[0])
        if fl.size and (np.abs(c0 + M @ pt - fl) > 1e-6 * (np.abs(M) @ np.abs(pt) + np.abs(c0)) + 1e-12).any():
            return None
    shapes = [tuple(zero_outs[i].shape) for i in float_pos]
    return {"M": M, "c0": c0, "float_pos": float_pos, "shapes": shapes, "is_tuple": is_tuple,
            "zero_outs": zero_outs, "lin": lin}


def _linear_matrix(ctx, args, kwargs):
    """The op's affine form over all its float arguments jointly; else, for an op that is affine
    in each float argument with the others held fixed (a product: multilinear), one form per
    argument (``parts``): the value comes from the first, the derivative is the sum of the parts.
    Cached per evaluation (the forms depend only on the shapes and the arguments' values)."""
    cached = ctx.aux.get("affine")
    if cached is not None:
        return cached
    k = len(_obj_leaves(args))
    fit = _affine_fit(ctx, args, kwargs, list(range(k)))
    if fit is not None:
        fit["parts"] = [fit]
    elif k > 1:
        parts = [_affine_fit(ctx, args, kwargs, [j]) for j in range(k)]
        if parts[0] is not None:
            # affine in the first argument; the others may enter non-linearly (nll_loss's weights
            # divide): those may then carry no tangent
            fit = dict(parts[0])
            fit["parts"] = parts if all(p is not None for p in parts) else [parts[0]]
            fit["fixed"] = [] if all(p is not None for p in parts) else list(range(1, k))
    if fit is None:
        raise NotModelled("the op is not linear in its floating-point arguments")
    ctx.aux["affine"] = fit
    return fit


def _short_dyadic(M) -> bool:
    """Every coefficient a multiple of 2**-24 with a short significand (no rounded 1/3)."""
    m = np.abs(M[M != 0])
    if m.size == 0:
        return True
    mant, _ = np.frexp(m)
    return bool(np.all((mant * 2.0 ** 24) == np.round(mant * 2.0 ** 24)))


class LinearByBasis(Rule):
    """An op affine in its float arguments (or in its first one, the others fixed): ``c0 + M x``."""
    balls = True


    def forward(self, ctx, args, kwargs):
        leaves = _obj_leaves(args)
        if not leaves:
            return _run_ints(ctx, args, kwargs)
        f = _linear_matrix(ctx, args, kwargs)
        M, c0 = f["M"], f["c0"]
        x = np.concatenate([leaves[j].ravel() for j in f["lin"]]) if f["lin"] else np.zeros(0, dtype=object)
        if "exact" not in f:
            f["exact"] = (from_floats(M), from_floats(c0))
        Me, c0e = f["exact"]
        y = obj(matmul(Me, x) if M.size else np.zeros(M.shape[0], dtype=object))
        if c0.any():
            y = obj(y + c0e)
        if not (_short_dyadic(M) and _short_dyadic(c0)):
            ctx.aux["note"] = (f"{ctx.op.replace('aten.', '')}: its coefficients are taken as the float values "
                               "the kernel uses (not short dyadic numbers)")
        res, off = [], 0
        for i, o in enumerate(f["zero_outs"]):
            if i in f["float_pos"]:
                shp = f["shapes"][f["float_pos"].index(i)]
                k = int(np.prod(shp, dtype=np.int64))
                res.append(obj(y[off:off + k]).reshape(shp))
                off += k
            else:
                res.append(_non_float_out(o))
        return tuple(res) if f["is_tuple"] else res[0]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        from .._fastfloat import FT
        from ._util import zeros_t

        f = _linear_matrix(ctx, args, kwargs)
        leaves = tensor_leaves(args)
        tl = _tangent_leaves(args, targs)
        vals = [(v, t) for v, t in zip(leaves, tl) if v.dtype == object]
        if any(vals[j][1] is not None for j in f.get("fixed", ())):
            raise NotModelled("the derivative with respect to an argument the op is not linear in")
        Y = None
        for part in f["parts"]:
            live = [vals[j][1] for j in part["lin"] if vals[j][1] is not None]
            if not live:
                continue
            B = live[0].shape[0]
            T = np.concatenate([(vals[j][1] if vals[j][1] is not None
                                 else zeros_t(B, vals[j][0].shape, like=live[0])).reshape(B, -1)
                                for j in part["lin"]], axis=1)
            if isinstance(T, FT):
                from .._fastfloat import matmul as fmatmul, wrap

                y = fmatmul(T, wrap(np.ascontiguousarray(part["M"].T)))          # (B, m)
            else:
                if "exact" not in part:
                    part["exact"] = (from_floats(part["M"]), from_floats(part["c0"]))
                y = matmul(obj(T), np.ascontiguousarray(part["exact"][0].T))
            Y = y if Y is None else Y + y
        if Y is None:
            return None
        B = Y.shape[0]
        res, off = [], 0
        for i in range(len(f["zero_outs"])):
            if i in f["float_pos"]:
                shp = f["shapes"][f["float_pos"].index(i)]
                k = int(np.prod(shp, dtype=np.int64))
                res.append(Y[:, off:off + k].reshape((B,) + shp))
                off += k
            else:
                res.append(None)
        return tuple(res) if f["is_tuple"] else res[0]


    def vjp(self, ctx, args, kwargs, out, cot):
        """The transpose of :meth:`jvp`: ``cot @ M`` per part, split among its linear arguments."""
        f = _linear_matrix(ctx, args, kwargs)
        leaves = tensor_leaves(args)
        fl = [i for i, v in enumerate(leaves) if v.dtype == object]       # float leaves (vals order)
        cots = cot if isinstance(cot, tuple) else (cot,)
        live = [c for c in cots if c is not None]
        if not live:
            return [None] * len(leaves)
        B = live[0].shape[0]
        blocks = []
        for i in range(len(f["zero_outs"])):
            if i in f["float_pos"]:
                shp = f["shapes"][f["float_pos"].index(i)]
                k = int(np.prod(shp, dtype=np.int64))
                c = cots[i] if i < len(cots) else None
                blocks.append(c.reshape(B, k) if c is not None else np.zeros((B, k), dtype=np.int64))
        C = blocks[0] if len(blocks) == 1 else np.concatenate([obj(b) for b in blocks], axis=1)
        live_args = ctx.aux.get("live")
        res = [None] * len(leaves)
        for part in f["parts"]:
            if "exact" not in part:
                part["exact"] = (from_floats(part["M"]), from_floats(part["c0"]))
            G = matmul(obj(C), part["exact"][0])                              # (B, n_part)
            off = 0
            for j in part["lin"]:
                v = leaves[fl[j]]
                g = G[:, off:off + v.size].reshape((B,) + v.shape)
                off += v.size
                res[fl[j]] = g if res[fl[j]] is None else res[fl[j]] + g
        for j in f.get("fixed", ()):
            res[fl[j]] = None
        del live_args
        return res


# ---------------------------------------------------------------- registration

class AccumulateOrMove(Rule):
    """index_put / put: a movement, or with ``accumulate=True`` a linear op (sums)."""

    _move = FilledIndexMap()
    _lin = LinearByBasis()

    def _pick(self, ctx, args, kwargs):
        acc = _arg(args, kwargs, _ACCUMULATE_ARG[ctx.op], False)
        return self._lin if acc else self._move

    def forward(self, ctx, args, kwargs):
        return self._pick(ctx, args, kwargs).forward(ctx, args, kwargs)

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        return self._pick(ctx, args, kwargs).jvp(ctx, args, kwargs, out, targs, tkwargs)


def register_new(*names):
    """``register`` for the names no other module models yet (another module's rule wins: this
    file is imported last, and ops may move to a dedicated rule without breaking the registry)."""
    from . import _RULES

    return register(*[n for n in dict.fromkeys(names) if n not in _RULES])


class FilledIndexMapBalls(FilledIndexMap):
    """The same index map, declared to move enclosures as it moves exact values: the pads before
    an FFT in ``stft`` (whose enclosed values make every tangent an enclosure), and the trace's
    write-back of an in-place write through a view (mtcheck/trace.py, ``_write_back``: an LSTM's
    gates written into slices of a buffer)."""

    balls = True


_MOVES_BALLS = ("aten.reflection_pad1d.default", "aten.reflection_pad2d.default", "aten.reflection_pad3d.default",
                "aten.replication_pad1d.default", "aten.replication_pad2d.default",
                "aten.replication_pad3d.default", "aten.as_strided_scatter.default")
register_new(*[k for k in _FILLED if k not in _ACCUMULATE_ARG and k not in _MOVES_BALLS])(FilledIndexMap)
register_new(*_MOVES_BALLS)(FilledIndexMapBalls)
register_new(*_ACCUMULATE_ARG)(AccumulateOrMove)
register_new(*_LINEAR)(LinearByBasis)

"""Grid sampling (``grid_sampler_2d`` / ``grid_sampler_3d``, behind ``F.grid_sample``), exactly.

Every value is a piecewise polynomial of the input and the grid with rational coefficients, so
nothing here is irrational:

* The unnormalised source coordinate is affine in the grid value ``g``: ``u = (g + 1) (size - 1) / 2``
  (align_corners) or ``u = ((g + 1) size - 1) / 2``. Border padding clips it to ``[0, size - 1]``,
  reflection padding reflects it (about ``0`` and ``size - 1`` with align_corners, about ``-1/2``
  and ``size - 1/2`` without) and then clips: piecewise affine in ``g``, with kinks.
* Bilinear (trilinear) interpolation is ``sum_j x[j] hat(u_c - j)`` per dimension: a polynomial of
  ``(x, g)`` inside a cell ``floor(u_c) = k``, and continuous across cells (the weight of the tap
  that enters or leaves is 0 there). A cell boundary, ``u_c`` an integer, is a *kink* (a tie), not a
  jump. For every padding mode the kinks in ``u`` (cell boundaries and the clip/reflection kinks)
  are integers: reflection about an integer or a half-integer maps integers to integers, and the
  reflection points about half-integers fall inside the flat (clipped) stretches ``[-1, 0]`` and
  ``[size - 1, size]``. The relevant integers are ``[-1, size]`` for zero padding (beyond them every
  tap is 0), ``[0, size - 1]`` for border padding, all of them for reflection padding, none when
  the coordinate is constant (size 1 with border/reflection padding, or align_corners with size 1).
  The case of a coordinate is the pair ``g - g(a) >= 0 > g - g(b)`` for the neighbouring relevant
  integers ``a < b`` (``g(a)`` the grid value at which ``u = a``): the discriminants, with a zero a
  tie, and the derivative row the grid's own tangent.
* Bicubic interpolation (2-D only) is ``sum_j x[pad(j)] W(u - j)`` with the cubic convolution kernel
  ``W`` (``A = -3/4``), padding applied to the integer tap indices and not to ``u``. ``W`` is C^1,
  so the output is C^1 in ``(x, g)`` (piecewise cubic with continuous first derivatives): no
  case at all.
* Nearest interpolation reads ``x[round(u_c)]``: locally constant in the grid away from the
  half-integers, where it jumps (refused with :class:`~mtcheck.errors.OutsideTheoryError` when the
  two candidate taps read different input positions; two out-of-range taps both read 0).

Zero padding makes an out-of-range tap 0. The framework's own float values are never used.

PyTorch computes the source coordinate in float inside the op, so a coordinate whose exact value
lies within that computation's rounding error of a case boundary (an integer for bilinear, a
half-integer for nearest) but not on it may sit on the other side in the framework: at the
checked point (the first evaluation of the node) that is undecided (an UNKNOWN verdict naming the
sample point), never a false alarm. Exact ties are computed exactly by the framework as well.

``aten.affine_grid_generator`` (``F.affine_grid``) is modelled here too: linear in theta, with the
exact base points ``(2i - n + 1) / n`` (``/ (n - 1)`` with align_corners) that PyTorch rounds.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from . import Disc, NotLipschitz, NotModelled, Rule, register
from .._exact import Q, Q0, Q1, as_exact, objects, q, zeros
from ._util import arg_grads, obj, zeros_like_cot

_HALF = Q(1, 2)
_A = Q(-3, 4)          # PyTorch's cubic convolution constant
_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
_PADS = {0: "zeros", 1: "border", 2: "reflection"}


def _scale(size, align):
    """du/dg."""
    return Q(size - 1, 2) if align else Q(size, 2)


def _offset(align):
    return Q0 if align else -_HALF


def _reflect(u, twice_low, twice_high):
    """PyTorch's ``reflect_coordinates`` exactly: (value, slope in {-1, 0, 1})."""
    if twice_low == twice_high:
        return Q0, 0
    mn = Q(twice_low, 2)
    span = Q(twice_high - twice_low, 2)
    d = u - mn
    sg = 1
    if d < 0:
        d, sg = -d, -1
    flips = int(math.floor(d / span))
    extra = d - flips * span
    if flips % 2 == 0:
        return extra + mn, sg
    return span - extra + mn, -sg


def _clip(v, size):
    """(clip(v, 0, size - 1), inside) as PyTorch's clip_coordinates_set_grad (slope 0 at the ends)."""
    if v <= 0:
        return Q0, False
    if v >= size - 1:
        return q(size - 1), False
    return v, True


def _source(g, size, align, pad):
    """(u_c, du_c/dg) for bilinear and nearest: the padded source coordinate."""
    s = _scale(size, align)
    u = (g + 1) * s + _offset(align)
    if pad == "zeros":
        return u, s
    if pad == "border":
        v, inside = _clip(u, size)
        return v, (s if inside else Q0)
    r, sg = _reflect(u, 0, 2 * (size - 1)) if align else _reflect(u, -1, 2 * size - 1)
    v, inside = _clip(r, size)
    return v, (s * sg if inside else Q0)


def _tap(j, size, align, pad):
    """The input position an integer tap ``j`` reads (bicubic's padding), -1 for a zero."""
    if pad == "zeros":
        return j if 0 <= j < size else -1
    if pad == "border":
        return min(max(j, 0), size - 1)
    r, _ = _reflect(q(j), 0, 2 * (size - 1)) if align else _reflect(q(j), -1, 2 * size - 1)
    v, _ = _clip(r, size)
    return int(v)


def _breakpoints(size, align, pad):
    """The range (lo, hi) of integers of u that are cases (None: unbounded), or None for no case."""
    if align and size == 1:
        return None                           # u = 0 whatever the grid
    if pad == "zeros":
        return (-1, size)
    if size == 1:
        return None                           # clipped to 0
    if pad == "border":
        return (0, size - 1)
    return (None, None)


def _cc1(x):
    return ((_A + 2) * x - (_A + 3)) * x * x + 1


def _dcc1(x):
    return 3 * (_A + 2) * x * x - 2 * (_A + 3) * x


def _cc2(x):
    return ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A


def _dcc2(x):
    return 3 * _A * x * x - 10 * _A * x + 8 * _A


def _cubic(t):
    """The four cubic convolution coefficients at offset ``t`` in [0, 1) and their t-derivatives."""
    w = [_cc2(t + 1), _cc1(t), _cc1(1 - t), _cc2(2 - t)]
    dw = [_dcc2(t + 1), _dcc1(t), -_dcc1(1 - t), -_dcc2(2 - t)]
    return w, dw


def _args(args, kwargs):
    mode = args[2] if len(args) > 2 else kwargs.get("interpolation_mode", 0)
    pad = args[3] if len(args) > 3 else kwargs.get("padding_mode", 0)
    align = args[4] if len(args) > 4 else kwargs.get("align_corners", False)
    return int(mode), int(pad), bool(align)


class _Plan:
    """Per sample point (row r = n * P + p): taps ``idx`` (R, K) as flat spatial positions (-1: a
    zero), weights ``w`` (R, K) and their derivatives ``dw`` (R, K, nsp) along each grid component."""

    def __init__(self, idx, w, dw, discs, jump=None):
        self.idx, self.w, self.dw, self.discs = idx, w, dw, discs
        self.jump = jump            # nearest on a jump: why (raised once the grid is known to move)


def _near(op, v, target, bound, r, P, what):
    """Undecided when the exact coordinate ``v`` is not on ``target`` (an integer or a half-integer)
    but within ``bound`` of it: the framework's float coordinate may round onto the other side, so
    which piece the framework used is not decided by the exact value."""
    d = abs(v - target)
    if d != 0 and d <= bound:
        from .._ball import Undecided

        n, p = divmod(r, P)
        raise Undecided(f"{op}: sample point {p} of batch {n} has a source coordinate {float(d):.3g} from {what} "
                        f"{target}, within the rounding error of the framework's float coordinate")


def _plan(op, x_shape, grid, mode, pad, align, nsp, eps=None):
    """``eps``: the unit of the framework's float coordinate for the rounding check (None: none)."""
    sp = tuple(x_shape[2:])
    N = x_shape[0]
    P = int(np.prod(grid.shape[1:-1], dtype=np.int64))
    R = N * P
    g = grid.reshape(R, nsp)
    strides = [int(np.prod(sp[j + 1:], dtype=np.int64)) for j in range(nsp)]
    # per spatial dim j (grid component nsp - 1 - j): taps, weights, derivatives
    per = []
    disc_parts = []                 # (row, comp, breakpoint grid value, value)
    for j in range(nsp):
        size = int(sp[j])
        comp = nsp - 1 - j
        K = {"bilinear": 2, "nearest": 1, "bicubic": 4}[mode]
        T = np.full((R, K), -1, dtype=np.int64)
        W = np.empty((R, K), dtype=object)
        D = np.empty((R, K), dtype=object)
        alt = {}                    # nearest on a half-integer: row -> the other candidate tap
        s = _scale(size, align)
        off = _offset(align)
        bp = _breakpoints(size, align, pad) if mode == "bilinear" else None
        for r in range(R):
            gv = g[r, comp]
            if mode == "bicubic":
                u = (gv + 1) * s + off
                k = int(math.floor(u))
                w, dw = _cubic(u - k)
                for i in range(4):
                    T[r, i] = _tap(k - 1 + i, size, align, pad)
                    W[r, i] = w[i]
                    D[r, i] = dw[i] * s
                continue
            v, dv = _source(gv, size, align, pad)
            k = int(math.floor(v))
            # a bound on |float coordinate - exact coordinate|: a few roundings of values below this
            bound = None if eps is None else 16 * eps * ((abs(gv) + 1) * s + size + 1)
            if mode == "nearest":
                if bound is not None and (0 <= k < size or 0 <= k + 1 < size):   # two zero taps: no jump
                    _near(op, v, k + _HALF, bound, r, P, "the half-integer")
                frac = v - k
                if frac == _HALF:
                    # the framework's choice (nearbyint: half to even); the other tap is the jump's
                    kk, other = (k, k + 1) if k % 2 == 0 else (k + 1, k)
                    alt[r] = other if 0 <= other < size else -1
                else:
                    kk = k if frac < _HALF else k + 1
                T[r, 0] = kk if 0 <= kk < size else -1
                W[r, 0] = Q1
                D[r, 0] = Q0
                continue
            T[r, 0] = k if 0 <= k < size else -1
            T[r, 1] = k + 1 if 0 <= k + 1 < size else -1
            W[r, 0] = (k + 1) - v
            W[r, 1] = v - k
            D[r, 0] = -dv
            D[r, 1] = dv
            if bp is not None:
                u = (gv + 1) * s + off
                lo, hi = bp
                ku = int(math.floor(u))
                a = ku if (lo is None or ku >= lo) and (hi is None or ku <= hi) else (hi if hi is not None and ku > hi else None)
                b = ku + 1 if (lo is None or ku + 1 >= lo) and (hi is None or ku + 1 <= hi) else (lo if lo is not None and ku + 1 < lo else None)
                for brk in (a, b):
                    if brk is not None:
                        if bound is not None:
                            _near(op, u, q(brk), bound, r, P, "the cell boundary")
                        gb = (q(brk) - off) / s - 1
                        disc_parts.append((r, comp, gb, gv - gb))
        per.append((T, W, D, alt, strides[j]))
    jump = _nearest_jumps(op, per, R, P) if mode == "nearest" else None
    # combine the dims: K = prod K_j taps per row
    idx = np.zeros((R, 1), dtype=np.int64)
    valid = np.ones((R, 1), dtype=bool)
    w = np.full((R, 1), Q1, dtype=object)
    dws = [np.full((R, 1), Q1, dtype=object) for _ in range(nsp)]   # indexed by spatial dim j
    for j, (T, W, D, _alt, stride) in enumerate(per):
        idx = (idx[:, :, None] + np.where(T >= 0, T, 0)[:, None, :] * stride).reshape(R, -1)
        valid = (valid[:, :, None] & (T >= 0)[:, None, :]).reshape(R, -1)
        new_dws = []
        for i in range(nsp):
            f = D if i == j else W
            new_dws.append((dws[i][:, :, None] * f[:, None, :]).reshape(R, -1))
        dws = new_dws
        w = (w[:, :, None] * W[:, None, :]).reshape(R, -1)
    idx = np.where(valid, idx, -1)
    zero = np.zeros(w.shape, dtype=object)
    zero[...] = Q0
    w = np.where(valid, w, zero)
    dw = np.stack([np.where(valid, dws[nsp - 1 - c], zero) for c in range(nsp)], axis=-1)   # by grid component
    discs = None
    if disc_parts:
        rows = np.array([p[0] for p in disc_parts], dtype=np.int64)
        comps = np.array([p[1] for p in disc_parts], dtype=np.int64)
        const = objects([p[2] for p in disc_parts])
        vals = objects([p[3] for p in disc_parts])
        discs = (rows, comps, const, vals)
    return _Plan(idx, w, dw, discs, jump)


def _nearest_jumps(op, per, R, P):
    """Why a sample point is on a jump of nearest interpolation (a half-integer coordinate whose two
    candidate taps make the point read different input positions), or None. It is a jump of the
    program only where the grid depends on the inputs: with a constant grid the op is a fixed
    gather (the framework's tap), so the refusal waits for the derivatives (jvp / vjp), which know."""
    rows = set()
    for (_T, _W, _D, alt, _s) in per:
        rows.update(alt)
    for r in sorted(rows):
        combos = [()]
        for (T, _W, _D, alt, stride) in per:
            cands = [int(T[r, 0])] + ([alt[r]] if r in alt else [])
            combos = [c + (t,) for c in combos for t in cands]
        reads = set()
        for c in combos:
            if any(t < 0 for t in c):
                reads.add(None)
            else:
                reads.add(sum(t * per[j][4] for j, t in enumerate(c)))
        if len(reads) > 1:
            n, p = divmod(r, P)
            return (f"{op} with nearest interpolation jumps where a source coordinate is a "
                    f"half-integer, and sample point {p} of batch {n} sits on one; away from "
                    "the half-integers it is locally constant in the grid and is checked")
    return None


_SEEN: dict = {}       # id(recorded output) -> weakref to it: nodes already evaluated once


def _first_evaluation(ctx) -> bool:
    """Whether this is the first evaluation of the node (the exact forward at the checked point,
    which the checker runs first): only there is a coordinate within rounding of a cell boundary
    undecided. Later evaluations (the framework's own float arguments, moved points along a
    direction) take the exact case of their arguments: the framework-argument pass then reports a
    rounding branch where its case differs, and raising there would escape the checker. A rule
    called without a trace (no recorded output) always checks."""
    import weakref

    rec = ctx.recorded
    if rec is None:
        return True
    if isinstance(rec, (tuple, list)):
        rec = rec[0]
    hit = _SEEN.get(id(rec))
    if hit is not None and hit() is rec:
        return False
    try:
        _SEEN[id(rec)] = weakref.ref(rec)
    except TypeError:          # pragma: no cover - recorded outputs are tensors
        return True
    if len(_SEEN) > 4096:
        for k in [k for k, r in _SEEN.items() if r() is None]:
            del _SEEN[k]
    return True


class _GridSampler(Rule):
    nonsmooth = True
    nsp = 2

    def _get(self, ctx, args, kwargs):
        p = ctx.aux.get("plan")
        if p is None:
            x, grid = args[0], args[1]
            if not isinstance(x, np.ndarray) or not isinstance(grid, np.ndarray):
                raise NotModelled(f"{ctx.op} without tensor input and grid")
            mode, pad, align = _args(args, kwargs)
            if mode not in _MODES or pad not in _PADS:
                raise NotModelled(f"{ctx.op} with interpolation mode {mode} / padding mode {pad}")
            if mode == 2 and self.nsp != 2:
                raise NotModelled(f"{ctx.op} with bicubic interpolation (PyTorch has none in 3-D)")
            nsp = self.nsp
            if x.ndim != nsp + 2 or grid.ndim != nsp + 2 or grid.shape[-1] != nsp or grid.shape[0] != x.shape[0]:
                raise NotModelled(f"{ctx.op} with input shape {x.shape} and grid shape {grid.shape}")
            gx = grid if grid.dtype == object else as_exact(grid)
            eps = None
            if _first_evaluation(ctx):
                eps = Q(*float(np.finfo(np.float64).eps).as_integer_ratio())
                if ctx.dtype is not None and getattr(ctx.dtype, "is_floating_point", False):
                    import torch

                    eps = Q(*float(torch.finfo(ctx.dtype).eps).as_integer_ratio())
            p = ctx.aux["plan"] = _plan(ctx.op, x.shape, gx, _MODES[mode], _PADS[pad], align, nsp, eps)
        return p

    def _gather(self, x2, plan, P):
        """x2 (..., N, S, C) -> values at the taps (..., R, K, C), 0 at a zero tap."""
        R = plan.idx.shape[0]
        n_of = np.arange(R) // P
        safe = np.where(plan.idx >= 0, plan.idx, 0)
        return x2[..., n_of[:, None], safe, :]

    def _layout(self, x):
        N, C = x.shape[0], x.shape[1]
        S = int(np.prod(x.shape[2:], dtype=np.int64))
        return N, C, S

    def forward(self, ctx, args, kwargs):
        x, grid = args[0], args[1]
        plan = self._get(ctx, args, kwargs)
        N, C, S = self._layout(x)
        xo = x if x.dtype == object else as_exact(x)
        out_sp = tuple(grid.shape[1:-1])
        P = int(np.prod(out_sp, dtype=np.int64))
        R = N * P
        if R == 0 or C == 0:
            return zeros((N, C) + out_sp)
        x2 = xo.reshape(N, C, S).transpose(0, 2, 1)           # (N, S, C)
        vals = self._gather(x2, plan, P)                        # (R, K, C)
        acc = None
        for k in range(plan.idx.shape[1]):
            term = vals[:, k, :] * plan.w[:, k][:, None]
            acc = term if acc is None else acc + term
        ctx.aux["vals"] = vals
        return obj(acc).reshape(N, P, C).transpose(0, 2, 1).reshape((N, C) + out_sp)

    def _grid_coeff(self, ctx, args, kwargs):
        """d out / d grid component: (R, C, nsp)."""
        c = ctx.aux.get("gcoeff")
        if c is None:
            plan = self._get(ctx, args, kwargs)
            vals = ctx.aux.get("vals")
            if vals is None:
                self.forward(ctx, args, kwargs)
                vals = ctx.aux["vals"]
            parts = []
            for comp in range(self.nsp):
                acc = None
                for k in range(plan.idx.shape[1]):
                    term = vals[:, k, :] * plan.dw[:, k, comp][:, None]
                    acc = term if acc is None else acc + term
                parts.append(np.asarray(acc, dtype=object))
            c = ctx.aux["gcoeff"] = np.stack(parts, axis=-1)
        return c

    def discs(self, ctx, args, kwargs, out):
        plan = self._get(ctx, args, kwargs)
        if plan.discs is None:
            return []
        rows, comps, const, vals = plan.discs
        x, grid = args[0], args[1]
        N, C, _S = self._layout(x)
        P = int(np.prod(grid.shape[1:-1], dtype=np.int64))
        n, p = rows // P, rows % P
        return [Disc("cell", 1, rows * self.nsp + comps, None, None, const, vals, n * C * P + p)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        x, grid = args[0], args[1]
        tx = targs[0] if len(targs) > 0 else None
        tg = targs[1] if len(targs) > 1 else None
        if tx is None and tg is None:
            return None
        plan = self._get(ctx, args, kwargs)
        if tg is not None and plan.jump:
            raise NotLipschitz(plan.jump)
        N, C, S = self._layout(x)
        out_sp = tuple(grid.shape[1:-1])
        P = int(np.prod(out_sp, dtype=np.int64))
        R = N * P
        like = tx if tx is not None else tg
        B = like.shape[0]
        if R == 0 or C == 0:
            from ._util import zeros_t

            return zeros_t(B, (N, C) + out_sp, like)
        res = None
        if tx is not None:
            t2 = tx.reshape(B, N, C, S).transpose(0, 1, 3, 2)      # (B, N, S, C)
            tv = self._gather(t2, plan, P)                          # (B, R, K, C)
            for k in range(plan.idx.shape[1]):
                term = tv[:, :, k, :] * plan.w[:, k][None, :, None]
                res = term if res is None else res + term
        if tg is not None:
            coeff = self._grid_coeff(ctx, args, kwargs)             # (R, C, nsp)
            t2 = tg.reshape(B, R, self.nsp)
            for comp in range(self.nsp):
                term = t2[:, :, comp][:, :, None] * coeff[None, :, :, comp]
                res = term if res is None else res + term
        return res.reshape(B, N, P, C).transpose(0, 1, 3, 2).reshape((B, N, C) + out_sp)

    def _sparse_vjp(self, plan, c2, gx, gg, P, S, ctx, args, kwargs) -> bool:
        """The reverse pass over the nonzero cotangent entries only (the model's seeds are rows of
        the identity: one nonzero each), for rationals and fixed point; False when it does not pay."""
        from .._fixed import Fx

        if not (type(c2) is np.ndarray or isinstance(c2, Fx)):
            return False
        nz = np.asarray(c2 != 0, dtype=bool)
        b_i, r_i, c_i = np.nonzero(nz)
        if b_i.size * 4 > c2.size:
            return False
        if b_i.size == 0:
            return True
        vals = c2[b_i, r_i, c_i]
        n_of = r_i // P
        for k in range(plan.idx.shape[1]):
            taps = plan.idx[r_i, k]
            ok = taps >= 0
            if ok.any():
                np.add.at(gx, (b_i[ok], n_of[ok] * S + taps[ok], c_i[ok]), vals[ok] * plan.w[r_i[ok], k])
        coeff = self._grid_coeff(ctx, args, kwargs)
        for comp in range(self.nsp):
            np.add.at(gg, (b_i, r_i, np.full(b_i.shape, comp)), vals * coeff[r_i, c_i, comp])
        return True

    def vjp(self, ctx, args, kwargs, out, cot):
        x, grid = args[0], args[1]
        plan = self._get(ctx, args, kwargs)
        live = ctx.aux.get("live")
        if plan.jump and (live is None or len(live) < 2 or live[1]):
            raise NotLipschitz(plan.jump)
        N, C, S = self._layout(x)
        out_sp = tuple(grid.shape[1:-1])
        P = int(np.prod(out_sp, dtype=np.int64))
        R = N * P
        B = cot.shape[0]
        c2 = cot.reshape(B, N, C, P).transpose(0, 1, 3, 2).reshape(B, R, C)
        gx = zeros_like_cot((B, N * S, C), cot)
        gg = zeros_like_cot((B, R, self.nsp), cot)
        if R and C and self._sparse_vjp(plan, c2, gx, gg, P, S, ctx, args, kwargs):
            pass
        elif R and C:
            n_of = np.arange(R) // P
            for k in range(plan.idx.shape[1]):
                ok = plan.idx[:, k] >= 0
                if not ok.any():
                    continue
                pos = n_of[ok] * S + plan.idx[ok, k]
                np.add.at(gx, (slice(None), pos), c2[:, ok, :] * plan.w[ok, k][None, :, None])
            coeff = self._grid_coeff(ctx, args, kwargs)
            for comp in range(self.nsp):
                acc = None
                for c in range(C):
                    term = c2[:, :, c] * coeff[None, :, c, comp]
                    acc = term if acc is None else acc + term
                gg[:, :, comp] = acc
        gx = gx.reshape(B, N, S, C).transpose(0, 1, 3, 2).reshape((B,) + x.shape)
        return arg_grads(args, {0: gx, 1: gg.reshape((B,) + grid.shape)})


@register("aten.grid_sampler_2d.default")
class GridSampler2d(_GridSampler):
    nsp = 2


@register("aten.grid_sampler_3d.default")
class GridSampler3d(_GridSampler):
    nsp = 3


# ---------------------------------------------------------------- affine grids (F.affine_grid)

def _linspace(n, align):
    """PyTorch's ``linspace_from_neg_one`` exactly: -1 + 2i/(n-1), times (n-1)/n without align_corners."""
    if n <= 1:
        return [Q0]
    return [Q(2 * i - n + 1, (n - 1) if align else n) for i in range(n)]


def _base_grid(size, align):
    """(P, nsp + 1): the homogeneous coordinates (x, y[, z], 1) of every output point, x fastest."""
    sp = [int(s) for s in size[2:]]
    axes = [_linspace(n, align) for n in sp]                   # D, H, W order
    rows = []
    for pt in itertools.product(*axes):
        rows.append(list(reversed(pt)) + [Q1])                 # (x, y[, z]) = reversed spatial order
    P = len(rows)
    return objects([v for r in rows for v in r]).reshape(P, len(sp) + 1) if P else zeros((0, len(sp) + 1))


@register("aten.affine_grid_generator.default")
class AffineGridGenerator(Rule):
    """grid[n, p, i] = sum_j base[p, j] theta[n, i, j]: linear in theta, with exact rational base
    points (PyTorch rounds them in float where n - 1 or n is not a power of 2)."""

    def _parts(self, args, kwargs):
        theta = args[0]
        size = list(args[1] if len(args) > 1 else kwargs["size"])
        align = bool(args[2] if len(args) > 2 else kwargs.get("align_corners", False))
        if len(size) not in (4, 5) or not isinstance(theta, np.ndarray):
            raise NotModelled(f"affine_grid_generator with size {size}")
        nsp = len(size) - 2
        if theta.shape != (size[0], nsp, nsp + 1):
            raise NotModelled(f"affine_grid_generator with theta of shape {theta.shape} for size {size}")
        return theta, size, align, nsp

    def _apply(self, th, base, lead, out_shape):
        """th (*lead, N, nsp, nsp + 1) -> (*lead, N, P, nsp)."""
        acc = None
        for j in range(base.shape[1]):
            term = th[..., None, :, j] * base[:, j][:, None]
            acc = term if acc is None else acc + term
        return acc.reshape(lead + out_shape)

    def forward(self, ctx, args, kwargs):
        theta, size, align, nsp = self._parts(args, kwargs)
        base = _base_grid(size, align)
        th = theta if theta.dtype == object else as_exact(theta)
        out_shape = (size[0],) + tuple(size[2:]) + (nsp,)
        if base.shape[0] == 0 or size[0] == 0:
            return zeros(out_shape)
        return obj(self._apply(th, base, (), out_shape))

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0] if targs else None
        if t is None:
            return None
        theta, size, align, nsp = self._parts(args, kwargs)
        base = _base_grid(size, align)
        out_shape = (size[0],) + tuple(size[2:]) + (nsp,)
        if base.shape[0] == 0 or size[0] == 0:
            from ._util import zeros_t

            return zeros_t(t.shape[0], out_shape, t)
        return self._apply(t, base, (t.shape[0],), out_shape)

    def vjp(self, ctx, args, kwargs, out, cot):
        theta, size, align, nsp = self._parts(args, kwargs)
        base = _base_grid(size, align)
        B = cot.shape[0]
        P = base.shape[0]
        c = cot.reshape(B, size[0], P, nsp)
        g = zeros_like_cot((B,) + theta.shape, cot)
        if P:
            for j in range(nsp + 1):
                g[..., j] = (c * base[:, j][None, None, :, None]).sum(axis=2)
        return arg_grads(args, {0: g})

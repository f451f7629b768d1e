"""Exact ties behind a fused multiply-add convolution: a short last term.

On the CPU builds we measured (torch 2.13, oneDNN), a float32 convolution computes every output
element as one fused multiply-add chain: ``c = bias``, then ``c = fma(a_t, w_t, c)`` for the
products in (kh, kw, c_in) order. Its result is exactly 0.0 only when the exact value of the last
FMA with a nonzero activation, ``a_T * w_T + c_{T-1}``, is exactly 0, i.e. ``c_{T-1} = -a_T * w_T``
with ``c_{T-1}`` a float. When ``a_T`` is a full-mantissa activation (a conv after a conv), the
product has ~48 significant bits and is never a float: no input ties such a unit in PyTorch's float
forward, however exactly it ties in rational arithmetic. That is why the lattice search of
:mod:`mtcheck._synth` never found a float tie at LeNet's second convolution.

The construction here (:func:`fma_conv_tie`), for a relu target fed by a convolution of hidden
activations (float32):

1. At the seed, for a candidate output unit ``u``, the chain's last term with a nonzero float
   activation, ``T`` (in the order above; :func:`_chain_order_ok` first checks that order bit for
   bit against PyTorch's own output on this program, and the construction is not used otherwise).
2. A *short* value ``v`` near ``a_T``: ``m * 2^e`` (m odd, small) with ``v * w_T`` a float32.
3. One input pixel ``q`` that ``a_T`` depends on (float64 gradient of the replay): a monotone 1-D
   bisection over the float32 values of ``x_q`` until PyTorch's float forward gives ``a_T == v``
   exactly (replayed op by op, the same ATen calls). The terms after ``T`` must still be 0.
4. Free directions: the pixels ``u`` depends on, except those ``a_T`` depends on (they stay fixed,
   so ``a_T`` stays ``v`` in float). The exact tie equation of ``u`` along them, its lattice of
   exact solutions, and the float search of that lattice of :func:`mtcheck._synth._float_lattice_search`:
   each lattice point is an exact tie while the pattern holds, and now the float forward can tie
   too (``c_{T-1}`` must land on the float ``-v * w_T``; each lattice point rounds differently).
5. Every hit is decided by :func:`mtcheck._synth._confirm`: the exact evaluation (the relu input
   is 0 in rationals) and a fresh trace of PyTorch's float forward, same pattern everywhere.

The same chain model gives *float-only* (rounding-induced) ties at these relus
(:func:`fma_float_tie`, called first by :func:`mtcheck.float_ties.float_tie`): with ``a_T`` short,
the float partial sum ``c_{T-1}`` only has to land on the float ``-a_T * w_T``, which the chain's
earlier roundings reach (a bisection over one pixel's float32 values, other roundings tried when
the float value jumps over 0.0) while the exact partial sum does not: PyTorch's float relu input
is 0.0 and its exact value is not.

Floats only search here; exact arithmetic and the fresh float trace decide.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import torch

from ._exact import from_tensor

_CONV = "aten.convolution.default"
FMA_SECONDS = 2.0          # time for the construction before the generic float path takes over
FMA_UNITS = 16             # candidate units tried


def _conv_producer(prog, node):
    """The convolution node feeding relu ``node`` (a hidden activation as its input), or None."""
    from .trace import Ref

    nd = prog.trace.nodes[node]
    if "relu" not in str(nd.op) or not nd.args or not isinstance(nd.args[0], Ref) or nd.args[0].kind != "node":
        return None
    cn = prog.trace.nodes[nd.args[0].index]
    if str(cn.op) != _CONV or len(cn.args) < 9:
        return None
    inp, w, b, stride, pad, dil, transposed, _, groups = cn.args[:9]
    if transposed or groups != 1 or not isinstance(inp, Ref) or inp.kind not in ("node", "in"):
        return None
    if not isinstance(w, Ref) or w.kind != "const" or not isinstance(b, Ref) or b.kind != "const":
        return None
    W = prog.trace.consts[w.index]
    if W.dim() != 4 or W.dtype != torch.float32:
        return None
    return cn


def _r32(fr: Fraction) -> float:
    """``fr`` rounded to float32, to nearest, ties to even (for the order check only)."""
    f = np.float32(float(fr))
    best = None
    for c in (np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))):
        key = (abs(Fraction(float(c)) - fr), int(np.frombuffer(c.tobytes(), np.uint32)[0]) & 1)
        if best is None or key < best[0]:
            best = (key, c)
    return float(best[1])


class _Conv:
    """Geometry of one convolution node and its float values at one input."""

    def __init__(self, prog, cn):
        inp, w, b, stride, pad, dil = cn.args[:6]
        self.inp = inp
        self.W = prog.trace.consts[w.index].detach()
        self.b = prog.trace.consts[b.index].detach()
        self.stride, self.pad, self.dil = list(stride), list(pad), list(dil)
        self.Wn = self.W.numpy()
        self.bn = self.b.numpy()

    def terms(self, A, o, i, j):
        """[(kh, kw, c, y, x)] of unit (o, i, j) in the chain order (padding skipped)."""
        _, C, H, Wd = A.shape
        _, _, KH, KW = self.W.shape
        out = []
        for kh in range(KH):
            y = i * self.stride[0] + kh * self.dil[0] - self.pad[0]
            if not 0 <= y < H:
                continue
            for kw in range(KW):
                x = j * self.stride[1] + kw * self.dil[1] - self.pad[1]
                if not 0 <= x < Wd:
                    continue
                for c in range(C):
                    out.append((kh, kw, c, y, x))
        return out

    def chain(self, A, o, i, j) -> float:
        """The (kh, kw, c)-order, bias-first FMA chain of unit (o, i, j), rounded exactly."""
        c = float(self.bn[o])
        for kh, kw, ch, y, x in self.terms(A, o, i, j):
            c = _r32(Fraction(float(A[0, ch, y, x])) * Fraction(float(self.Wn[o, ch, kh, kw])) + Fraction(c))
        return c


def _chain_order_ok(prog, cn, conv, A, Y, rng) -> bool:
    """Whether PyTorch's float convolution is the (kh, kw, c) bias-first FMA chain here, bit for bit
    on a few sampled units (cached on the program: one check per conv node)."""
    cache = prog.__dict__.setdefault("_fma_order", {})
    if cn.index in cache:
        return cache[cn.index]
    _, O, Ho, Wo = Y.shape
    ok = True
    for _ in range(3):
        o, i, j = int(rng.integers(O)), int(rng.integers(Ho)), int(rng.integers(Wo))
        if conv.chain(A, o, i, j) != float(Y[0, o, i, j]):
            ok = False
            break
    cache[cn.index] = ok
    return ok


def _short_values(a, w):
    """Floats v near ``a`` (within a factor 2) with ``v * w`` exactly a float32, nearest first."""
    sg, a = (1.0, a) if a > 0 else (-1.0, -a)
    out = []
    e0 = math.frexp(a)[1]
    for m in (1, 3, 5, 7, 9, 11, 13, 15):
        for e in range(e0 - 6, e0 + 6):
            v = math.ldexp(m, e - 4)
            if not a / 2 <= v <= 2 * a or float(np.float32(v)) != v:
                continue
            p = v * float(w)                      # exact in float64 (24 + 4 bits)
            if float(np.float32(p)) == p and p != 0.0:
                out.append(v)
    out = sorted(set(out), key=lambda v: abs(math.log(v / a)))
    return [sg * v for v in out[:3]]


def _f32_key(v: float) -> int:
    """The float32 ``v`` as an ordered integer (for bisection over floats)."""
    i = int(np.frombuffer(np.float32(v).tobytes(), np.int32)[0])
    return i if i >= 0 else -(i & 0x7FFFFFFF)


def _f32_of(k: int) -> float:
    i = k if k >= 0 else (-k) | -0x80000000
    return float(np.frombuffer(np.int32(i).tobytes(), np.float32)[0])


def _tune_pixel(act, x, q, g, v, max_expand=8):
    """A float32 value of pixel ``q`` at which ``act(x)`` (a monotone function of x_q, increasing
    when g > 0) is exactly ``v`` in PyTorch's float forward: (x with it, True) or (None, False)."""
    flat = x.reshape(-1)
    x0 = float(flat[q])

    def f(xq):
        y = x.clone()
        y.reshape(-1)[q] = xq
        return act(y), y

    a0, _ = f(x0)
    if a0 == v:
        return x, True
    want_up = v > a0
    dirn = 1.0 if (want_up == (g > 0)) else -1.0
    delta = abs(v - a0) / abs(g) * 1.25 + 1e-30
    lo, hi = x0, None
    for _ in range(max_expand):
        cand = float(np.float32(x0 + dirn * delta))
        if not math.isfinite(cand):
            return None, False
        ac, y = f(cand)
        if ac == v:
            return y, True
        if (ac > v) == want_up:
            hi = cand
            break
        lo = cand
        delta *= 2
    if hi is None:
        return None, False
    klo, khi = _f32_key(lo), _f32_key(hi)
    for _ in range(64):
        if abs(khi - klo) <= 1:
            break
        km = (klo + khi) // 2
        xm = _f32_of(km)
        am, y = f(xm)
        if am == v:
            return y, True
        if (am > v) == want_up:
            khi = km
        else:
            klo = km
    return None, False


def _jitter_off_ties(prog, x, node, rng):
    """The seed moved by a little dyadic noise when it ties at a nonsmooth node up to ``node``
    (constant patches tie every max-pool window over them): the exact model along the free
    directions holds on one side of such a tie only. As in :func:`mtcheck._synth._synthesize_float`."""
    from . import _synth as S

    xs = from_tensor(x).ravel()
    ev0 = S._seed_discs64(prog, xs, node)
    if ev0 is None or not any(S.node_has_tie(ev0, nd) for nd in prog.nonsmooth if nd < node):
        return x
    kj = min(S._KMAX.get(prog.dtype, 18), max(S._grid_bits(xs.tolist()) + 4, 8))
    noise = torch.from_numpy(rng.integers(-3, 4, size=x.numel()).astype(np.float64) / (1 << kj))
    y = (x.to(torch.float64).reshape(-1) + noise).to(x.dtype)
    if not torch.equal(y.to(torch.float64), x.to(torch.float64).reshape(-1) + noise):
        return x
    S._STATS["fma_jitter"] += 1
    return y.reshape(x.shape)


def _rank_units(conv, A, Y):
    """Units with at least two live terms, by |a_T w_T| / (rms of the chain's partial sums), best
    first (float64 at the seed: a ranking only)."""
    import torch.nn.functional as F

    O, C, KH, KW = conv.W.shape
    with torch.no_grad():
        U = F.unfold(A.to(torch.float64), (KH, KW), dilation=conv.dil, padding=conv.pad, stride=conv.stride)[0]
        L = U.shape[1]
        U = U.reshape(C, KH, KW, L).permute(1, 2, 0, 3).reshape(KH * KW * C, L)          # (kh, kw, c) order
        Wr = conv.W.to(torch.float64).permute(0, 2, 3, 1).reshape(O, -1)
        live = U > 0
        nlive = live.sum(0)
        idx = torch.arange(U.shape[0]).unsqueeze(1).expand_as(U)
        lastT = torch.where(live, idx, torch.full_like(idx, -1)).max(0).values           # (L,)
        P = Wr.unsqueeze(2) * U.unsqueeze(0)                                             # (O, K, L)
        cs = conv.b.to(torch.float64).reshape(O, 1, 1) + P.cumsum(1)
        rms = cs.pow(2).mean(1).sqrt()                                                   # (O, L)
        lt = lastT.clamp(min=0)
        pT = P.gather(1, lt.reshape(1, 1, L).expand(O, 1, L)).squeeze(1).abs()
        score = torch.where((nlive >= 2).unsqueeze(0), pT / (rms + 1e-30), torch.zeros_like(pT))
    if Y.shape[2] * Y.shape[3] != L:
        return []
    order = torch.argsort(score.reshape(-1), descending=True)
    sc = score.reshape(-1)
    return [int(u) for u in order.tolist() if sc[u] > 0]


def fma_conv_tie(prog, x0: torch.Tensor, target, res, *, seed: int = 0, max_free: int = 48) -> bool:
    """Try the short-last-term construction (module docstring) for ``target`` (a relu node fed by
    a convolution of hidden activations; ``target.group`` None: any unit, else that unit). True
    when a tie was placed and confirmed (``res`` then holds it, see :func:`mtcheck._synth._confirm`);
    False when the construction does not apply or found nothing (the caller goes on)."""
    from . import _synth as S
    from .model import has_balls

    if prog.dtype != torch.float32 or target.label not in (None, "relu"):
        return False
    cn = _conv_producer(prog, target.node)
    if cn is None:
        return False
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    conv = _Conv(prog, cn)
    from .trace import Ref

    x = x0.detach().to(torch.float32).reshape(prog.shape).clone()

    def at(xx):
        with torch.no_grad():
            vals = S._replay_float(prog.trace, xx, cn.index)
        a = xx if conv.inp.kind == "in" else vals[conv.inp]
        return a.detach(), vals[Ref("node", cn.index, 0)].detach()

    A, Y = at(x)
    if A.dim() != 4 or A.shape[0] != 1:
        return False
    if not _chain_order_ok(prog, cn, conv, A, Y, rng):
        S._STATS["fma_order_mismatch"] += 1
        return False
    x1 = _jitter_off_ties(prog, x, target.node, rng)
    if x1 is not x:
        x = x1
        A, Y = at(x)
    S._STATS["fma_attempts"] += 1
    _, O, Ho, Wo = Y.shape
    model = S._upto_model(prog, target.node)
    # candidate units: the one asked for, else those whose last live term is largest against the
    # chain's partial sums (the float search then has few floats to land on; a heuristic)
    if target.group is not None:
        units = [int(target.group)]
    else:
        units = _rank_units(conv, A, Y)[:FMA_UNITS]
    inp_node = conv.inp.index

    def act_fn(c, yy, xx):
        def act(xin):
            if conv.inp.kind == "in":
                return float(xin[0, c, yy, xx])
            with torch.no_grad():
                vv = S._replay_float(prog.trace, xin, inp_node)
            return float(vv[conv.inp][0, c, yy, xx])
        return act

    x64 = x.to(torch.float64)
    for u in units:
        if time.perf_counter() - t_start > FMA_SECONDS:
            break
        o, rem = divmod(u, Ho * Wo)
        i, j = divmod(rem, Wo)
        terms = conv.terms(A, o, i, j)
        live = [t for t in terms if float(A[0, t[2], t[3], t[4]]) != 0.0]
        if len(live) < 2:
            continue
        kh, kw, c, yy, xx = live[-1]
        aT = float(A[0, c, yy, xx])
        wT = float(conv.Wn[o, c, kh, kw])
        vs = _short_values(aT, wT)
        if not vs:
            continue
        # what a_T and the unit depend on (float64 replay gradients: choices only)
        xg = x64.clone().requires_grad_(True)
        v64 = S._replay64(prog, xg, cn.index)
        (gT,) = torch.autograd.grad(v64[conv.inp][0, c, yy, xx], xg, retain_graph=True)
        (gU,) = torch.autograd.grad(v64[Ref("node", cn.index, 0)].reshape(-1)[u], xg)
        gT = gT.reshape(-1).numpy()
        gU = gU.reshape(-1).numpy()
        suppT = np.flatnonzero(gT)
        free = np.setdiff1d(np.flatnonzero(gU), suppT)
        if suppT.size == 0 or free.size == 0:
            continue
        done = False
        for v in vs[:2]:
            for q in suppT[::-1][:2].tolist():
                if conv.inp.kind == "in":
                    x1, ok = x.clone(), True          # the activation is the pixel itself
                    x1.reshape(-1)[q] = v
                else:
                    x1, ok = _tune_pixel(act_fn(c, yy, xx), x, q, float(gT[q]), v)
                if not ok:
                    continue
                A1, _ = at(x1)
                if float(A1[0, c, yy, xx]) != v:
                    continue
                after = terms[terms.index((kh, kw, c, yy, xx)) + 1:]
                if any(float(A1[0, t[2], t[3], t[4]]) != 0.0 for t in after):
                    continue
                # the tuning may have moved the window's winner: a_T's support, read again at x1
                xg = x1.to(torch.float64).requires_grad_(True)
                v64 = S._replay64(prog, xg, cn.index)
                (g1,) = torch.autograd.grad(v64[conv.inp][0, c, yy, xx], xg)
                supp1 = np.flatnonzero(g1.reshape(-1).numpy())
                free1 = np.setdiff1d(np.flatnonzero(gU), supp1)
                if supp1.size == 0 or free1.size == 0:
                    continue
                S._STATS["fma_short_set"] += 1

                def still_short(xt, c=c, yy=yy, xx=xx, v=v, after=after):
                    """At a candidate: a_T is still v and every term after it still 0 (float)."""
                    At, _ = at(xt)
                    return float(At[0, c, yy, xx]) == v and all(float(At[0, t[2], t[3], t[4]]) == 0.0
                                                                for t in after)

                if _solve_and_search(prog, model, x1, target.node, u, free1, rng, res, max_free, has_balls,
                                     still_short):
                    res.ok = True
                    return True
                done = True
                break
            if done:
                break
    return False


def _solve_and_search(prog, model, x1, node, u, free, rng, res, max_free, has_balls, still_short, rounds=10):
    """The exact tie equation of unit ``u`` along the ``free`` pixels, its lattice, and the float
    search of :func:`mtcheck._synth._float_lattice_search` (every hit confirmed by ``_confirm``)."""
    from . import _synth as S

    n = int(np.prod(prog.shape))
    dirs = S.Directions(n, n, rng)
    s = min(max_free, free.size)
    block = np.zeros(n, dtype=np.int64)
    weight = np.zeros(n, dtype=np.int64)
    perm = rng.permutation(free)
    for bi, part in enumerate(np.array_split(perm, s)):
        block[part] = bi
    weight[free] = rng.choice(np.array([-2, -1, 1, 2]), size=free.size)
    dirs.block, dirs.weight, dirs.s = block, weight, s
    x_seed = from_tensor(x1).ravel()
    delta = [S.Q0] * s
    last = node
    for _ in range(rounds):
        x_cur = dirs.apply(x_seed, delta)
        ev = model.evaluate([np.asarray(x_cur, dtype=object).reshape(prog.shape)])
        if has_balls(ev):
            return False
        ch = S._pick_element(model, ev, dirs, node, None, u, False, set())
        if ch is None:
            S._STATS["fma_no_element"] += 1
            return False
        di, disc, i, v, row = ch
        if all(c == 0 for c in row):
            S._STATS["fma_zero_row"] += 1
            return False
        t = S.Target(node, disc.label, int(disc.group[i]))
        probes = [S._FloatProbe(prog, node, disc, int(disc.group[i]))]
        res.targets = [t]
        rows = [list(row)]
        if v == 0:
            d_star = list(delta)
        else:
            step = S.min_norm_step(rows, [-v])
            d_star = [a + b for a, b in zip(delta, step)]
        abs_rhs = [sum((a * b for a, b in zip(rows[0], d_star)), S.Q0)]
        z = None
        for k in S._float_ks(prog.dtype, S._KMAX.get(prog.dtype, 18)):
            z, K = S.lattice_basis(rows, abs_rhs, d_star, k)
            if z is None:
                continue
            x_z = dirs.apply(x_seed, [S.Q(int(w), 1 << k) for w in z])
            if S._representable(x_z.tolist(), prog.dtype) is not None:
                break
            z = None
        if z is None:
            S._STATS["fma_no_lattice"] += 1
            return False
        d_z = [S.Q(int(w), 1 << k) for w in z]
        ev_z = model.evaluate([np.asarray(x_z, dtype=object).reshape(prog.shape)])
        if not S._tied(ev_z, t):
            S._STATS["fma_left_pattern"] += 1
            delta = d_z            # the step left the pattern: Newton from the lattice point
            continue
        if not still_short(torch.from_numpy(S._floats(x_z).astype(np.float64)).to(prog.dtype).reshape(prog.shape)):
            S._STATS["fma_not_short_at_solution"] += 1
            return False
        hit = S._float_lattice_search(prog, model, dirs, x_seed, z, K, k, [t], probes, res, rng, last, rows=rows)
        if hit is True:
            res.bits = k
            return True
        S._STATS["fma_search_miss"] += 1
        return False
    return False




# ---------------------------------------------------------------- float-only ties (rounding-induced)

FLOAT_SECONDS = 5.0        # time for the float-only construction before the generic float path
FLOAT_UNITS = 32           # candidate units tried
FLOAT_LINES = 4            # pixels bisected per unit
FLOAT_REALISATIONS = 24    # other roundings tried per line (one pixel moved a few ulps)


def _float_units(conv, A, Y):
    """Candidate units for a float-only tie, best first: not already a float zero, one unit per
    distinct float value (a constant patch repeats a unit), nearest their kink in float first
    (a ranking only)."""
    y = Y.detach().reshape(-1).to(torch.float64).numpy()
    order = np.argsort(np.where(y != 0, np.abs(y), np.inf), kind="stable")
    seen, out = set(), []
    for u in order.tolist():
        if y[u] == 0 or not np.isfinite(y[u]):
            break
        if y[u] in seen:
            continue
        seen.add(y[u])
        out.append(int(u))
    return out


class _FastReplay:
    """PyTorch's float forward of the trace's nodes ``0..upto`` (the same ATen calls as
    :func:`mtcheck._synth._replay_float`, without its per-call pytree walk): the value of one
    node output. Only for traces whose tensor arguments are top-level (positional or keyword);
    :meth:`make` returns None otherwise."""

    def __init__(self, steps, consts, ref):
        self.steps, self.consts, self.ref = steps, consts, ref

    @classmethod
    def make(cls, prog, upto, ref):
        from .trace import Ref

        def nested(v):
            return isinstance(v, (list, tuple, dict)) and any(
                isinstance(e, Ref) or nested(e) for e in (v.values() if isinstance(v, dict) else v))

        steps = []
        for node in prog.trace.nodes[:upto + 1]:
            if node.func._schema.is_mutable or any(nested(a) for a in node.args) or any(
                    nested(v) for v in node.kwargs.values()):
                return None
            args = [(a.kind, a.index, a.out) if isinstance(a, Ref) else None for a in node.args]
            kws = {k: (v.kind, v.index, v.out) if isinstance(v, Ref) else None for k, v in node.kwargs.items()}
            steps.append((node.index, node.func, tuple(node.args), args, dict(node.kwargs), kws))
        return cls(steps, prog.trace.consts, (ref.index, ref.out))

    def __call__(self, x):
        vals = {}

        def get(key):
            kind, index, out = key
            if kind == "in":
                return x
            if kind == "const":
                return self.consts[index]
            return vals[(index, out)]

        with torch.no_grad():
            for index, func, args, refs, kwargs, krefs in self.steps:
                a = [get(r) if r is not None else v for v, r in zip(args, refs)]
                k = {n: (get(krefs[n]) if krefs[n] is not None else v) for n, v in kwargs.items()}
                out = func(*a, **k)
                if isinstance(out, (tuple, list)):
                    for j, o in enumerate(out):
                        vals[(index, j)] = o
                else:
                    vals[(index, 0)] = out
        return vals[self.ref]


class _ConvPhi:
    """The float relu input ``ref[idx]`` (kink 0) as PyTorch computes it: its value by
    :class:`_FastReplay` (where the trace allows, else :class:`mtcheck.float_ties._Phi`), its
    float gradient by ``_Phi.grad``."""

    def __init__(self, prog, node, ref, idx, fast=None):
        from .float_ties import _Phi

        self.slow = _Phi(prog, node, ref, idx, const=0.0)
        self.fast = fast if fast is not None else _FastReplay.make(prog, ref.index, ref)
        self.idx = idx

    def __call__(self, x) -> float:
        if self.fast is None:
            return self.slow(x)
        return float(self.fast(x).reshape(-1)[self.idx])

    def grad(self, x):
        return self.slow.grad(x)


_F32_MAX_KEY = 0x7F7FFFFF   # the key of the largest finite float32


def _line_zero(f, k0, f0, k1, budget):
    """Float32 keys (:func:`_f32_key`) of one coordinate: bracket a sign change of ``f`` starting
    from ``k0`` (value ``f0``) towards ``k1``, then bisect. Returns (key with f == 0.0 or None,
    (ka, kb) the adjacent keys of the crossing or None, evaluations used)."""
    used = 0
    if f0 == 0.0:
        return k0, None, 0
    if k1 == k0:
        k1 = k0 + 1
    if abs(k1) > _F32_MAX_KEY or abs(k0) > _F32_MAX_KEY:
        return None, None, used
    f1 = f(k1)
    used += 1
    if not math.isfinite(f1):
        return None, None, used
    flipped = False
    while f1 != 0.0 and (f1 > 0) == (f0 > 0):
        if used >= budget:
            return None, None, used
        d = k1 - k0
        if abs(f1) > abs(f0) and not flipped:
            d, flipped = -d, True          # it grows that way: the other side of k0
        else:
            d *= 4
        k1 = k0 + d
        if abs(k1) > _F32_MAX_KEY:
            return None, None, used
        f1 = f(k1)
        used += 1
        if not math.isfinite(f1):
            return None, None, used
    if f1 == 0.0:
        return k1, None, used
    while abs(k1 - k0) > 1 and used < budget:
        km = (k0 + k1) // 2
        fm = f(km)
        used += 1
        if fm == 0.0:
            return km, None, used
        if (fm > 0) == (f0 > 0):
            k0, f0 = km, fm
        else:
            k1, f1 = km, fm
    return None, ((k0, k1) if abs(k1 - k0) <= 1 else None), used


def fma_float_applies(prog, target) -> bool:
    """Whether :func:`fma_float_tie` models ``target``: a relu (or any element of a relu node)
    fed by a float32 convolution (:func:`_conv_producer`)."""
    try:
        return (prog.dtype == torch.float32 and target.label in (None, "relu")
                and _conv_producer(prog, target.node) is not None)
    except (AttributeError, IndexError, TypeError):
        return False


def fma_float_tie(prog, x0: torch.Tensor, target, res, *, seed: int = 0, deadline: float | None = None) -> bool:
    """A float-only (rounding-induced) tie at a relu fed by a float32 convolution, through the FMA
    chain of the module docstring. PyTorch's chain ends at exactly 0.0 only when
    ``c_{T-1} = -a_T * w_T`` exactly, which needs ``a_T * w_T`` to be a float (the generic search
    of :mod:`mtcheck.float_ties` never finds one: the last product has ~48 bits). So:

    1. the last live activation ``a_T`` of a unit is made *short* (``v``, :func:`_short_values`:
       ``v * w_T`` a float32): set directly when it is an input pixel, else by the bisection of
       :func:`_tune_pixel` over a pixel it depends on;
    2. a pixel the earlier terms depend on (not ``a_T``) is bisected over its float32 values until
       PyTorch's float relu input is 0.0: the chain's float partial sum ``c_{T-1}`` lands on the
       float ``-v * w_T`` after roundings that the exact partial sum (a rational with the products'
       full bits) does not have. When the float value jumps over 0.0 (a coarse partial sum earlier
       in the chain moves ``c_{T-1}`` several ulps at a time), another pixel of the unit is moved a
       few ulps (another rounding of the chain) and the crossing bisected again;
    3. :func:`mtcheck.float_ties._confirm_float_only` decides: a fresh trace of PyTorch's float
       forward ties the unit, and the exact value of the relu input there is nonzero (rationals).

    ``target``: a relu node (``group`` None: any unit, else that unit). True when ``res`` (a
    :class:`mtcheck.float_ties.FloatTieResult`) holds a confirmed float-only tie; False when the
    construction does not apply or found none (the caller goes on with the generic search).
    Floats only search here; the fresh trace and exact arithmetic decide."""
    from . import _synth as S
    from .float_ties import _STATS as FSTATS
    from .float_ties import _confirm_float_only
    from .trace import Ref

    if not fma_float_applies(prog, target):
        return False
    cn = _conv_producer(prog, target.node)
    t_start = time.perf_counter()
    # most of the caller's time (its generic search rarely ties such a unit), not all of it
    stop = t_start + (FLOAT_SECONDS if deadline is None else
                      min(FLOAT_SECONDS, 0.75 * max(deadline - t_start, 0.0)))
    rng = np.random.default_rng(seed)
    conv = _Conv(prog, cn)
    x = x0.detach().to(torch.float32).reshape(prog.shape).clone()
    out_ref = Ref("node", cn.index, 0)
    hidden = conv.inp.kind != "in"

    def at(xx):
        with torch.no_grad():
            vals = S._replay_float(prog.trace, xx, cn.index)
        a = vals[conv.inp] if hidden else xx
        return a.detach(), vals[out_ref].detach()

    A, Y = at(x)
    if A.dim() != 4 or A.shape[0] != 1:
        return False
    if not _chain_order_ok(prog, cn, conv, A, Y, rng):
        FSTATS["fma_order_mismatch"] += 1
        return False
    if hidden:
        # a seed tied upstream (a constant patch ties its max-pool windows): the float values
        # move on one side of such a tie only; a little dyadic noise first, as for exact ties
        x1 = _jitter_off_ties(prog, x, target.node, rng)
        if x1 is not x:
            x = x1.reshape(prog.shape)
            A, Y = at(x)
    FSTATS["fma_attempts"] += 1
    _, O, Ho, Wo = Y.shape
    model = S._upto_model(prog, target.node)
    units = [int(target.group)] if target.group is not None else _float_units(conv, A, Y)[:FLOAT_UNITS]
    shapeA = tuple(A.shape)

    def a_index(t_):
        return int(np.ravel_multi_index((0, t_[2], t_[3], t_[4]), shapeA))

    def act_fn(ia):
        def act(xin):
            with torch.no_grad():
                vv = S._replay_float(prog.trace, xin, conv.inp.index)
            return float(vv[conv.inp].reshape(-1)[ia])
        return act

    def grad_of(xx, ref, idx):
        xg = xx.to(torch.float64).requires_grad_(True)
        v64 = S._replay64(prog, xg, cn.index)
        (g,) = torch.autograd.grad(v64[ref].reshape(-1)[idx], xg)
        return g.reshape(-1).numpy()

    fast = _FastReplay.make(prog, cn.index, out_ref)
    budget = [0]
    for u in units:
        if time.perf_counter() > stop:
            break
        o, rem = divmod(u, Ho * Wo)
        i, j = divmod(rem, Wo)
        terms = conv.terms(A, o, i, j)
        live = [t_ for t_ in terms if float(A[0, t_[2], t_[3], t_[4]]) != 0.0]
        if live:
            tT = live[-1]
            iT = a_index(tT)
            aT = float(A.reshape(-1)[iT])
        elif not hidden and terms:
            # no live pixel (a zero patch): the window's last pixel becomes the last live term,
            # near the value that cancels the bias
            tT = terms[-1]
            iT = a_index(tT)
            aT = -float(Y.reshape(-1)[u]) / float(conv.Wn[o, tT[2], tT[0], tT[1]])
        else:
            continue
        wT = float(conv.Wn[o, tT[2], tT[0], tT[1]])
        vs = _short_values(aT, wT) if aT != 0.0 and math.isfinite(aT) else []
        if not vs:
            continue
        after = terms[terms.index(tT) + 1:]
        phi = _ConvPhi(prog, target.node, out_ref, u, fast)
        t = S.Target(target.node, "relu", u)
        if hidden:
            try:
                gT = grad_of(x, conv.inp, iT)
            except S._NO_REVERSE:
                return False
            suppT = np.flatnonzero(gT)
            if suppT.size == 0:
                continue
        for v in vs[:2]:
            if time.perf_counter() > stop:
                break
            if hidden:
                x1 = None
                for q in suppT[::-1][:2].tolist():
                    x1, ok = _tune_pixel(act_fn(iT), x, q, float(gT[q]), v)
                    if ok:
                        break
                    x1 = None
                if x1 is None:
                    FSTATS["fma_tune_miss"] += 1
                    continue
                A1, _ = at(x1)
                if float(A1.reshape(-1)[iT]) != v or any(float(A1.reshape(-1)[a_index(t_)]) != 0.0 for t_ in after):
                    continue
                g1 = grad_of(x1, conv.inp, iT)
                gu1 = grad_of(x1, out_ref, u)
                free = np.setdiff1d(np.flatnonzero(gu1), np.flatnonzero(g1))
                free = free[np.argsort(-np.abs(gu1[free]), kind="stable")]
                # the pixels of the last live terms before T: they set the low bits of the
                # chain's last roundings (the other roundings tried when it jumps over 0.0)
                late = set()
                for t_ in live[-4:-1]:
                    late.update(np.flatnonzero(grad_of(x1, conv.inp, a_index(t_))).tolist())
                late = [r for r in free.tolist() if r in late]
            else:
                x1 = x.clone()
                x1.reshape(-1)[iT] = v
                # the earlier pixels of the chain, the nearest to T first (the last rounding
                # before T then moves c_{T-1} float by float)
                free = np.array([a_index(t_) for t_ in reversed(terms[:terms.index(tT)])], dtype=np.int64)
                late = [a_index(t_) for t_ in live[-4:-1]]
            if free.size == 0:
                continue
            FSTATS["fma_short_set"] += 1
            hit = _land_on_zero(phi, x1, free, late, rng, stop, budget)
            if hit is None:
                continue
            out = _confirm_float_only(prog, model, hit, phi, t, res)
            if out is True:
                FSTATS["fma_float_hits"] += 1
                res.evals += budget[0]
                return True
            if out == "exact":
                FSTATS["fma_exact_instead"] += 1
    res.evals += budget[0]
    return False


def _land_on_zero(phi, x1, free, late, rng, stop, used):
    """An input (the pixels ``free`` moved, the others as in ``x1``) where ``phi`` (PyTorch's float
    relu input) is 0.0, or None: a bisection along one free pixel; where the float value jumps
    over 0.0, other roundings (a pixel of ``late``, else of ``free``, moved a few ulps) and the
    crossing again."""
    lines = free[:FLOAT_LINES].tolist()
    for q in lines:
        if time.perf_counter() > stop:
            return None
        v0, g = phi.grad(x1)
        used[0] += 1
        if v0 == 0.0:
            return x1
        gq = float(g.reshape(-1)[q])
        if gq == 0.0 or not math.isfinite(gq):
            continue
        base = x1.clone()
        flat = base.reshape(-1)

        def f(k, base=base, flat=flat, q=q):
            flat[q] = _f32_of(k)
            return phi(base)

        k0 = _f32_key(float(flat[q]))
        k1 = _f32_key(float(np.float32(float(flat[q]) - v0 / gq)))
        kz, br, n = _line_zero(f, k0, v0, k1, 80)
        used[0] += n
        if kz is not None:
            flat[q] = _f32_of(kz)
            return base
        if br is None:
            flat[q] = _f32_of(k0)
            continue
        others = [r for r in late if r != q] or [r for r in free.tolist() if r != q][:32]
        if not others:
            continue
        # the crossing jumps over 0.0: other roundings around it
        for _ in range(FLOAT_REALISATIONS):
            if time.perf_counter() > stop:
                return None
            ka = br[0]
            flat[q] = _f32_of(ka)
            r = others[int(rng.integers(0, len(others)))]
            # a move of 1 to 256 ulps of max(|x_r|, 1/4) (a zero pixel too)
            xr0 = float(flat[r])
            xr = float(np.float32(xr0 + float(rng.choice([-1.0, 1.0])) * 2.0 ** rng.uniform(-23, -15)
                                  * max(abs(xr0), 0.25)))
            if not math.isfinite(xr):
                continue
            flat[r] = xr
            fa = phi(base)
            used[0] += 1
            kh = _f32_key(float(np.float32(_f32_of(ka) - fa / gq)))
            kz, br2, n = _line_zero(f, ka, fa, kh, 40)
            used[0] += n
            if kz is not None:
                flat[q] = _f32_of(kz)
                return base
            if br2 is not None:
                br = br2
    return None

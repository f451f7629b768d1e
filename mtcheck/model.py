"""The exact model of a trace: replay it in rational arithmetic, with its pattern.

``ExactModel.evaluate(x)`` replays every recorded node on exact inputs ``x``
(fmpq arrays) with the op rules of :mod:`mtcheck.ops`; no torch autograd is
involved. The result carries every node's exact value and its discriminants,
whose signs make the pattern. ``linearize`` propagates tangent directions
through the same nodes with the pattern fixed: the Jacobian of every node on the
stratum, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flint
import numpy as np
import torch
import torch.utils._pytree as pytree

from . import ops as _ops
from ._exact import NonFiniteValue, Q1, from_tensor, has_nonfinite, zeros
from .errors import OutsideTheoryError, UnsupportedOpError
from .ops import Ctx, Disc
from .trace import Ref, Trace


@dataclass
class Evaluation:
    values: dict            # Ref -> exact value (np array) ; node refs included
    ctxs: list              # per node Ctx
    discs: list             # per node list[Disc]
    inputs: list            # exact input values

    def value(self, ref):
        return self.values[ref]


@dataclass
class PatternEntry:
    node: int
    label: str
    where: str
    kind: str
    counts: dict            # case name -> count
    ties: list              # readable tie descriptions (first few)
    branch: bool = False

    def __str__(self) -> str:
        c = ", ".join(f"{k}: {v}" for k, v in self.counts.items())
        s = f"{self.label} ({self.kind}) at {self.where}: {c}"
        if self.ties:
            s += "; ties " + "; ".join(self.ties)
        if self.branch:
            s += " [feeds Python control flow]"
        return s


@dataclass
class Pattern:
    entries: list = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.entries) or "(no nonsmooth op)"

    @property
    def n_ties(self) -> int:
        return sum(e.counts.get("tie", 0) for e in self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __len__(self):
        return len(self.entries)


class ExactModel:
    def __init__(self, tr: Trace):
        self.trace = tr
        self.rules = []
        from .ops.complex_fft import const_value, refuse_complex
        for n in tr.nodes:
            rule = _ops.lookup(n.op)
            if rule is None:  # pragma: no cover - trace() already refused it
                raise UnsupportedOpError(n.op, n.where)
            refuse_complex(tr, n, rule)     # complex values reach only rules that know their (re, im) layout
            self.rules.append(rule)
        # a complex constant in the (re, im) layout; NaN and infinities as NonFinite (refused where used)
        self._consts = [_nonfinite_value(c) if _is_nonfinite(c) else const_value(c) for c in tr.consts]
        self._any_nonfinite = any(_is_nonfinite(c) for c in tr.consts)
        from ._fastfloat import remember
        from ._fixed import remember as remember_fixed, remember_floats

        for c, e in zip(tr.consts, self._consts):
            if c.is_floating_point() and e.dtype == object:
                f = c.detach().to(torch.float64).cpu().numpy()
                remember(e, f)
                remember_fixed(e, f)
                remember_floats(e, f)

    # ---------------------------------------------------------------- evaluation
    def _resolve(self, values, obj):
        def f(v):
            if isinstance(v, Ref):
                if v.kind == "const":
                    return self._consts[v.index]
                return values[v]
            return v

        return pytree.tree_map(f, obj, is_leaf=lambda v: isinstance(v, Ref))

    def _recorded_value(self, ref):
        """The framework's float value of a ref, converted exactly."""
        if ref.kind == "const":
            return self._consts[ref.index]
        if ref.kind == "in":
            return from_tensor(self.trace.inputs[ref.index])
        rec = self.trace.nodes[ref.index].recorded
        rec = rec[ref.out] if isinstance(rec, tuple) else rec
        return _nonfinite_value(rec) if _is_nonfinite(rec) else from_tensor(rec)

    def evaluate(self, inputs, *, framework_args: bool = False) -> Evaluation:
        """Replay the trace exactly on ``inputs`` (list of exact arrays).

        With ``framework_args`` every node is fed the framework's own float values
        of its arguments instead: the discriminants then show the cases the
        framework took (used to find rounding-induced branches).
        """
        values: dict = {}
        for i, v in enumerate(inputs):
            values[Ref("in", i)] = v
        ctxs, discs = [], []
        cache: dict = {}
        for node, rule in zip(self.trace.nodes, self.rules):
            if framework_args and not rule.nonsmooth:
                # only the cases are wanted, and a smooth node's arguments come from the
                # framework's recorded values anyway: nothing to compute
                ctxs.append(None)
                discs.append([])
                continue
            if framework_args:
                def f(v):
                    if isinstance(v, Ref):
                        if v not in cache:
                            cache[v] = self._recorded_value(v)
                        return cache[v]
                    return v

                args = pytree.tree_map(f, node.args, is_leaf=lambda v: isinstance(v, Ref))
                kwargs = pytree.tree_map(f, node.kwargs, is_leaf=lambda v: isinstance(v, Ref))
            else:
                args = self._resolve(values, node.args)
                kwargs = self._resolve(values, node.kwargs)
            ctx = self._ctx(node)
            if not rule.balls and _any_ball(args, kwargs):
                raise UnsupportedOpError(node.op, node.where, _NO_BALLS)
            out = _normalize(self._call(node, rule.forward, ctx, args, kwargs))
            if isinstance(out, tuple):
                for j, o in enumerate(out):
                    values[Ref("node", node.index, j)] = o
            else:
                values[Ref("node", node.index, 0)] = out
            d = self._call(node, rule.discs, ctx, args, kwargs, out) if rule.nonsmooth else []
            for disc in d:
                disc.branch = node.branch
                self._call(node, disc.signs)     # decided now, or UNKNOWN naming this node
            ctxs.append(ctx)
            discs.append(d)
        if self._any_nonfinite:
            for ref in self.trace.outputs:
                if ref is not None and has_nonfinite(values.get(ref)):
                    from .errors import NonFiniteError

                    raise NonFiniteError("the program's exact output holds a NaN or an infinity of one of its "
                                         "constants (a where() that selects it); nothing was checked")
        return Evaluation(values, ctxs, discs, list(inputs))

    def _ctx(self, node):
        rec = node.recorded
        first = rec[0] if isinstance(rec, tuple) else rec
        ctx = Ctx(node.op, getattr(first, "dtype", None), rec)
        ctx.aux["func"] = node.func
        # the dtype scalars are rounded to in a comparison is its tensor operand's
        leaves = [a for a in pytree.tree_leaves(node.args) if isinstance(a, Ref)]
        if leaves:
            ctx.aux["arg_dtype"] = self._ref_dtype(leaves[0])
        return ctx

    def _ref_dtype(self, ref):
        if ref.kind == "const":
            return self.trace.consts[ref.index].dtype
        if ref.kind == "in":
            return self.trace.inputs[ref.index].dtype
        rec = self.trace.nodes[ref.index].recorded
        rec = rec[ref.out] if isinstance(rec, tuple) else rec
        return getattr(rec, "dtype", None)

    @staticmethod
    def _call(node, fn, *a):
        from ._ball import NotEnclosed, Undecided

        try:
            out = fn(*a)
            if _any_ball(a):
                _no_complex(node, out)
            return out
        except Undecided as e:
            from .errors import UndecidedError

            raise UndecidedError(node.op, node.where, f"{e}: the case is not decided by the enclosures "
                                 "(a tie of irrational values would need a proof of equality)") from None
        except NotEnclosed as e:
            raise UnsupportedOpError(node.op, node.where, f"no enclosure rule ({e})") from None
        except _ops.NotModelled as e:
            raise UnsupportedOpError(node.op, node.where, str(e)) from None
        except _ops.NotLipschitz as e:
            raise OutsideTheoryError(node.op, node.where, str(e)) from None
        except ZeroDivisionError as e:
            raise UnsupportedOpError(node.op, node.where, str(e)) from None
        except NonFiniteValue as e:
            from .errors import NonFiniteError

            raise NonFiniteError(f"{e} of a weight or constant of the program reaches {node.op} (called at "
                                 f"{node.where}): a non-finite value has no exact model; nothing was checked") from None

    # ---------------------------------------------------------------- reverse mode
    def live_refs(self, wrt) -> set:
        """Refs whose value depends on the differentiated inputs (computed once per ``wrt``: the
        trace does not change; a copy is returned)."""
        key = tuple(wrt)
        cache = self.__dict__.setdefault("_live_cache", {})
        if key not in cache:
            cache[key] = self._live_refs(wrt)
        return set(cache[key])

    def _live_refs(self, wrt) -> set:
        live = {Ref("in", i) for i in wrt}
        for node in self.trace.nodes:
            leaves = pytree.tree_leaves((node.args, node.kwargs), is_leaf=lambda v: isinstance(v, Ref))
            if any(isinstance(v, Ref) and v in live for v in leaves):
                rec = node.recorded
                for j in range(len(rec) if isinstance(rec, tuple) else 1):
                    live.add(Ref("node", node.index, j))
        return live

    def output_seeds(self, ev: Evaluation):
        """Cotangent seeds for every flattened float output: (dict Ref -> (m, *shape) array, m)."""
        blocks = []
        for ref, t in zip(self.trace.outputs, self.trace.out_tensors):
            if ref is None or t is None or not t.is_floating_point():
                continue
            blocks.append((ref, tuple(t.shape), int(np.prod(t.shape, dtype=np.int64))))
        m = sum(b[2] for b in blocks)
        seeds: dict = {}
        off = 0
        for ref, shape, size in blocks:
            c = zeros((m, size))
            for k in range(size):
                c[off + k, k] = Q1
            c = c.reshape((m,) + shape)
            seeds[ref] = c if ref not in seeds else seeds[ref] + c
            off += size
        return seeds, m

    def reverse(self, ev: Evaluation, wrt: list, seeds: dict, B: int, disc_seeds=(), as_fx: bool = False):
        """See :meth:`_reverse`: the exact rows (B, n), as fmpq objects (or as an Fx with
        ``as_fx`` when they are dyadic). Computed in dyadic fixed point (:mod:`mtcheck._fixed`);
        where a constant is not dyadic, in rationals. (For many rows, :meth:`reverse_parts`
        computes residues instead: numpy arrays, not Python integers.)"""
        from ._fixed import Fx, NotDyadic, from_exact, to_exact

        if has_balls(ev) and not disc_seeds:
            # the cotangents meet enclosed values: start as enclosures (exact seeds, radius 0)
            # rather than convert fixed point to balls midway
            from ._ball import to_ball

            balls = {r: to_ball(np.asarray(c, dtype=object)) for r, c in seeds.items()}
            step = self._row_chunk(ev, B)
            if step >= B:
                return self._reverse(ev, wrt, balls, B)
            # rows are independent: in chunks whose largest cotangent stays below glibc's mmap
            # threshold, so freed buffers are reused instead of every large array faulting in fresh
            # pages (a (1024, 16, 2048) enclosure cost 2 s of page faults per operation here)
            parts = [self._reverse(ev, wrt, {r: c[i:i + step] for r, c in balls.items()}, min(step, B - i))
                     for i in range(0, B, step)]
            return np.concatenate(parts, axis=0)
        try:
            fs = {r: from_exact(np.asarray(c, dtype=object)) for r, c in seeds.items()}
            fd = [(i, d, from_exact(np.asarray(w, dtype=object))) for i, d, w in disc_seeds]
            rows = self._reverse(ev, wrt, fs, B, fd, fixed=True)
            if isinstance(rows, Fx):
                return rows if as_fx else to_exact(rows)
            return rows
        except NotDyadic:
            seeds = {r: np.asarray(c, dtype=object) for r, c in seeds.items()}
            disc_seeds = [(i, d, np.asarray(w, dtype=object)) for i, d, w in disc_seeds]
            return self._reverse(ev, wrt, seeds, B, disc_seeds, fixed=False)

    _CHUNK_ENTRIES = 1 << 20     # complex128 entries of the largest cotangent of one chunk: 16 MB

    def _row_chunk(self, ev: Evaluation, B: int) -> int:
        """Rows per reverse chunk so that (rows x the largest value's size) stays under 16 MB."""
        big = max((int(np.size(v)) for v in ev.values.values() if isinstance(v, np.ndarray)), default=1)
        return max(1, min(B, self._CHUNK_ENTRIES // max(big, 1)))

    def reverse_parts(self, ev: Evaluation, wrt: list, seeds: dict, B: int, disc_seeds=(), count=None, first=None):
        """The reverse pass once per word-size prime (numpy residues, :class:`~mtcheck._fixed.Mod`):
        the images (B, n) modulo as many primes as the proven bound on the integers needs (or the
        first ``count`` primes). :func:`mtcheck._fixed.crt` turns them into exact integers.
        Raises NotModular (a NotDyadic) where residues cannot follow a rule."""
        from ._fixed import MOD_PRIMES, Mod, NotModular, mod_wrap, primes_for, to_mod

        ints = {}

        def plain(c):
            # seeds are small integers (one-hot rows, +-1): as int64, residues are vectorized
            key = id(c)
            if key not in ints:
                a = np.asarray(c)
                if a.dtype == object:
                    try:
                        a = np.array([int(v) for v in a.ravel().tolist()], dtype=np.int64).reshape(a.shape) \
                            if all(_is_small_int(v) for v in a.ravel().tolist()) else a
                    except (TypeError, ValueError, OverflowError):
                        pass
                ints[key] = a
            return ints[key]

        def as_mod(c, p):
            res, e, bits = to_mod(plain(c), p)
            return mod_wrap(res, p, e, bits)

        def one(p):
            ms = {r: as_mod(c, p) for r, c in seeds.items()}
            md = [(i, d, as_mod(w, p)) for i, d, w in disc_seeds]
            rows = self._reverse(ev, wrt, ms, B, md, fixed=True, modular=True)
            if not isinstance(rows, Mod):
                raise NotModular("the reverse pass left modular arithmetic")
            return rows

        first = one(MOD_PRIMES[0]) if first is None else first
        k = primes_for(first.bits) if count is None else count
        parts = [first] + [one(p) for p in MOD_PRIMES[1:k]]
        if any(m.bits != first.bits or m.e != first.e for m in parts):   # pragma: no cover - identical passes
            raise NotModular("the passes modulo different primes disagree on their bounds")
        return parts

    def _reverse(self, ev: Evaluation, wrt: list, seeds: dict, B: int, disc_seeds=(), fixed=False, modular=False):
        """Exact reverse pass on the stratum of ``ev``: rows (B, n) of ``sum over seeds`` of
        cotangent times the derivative, over the flattened ``wrt`` inputs.

        ``seeds`` maps Refs to cotangents ``(B,) + value shape``; ``disc_seeds`` is a list of
        ``(node index, Disc, weights (B, len))``: cotangents on discriminants, so the rows are
        ``weights @ (the discriminants' derivative rows)``. Raises :class:`NoReverse` when a node
        the cotangents reach has no ``vjp`` (forward mode is then used)."""
        live = self.live_refs(wrt)
        cots: dict = {}

        def acc(ref, g):
            if g is None or not isinstance(ref, Ref) or ref not in live:
                return
            val = ev.inputs[ref.index] if ref.kind == "in" else ev.values.get(ref)
            if val is None or not isinstance(val, np.ndarray) or val.dtype != object:
                return
            g = _obj(g).reshape((B,) + val.shape)
            cots[ref] = g if ref not in cots else cots[ref] + g

        for ref, c in seeds.items():
            if ref.kind == "const":
                continue
            acc(ref, c)
        for node_index, disc, w in disc_seeds:
            node = self.trace.nodes[node_index]
            leaves = [v for v in pytree.tree_leaves(node.args, is_leaf=lambda v: isinstance(v, Ref))
                      if isinstance(v, Ref) or _is_tensor_like(v)]
            w = _obj(w)
            if disc.negate:
                w = -w
            for pos, idx, sign in ((disc.a, disc.idx_a, 1), (disc.b, disc.idx_b, -1)):
                if pos is None or not isinstance(leaves[pos], Ref) or leaves[pos] not in live:
                    continue
                ref = leaves[pos]
                val = ev.inputs[ref.index] if ref.kind == "in" else ev.values[ref]
                g = _zeros_like((B, val.size), w)
                np.add.at(g, (slice(None), np.asarray(idx)), w if sign > 0 else -w)
                acc(ref, g)
        for node, rule, ctx in zip(reversed(self.trace.nodes), reversed(self.rules), reversed(ev.ctxs)):
            rec = node.recorded
            nout = len(rec) if isinstance(rec, tuple) else 1
            outs = [cots.pop(Ref("node", node.index, j), None) for j in range(nout)]
            if all(c is None for c in outs):
                continue
            if rule.vjp is None:
                raise NoReverse(f"{node.op} has no reverse-mode rule")
            args = self._resolve(ev.values, node.args)
            kwargs = self._resolve(ev.values, node.kwargs)
            if not rule.balls and _any_ball(outs):
                # an enclosed cotangent (from a smooth op downstream) at a rule without enclosures:
                # forward mode keeps the tangents exact up to the enclosed values, so it can run
                raise NoReverse(f"{node.op} has no reverse-mode rule for an enclosed cotangent")
            out = ev.values.get(Ref("node", node.index, 0))
            if isinstance(rec, tuple):
                out = tuple(ev.values[Ref("node", node.index, j)] for j in range(nout))
            refs = _ref_leaves(node.args)
            ctx.aux["live"] = [_any_live(a, live) for a in node.args]
            if any(isinstance(v, Ref) and v in live for v in
                   pytree.tree_leaves(node.kwargs, is_leaf=lambda v: isinstance(v, Ref))):
                raise NoReverse(f"{node.op} takes an input-dependent tensor as a keyword argument")
            cot = tuple(outs) if isinstance(rec, tuple) else outs[0]
            grads = self._call(node, rule.vjp, ctx, args, kwargs, out, cot)
            if len(grads) != len(refs):  # pragma: no cover - a rule bug
                raise NoReverse(f"{node.op}: vjp returned {len(grads)} cotangents for {len(refs)} tensors")
            for ref, g in zip(refs, grads):
                if modular and g is not None and not _is_mod(g):
                    from ._fixed import NotModular

                    raise NotModular(f"{node.op}: its reverse rule left modular arithmetic")
                if g is None and isinstance(ref, Ref) and ref in live:
                    val = ev.inputs[ref.index] if ref.kind == "in" else ev.values.get(ref)
                    if isinstance(val, np.ndarray) and val.dtype == object:
                        raise NoReverse(f"{node.op}: no reverse-mode derivative for an input-dependent argument")
                acc(ref, g)
        rows = []
        for i in wrt:
            g = cots.get(Ref("in", i))
            rows.append(_zeros_like((B, ev.inputs[i].size), next(iter(cots.values()), None) if fixed else None)
                        if g is None else g.reshape(B, -1))
        return np.concatenate(rows, axis=1) if rows else zeros((B, 0))

    # ---------------------------------------------------------------- derivatives
    def linearize(self, ev: Evaluation, wrt: list, directions=None, fast: bool = True, upto: int | None = None):
        """Forward-mode derivatives on the stratum of ``ev``.

        ``directions`` is a (B, n) exact array of input directions (n = total size
        of the ``wrt`` inputs); the default is the identity (full Jacobians).
        Returns a dict Ref -> tangent array of shape (B,) + value shape (fmpq
        objects, or verified-exact float64 :class:`~mtcheck._fastfloat.FT` arrays
        on the fast path); absent for values that do not depend on the directions.

        The fast path computes in float64 with every operation checked to be
        exact; if one cannot be shown exact, the whole pass is redone in rationals.
        """
        if has_balls(ev, upto):
            # enclosed values: tangents are enclosures too (float64 products with error bounds),
            # from exact directions
            from ._ball import ball, to_ball

            n = sum(ev.inputs[i].size for i in wrt)
            d = ball(np.eye(n)) if directions is None else to_ball(np.asarray(directions))
            try:
                return self._linearize(ev, wrt, d, fast=False, upto=upto)
            except UnsupportedOpError as e:
                if e.why != _NO_BALLS:
                    raise
                # a rule without enclosures (amax, a max-pool) upstream of the enclosed values met
                # enclosed tangents: keep the tangents exact until they meet an enclosure (below)
        if fast:
            from ._fastfloat import Inexact, to_float_exact, wrap

            try:
                n = sum(ev.inputs[i].size for i in wrt)
                d = wrap(np.eye(n), 0) if directions is None else wrap(to_float_exact(directions))
                d._is_eye = directions is None
                return self._linearize(ev, wrt, d, fast=True, upto=upto)
            except (Inexact, TypeError):
                # TypeError: a plain float met an exact rational (a rule left the verified
                # path); the rational pass below recomputes everything
                pass
        return self._linearize(ev, wrt, directions, fast=False, upto=upto)

    def support(self, ev: Evaluation, wrt: list, upto: int | None = None) -> dict:
        """Structural support of every tangent (:mod:`mtcheck._support`): Ref -> Dep flags of
        shape (1,) + value shape, 0 where the derivative is exactly zero in every direction.
        Raises NotStructural when a rule leaves the flag arithmetic."""
        from ._support import ones

        n = sum(ev.inputs[i].size for i in wrt)
        return self._linearize(ev, wrt, ones((1, n)), fast=False, dep=True, upto=upto)

    def disc_support(self, tans: dict, node_index: int, disc: Disc) -> np.ndarray:
        """Bool per discriminant of ``disc``: whether its derivative row may be nonzero."""
        from ._support import Dep

        node = self.trace.nodes[node_index]
        leaves = [v for v in pytree.tree_leaves(node.args, is_leaf=lambda v: isinstance(v, Ref))
                  if isinstance(v, Ref) or _is_tensor_like(v)]
        out = np.zeros(disc.values.size, dtype=bool)
        for pos, idx in ((disc.a, disc.idx_a), (disc.b, disc.idx_b)):
            if pos is None or not isinstance(leaves[pos], Ref):
                continue
            t = tans.get(leaves[pos])
            if t is None:
                continue
            if not isinstance(t, Dep):
                return np.ones(disc.values.size, dtype=bool)
            out |= t.view(np.ndarray).reshape(-1)[np.asarray(idx)] != 0
        return out

    def directional(self, ev: Evaluation, wrt: list, t) -> dict:
        """Exact one-sided tangents along one direction ``t`` (length n): the derivative of
        ``s -> program(x + s t)`` at ``s = 0+``, every value's tangent on the piece the ray enters.

        A piecewise-affine program is affine on ``[x, x + s t]`` for small ``s``; its pattern there
        is lexicographic: an untied case keeps its sign, a tied one takes the sign of its rate along
        ``t`` (both zero: the tied branches agree along the ray). Each nonsmooth node with a moving
        tie is evaluated once at ``args + d * tangents`` for a dyadic ``d`` below every untied
        case's distance to 0 at its rate, which realises exactly that pattern; its tangent is the
        rule's derivative there. No forward pass of the whole program at a probe point."""
        from ._fixed import NotDyadic, from_exact

        d = np.asarray(t, dtype=object).reshape(1, -1)
        try:
            return self._linearize(ev, wrt, from_exact(d), fast=False, directional=True, fixed=True)
        except NotDyadic:
            return self._linearize(ev, wrt, d, fast=False, directional=True)

    def _perturbed(self, node, rule, ctx, ev, tans, args, kwargs, targs):
        """(ctx, args, out) of ``node`` moved along its tangents far enough to break its moving
        ties by their rates and no further (see :meth:`directional`); None when nothing moves."""
        from ._fixed import Fx

        discs = ev.discs[node.index]
        if not any((disc.signs() == 0).any() for disc in discs):
            return None                   # no tie: nothing to break (the rates are not needed)
        moving = False
        checks = []                       # (|value|, |rate| * 2**e) of untied cases that move
        for disc in discs:
            rate, e = self._rate_ints(ev, tans, node.index, disc)
            if not rate.size:
                continue
            s = disc.signs()
            nz = np.asarray(rate != 0, dtype=bool)
            if (nz & (s == 0)).any():
                moving = True
            sel = nz & (s != 0)
            if sel.any():
                checks.append((np.abs(np.asarray(disc.values, dtype=object)[sel]), np.abs(rate[sel]), e))
        if not moving:
            return None
        k = 1
        if checks:
            # delta = 2**-k below every |value| / |rate| (rate = ints / 2**e): 2**k above the largest
            # |ints| / (|value| 2**e), found once exactly, then the first k = 1, 2, 4, ... past it
            worst = max(max((r / (v * flint.fmpq(1 << e))).tolist()) for v, r, e in checks)
            while not (flint.fmpz(1) << k) > worst:
                k *= 2                    # any delta below every |value| / |rate| will do
                if k > 1 << 16:           # pragma: no cover - rates are finite
                    raise NotModelled_("no step breaks the ties of " + node.op)
        delta = flint.fmpq(1, 1 << k)

        def move(a, ta):
            if ta is None or not isinstance(a, np.ndarray):
                return a
            if isinstance(ta, Fx):        # ints / 2**e times delta: one product per entry
                return np.asarray(a + ta.view(np.ndarray)[0] * flint.fmpq(1, 1 << (ta.e + k)), dtype=object)
            return np.asarray(a + np.asarray(_exact_t(ta), dtype=object)[0] * delta, dtype=object)

        moved = pytree.tree_map(lambda a, ta: move(a, ta), args, targs,
                                is_leaf=lambda v: isinstance(v, np.ndarray) or v is None)
        ctx2 = self._ctx(node)
        out2 = _normalize(self._call(node, rule.forward, ctx2, moved, kwargs))
        self._call(node, rule.discs, ctx2, moved, kwargs, out2)
        return ctx2, moved, out2

    def _rate_ints(self, ev, tans, node_index, disc):
        """The rates of one direction's discriminants as (integers, e): rate = ints / 2**e.
        Fixed-point tangents give their integers directly (no rationals per entry); others go
        through :meth:`disc_rows` (e = 0, the rates themselves)."""
        from ._fixed import Fx

        node = self.trace.nodes[node_index]
        leaves = [v for v in pytree.tree_leaves(node.args, is_leaf=lambda v: isinstance(v, Ref))
                  if isinstance(v, Ref) or _is_tensor_like(v)]
        parts = []
        for pos, idx, sign in ((disc.a, disc.idx_a, 1), (disc.b, disc.idx_b, -1)):
            t = tans.get(leaves[pos]) if pos is not None and isinstance(leaves[pos], Ref) else None
            if t is None:
                continue
            if not isinstance(t, Fx) or t.shape[0] != 1:
                return self.disc_rows(ev, tans, node_index, disc, 1)[:, 0], 0
            parts.append((t.reshape(1, -1)[0, idx], sign))
        if not parts:
            return self.disc_rows(ev, tans, node_index, disc, 1)[:, 0], 0
        e = max(p.e for p, _ in parts)
        rate = None
        for p, sign in parts:
            ints = p.view(np.ndarray)
            if p.e < e:
                ints = ints * (flint.fmpz(1) << (e - p.e))
            ints = ints if sign > 0 else -ints
            rate = ints if rate is None else rate + ints
        return (-rate if disc.negate else rate), e

    def _linearize(self, ev, wrt, directions, fast, dep=False, directional=False, fixed=False, upto=None):
        """``upto``: stop after that node (the tangents of later nodes are not needed)."""
        from ._fastfloat import FT, Inexact
        from ._support import Dep, NotStructural

        sizes = [ev.inputs[i].size for i in wrt]
        n = sum(sizes)
        if directions is None:
            from ._exact import identity

            directions = identity(n)
        B = directions.shape[0]
        identity_dirs = getattr(directions, "_is_eye", False)
        tans: dict = {}
        off = 0
        for i, s in zip(wrt, sizes):
            tans[Ref("in", i)] = directions[:, off:off + s].reshape((B,) + ev.inputs[i].shape)
            if fast and identity_dirs:
                # tangent[b, j] = (b == off + j): rules may use this to skip a product with the identity
                tans[Ref("in", i)]._eye_offset = off
            off += s
        for node, rule, ctx in zip(self.trace.nodes, self.rules, ev.ctxs):
            if upto is not None and node.index > upto:
                break
            targs = pytree.tree_map(lambda v: tans.get(v) if isinstance(v, Ref) else None, node.args,
                                    is_leaf=lambda v: isinstance(v, Ref))
            tkwargs = pytree.tree_map(lambda v: tans.get(v) if isinstance(v, Ref) else None, node.kwargs,
                                      is_leaf=lambda v: isinstance(v, Ref))
            live = [t for t in pytree.tree_leaves((targs, tkwargs)) if isinstance(t, np.ndarray)]
            out = ev.values.get(Ref("node", node.index, 0))
            rec = node.recorded
            if isinstance(rec, tuple):
                out = tuple(ev.values[Ref("node", node.index, j)] for j in range(len(rec)))
            if not live:
                continue
            args = self._resolve(ev.values, node.args)
            kwargs = self._resolve(ev.values, node.kwargs)
            if not rule.balls and _any_ball(args, kwargs, targs, tkwargs):
                raise UnsupportedOpError(node.op, node.where, _NO_BALLS)
            if directional and rule.nonsmooth:
                moved = self._perturbed(node, rule, ctx, ev, tans, args, kwargs, targs)
                if moved is not None:
                    ctx, args, out = moved
            t = self._call(node, rule.jvp, ctx, args, kwargs, out, targs, tkwargs)
            for j, tj in enumerate(t if isinstance(t, tuple) else (t,)):
                if tj is None:
                    continue
                if dep:
                    if not isinstance(tj, Dep):
                        raise NotStructural(f"{node.op} left the structural-zero arithmetic")
                    tans[Ref("node", node.index, j)] = tj
                elif fast:
                    if not isinstance(tj, FT):
                        raise Inexact(f"{node.op} left the verified float path")
                    tans[Ref("node", node.index, j)] = tj
                elif fixed:
                    from ._fixed import Fx, NotDyadic

                    if not isinstance(tj, Fx):
                        raise NotDyadic(f"{node.op} left fixed point")
                    tans[Ref("node", node.index, j)] = tj
                else:
                    tans[Ref("node", node.index, j)] = tj if _is_ball(tj) else np.asarray(tj, dtype=object)
        return tans

    def disc_rows(self, ev: Evaluation, tans: dict, node_index: int, disc: Disc, B: int, select=None,
                  exact: bool = True):
        """Tangent rows (len, B) of a node's discriminants: d(disc)/d(direction).

        ``select`` (bool mask or indices) keeps only some discriminants. With
        ``exact=False`` rows computed on the verified-float path stay float64
        (their values are exact dyadics) instead of becoming fmpq objects.
        """
        if select is not None:
            sel = np.nonzero(select)[0] if np.asarray(select).dtype == bool else np.asarray(select)
            disc = Disc(disc.label, disc.a, None if disc.idx_a is None else disc.idx_a[sel], disc.b,
                        None if disc.idx_b is None else disc.idx_b[sel],
                        disc.const[sel] if isinstance(disc.const, np.ndarray) else disc.const,
                        disc.values[sel], disc.group[sel], disc.max_type, disc.negate, disc.branch)
        if not exact:
            fl = self._float_rows(tans, node_index, disc, B)
            if fl is not None:
                return fl
        node = self.trace.nodes[node_index]
        leaves = [v for v in pytree.tree_leaves(node.args, is_leaf=lambda v: isinstance(v, Ref))
                  if isinstance(v, Ref) or _is_tensor_like(v)]
        length = disc.values.size
        rows = zeros((B, length))
        if disc.a is not None:
            ta = tans.get(leaves[disc.a]) if isinstance(leaves[disc.a], Ref) else None
            if ta is not None:
                rows = rows + _exact_t(ta.reshape(B, -1)[:, disc.idx_a])
        if disc.b is not None:
            tb = tans.get(leaves[disc.b]) if isinstance(leaves[disc.b], Ref) else None
            if tb is not None:
                rows = rows - _exact_t(tb.reshape(B, -1)[:, disc.idx_b])
        if disc.negate:
            rows = -rows
        return rows.T if _is_ball(rows) else np.asarray(rows, dtype=object).T

    def _float_rows(self, tans, node_index, disc, B):
        from ._fastfloat import FT

        node = self.trace.nodes[node_index]
        leaves = [v for v in pytree.tree_leaves(node.args, is_leaf=lambda v: isinstance(v, Ref))
                  if isinstance(v, Ref) or _is_tensor_like(v)]
        parts = []
        for pos, idx, sign in ((disc.a, disc.idx_a, 1), (disc.b, disc.idx_b, -1)):
            if pos is None or not isinstance(leaves[pos], Ref):
                continue
            t = tans.get(leaves[pos])
            if t is None:
                continue
            if not isinstance(t, FT):
                return None
            parts.append((t.view(np.ndarray).reshape(B, -1)[:, idx], sign))
        rows = np.zeros((B, disc.values.size))
        for block, sign in parts:
            b = sign * block
            s = rows + b
            # TwoSum: the rounding error of rows + b, exactly; zero means the sum is exact
            bb = s - rows
            err = (rows - (s - bb)) + (b - bb)
            if (err != 0).any() or not np.isfinite(s).all():
                return None
            rows = s
        if disc.negate:
            rows = -rows
        return rows.T

    def output_jacobian(self, ev: Evaluation, tans: dict, B: int):
        """The exact Jacobian (m, B) of the flattened float outputs."""
        rows = []
        for ref, t in zip(self.trace.outputs, self.trace.out_tensors):
            if ref is None or t is None or not t.is_floating_point():
                continue
            size = int(np.prod(t.shape, dtype=np.int64))
            tan = tans.get(ref)
            if tan is None:
                rows.append(zeros((size, B)))
            else:
                r = _exact_t(tan.reshape(B, size)).T
                rows.append(r if _is_ball(r) else np.asarray(r, dtype=object))
        return np.concatenate(rows, axis=0) if rows else zeros((0, B))

    def output_values(self, ev: Evaluation):
        vals = []
        for ref, t in zip(self.trace.outputs, self.trace.out_tensors):
            if ref is None or t is None or not t.is_floating_point():
                continue
            v = self._consts[ref.index] if ref.kind == "const" else ev.values[ref]
            vals.append(v.ravel() if _is_ball(v) else np.asarray(v, dtype=object).ravel())
        return np.concatenate(vals) if vals else np.empty(0, dtype=object)

    # ---------------------------------------------------------------- pattern
    def pattern(self, ev: Evaluation) -> Pattern:
        entries = []
        for node, d in zip(self.trace.nodes, ev.discs):
            if not d:
                continue
            counts: dict = {}
            ties = []
            kind = d[0].label
            for disc in d:
                s = disc.signs()
                if disc.max_type:
                    nt = int((s == 0).sum())
                    groups = np.unique(disc.group[s == 0])
                    counts["tied windows"] = counts.get("tied windows", 0) + int(groups.size)
                    counts["tie"] = counts.get("tie", 0) + nt
                    counts["windows"] = counts.get("windows", 0) + int(np.unique(disc.group).size) if disc.group.size else counts.get("windows", 0)
                    for g in groups[:3]:
                        members = disc.idx_a[(disc.group == g) & (s == 0)]
                        win = disc.idx_b[(disc.group == g)][0]
                        ties.append(f"window {int(g)}: entries {sorted({int(win), *map(int, members)})}")
                else:
                    for name, val in (("<", -1), ("tie", 0), (">", 1)):
                        c = int((s == val).sum())
                        if c:
                            key = f"{disc.label} {name}" if disc.label in ("lo", "hi") else name
                            counts[key] = counts.get(key, 0) + c
                    if disc.label in ("lo", "hi"):
                        counts["tie"] = counts.get("tie", 0) + int((s == 0).sum())
                    for i in np.nonzero(s == 0)[0][:3]:
                        ties.append(f"element {int(disc.group[i])} ({disc.label} = 0)" if disc.label not in ("cmp",)
                                    else f"element {int(disc.group[i])} (operands equal)")
            entries.append(PatternEntry(node.index, node.label, node.where, kind, counts, ties[:3], node.branch))
        return Pattern(entries)

    @staticmethod
    def signature(ev: Evaluation):
        """A hashable summary of the exact pattern: every discriminant's sign."""
        sig = []
        for d in ev.discs:
            sig.append(tuple(bytes(disc.signs().tobytes()) for disc in d))
        return tuple(sig)


_NO_BALLS = ("an argument holds irrational values enclosed in balls (from an earlier smooth op such as exp, "
             "softmax or a norm), and this op has no enclosure rule yet")


def _is_ball(x) -> bool:
    from ._ball import Ball

    return isinstance(x, Ball)


def _any_ball(*xs) -> bool:
    from ._ball import Ball

    return any(isinstance(v, Ball) for v in pytree.tree_leaves(xs))


def _no_complex(node, out) -> None:
    """A rule that turned an enclosure into Python objects (``np.asarray(ball, dtype=object)``)
    would compute on complex numbers: refuse it, naming the op."""
    from ._ball import Ball

    for v in pytree.tree_leaves(out):
        if isinstance(v, np.ndarray) and not isinstance(v, Ball) and v.dtype == object and v.size:
            if any(type(e) is complex for e in v.ravel().tolist()):
                raise UnsupportedOpError(node.op, node.where, "its rule converted an enclosure to Python objects "
                                         "(it has no enclosure support for this case)")


def has_balls(ev, upto: int | None = None) -> bool:
    """Whether an evaluation holds enclosed (irrational) values (in nodes up to ``upto``)."""
    from ._ball import Ball

    if upto is not None:
        return any(isinstance(v, Ball) for r, v in ev.values.items() if r.kind == "node" and r.index <= upto)
    cached = getattr(ev, "_has_balls", None)
    if cached is None:
        cached = any(isinstance(v, Ball) for v in ev.values.values())
        try:
            ev._has_balls = cached
        except AttributeError:  # pragma: no cover - a frozen evaluation
            pass
    return cached


def _obj(x):
    from .ops._util import obj

    return obj(x)


class NotModelled_(Exception):
    pass


def _is_small_int(v) -> bool:
    if isinstance(v, flint.fmpq):
        return v.q == 1 and abs(v.p) < (1 << 62)
    return isinstance(v, (int, np.integer, flint.fmpz)) and not isinstance(v, bool) and abs(int(v)) < (1 << 62)


def _is_mod(g) -> bool:
    from ._fixed import Mod

    return isinstance(g, Mod)


def _zeros_like(shape, like):
    from .ops._util import zeros_like_cot

    return zeros_like_cot(shape, like)


class NoReverse(Exception):
    """Reverse mode is not available for this trace (a rule without ``vjp``)."""


def _ref_leaves(args):
    """The Refs of a node's arguments aligned with ``ops._util.tensor_leaves`` of the resolved ones."""
    from .ops._util import tensor_leaves

    return tensor_leaves(args, Ref)


def _any_live(a, live) -> bool:
    if isinstance(a, Ref):
        return a in live
    if isinstance(a, (list, tuple)):
        return any(_any_live(v, live) for v in a)
    return False


def _exact_t(t):
    """A tangent block as exact rationals (verified floats are converted exactly)."""
    from ._fastfloat import FT, to_exact
    from ._fixed import Fx, to_exact as fx_exact

    if isinstance(t, Fx):
        return fx_exact(t)
    return to_exact(t) if isinstance(t, FT) else t


def _normalize(out):
    """Rules may return numpy scalars or fmpq for 0-d results: make every output an ndarray."""
    if isinstance(out, tuple):
        return tuple(_normalize(o) for o in out)
    if isinstance(out, np.ndarray):
        return out
    if isinstance(out, (bool, np.bool_)):
        return np.asarray(out, dtype=bool)
    if isinstance(out, (int, np.integer)) and not isinstance(out, bool):
        return np.asarray(out, dtype=np.int64)
    return np.asarray(out, dtype=object)


def _is_tensor_like(v):
    return isinstance(v, np.ndarray)


def same_cases(da: list, db: list) -> bool:
    """Whether two evaluations' discriminants of one node are in the same cases: their
    :func:`case_keys` are equal. With one layout (groups, and for windows the entries and the
    winners) and the same signs (for windows: the same tied entries) they are, which numpy
    compares at once; anything else is decided by the keys themselves."""
    def same(x, y):
        if x is None or y is None:
            return x is y
        return np.array_equal(np.asarray(x), np.asarray(y))

    if len(da) == len(db):
        fast = True
        for a, b in zip(da, db):
            if a.max_type != b.max_type or not same(a.group, b.group):
                fast = False
            elif a.max_type:
                fast = same(a.idx_a, b.idx_a) and same(a.idx_b, b.idx_b) and \
                    np.array_equal(a.signs() == 0, b.signs() == 0)
            else:
                fast = np.array_equal(a.signs(), b.signs())
            if not fast:
                break
        if fast:
            return True
    return [case_keys(a) for a in da] == [case_keys(b) for b in db]


def case_keys(disc: Disc):
    """Comparable case of every element of a discriminant set.

    For window (max-type) discriminants the case is the tie set of each window,
    which does not depend on which tied entry was taken as the winner.
    """
    s = disc.signs()
    if not disc.max_type:
        return list(zip(disc.group.tolist(), s.tolist()))
    sets: dict = {}
    for g, ia, ib, sg in zip(disc.group.tolist(), disc.idx_a.tolist(), disc.idx_b.tolist(), s.tolist()):
        st = sets.setdefault(g, {ib})
        if sg == 0:
            st.add(ia)
    return sorted((g, tuple(sorted(v))) for g, v in sets.items())


def _is_nonfinite(t) -> bool:
    import torch

    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 0 and not bool(torch.isfinite(t).all())


def _nonfinite_value(t):
    from ._exact import from_floats_nonfinite

    import torch

    return from_floats_nonfinite(t.detach().cpu().to(torch.float64).numpy())

"""Random ops with their draws fixed: ``mtcheck.check(fn, *inputs, torch_seed=s)``.

A program with randomness is a function ``f(x, xi)`` of its input and its random draws ``xi``.
With ``torch_seed`` mtcheck puts torch's generators in the state ``torch.manual_seed(s)`` gives
before *every* evaluation of the program (the trace, forward mode, re-traces of probes, replays of
a recorded program), and restores the caller's RNG state afterwards (as ``torch.random.fork_rng()``
does; see :func:`fixed_draws`). ``xi`` is then the same
in every evaluation, so the program is the deterministic function ``x -> f(x, xi)``, and
PyTorch's gradient is the gradient of that function: that is what is checked. The trace is run
a second time and must give bit-identical outputs, else :class:`~mtcheck.errors.CheckInputError`
("the random draws differ between evaluations": a draw from a generator of its own, numpy,
Python's ``random``, a counter).

How each random op enters the exact model (draws fixed):

- *constants*: ops whose output ignores the values of their tensor arguments (``randn_like``,
  ``rand_like``, ``randint_like``, ``uniform_``, ``normal_``, ``cauchy_``, ``exponential_``,
  ``geometric_``, ``log_normal_``, ``random_``, ``bernoulli_(p: float)``, ``bernoulli(x, p: float)``,
  the factories ``rand``, ``randn``, ``randint``, ``randperm``): their outputs are read from the
  traced tensors and are constants of the program, like weights. CPU dropout (``empty_like``,
  ``bernoulli_(1 - p)``, ``div_``, ``mul``) is then ``x * mask / (1 - p)`` with a constant
  mask: linear in ``x``, modelled exactly.
- ``native_dropout(x, p, train)`` (the fused kernel): ``x * mask * 1/(1-p)``, the mask read from
  the op's recorded second output (:class:`NativeDropout`).
- ``rrelu_with_noise`` in training: the kernel draws a slope ``r ~ U(lower, upper)`` for each
  element ``<= 0``, in memory order, and stores it in ``noise`` (1 for an element ``> 0``). The
  noise written by the op is read from the trace: a relu-like kink at 0 with slope ``noise[i]``
  on the negative side (:class:`RreluWithNoise`). Because the draws go to the elements ``<= 0``
  *in order*, an element at 0 followed by a later element ``<= 0`` makes the later slopes jump
  when it changes sign: discontinuous, refused (outside the theory). In eval mode it is
  ``leaky_relu`` with slope ``(lower + upper) / 2``, not random at all.
- ``fractional_max_pool2d/3d``: the random samples are an argument (a constant with the draws
  fixed); they choose the windows (``generate_intervals`` of ATen, reproduced in the input's
  float arithmetic and checked against the framework's recorded indices): a max-pool over those
  windows (:class:`FractionalMaxPool2d`).
- ops whose output is a step function of an input with the draw hidden in the kernel
  (``bernoulli(p)`` = ``[u < p]``, ``multinomial``, ``poisson``): a constant (the traced value) when
  that input does not depend on the differentiated inputs (:class:`DrawOfInput`); refused with the
  reason when it does (locally constant off its jumps, but ``u`` is not visible, so "off a jump"
  cannot be decided exactly). Refused: ``_standard_gamma`` with an input-dependent shape, and
  ``normal(mean, std)`` with a mean or std that depends on the inputs: with the draws fixed it is
  ``mean + std * z``, but PyTorch defines a sample's derivative as 0 by design (no
  reparameterization), which is not that function's gradient.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from . import NotLipschitz, NotModelled, Rule, register, reject
from .._exact import Q0, as_exact
from ._util import arg_grads, exact_scalar, obj
from .nonsmooth import _elem_disc, select_windows, window_disc, winner_jvp, winner_vjp

SEED_HINT = ("or pass torch_seed=<int> to mtcheck.check to check it with its random draws fixed "
             "(torch.manual_seed before every evaluation)")
REASON = f"it is random; put the model in eval mode (model.eval()), remove the randomness, {SEED_HINT}"

_SEED: contextvars.ContextVar = contextvars.ContextVar("mtcheck_torch_seed", default=None)


def active_seed():
    """The seed of the check under way (``torch_seed``), or None."""
    s = _SEED.get()
    return None if s is None else s[0]


@contextlib.contextmanager
def fixed_draws(seed):
    """Every evaluation inside (through :func:`reseed`) starts from ``torch.manual_seed(seed)``;
    the caller's RNG state is restored on the way out (as ``torch.random.fork_rng()`` does).
    ``seed=None``: nothing changes.

    The generators are driven directly (``torch.default_generator``, and CUDA's where CUDA is
    initialised) rather than through ``torch.manual_seed`` / ``fork_rng``, whose first call
    imports TorchDynamo (seconds) and which format a stack trace per call for CUDA's lazy seeding."""
    if seed is None:
        yield
        return
    import torch

    gen = torch.default_generator
    saved = gen.get_state()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    saved_cuda = [torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())] if cuda else None
    gen.manual_seed(int(seed))
    tok = _SEED.set((int(seed), gen.get_state(), cuda))
    try:
        yield
    finally:
        _SEED.reset(tok)
        gen.set_state(saved)
        if saved_cuda is not None:
            for i, st in enumerate(saved_cuda):
                torch.cuda.set_rng_state(st, i)


def reseed() -> None:
    """Called before each evaluation of the user's program: the same draws every time
    (the state ``torch.manual_seed(seed)`` gives)."""
    s = _SEED.get()
    if s is not None:
        import torch

        seed, state, cuda = s
        torch.default_generator.set_state(state)
        if cuda:
            torch.cuda.manual_seed_all(seed)


def validate_seed(seed):
    from ..errors import CheckInputError

    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise CheckInputError(f"torch_seed must be an int or None, not {type(seed).__name__} ({seed!r:.40})")
    if not -(1 << 63) <= int(seed) < (1 << 64):
        raise CheckInputError(f"torch_seed {int(seed)} is out of range for torch.manual_seed")
    return int(seed)


def verify_same(fn, leaves, traced_out) -> None:
    """Run ``fn`` again from the seed and compare its outputs bit for bit with the trace's."""
    import torch
    import torch.utils._pytree as pytree

    from ..errors import CheckInputError

    if _SEED.get() is None:
        return
    reseed()
    with torch.enable_grad():
        again = fn(*leaves)
    a, sa = pytree.tree_flatten(traced_out)
    b, sb = pytree.tree_flatten(again)
    ok = sa == sb and len(a) == len(b)
    for u, v in zip(a, b):
        if not ok:
            break
        if isinstance(u, torch.Tensor) or isinstance(v, torch.Tensor):
            ok = (isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor) and u.shape == v.shape
                  and u.dtype == v.dtype and _bits_equal(u.detach(), v.detach()))
        else:
            ok = u == v
    if not ok:
        raise CheckInputError(
            f"the random draws differ between evaluations with torch_seed={active_seed()}: two evaluations of the "
            "program from the same torch.manual_seed gave different outputs (it draws from a torch.Generator of "
            "its own, numpy, Python's random, or keeps state between calls); mtcheck can check it only with "
            "the same draws in every evaluation")


def _bits_equal(u, v) -> bool:
    import torch

    if u.is_floating_point() and u.dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        iv = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
              torch.bfloat16: torch.int16}[u.dtype]
        return bool(torch.equal(u.contiguous().view(iv), v.contiguous().view(iv)))
    return bool(torch.equal(u, v))


# ---------------------------------------------------------------------------- the trace

# output ignores the values of every tensor argument (shape, dtype, device only)
_CONSTANT = frozenset({
    "aten.randn_like.default", "aten.randn_like.generator", "aten.rand_like.default", "aten.rand_like.generator",
    "aten.randint_like.default", "aten.randint_like.low_dtype",
    "aten.randint_like.generator", "aten.randint_like.low_generator_dtype",
    "aten.uniform_.default", "aten.uniform.default", "aten.normal_.default", "aten.cauchy_.default",
    "aten.cauchy.default", "aten.exponential_.default", "aten.exponential.default", "aten.geometric_.default",
    "aten.geometric.default", "aten.log_normal_.default", "aten.log_normal.default", "aten.random_.default",
    "aten.random_.from", "aten.random_.to", "aten.bernoulli_.float", "aten.bernoulli.p",
    "aten.rand.default", "aten.rand.generator", "aten.randn.default", "aten.randn.generator",
    "aten.randint.default", "aten.randint.generator", "aten.randint.low", "aten.randint.low_generator",
    "aten.randperm.default", "aten.randperm.generator", "aten.normal.float_float",
})
# a rule of this module models them
_MODELLED = frozenset({"aten.rrelu_with_noise.default", "aten.native_dropout.default"})
_NORMAL = ("with the draws fixed it is mean + std * z, whose derivative is 1 in mean and z in std, but PyTorch "
           "defines the derivative of a sample as 0 by design (no reparameterization: write mean + std * "
           "torch.randn_like(mean) for that), so its gradient is not that of the function with the draws fixed "
           "and mtcheck does not judge it")
_STEP = {
    "aten.bernoulli.default": "its output [u < p] is a step function of the probabilities p",
    "aten.bernoulli.Tensor": "its output [u < p] is a step function of the probabilities p",
    "aten.bernoulli_.Tensor": "its output [u < p] is a step function of the probabilities p",
    "aten.multinomial.default": "the indices it draws are a step function of the probabilities",
    "aten.poisson.default": "its counts are a step function of the rates",
    "aten._standard_gamma.default": "its draw is a function of the shape parameter computed inside the kernel",
    "aten.normal.Tensor_Tensor": _NORMAL,
    "aten.normal.Tensor_float": _NORMAL,
    "aten.normal.float_Tensor": _NORMAL,
    # randint_like(x, high: Tensor): the draws are a step function of the bound (x gives the shape only)
    "aten.randint_like.Tensor": "its draws are a step function of the bound high",
    "aten.randint_like.Tensor_generator": "its draws are a step function of the bound high",
}
# recorded as nodes (DrawOfInput): constant when their input does not depend on the differentiated inputs
_HIDDEN_STEP = frozenset({"aten.bernoulli.default", "aten.bernoulli.Tensor", "aten.multinomial.default",
                          "aten.poisson.default"})
_VALUE_ARGS = {"aten.randint_like.Tensor": (1,), "aten.randint_like.Tensor_generator": (1,)}

# random ops PyTorch tags nondeterministic_seeded that the reject lists did not name
reject("random", REASON, "aten.rand.generator", "aten.randn.generator", "aten.randint.generator",
       "aten.randint.low", "aten.randint.low_generator", "aten.randint_like.Tensor", "aten.randint_like.generator",
       "aten.randint_like.Tensor_generator", "aten.randint_like.low_generator_dtype", "aten.randn_like.generator",
       "aten.rand_like.generator", "aten.randperm.generator", "aten.uniform.default", "aten.cauchy.default",
       "aten.exponential.default", "aten.geometric.default", "aten.log_normal.default", "aten.bernoulli.Tensor",
       "aten._standard_gamma.default", "aten.rrelu_with_noise_.default", "aten.rrelu_with_noise_functional.default",
       "aten._fused_dropout.default")


def _training(name, args, kwargs) -> bool:
    if name == "aten.rrelu_with_noise.default":
        return bool(args[4] if len(args) > 4 else kwargs.get("training", False))
    if name == "aten.native_dropout.default":
        t = args[2] if len(args) > 2 else kwargs.get("train")
        p = args[1] if len(args) > 1 else kwargs.get("p")
        return (t is None or bool(t)) and 0 < float(p)     # train=None is training (ATen)
    return True


def in_trace(rec, func, name, args, kwargs, out, where) -> bool:
    """A random op met by the tracer (``rec``, a ``_Recorder``), after it ran. Returns True when it
    was recorded here (its outputs bound as constants), False when the tracer goes on with it as
    an ordinary node (a rule of this module models it); raises UnsupportedOpError when refused."""
    import torch
    import torch.utils._pytree as pytree

    from ..errors import UnsupportedOpError

    seed = active_seed()
    if name in _MODELLED and not _training(name, args, kwargs):
        return False            # eval mode: not random at all
    if seed is None:
        raise UnsupportedOpError(name, where, REASON)
    if name in _MODELLED:
        if name == "aten.rrelu_with_noise.default":
            # the noise the op wrote (the slopes it drew) is what the rule reads: snapshot it anew
            noise = args[1]
            rec.const_ids.pop(id(noise), None)
            rec.map[id(noise)] = rec._const(noise)
        return False
    if name in _HIDDEN_STEP:
        return False            # a node of its own: a constant unless its input depends on wrt (DrawOfInput)
    if name in _STEP:
        pos = _VALUE_ARGS.get(name)
        vals = [a for i, a in enumerate(args) if pos is None or i in pos]
        refs = [rec.map.get(id(a)) for a in pytree.tree_leaves((vals, kwargs)) if isinstance(a, torch.Tensor)]
        if any(r is not None and r.kind != "const" for r in refs):
            raise UnsupportedOpError(
                name, where, _STEP[name] if _STEP[name] is _NORMAL else
                f"{_STEP[name]}, and its input here depends on the inputs checked: with the draws fixed "
                "(torch_seed) it is locally constant away from its jumps, but the draw u that places a jump is "
                "hidden in the kernel, so mtcheck cannot decide exactly that the input is off one")
        _bind_constant(rec, func, args, out, name, where)
        return True
    if name in _CONSTANT:
        _bind_constant(rec, func, args, out, name, where)
        return True
    raise UnsupportedOpError(name, where, "it is random and mtcheck has no model of it with its draws fixed")


def _bind_constant(rec, func, args, out, name, where):
    """The op's outputs (and a tensor it overwrote in place) are constants of the program: the
    values in the trace. Aliases of an overwritten tensor go stale (their values changed)."""
    import torch

    from ..trace import _overlap, _storage_key

    for i, a in enumerate(func._schema.arguments):
        if a.alias_info is not None and a.alias_info.is_write and i < len(args) and isinstance(args[i], torch.Tensor):
            t = args[i]
            for other in rec.storage.get(_storage_key(t), ()):
                o = rec.tensors.get(other)
                if other != id(t) and (o is None or _overlap(o, t)) and id(t) in rec.map:
                    rec.stale[other] = f"{name} at {where}"
            rec.const_ids.pop(id(t), None)
            rec.map[id(t)] = rec._const(t)
            rec.stale.pop(id(t), None)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    for o in outs:
        if isinstance(o, torch.Tensor):
            rec.const_ids.pop(id(o), None)
            rec.map[id(o)] = rec._const(o)
            rec.stale.pop(id(o), None)
            rec.keep.append(o)


# ---------------------------------------------------------------------------- rules

@register("aten.rrelu_with_noise.default")
class RreluWithNoise(Rule):
    """``rrelu_with_noise(x, noise, lower, upper, training)``. Training: ``x`` where ``x > 0``, else
    ``x * noise`` with ``noise`` the slopes the op drew (read from the trace). Eval: leaky relu with
    slope ``(lower + upper) / 2``."""

    nonsmooth = True

    def _slopes(self, ctx, args, kwargs):
        train = bool(args[4] if len(args) > 4 else kwargs.get("training", False))
        if not train:
            lo = args[2] if len(args) > 2 else kwargs.get("lower", 0.125)
            hi = args[3] if len(args) > 3 else kwargs.get("upper", 1.0 / 3.0)
            return exact_scalar((float(lo) + float(hi)) / 2, ctx.dtype), False
        noise = args[1]
        if not isinstance(noise, np.ndarray) or noise.shape != args[0].shape:
            raise NotModelled("rrelu_with_noise with a noise tensor not of the input's shape")
        return obj(noise), True

    def forward(self, ctx, args, kwargs):
        x = obj(args[0])
        s, train = self._slopes(ctx, args, kwargs)
        if train:
            flat = x.ravel()
            nonpos = np.array([v <= 0 for v in flat.tolist()], dtype=bool)
            zero = np.array([v == 0 for v in flat.tolist()], dtype=bool)
            if zero.any():
                later = np.cumsum(nonpos[::-1])[::-1] - nonpos      # elements <= 0 after each one
                bad = np.nonzero(zero & (later > 0))[0]
                if bad.size:
                    raise NotLipschitz(
                        f"in training rrelu draws a slope for each element <= 0 in memory order; element "
                        f"{int(bad[0])} is at 0 and later elements are <= 0, so when it changes sign their "
                        "slopes jump to other draws (the program is discontinuous there)")
        pos = np.asarray(x > 0, dtype=bool)
        ctx.aux["pos"] = pos
        return np.where(pos, x, x * s)

    def discs(self, ctx, args, kwargs, out):
        return [_elem_disc("rrelu", obj(args[0]), 0, Q0, None, args[0].shape, ctx)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        if len(targs) > 1 and targs[1] is not None:
            raise NotModelled("rrelu_with_noise with a noise tensor that depends on the input")
        s, _ = self._slopes(ctx, args, kwargs)
        t = targs[0]
        if t is None:
            return None
        return np.where(ctx.aux["pos"][None], t, t * (s[None] if isinstance(s, np.ndarray) else s))

    def vjp(self, ctx, args, kwargs, out, cot):
        s, _ = self._slopes(ctx, args, kwargs)
        g = np.where(ctx.aux["pos"][None], cot, cot * (s[None] if isinstance(s, np.ndarray) else s))
        return arg_grads(args, {0: g})


@register("aten.native_dropout.default")
class NativeDropout(Rule):
    """``native_dropout(x, p, train) = (x * mask * scale, mask)``, ``scale = 1/(1-p)`` (0 at p = 1), the
    mask read from the op's recorded second output (a constant with the draws fixed)."""

    def _parts(self, ctx, args, kwargs):
        x = args[0]
        p = float(args[1] if len(args) > 1 else kwargs["p"])
        t = args[2] if len(args) > 2 else kwargs.get("train")
        if (t is not None and not t) or p == 0:
            return None, None
        rec = ctx.recorded
        if not isinstance(rec, tuple) or len(rec) < 2 or tuple(rec[1].shape) != tuple(x.shape):
            raise NotModelled("native_dropout without its recorded mask")
        mask = as_exact(rec[1].detach().double().numpy())
        p1m = 1.0 - p
        scale = exact_scalar(0.0 if p1m == 0 else 1.0 / p1m, ctx.dtype)
        return obj(mask), scale

    def forward(self, ctx, args, kwargs):
        x = obj(args[0])
        mask, scale = self._parts(ctx, args, kwargs)
        rec = ctx.recorded
        if mask is None:
            ones = np.ones(x.shape, dtype=bool)
            return x, ones
        mdt = rec[1].dtype
        import torch

        mval = np.asarray(rec[1].numpy(), dtype=bool) if mdt == torch.bool else mask
        ctx.aux["ms"] = mask * scale
        return x * mask * scale, mval

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        t = targs[0]
        if t is None:
            return None
        ms = ctx.aux.get("ms")
        return (t if ms is None else t * ms[None]), None

    def vjp(self, ctx, args, kwargs, out, cot):
        c = cot[0] if isinstance(cot, tuple) else cot
        if c is None:
            return arg_grads(args, {})
        ms = ctx.aux.get("ms")
        return arg_grads(args, {0: c if ms is None else c * ms[None]})


@register("aten.bernoulli.default", "aten.bernoulli.Tensor", "aten.multinomial.default", "aten.poisson.default")
class DrawOfInput(Rule):
    """``bernoulli(p) = [u < p]``, ``multinomial(probs)``, ``poisson(rates)``: with the draws fixed, a step
    function of its input, with the draw ``u`` that places each jump hidden in the kernel. Where that
    input does not depend on the differentiated inputs (it is computed from weights or from inputs
    left out of ``wrt``) the output is a constant of the check: the value in the trace. Where it does,
    the op is locally constant off its jumps, but whether the input is off one cannot be decided
    exactly: refused (no tangent is ever propagated through it)."""

    balls = True        # its arguments' values are never computed on (an enclosed p is fine)

    def forward(self, ctx, args, kwargs):
        rec = ctx.recorded
        if not hasattr(rec, "detach"):
            raise NotModelled("a random draw without its recorded value")
        v = rec.detach()
        return as_exact(v.numpy()) if v.is_floating_point() else np.asarray(v.numpy())

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        if any(t is not None for t in targs) or any(t is not None for t in (tkwargs or {}).values()):
            raise NotModelled(
                f"{_STEP[ctx.op]}, and that input depends on the inputs differentiated: with the draws fixed "
                "(torch_seed) it is locally constant away from its jumps, but the draw u that places a jump is "
                "hidden in the kernel, so mtcheck cannot decide exactly that the input is off one")
        return None


def _intervals(sample, n_in, n_out, pool, npdt):
    """ATen's ``generate_intervals`` (FractionalMaxPooling.h) in the input's float arithmetic."""
    seq = [0] * n_out
    if n_out > 1:
        alpha = npdt(n_in - pool) / npdt(n_out - 1)
        with np.errstate(all="ignore"):
            for i in range(n_out - 1):
                seq[i] = int(npdt((npdt(i) + sample) * alpha)) - int(npdt(sample * alpha))
    if n_out > 0:
        seq[n_out - 1] = n_in - pool
    return seq


@register("aten.fractional_max_pool2d.default")
class FractionalMaxPool2d(Rule):
    """``fractional_max_pool2d(x, kernel, output_size, random_samples) = (values, indices)``: a max over
    windows whose starts the random samples choose (a constant argument with the draws fixed)."""

    nonsmooth = True
    nsp = 2
    order = (1, 0)          # random_samples[plane][k] gives the start sequence of spatial dim order[k]

    def forward(self, ctx, args, kwargs):
        import torch

        x = obj(args[0])
        kernel, osize, samples = list(args[1]), list(args[2]), args[3]
        nsp = self.nsp
        if not isinstance(samples, np.ndarray):
            raise NotModelled("fractional max-pool without a random_samples tensor")
        npdt = {torch.float32: np.float32, torch.float64: np.float64}.get(ctx.dtype)
        if npdt is None:
            raise NotModelled(f"fractional max-pool in {ctx.dtype} (modelled for float32 and float64)")
        lead, sp = x.shape[: x.ndim - nsp], x.shape[x.ndim - nsp:]
        R, S = int(np.prod(lead, dtype=np.int64)), int(np.prod(sp, dtype=np.int64))
        smp = samples.reshape(-1, nsp)
        if smp.shape[0] != R:
            raise NotModelled("fractional max-pool whose random_samples do not match the planes")
        O = int(np.prod(osize, dtype=np.int64))
        K = int(np.prod(kernel, dtype=np.int64))
        strides = [int(np.prod(sp[d + 1:], dtype=np.int64)) for d in range(nsp)]
        offs = np.zeros(1, dtype=np.int64)        # offsets of a window's elements (row-major, as the kernel)
        for d in range(nsp):
            offs = (offs[:, None] + np.arange(kernel[d], dtype=np.int64)[None] * strides[d]).ravel()
        idx = np.zeros((R, O, K), dtype=np.int64)
        for r in range(R):
            seqs = [None] * nsp
            for k, d in enumerate(self.order):
                sv = npdt(float(smp[r, k]))
                seqs[d] = _intervals(sv, sp[d], osize[d], kernel[d], npdt)
            start = np.zeros(1, dtype=np.int64)
            for d in range(nsp):
                start = (start[:, None] + np.asarray(seqs[d], dtype=np.int64)[None] * strides[d]).ravel()
            for d in range(nsp):
                if min(seqs[d]) < 0 or max(seqs[d]) + kernel[d] > sp[d]:
                    raise NotModelled("fractional max-pool windows outside the input")
            idx[r] = start[:, None] + offs[None, :]
        x2 = x.reshape(R, S)
        vals = np.take_along_axis(x2, idx.reshape(R, O * K), axis=1).reshape(R * O, K)
        fidx = (np.arange(R)[:, None, None] * S + idx).reshape(R * O, K)
        best, winner, ties = select_windows(vals, None, False, None)
        rec = ctx.recorded
        if isinstance(rec, (tuple, list)) and len(rec) > 1:
            ri = rec[1].reshape(R * O, 1).numpy()
            match = idx.reshape(R * O, K) == ri
            if not match.any(axis=1).all():
                # the windows reproduced here are not the kernel's: never model another function
                raise NotModelled("the framework's indices lie outside the windows reproduced from the random samples")
            prefer = np.argmax(match, axis=1)
            tied = ties[np.arange(R * O), prefer]
            winner = np.where(tied, prefer, winner)
        ctx.aux.update(fidx=fidx, winner=winner, vals=vals, valid=np.ones((R * O, K), dtype=bool))
        shape = tuple(lead) + tuple(osize)
        spatial = idx.reshape(R * O, K)[np.arange(R * O), winner]
        return obj(best).reshape(shape), spatial.reshape(shape).astype(np.int64)

    def discs(self, ctx, args, kwargs, out):
        a = ctx.aux
        return [window_disc("window", 0, a["fidx"], a["vals"], a["valid"], a["winner"], False)]

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        if len(targs) > 3 and targs[3] is not None:
            raise NotModelled("fractional max-pool whose random samples depend on the input")
        if targs[0] is None:
            return None
        return winner_jvp(ctx, out, targs[0])

    def vjp(self, ctx, args, kwargs, out, cot):
        return arg_grads(args, {0: winner_vjp(ctx, args[0], cot)})


@register("aten.fractional_max_pool3d.default")
class FractionalMaxPool3d(FractionalMaxPool2d):
    nsp = 3
    order = (0, 1, 2)


__all__ = ["REASON", "SEED_HINT", "active_seed", "fixed_draws", "in_trace", "reseed", "validate_seed",
           "verify_same"]

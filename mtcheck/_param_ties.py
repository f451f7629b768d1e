"""Ties in parameter space: Hypothesis strategies that put a model's parameters on kinks for a
given batch (exported by :mod:`mtcheck.strategies`).

Each strategy draws a *modified copy* of the model (the original is never touched) and returns a
:class:`ParamTie`: the copy, what was changed and whether the kink is exact by construction. Check it
with ``mtcheck.check(tie.model, *batch, wrt="parameters")``. The kinds:

- ``bias_kink``: one unit's bias set to minus its pre-activation on one sample, so that sample sits
  exactly at relu's kink (the unit's tie row in parameter space is ``(h, 1)``, nonzero). The
  pre-activation is computed exactly (fractions) from the layer's float input; the bias is used only
  when minus that value is representable in the parameter dtype, else the unit is zeroed
  (``zero_unit``) and ``ParamTie.note`` says so. On the first layer (its input is the data) the kink is
  exact; on deeper layers it is exact when the float forward up to the layer is (float64 with dyadic
  weights), and otherwise a kink of the float program that mtcheck reports as ``ROUNDING_BRANCH``.
- ``zero_unit``: one unit's weights and bias set to 0: its pre-activation is exactly 0 on every
  sample, in every dtype (a dead-start unit).
- ``zero_bias``: the biases of some layers set to 0 (zero-initialised biases): every unit whose
  receptive field is zero on a sample (a zero background) sits at the kink.
- ``pool_bias``: a conv channel's bias set so that, on one sample, the largest pre-activation of one
  2x2 pooling window is exactly 0: after relu the whole window ties at 0 with its maximum on the kink
  (the same exactness rule as ``bias_kink``).
- ``equal_weights``: a conv filter made constant (every weight equal to its first): pooling windows
  whose patches have equal sums tie, with tie rows ``p_i - p_j`` in parameter space; for a linear
  layer, one unit's weights and bias copied to another (the two units tie in any max over units).

Only ``nn.Linear`` and ``nn.Conv1d``/``nn.Conv2d`` (groups = 1) layers with their usual bias are changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn as nn
import torch.nn.functional as F

KINDS = ("bias_kink", "zero_unit", "zero_bias", "pool_bias", "equal_weights")
# and, separately (a float kink, not an exact one): float_param_tie / float_param_ties, kind "float_bias"


@dataclass
class ParamTie:
    """A model copy with parameters on a kink. ``exact``: the kink holds in exact arithmetic by
    construction (True), or is a kink of the float program that may be rounding (False)."""

    model: nn.Module
    kind: str
    layer: str
    unit: int | None = None
    sample: int | None = None
    exact: bool = True
    note: str = ""


def _layers(model):
    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) or (isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups == 1
                                        and isinstance(m.padding, (tuple, int))):
            out.append((name, m))
    return out


def _inputs(model, batch):
    """The float input of every layer on ``batch`` (the first call of each), and whether it is the data."""
    seen, hooks = {}, []

    def is_data(h):
        return any(isinstance(t, torch.Tensor) and t.numel() == h.numel() and t.dtype == h.dtype
                   and torch.equal(t.reshape(-1), h.reshape(-1)) for t in batch)

    for name, m in _layers(model):
        def hook(mod, args, name=name):
            if name not in seen and args and isinstance(args[0], torch.Tensor):
                seen[name] = (args[0].detach().clone(), is_data(args[0].detach()))
        hooks.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(*batch)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _patches(m, h):
    """(samples, positions, fan-in) float64 receptive fields of ``m``'s output units on ``h``."""
    h = h.double()
    if isinstance(m, nn.Linear):
        return h.reshape(-1, h.shape[-1])[:, None, :]
    if isinstance(m, nn.Conv1d):
        h = h.unsqueeze(-2)
        k, s, p, d = (1, m.kernel_size[0]), (1, m.stride[0]), (0, m.padding[0]), (1, m.dilation[0])
    else:
        k, s, p, d = m.kernel_size, m.stride, m.padding, m.dilation
    if isinstance(p, str):
        raise ValueError("string padding")
    cols = F.unfold(h, k, dilation=d, padding=p, stride=s)            # (N, C*k, L)
    return cols.transpose(1, 2)


def _exact_dot(w, v):
    return sum((Fraction(float(a)) * Fraction(float(b)) for a, b in zip(w.tolist(), v.tolist()) if a and b),
               Fraction(0))


def _representable(v: Fraction, dtype) -> bool:
    t = torch.tensor(float(v), dtype=torch.float64).to(dtype)
    return bool(torch.isfinite(t)) and Fraction(t.item()) == v


def _as_batch(batch):
    if isinstance(batch, torch.Tensor):
        return (batch,)
    return tuple(batch)


def _strategy(model, batch, kinds):
    from hypothesis import strategies as st

    batch = _as_batch(batch)
    layers = _layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear / nn.Conv1d / nn.Conv2d layer to put on a kink")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown kinds {bad}; known: {KINDS}")
    feeds = _inputs(model, batch)

    @st.composite
    def draw(d):
        kind = d(st.sampled_from(list(kinds)))
        net = copy.deepcopy(model)
        lay = dict(_layers(net))
        name = d(st.sampled_from([n for n, _ in layers]))
        m = lay[name]
        w, b = m.weight, m.bias
        units = w.shape[0]
        with torch.no_grad():
            if kind == "zero_bias":
                chosen = [n for n in lay if d(st.booleans())] or [name]
                for n in chosen:
                    if lay[n].bias is not None:
                        lay[n].bias.zero_()
                return ParamTie(net, kind, ",".join(chosen))
            u = d(st.integers(0, units - 1))
            if kind == "zero_unit" or (kind in ("bias_kink", "pool_bias") and (b is None or name not in feeds)):
                w[u].zero_()
                if b is not None:
                    b[u].zero_()
                note = "" if kind == "zero_unit" else f"{kind} not possible here (no bias or the layer was not run): " \
                                                      "unit zeroed instead"
                return ParamTie(net, "zero_unit", name, u, note=note)
            if kind == "equal_weights":
                if isinstance(m, nn.Linear) and units > 1:
                    v = d(st.integers(0, units - 1).filter(lambda j: j != u))
                    w[v].copy_(w[u])
                    if b is not None:
                        b[v].copy_(b[u])
                    return ParamTie(net, kind, name, u, note=f"unit {v} made equal to unit {u}")
                w[u].fill_(float(w[u].reshape(-1)[0]))
                return ParamTie(net, kind, name, u, exact=False,
                                note="constant filter: windows whose patches have equal sums tie")
            h, is_data = feeds[name]
            P = _patches(m, h)                                  # (N, L, fan-in)
            s = d(st.integers(0, P.shape[0] - 1))
            wrow = w[u].reshape(-1).double()
            if kind == "bias_kink":
                pos = d(st.integers(0, P.shape[1] - 1))
                return _bias_kink(net, name, u, s, pos, P, is_data,
                                  lambda nz: nz[d(st.integers(0, len(nz) - 1))])
            else:  # pool_bias: a 2x2 window (2 along a conv1d) of the conv output
                if isinstance(m, nn.Linear):
                    pos = d(st.integers(0, P.shape[1] - 1))
                    target = [_exact_dot(wrow, P[s, pos])]
                else:
                    oshape = _out_shape(m, h)
                    if isinstance(m, nn.Conv1d):
                        i = d(st.integers(0, max(oshape[0] // 2 - 1, 0)))
                        idx = [2 * i + a for a in range(2) if 2 * i + a < oshape[0]]
                    else:
                        i = d(st.integers(0, max(oshape[0] // 2 - 1, 0)))
                        j = d(st.integers(0, max(oshape[1] // 2 - 1, 0)))
                        idx = [(2 * i + a) * oshape[1] + 2 * j + c for a in range(2) for c in range(2)
                               if 2 * i + a < oshape[0] and 2 * j + c < oshape[1]]
                    target = [_exact_dot(wrow, P[s, k]) for k in idx]
            val = -max(target)
            if not _representable(val, b.dtype):
                w[u].zero_()
                b[u].zero_()
                return ParamTie(net, "zero_unit", name, u, s,
                                note=f"{kind}: minus the pre-activation is not representable in {b.dtype}; "
                                     "unit zeroed instead")
            b[u] = float(val)
            return ParamTie(net, kind, name, u, s, exact=is_data,
                            note="" if is_data else "on a hidden layer: exact only when the float forward to it is")

    return draw()


def _bias_kink(net, name, u, s, pos, P, is_data, pick):
    """Set unit ``u`` of layer ``name`` so that its pre-activation at sample ``s``, output position ``pos``
    is exactly 0: by its bias when minus the exact pre-activation is a float of the dtype, else keeping
    one weight (``pick`` chooses it among the nonzero inputs), rounded to a power of two, and zeroing the
    others; else zeroing the unit."""
    m = dict(_layers(net))[name]
    w, b = m.weight, m.bias
    wrow = w[u].reshape(-1).double()
    v = P[s, pos]
    val = -_exact_dot(wrow, v)
    with torch.no_grad():
        if _representable(val, b.dtype):
            b[u] = float(val)
            return ParamTie(net, "bias_kink", name, u, s, exact=is_data,
                            note="" if is_data else "on a hidden layer: exact only when the float forward to it is")
        nz = [k for k, a in enumerate(v.tolist()) if a != 0]
        if nz:
            k = pick(nz)
            wk = float(wrow[k]) or 1.0
            p2 = 2.0 ** round(torch.log2(torch.tensor(abs(wk))).item()) * (1 if wk > 0 else -1)
            cand = -Fraction(p2) * Fraction(float(v[k]))
            if _representable(cand, b.dtype):
                flat = w[u].reshape(-1)
                flat.zero_()
                flat[k] = p2
                b[u] = float(cand)
                return ParamTie(net, "bias_kink", name, u, s, exact=is_data,
                                note=f"minus the pre-activation is not representable in {b.dtype}: the unit "
                                     f"keeps one weight ({p2:g} on input {k}), the others set to 0")
        w[u].zero_()
        b[u].zero_()
    return ParamTie(net, "zero_unit", name, u, s, note=f"bias_kink: minus the pre-activation is not representable "
                                                      f"in {b.dtype}; unit zeroed instead")


def relu_kink(model: nn.Module, batch, layer: str, unit: int, sample: int = 0, position: int = 0) -> ParamTie:
    """Deterministic ``bias_kink``: a copy of ``model`` whose ``layer`` unit ``unit`` has pre-activation
    exactly 0 on ``sample`` (output ``position`` for a convolution). See the module docstring."""
    batch = _as_batch(batch)
    feeds = _inputs(model, batch)
    net = copy.deepcopy(model)
    lay = dict(_layers(net))
    if layer not in lay or layer not in feeds:
        raise ValueError(f"no linear/conv layer {layer!r} that runs on the batch; layers: {list(lay)}")
    if lay[layer].bias is None:
        raise ValueError(f"layer {layer!r} has no bias")
    h, is_data = feeds[layer]
    P = _patches(lay[layer], h)
    return _bias_kink(net, layer, unit, sample, position, P, is_data, lambda nz: nz[0])


def _out_shape(m, h):
    with torch.no_grad():
        return tuple(m(h).shape[2:])


def parameter_ties(model: nn.Module, batch, kinds=KINDS):
    """A strategy of :class:`ParamTie`: ``model`` copies with parameters on a kink for ``batch``
    (the model's input tensor, or a tuple of its inputs). ``kinds``: any of :data:`KINDS`."""
    return _strategy(model, batch, tuple(kinds))


def relu_kink_biases(model: nn.Module, batch):
    """One unit's bias puts one sample exactly at relu's kink (``bias_kink``)."""
    return _strategy(model, batch, ("bias_kink",))


def zero_units(model: nn.Module):
    """One unit with zero weights and zero bias: at the kink on every sample (``zero_unit``)."""
    return _strategy_nobatch(model, "zero_unit")


def zero_biases(model: nn.Module):
    """Some layers' biases set to zero (``zero_bias``)."""
    return _strategy_nobatch(model, "zero_bias")


def pool_tie_biases(model: nn.Module, batch):
    """A conv channel's bias makes one 2x2 pooling window of one sample tie at relu's kink (``pool_bias``)."""
    return _strategy(model, batch, ("pool_bias",))


def equal_weights(model: nn.Module):
    """A constant conv filter, or two equal linear units (``equal_weights``)."""
    return _strategy_nobatch(model, "equal_weights")


def _strategy_nobatch(model, kind):
    """The kinds that need no batch: drawn without running the model."""
    from hypothesis import strategies as st

    layers = _layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear / nn.Conv1d / nn.Conv2d layer to put on a kink")

    @st.composite
    def draw(d):
        net = copy.deepcopy(model)
        lay = dict(_layers(net))
        name = d(st.sampled_from([n for n, _ in layers]))
        m = lay[name]
        with torch.no_grad():
            if kind == "zero_bias":
                chosen = [n for n in lay if d(st.booleans())] or [name]
                for n in chosen:
                    if lay[n].bias is not None:
                        lay[n].bias.zero_()
                return ParamTie(net, kind, ",".join(chosen))
            u = d(st.integers(0, m.weight.shape[0] - 1))
            if kind == "zero_unit":
                m.weight[u].zero_()
                if m.bias is not None:
                    m.bias[u].zero_()
                return ParamTie(net, kind, name, u)
            if isinstance(m, nn.Linear) and m.weight.shape[0] > 1:
                v = d(st.integers(0, m.weight.shape[0] - 1).filter(lambda j: j != u))
                m.weight[v].copy_(m.weight[u])
                if m.bias is not None:
                    m.bias[v].copy_(m.bias[u])
                return ParamTie(net, kind, name, u, note=f"unit {v} made equal to unit {u}")
            m.weight[u].fill_(float(m.weight[u].reshape(-1)[0]))
            return ParamTie(net, kind, name, u, exact=False,
                            note="constant filter: windows whose patches have equal sums tie")

    return draw()


__all__ = ["ParamTie", "KINDS", "parameter_ties", "relu_kink", "relu_kink_biases", "zero_units", "zero_biases",
           "pool_tie_biases", "equal_weights"]


# ---------------------------------------------------------------- rounding-induced ties in parameter space

def float_param_tie(model: nn.Module, batch, layer: str, unit: int, sample: int = 0, position: int = 0,
                    tries: int = 24):
    """A copy of ``model`` whose ``layer`` unit ``unit`` has, on ``sample`` (output ``position`` for a
    convolution), a pre-activation that PyTorch's float forward computes as exactly 0 while its exact
    value is not 0: a rounding-induced tie in parameter space (``mtcheck.check(..., wrt="parameters")``
    reports ``ROUNDING_BRANCH`` there). The bias is moved by the float output (``b - out``), then by
    single ulps, until the framework's own forward gives 0; the exact pre-activation at the layer's
    float input must then be nonzero. Returns a :class:`ParamTie` (kind ``float_bias``), or None when
    no bias within ``tries`` steps gives a float zero, or the zero is exact."""
    batch = _as_batch(batch)
    net = copy.deepcopy(model)
    lay = dict(_layers(net))
    if layer not in lay:
        raise ValueError(f"no linear/conv layer {layer!r}; layers: {list(lay)}")
    m = lay[layer]
    if m.bias is None:
        raise ValueError(f"layer {layer!r} has no bias")
    got = {}

    def hook(mod, args, out):
        got.setdefault("h", args[0].detach().clone())
        got.setdefault("out", out.detach().clone())

    def out_at():
        got.clear()
        hd = m.register_forward_hook(hook)
        try:
            with torch.no_grad():
                net(*batch)
        finally:
            hd.remove()
        o = got["out"][sample].reshape(got["out"].shape[1], -1)
        return o[unit, position]

    b = m.bias
    for step in range(tries):
        o = out_at()
        if o.item() == 0.0:
            break
        with torch.no_grad():
            if step < 3:
                b[unit] = b[unit] - o                       # the float residual, in the bias' dtype
            else:                                           # then walk by ulps towards the zero
                toward = torch.tensor(-float("inf") if o.item() > 0 else float("inf"), dtype=b.dtype)
                b[unit] = torch.nextafter(b[unit], toward)
    else:
        return None
    P = _patches(m, got["h"])
    exact = _exact_dot(m.weight[unit].detach().reshape(-1).double(), P[sample, position]) + Fraction(float(b[unit].detach()))
    if exact == 0:
        return None
    return ParamTie(net, "float_bias", layer, unit, sample, exact=False,
                    note=f"float forward gives exactly 0 at {layer}[{unit}] on sample {sample}; the exact "
                         f"pre-activation at the layer's float input is {float(exact):.3g} (rounding-induced)")


def float_param_ties(model: nn.Module, batch):
    """A strategy of :class:`ParamTie` (kind ``float_bias``): rounding-induced ties in parameter space
    (:func:`float_param_tie` at a drawn layer, unit and sample). A miss draws again, at most a few
    times, then gives the model copy unchanged (kind ``none``), so the strategy never rejects."""
    from hypothesis import strategies as st

    batch = _as_batch(batch)
    feeds = _inputs(model, batch)
    layers = [(n, m) for n, m in _layers(model) if m.bias is not None and n in feeds]
    if len(layers) > 1:
        layers = layers[:-1]      # the last layer usually gives the outputs: a zero there is no kink
    if not layers:
        raise ValueError(f"{type(model).__name__} has no biased nn.Linear / nn.Conv layer that runs on the batch")

    @st.composite
    def draw(d):
        for _ in range(4):
            name, m = d(st.sampled_from(layers))
            h = feeds[name][0]
            n_samples = h.shape[0] if isinstance(m, nn.Linear) and h.ndim > 1 else h.shape[0]
            unit = d(st.integers(0, m.out_features - 1 if isinstance(m, nn.Linear) else m.out_channels - 1))
            sample = d(st.integers(0, max(n_samples - 1, 0)))
            positions = 1 if isinstance(m, nn.Linear) else int(torch.tensor(_out_shape(m, h)).prod())
            pos = d(st.integers(0, positions - 1))
            tie = float_param_tie(model, batch, name, unit, sample, pos)
            if tie is not None:
                return tie
        return ParamTie(copy.deepcopy(model), "none", "", note="no rounding-induced tie found in 4 draws")

    return draw()

"""Gradients with respect to parameters: ``wrt="parameters"``, ``"inputs"``, ``"all"`` or names.

Training uses the gradient of a loss with respect to the parameters. This module turns
"a module (or a loss over a module's output), its inputs, and which tensors to differentiate"
into a plain function of tensors::

    g(x_1, ..., x_k, p_1, ..., p_r) = module(x_1, ..., x_k) with its parameters p_j
                                      (torch.func.functional_call)

and calls the ordinary engine (:func:`mtcheck.checker.check`) with ``wrt`` = the positions of the
tensors to differentiate. Everything the engine decides holds unchanged: the tie rows are the
derivatives of the tied discriminants with respect to those tensors, the tangent space their
kernel. The report names the checked tensors (``report.wrt_names``) and says, in its mismatch and
witness text, which parameter an index belongs to. See ``docs/parameters.md``.

Accepted ``wrt`` forms (:data:`ACCEPTED`):

- ``None``: the engine's default (the float inputs that require grad, else all float inputs);
  with ``model=`` (the loss form): ``"parameters"``;
- an input position or a list of them (``0``, ``[0, 2]``): as before;
- ``"inputs"``: every floating-point input of the model;
- ``"parameters"``: every parameter of the module that requires grad (``named_parameters()`` order);
- ``"all"``: the inputs and the parameters;
- a parameter name (``"fc.weight"``) or a list of names, which may also hold input positions
  (``[0, "fc.weight"]``).

The loss form: ``mtcheck.check(loss_fn, model=net, batch=(x, y), wrt="parameters")`` checks
``loss_fn(net(x), y)`` (``batch=(x1, ..., xk, y)``: ``loss_fn(net(x1, ..., xk), y)``; a one-element
batch: ``loss_fn(net(x))``).
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass

import torch

from .errors import CheckInputError

ACCEPTED = ('None, an input position or a list of positions (0, [0, 2]), "inputs", "parameters", "all", '
            'a parameter name ("fc.weight"), or a list of parameter names (which may also hold input positions)')
_KEYWORDS = ("inputs", "parameters", "all")


def _bad(msg: str):
    raise CheckInputError(f"{msg}. wrt= accepts: {ACCEPTED}")


def names_parameters(wrt) -> bool:
    """Whether ``wrt`` uses one of the named forms (a string, or a list holding a string)."""
    if isinstance(wrt, str):
        return True
    if isinstance(wrt, (list, tuple)):
        return any(isinstance(w, str) for w in wrt)
    return False


def validate_positions(wrt, n_inputs: int) -> None:
    """Check an integer ``wrt`` (a position or a list of them) before the engine sees it."""
    if wrt is None:
        return
    items = [wrt] if not isinstance(wrt, (list, tuple, range)) else list(wrt)
    if isinstance(wrt, (list, tuple, range)) and not items:
        _bad("wrt is an empty list, so there is nothing to differentiate")
    for w in items:
        if isinstance(w, bool) or not isinstance(w, numbers.Integral):
            _bad(f"wrt holds {w!r} (a {type(w).__name__})")
        if w < 0 or w >= n_inputs:
            _bad(f"wrt names input {w}, but the program gets {n_inputs} input(s) (positions 0..{n_inputs - 1})")


@dataclass
class Plan:
    """What a named ``wrt`` resolves to."""

    function: object          # g(*inputs, *checked parameter tensors)
    inputs: tuple             # the tensors g is called with
    wrt: list                 # integer positions into ``inputs`` (the engine's wrt)
    layout: list              # (label, shape, start, size) per differentiated tensor, in wrt order
    module: torch.nn.Module | None
    display_wrt: object       # the wrt the user gave (for the replay line)
    program: str              # a name for the report


def resolve(fn, inputs, wrt, model=None, batch=None) -> Plan:
    """Resolve ``wrt`` (any accepted form) and the loss form (``model=``, ``batch=``) to a plain
    function of tensors and integer positions. Raises :class:`CheckInputError` on bad input."""
    if batch is not None or model is not None:
        if model is None:
            raise CheckInputError("batch= needs model=: mtcheck.check(loss_fn, model=net, batch=(x, y), "
                                  "wrt='parameters') checks loss_fn(net(x), y)")
        if not isinstance(model, torch.nn.Module):
            raise CheckInputError(f"model= must be a torch.nn.Module, not {type(model).__name__}")
        if inputs:
            raise CheckInputError("with model=, give the data as batch=(x, y) (or batch=(x,)), not as positional "
                                  "inputs")
        if batch is None:
            raise CheckInputError("model= needs batch=: mtcheck.check(loss_fn, model=net, batch=(x, y), "
                                  "wrt='parameters')")
        if isinstance(batch, torch.Tensor):
            batch = (batch,)
        if not isinstance(batch, (tuple, list)) or not batch:
            raise CheckInputError(f"batch= must be a tensor or a non-empty tuple of tensors (x, y), not "
                                  f"{type(batch).__name__}")
        for i, b in enumerate(batch):
            if not isinstance(b, torch.Tensor):
                raise CheckInputError(f"batch[{i}] is a {type(b).__name__}, not a torch.Tensor")
        if not callable(fn):
            raise CheckInputError(f"the loss {fn!r} is not callable")
        loss, net, data = fn, model, tuple(batch)
        n_model = len(data) - 1 if len(data) > 1 else 1

        def program(*xs):
            out = net(*xs[:n_model])
            return loss(out, *xs[n_model:])

        program.__qualname__ = f"{_fname(loss)}({type(net).__name__}(x), y)"
        base, module, model_inputs = program, net, list(range(n_model))
        if wrt is None:
            wrt = "parameters"
        inputs = data
    else:
        base, module = fn, fn if isinstance(fn, torch.nn.Module) else None
        model_inputs = list(range(len(inputs)))
        for i, x in enumerate(inputs):
            if not isinstance(x, torch.Tensor):
                raise CheckInputError(f"input {i} is a {type(x).__name__}, not a torch.Tensor")
    display = wrt

    # -- the named forms
    items = [wrt] if isinstance(wrt, str) else list(wrt) if isinstance(wrt, (list, tuple, range)) else None
    if items is None:
        if wrt is None or (isinstance(wrt, numbers.Integral) and not isinstance(wrt, bool)):
            items = [] if wrt is None else [int(wrt)]
        else:
            _bad(f"wrt is a {type(wrt).__name__} ({wrt!r})")
    if isinstance(wrt, (list, tuple, range)) and not items:
        _bad("wrt is an empty list, so there is nothing to differentiate")
    params = dict(module.named_parameters()) if module is not None else {}
    pos, names = [], []
    for w in items:
        if isinstance(w, bool) or not isinstance(w, (numbers.Integral, str)):
            _bad(f"wrt holds {w!r} (a {type(w).__name__})")
        if isinstance(w, numbers.Integral):
            w = int(w)
            if w < 0 or w >= len(inputs):
                _bad(f"wrt names input {w}, but the program gets {len(inputs)} input(s)")
            if w not in pos:
                pos.append(w)
            continue
        if w in _KEYWORDS:
            if w in ("parameters", "all") and module is None:
                raise CheckInputError(
                    f"wrt={w!r} needs the parameters of an nn.Module, but the program is a "
                    f"{type(fn).__name__}; pass the module itself (mtcheck.check(net, x, wrt='parameters')), or a "
                    f"loss with model= (mtcheck.check(loss_fn, model=net, batch=(x, y), wrt='parameters')). "
                    f"wrt= accepts: {ACCEPTED}")
            if w in ("inputs", "all"):
                for i in model_inputs:
                    if inputs[i].is_floating_point() and i not in pos:
                        pos.append(i)
            if w in ("parameters", "all"):
                chosen = [k for k, p in params.items() if p.requires_grad and p.numel()] or \
                    [k for k, p in params.items() if p.numel()]
                if not chosen:
                    raise CheckInputError(f"wrt={w!r}: {type(module).__name__} has no parameters")
                for k in chosen:
                    if k not in names:
                        names.append(k)
            continue
        if module is None:
            _bad(f"wrt names {w!r}, but the program is a {type(fn).__name__}, not an nn.Module, so it has no "
                 "named parameters")
        if w not in params:
            known = ", ".join(list(params)[:12]) + (", ..." if len(params) > 12 else "")
            _bad(f"{type(module).__name__} has no parameter named {w!r} (its parameters: {known or 'none'})")
        if w not in names:
            names.append(w)
    for i in pos:
        if not inputs[i].is_floating_point():
            _bad(f"wrt names input {i}, which is not a floating-point tensor; only float inputs have gradients")
    if not pos and not names:
        _bad("wrt selects nothing to differentiate")
    for k in names:
        p = params[k]
        if not p.is_floating_point():
            _bad(f"parameter {k!r} is not a floating-point tensor")
        if p.numel() and not torch.isfinite(p.detach()).all():
            from .errors import NonFiniteError

            raise NonFiniteError(f"parameter {k!r} holds a non-finite value (NaN or inf); gradients there have no "
                                 "meaning, so nothing was checked")

    n_in = len(inputs)
    ptensors = tuple(params[k].detach() for k in names)

    if names:
        from torch.func import functional_call

        loss_form = model is not None

        def g(*args):
            xs, pd = args[:n_in], dict(zip(names, args[n_in:]))
            if loss_form:
                return loss(functional_call(module, pd, xs[:n_model]), *xs[n_model:])
            return functional_call(module, pd, xs)

        g.__qualname__ = _fname(base)
        function = g
    else:
        function = base
    layout, start = [], 0
    for i in pos:
        s = inputs[i].numel()
        layout.append((f"input {i}", tuple(inputs[i].shape), start, s))
        start += s
    for j, k in enumerate(names):
        s = ptensors[j].numel()
        layout.append((k, tuple(ptensors[j].shape), start, s))
        start += s
    return Plan(function, tuple(inputs) + ptensors, pos + [n_in + j for j in range(len(names))], layout, module,
                display, _fname(base))


def _fname(fn) -> str:
    if isinstance(fn, torch.nn.Module):
        return type(fn).__name__
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def locate(layout, j: int) -> str:
    """The name of flat index ``j`` of the checked tensors: ``'c1.weight[2, 0, 1, 3]'``."""
    for label, shape, start, size in layout:
        if start <= j < start + size:
            idx = []
            r = j - start
            for d in reversed(shape):
                idx.append(r % d)
                r //= d
            inner = ", ".join(str(i) for i in reversed(idx))
            return f"{label}[{inner}]" if shape else label
    return f"index {j}"


_INPUT_RE = re.compile(r"input (\d+)\)")


def annotate(rep, plan: Plan, inputs_for_replay, options) -> None:
    """Name the checked tensors in the report: ``wrt_names``, the note, mismatch and witness text,
    and a replay line of the user's own call."""
    rep.wrt_names = [(label, shape, start, size) for label, shape, start, size in plan.layout]
    has_params = any(not label.startswith("input ") for label, *_ in plan.layout)
    if has_params:
        parts = [f"{label} {list(shape)}" for label, shape, _, _ in plan.layout[:8]]
        more = f", ... ({len(plan.layout)} tensors)" if len(plan.layout) > 8 else ""
        rep.notes.append(f"gradient with respect to {rep.n_inputs} scalars: " + ", ".join(parts) + more +
                         "; the input indices of this report count through them in this order")
        if rep.mismatch:
            rep.mismatch = _INPUT_RE.sub(lambda m: f"input {m.group(1)} = {locate(plan.layout, int(m.group(1)))})",
                                         rep.mismatch)
        if rep.witness is not None:
            nz = [j for j, v in enumerate(rep.witness.direction) if v != 0]
            where = sorted({locate(plan.layout, j).split("[")[0] for j in nz})
            shown = ", ".join(locate(plan.layout, j) for j in nz[:6]) + (", ..." if len(nz) > 6 else "")
            extra = f"t is nonzero on {len(nz)} coordinate(s), in {', '.join(where)}: {shown}"
            rep.witness.note = (rep.witness.note + "\n" if rep.witness.note else "") + extra
    if has_params:
        why = rep.reasons.get("differentiable", "")
        if why.startswith("the program is not piecewise affine"):
            rep.reasons["differentiable"] = (
                "with respect to parameters the program is polynomial on a stratum, not piecewise affine: it "
                "multiplies two values that depend on the checked parameters (weights of different layers; the "
                "engine also counts a layer's weight and bias given to one op together) or uses a polynomial op "
                "(a squared loss). Its strata are then algebraic sets and the neighbouring-strata test, which "
                "assumes polyhedra, is not done; checking one weight tensor (wrt='fc.weight') keeps it piecewise "
                "affine and decides the field")
    rep.replay = _replay(plan, inputs_for_replay, options)


def _replay(plan: Plan, inputs, options) -> str:
    args = []
    small = all(x.numel() <= 64 for x in inputs)
    for x in inputs:
        if not small:
            break
        vals = ", ".join(float(v).hex() if x.is_floating_point() else str(int(v)) for v in x.detach().reshape(-1).tolist())
        args.append(f"torch.tensor([{vals}], dtype={x.dtype}).reshape({tuple(x.shape)})")
    shapes = [tuple(x.shape) for x in inputs]
    if plan.module is not None and plan.program != _fname(plan.module):
        call = (f"mtcheck.check({plan.program.split('(')[0]}, model=<the {_fname(plan.module)}>, batch=" +
                (f"({', '.join(args)},)" if small else f"<tensors of shapes {shapes}>"))
    else:
        call = f"mtcheck.check({plan.program}, " + (", ".join(args) if small else f"<inputs of shapes {shapes}>")
    return (f"Replay (with the module's parameters as checked; save the case with mtcheck's corpus to replay "
            f"exactly):\n  {call}, wrt={plan.display_wrt!r})")


def check_params(fn, inputs, wrt, model=None, batch=None, **options):
    """:func:`mtcheck.check` for the named ``wrt`` forms and the loss form."""
    from .checker import check

    plan = resolve(fn, tuple(inputs), wrt, model=model, batch=batch)
    name = options.pop("name", None)
    rep = check(plan.function, *plan.inputs, wrt=plan.wrt, name=name or plan.program, **options)
    annotate(rep, plan, plan.inputs[:len(plan.inputs) - sum(1 for lab, *_ in plan.layout
                                                             if not lab.startswith("input "))], options)
    return rep


"""Tracing by execution: record the ATen ops that actually run.

A :class:`torch.utils._python_dispatch.TorchDispatchMode` sees every ATen op
below autograd, with the real tensors, in the order they run. Python control
flow on tensor values (``if x[i] > res:``) shows up as a comparison op followed
by ``_local_scalar_dense`` on its boolean result: the comparison becomes a node
of the trace, and its outcome a case of the pattern like any other.

Ops whose tensor arguments do not depend on the inputs are not recorded as
nodes: their results are constants (weights, buffers, factory tensors), kept by
value.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from . import ops as _ops
from .errors import OutsideTheoryError, UnsupportedOpError

_TORCH_DIR = os.path.dirname(torch.__file__)
_PKG_DIR = os.path.dirname(__file__)
_SKIP_DIRS = (_TORCH_DIR, _PKG_DIR, os.path.dirname(os.__file__))
# mtcheck modules that hold *programs* (built-in models), whose lines are user lines
_PROGRAM_FILES = tuple(os.path.join(_PKG_DIR, f) for f in ("zoo.py", "nets.py"))


@dataclass(frozen=True)
class Ref:
    """Where a tensor value comes from: ``('in', i)``, ``('const', i)`` or ``('node', i, out)``."""

    kind: str
    index: int
    out: int = 0

    def __repr__(self) -> str:
        if self.kind == "node":
            return f"%{self.index}" + (f".{self.out}" if self.out else "")
        return f"{self.kind}{self.index}"


@dataclass
class Node:
    index: int
    op: str
    func: Any
    args: tuple
    kwargs: dict
    recorded: Any            # framework output(s): a tensor or a tuple of tensors (cloned)
    where: str
    grad_enabled: bool = True  # False inside torch.no_grad() or a custom Function's forward
    branch: bool = False     # its boolean result was read by Python control flow

    @property
    def label(self) -> str:
        return f"{self.op.replace('aten.', '').replace('.default', '')}#{self.index}"


@dataclass
class Trace:
    inputs: list             # the tensors the program was called with (leaves, requires_grad)
    consts: list             # constant tensors (weights, buffers, factories)
    nodes: list
    outputs: list            # flat list of Refs (or None for a non-tensor output leaf)
    out_tensors: list        # the framework's output tensors (graph attached)
    out_spec: Any
    branches: list = field(default_factory=list)   # (node index, recorded bool)

    def has_branches(self) -> bool:
        return bool(self.branches)


# ops whose result depends on their argument's shape and dtype only, never its values
_SHAPE_ONLY = frozenset({
    "aten.empty_like.default", "aten.zeros_like.default", "aten.ones_like.default", "aten.full_like.default",
    "aten.new_zeros.default", "aten.new_ones.default", "aten.new_empty.default", "aten.new_full.default",
    "aten.empty_strided.default", "aten.new_empty_strided.default", "aten.sym_size.int", "aten.sym_numel.default",
    # constant on finite inputs (mtcheck refuses non-finite inputs and weights up front)
    "aten.isnan.default", "aten.isinf.default", "aten.isfinite.default", "aten.isposinf.default",
    "aten.isneginf.default",
})


def user_frame() -> str:
    """The innermost stack frame outside torch, mtcheck and the standard library."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if (fn.startswith(_PROGRAM_FILES) or not fn.startswith(_SKIP_DIRS)) and not fn.startswith("<frozen"):
            return f"{os.path.relpath(fn) if not fn.startswith('<') else fn}:{f.f_lineno} in {f.f_code.co_name}"
        f = f.f_back
    return "<unknown>"


def _elements(t: torch.Tensor):
    """The storage offsets (in elements) a tensor covers: (lo, hi) bounds, and the exact set for a
    small tensor (None for a large one, where only the bounds are compared)."""
    off = t.storage_offset()
    lo = off + sum(min(0, (n - 1) * st) for n, st in zip(t.shape, t.stride()) if n)
    hi = off + sum(max(0, (n - 1) * st) for n, st in zip(t.shape, t.stride()) if n)
    exact = None
    if t.numel() <= 1 << 16:
        idx = torch.as_strided(torch.arange(hi + 1), t.shape, t.stride(), off) if t.numel() else torch.empty(0)
        exact = set(idx.reshape(-1).tolist())
    return lo, hi, exact


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors of one storage share an element (conservative for large ones; two
    disjoint slices, as GRU's gates split from one product, do not)."""
    if a.numel() == 0 or b.numel() == 0 or a.element_size() != b.element_size():
        return a.numel() > 0 and b.numel() > 0
    la, ha, ea = _elements(a)
    lb, hb, eb = _elements(b)
    if ha < lb or hb < la:
        return False
    if ea is None or eb is None:
        return True
    return not ea.isdisjoint(eb)


def _storage_key(t: torch.Tensor):
    try:
        return t.untyped_storage().data_ptr()
    except Exception:  # pragma: no cover - tensors without storage
        return None


class _Recorder(TorchDispatchMode):
    def __init__(self, inputs):
        super().__init__()
        self.map: dict[int, Ref] = {}
        self.keep: list = []
        self.consts: list = []
        self.const_ids: dict[int, int] = {}
        self.nodes: list[Node] = []
        self.branches: list = []
        self.stale: dict[int, str] = {}
        self.storage: dict[Any, set] = {}
        self.tensors: dict[int, torch.Tensor] = {}     # id -> the tensor (kept alive by self.keep)
        for i, t in enumerate(inputs):
            self._bind(t, Ref("in", i))

    # -- bookkeeping -----------------------------------------------------------------
    def _bind(self, t, ref):
        self.map[id(t)] = ref
        self.keep.append(t)
        self.stale.pop(id(t), None)
        self.tensors[id(t)] = t
        k = _storage_key(t)
        if k is not None:
            self.storage.setdefault(k, set()).add(id(t))

    def _write_back(self, base, view, idx, outs) -> bool:
        """An in-place write into ``view`` (a strided view of the contiguous tensor ``base``, as
        ``out[..., a:b].copy_(x)`` in PyTorch's circular pad) as a new value of ``base``:
        ``as_strided_scatter(base, view, size, stride, offset)``, recorded as a node after the
        write, so later reads of ``base`` (and views taken from it later) follow the write. Other
        cases (``base`` itself strided, dtypes that differ) leave ``base`` stale, as before."""
        bref = self.map.get(id(base))
        if bref is None or id(view) not in self.map or base.dtype != view.dtype:
            return False
        # the node's output that is the written view (batch norm's update writes its running
        # statistics in place but returns the normalised values: no write-back from such an op)
        j_out = next((j for j, o in enumerate(outs) if o is view), None)
        if j_out is None:
            return False
        try:
            if base.storage_offset() != 0 or not base.is_contiguous() or base.numel() == 0:
                return False
            if _storage_key(base) != _storage_key(view):
                return False
        except Exception:  # noqa: BLE001 - tensors without storage: no write-back
            return False
        func = torch.ops.aten.as_strided_scatter.default
        args = (bref, Ref("node", idx, j_out), list(view.size()), list(view.stride()), int(view.storage_offset()))
        j = len(self.nodes)
        self.nodes.append(Node(j, str(func), func, args, {}, base.detach().clone(), user_frame(),
                               grad_enabled=torch.is_grad_enabled()))
        self._bind(base, Ref("node", j, 0))
        return True

    def _const(self, t) -> Ref:
        i = self.const_ids.get(id(t))
        if i is None:
            i = len(self.consts)
            self.consts.append(t.detach().clone())
            self.const_ids[id(t)] = i
            self.keep.append(t)
            # a constant's memory can be written through a view (copy_ into a slice of a factory
            # tensor): its aliases must then go stale like those of any other tensor
            self.tensors[id(t)] = t
            k = _storage_key(t)
            if k is not None:
                self.storage.setdefault(k, set()).add(id(t))
        return Ref("const", i)

    def _dependent(self, ref) -> bool:
        return isinstance(ref, Ref) and ref.kind != "const"

    # -- the hook ----------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        for a in pytree.tree_leaves((args, kwargs)):
            if isinstance(a, torch.Tensor) and id(a) in self.stale and id(a) in self.map:
                raise UnsupportedOpError(
                    name, user_frame(),
                    f"it reads a tensor whose memory was changed in place through an alias ({self.stale[id(a)]})")
        if name.startswith("aten.as_strided") and args and isinstance(args[0], torch.Tensor) \
                and _partial_view(args[0]):
            raise UnsupportedOpError(
                name, user_frame(),
                "its sizes and strides address the storage of a view (a part of a larger tensor, or strided); "
                "the exact model follows a tensor's own elements only (mtcheck checks a copy of each input)")
        out = func(*args, **kwargs)

        def ref_of(v):
            if isinstance(v, torch.Tensor):
                r = self.map.get(id(v))
                return r if r is not None else self._const(v)
            return v

        rej = _ops.rejection(name)
        if rej is not None and rej[0] == "random":
            from .ops import random_fixed as _rf

            if _rf.in_trace(self, func, name, args, kwargs, out, user_frame()):   # raises when refused
                return out               # a constant of the program (its draws fixed by torch_seed)
            rej = None                   # modelled with its draws fixed (or not random: eval mode)
        rargs = pytree.tree_map(ref_of, args)
        rkwargs = pytree.tree_map(ref_of, kwargs)
        dependent = name not in _SHAPE_ONLY and any(
            self._dependent(r) for r in pytree.tree_leaves((rargs, rkwargs)))
        outs = out if isinstance(out, (tuple, list)) else (out,)

        if name in ("aten._local_scalar_dense.default", "aten.item.default"):
            if dependent:
                src = rargs[0]
                if args[0].dtype == torch.bool and src.kind == "node":
                    self.nodes[src.index].branch = True
                    self.branches.append((src.index, bool(out)))
                else:
                    raise UnsupportedOpError(
                        name, user_frame(),
                        "a value that depends on the input escapes to Python (.item(), float(), int() or "
                        "indexing with a tensor); mtcheck can follow only comparisons used as conditions")
            return out

        if not dependent:
            if func._schema.is_mutable:
                # a constant changed in place (fill_, add_ on a factory tensor): snapshot it anew
                for i, a in enumerate(func._schema.arguments):
                    if a.alias_info is not None and a.alias_info.is_write and i < len(args) \
                            and isinstance(args[i], torch.Tensor):
                        self.const_ids.pop(id(args[i]), None)
                        self.map[id(args[i])] = self._const(args[i])
            for o in outs:
                if isinstance(o, torch.Tensor):
                    self.map[id(o)] = self._const(o)
                    self.keep.append(o)
            return out

        if rej is not None and _ops.lookup(name) is None:
            kind, why = rej
            if kind == "outside":
                raise OutsideTheoryError(name, user_frame(), why)
            raise UnsupportedOpError(name, user_frame(), why)
        rule = _ops.lookup(name)
        if rule is None:
            raise UnsupportedOpError(name, user_frame())

        idx = len(self.nodes)
        rec_outs = []
        for o in outs:
            if isinstance(o, torch.Tensor):
                rec_outs.append(o.detach().clone())
            else:
                rec_outs.append(torch.tensor(o) if isinstance(o, (bool, int, float)) else o)
        recorded = tuple(rec_outs) if isinstance(out, (tuple, list)) else rec_outs[0]
        node = Node(idx, name, func, rargs, rkwargs, recorded, user_frame(),
                    grad_enabled=torch.is_grad_enabled())
        self.nodes.append(node)

        mutated = func._schema.is_mutable
        if mutated:
            # in-place: the mutated tensor now holds the node's value; its aliases are stale
            for i, a in enumerate(func._schema.arguments):
                if a.alias_info is not None and a.alias_info.is_write and i < len(args):
                    t = args[i]
                    k = _storage_key(t)
                    for other in list(self.storage.get(k, ())):
                        o = self.tensors.get(other)
                        if other != id(t) and (o is None or _overlap(o, t)):
                            if o is not None and self._write_back(o, t, idx, outs):
                                continue
                            self.stale[other] = f"{name} at {node.where}"
        if not isinstance(out, torch.Tensor) and not isinstance(out, (tuple, list)):
            # an op returning a Python bool (is_nonzero): a branch on the new node
            node.branch = True
            self.branches.append((idx, bool(out)))
            return out
        for j, o in enumerate(outs):
            if isinstance(o, torch.Tensor):
                self._bind(o, Ref("node", idx, j))
        return out


def prepare_inputs(inputs, wrt=None):
    """Leaf copies of the inputs; returns (tensors, list of positions differentiated)."""
    from .errors import CheckInputError, NonFiniteError

    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise CheckInputError(f"input {i} is a {type(x).__name__}, not a torch.Tensor")
        if x.is_complex():
            raise CheckInputError(f"input {i} is complex ({x.dtype}); mtcheck checks real functions of real inputs: "
                                  "pass torch.view_as_real(x) and call torch.view_as_complex on it inside the program")
        if x.is_floating_point() and x.numel() and not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).nonzero()[0].tolist()
            raise NonFiniteError(
                f"input {i} holds a non-finite value ({x.detach().reshape(-1)[(~torch.isfinite(x)).reshape(-1)][0].item()}) "
                f"at index {tuple(bad)}; gradients at NaN or inf have no meaning, so nothing was checked")
        if x.numel() == 0:
            raise CheckInputError(f"input {i} is empty (shape {tuple(x.shape)}); there is nothing to differentiate")
    floats = [i for i, x in enumerate(inputs) if x.is_floating_point()]
    if wrt is None:
        marked = [i for i in floats if inputs[i].requires_grad]
        wrt = marked or floats
    else:
        wrt = [wrt] if isinstance(wrt, int) else list(wrt)
        for i in wrt:
            if i >= len(inputs) or not inputs[i].is_floating_point():
                raise CheckInputError(
                    f"wrt names input {i}, which is not a floating-point tensor; only float inputs have gradients")
    if not wrt:
        raise CheckInputError("no floating-point input to differentiate with respect to")
    leaves = []
    for i, x in enumerate(inputs):
        t = x.detach().clone()
        if i in wrt:
            t.requires_grad_(True)
        if _partial_view(x):
            t._mtcheck_partial_view = True    # as_strided on it would address the user's storage, not the copy
        leaves.append(t)
    return leaves, wrt


def _partial_view(t) -> bool:
    """Whether ``t`` is a strided view of a storage larger than itself (or marked as the copy of one)."""
    if getattr(t, "_mtcheck_partial_view", False):
        return True
    try:
        return bool(t.storage_offset() != 0 or not t.is_contiguous()
                    or t.untyped_storage().nbytes() != t.numel() * t.element_size())
    except Exception:  # noqa: BLE001 - tensors without storage (meta, sparse): not strided views
        return False


def _frame_of(tb) -> str:
    """The innermost user frame (outside torch, mtcheck and the standard library) of a traceback."""
    where = "<unknown>"
    while tb is not None:
        code = tb.tb_frame.f_code
        fn = code.co_filename
        if (fn.startswith(_PROGRAM_FILES) or not fn.startswith(_SKIP_DIRS)) and not fn.startswith("<frozen"):
            where = f"{os.path.relpath(fn) if not fn.startswith('<') else fn}:{tb.tb_lineno} in {code.co_name}"
        tb = tb.tb_next
    return where


def _autograd_refusal(e: RuntimeError, leaves) -> None:
    """Autograd refuses the program because mtcheck made its inputs require grad: a documented error."""
    from .errors import CheckInputError

    msg = str(e)
    where = _frame_of(e.__traceback__)
    if "a leaf Variable that requires grad is being used in an in-place operation" in msg:
        raise CheckInputError(
            f"the program (at {where}) changes one of its inputs in place, which autograd forbids for the "
            "inputs mtcheck differentiates; clone the input first (x = x.clone()) or leave it out of wrt=") from None
    if "cannot resize variables that require grad" in msg:
        raise CheckInputError(
            f"the program (at {where}) resizes one of its inputs in place (resize_), which autograd forbids for "
            "the inputs mtcheck differentiates; clone the input first or leave it out of wrt=") from None
    if "is not differentiable with respect to argument" in msg:
        raise CheckInputError(
            f"the program (at {where}) passes an input mtcheck differentiates to an argument PyTorch cannot "
            f"differentiate ({msg.split('. This input')[0]}); leave that input out of wrt=") from None


def trace(fn, leaves) -> Trace:
    """Call ``fn(*leaves)`` under the recorder; leaves come from :func:`prepare_inputs`."""
    from .ops import random_fixed as _rf

    rec = _Recorder(leaves)
    _rf.reseed()                 # check(..., torch_seed=s): the same draws in every evaluation
    with torch.enable_grad():
        with rec:
            try:
                out = fn(*leaves)
            except RuntimeError as e:
                _autograd_refusal(e, leaves)
                raise
    _rf.verify_same(fn, leaves, out)     # with torch_seed: a second evaluation, bit for bit
    flat, spec = pytree.tree_flatten(out)
    refs, tensors = [], []
    for o in flat:
        if isinstance(o, torch.Tensor):
            r = rec.map.get(id(o))
            if r is None:
                r = rec._const(o)
            refs.append(r)
            tensors.append(o)
        else:
            refs.append(None)
            tensors.append(None)
    cplx = [k for k, t in enumerate(tensors) if t is not None and t.is_complex()]
    if cplx:
        from .errors import CheckInputError

        raise CheckInputError(f"the program returns a complex tensor (output {cplx[0]}, {tensors[cplx[0]].dtype}); "
                              "mtcheck checks real functions: return torch.view_as_real(out) (out.resolve_conj() "
                              "first if it is a lazy conjugate), whose gradient is the one PyTorch's autograd gives "
                              "for a real cotangent on the real and imaginary parts")
    floats = [t for t in tensors if t is not None and t.is_floating_point()]
    if floats and not any(t.numel() for t in floats):
        from .errors import CheckInputError

        raise CheckInputError(f"the program's output is empty (shape {tuple(floats[0].shape)}); there is no "
                              "gradient to check")
    for t in tensors:
        if t is not None and t.is_floating_point() and t.numel() and not torch.isfinite(t).all():
            from .errors import NonFiniteError

            raise NonFiniteError("the program's output holds a non-finite value (a weight or an overflow); "
                                 "nothing was checked")
    # a NaN or an infinity in a constant (logdet's where(sign == -1, nan, logabsdet)) is carried as a
    # NonFinite (mtcheck/_exact.py): refused, with a NonFiniteError naming the op, wherever it is used
    return Trace(list(leaves), rec.consts, rec.nodes, refs, tensors, spec, rec.branches)

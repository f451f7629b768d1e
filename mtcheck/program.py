"""Self-contained programs: a trace stored as data and re-run without importing anything.

A :class:`Program` is what :func:`mtcheck.trace.trace` recorded of a program at one
input, as plain data: the ATen ops by name (``aten.relu.default``), their arguments
(references to inputs, constants and earlier results, and exact Python scalars),
the constants (weights, buffers, factory tensors) bit-exact, and the output
structure. ``Program.function()`` gives a Python callable that runs those ops again
in PyTorch, resolving every op by name through ``torch.ops.aten`` only, so
``mtcheck.check(program.function(), *inputs)`` re-runs both sides of a check (PyTorch
and the exact engine) without importing the user's code.

PyTorch's backward pass is either

- ``native``: the replayed ATen ops' own derivatives (the program has no custom
  ``autograd.Function``, hook or other backward of its own; checked when the program
  is recorded, against the framework Jacobian of the original), or
- ``recorded``: the program's backward has code of its own (a custom
  ``autograd.Function``: exactly where wrong gradients at ties come from), so the ATen
  ops that PyTorch's backward ran at the recorded input are stored too, as a program
  of the incoming gradient, and replayed by a stand-in ``autograd.Function``. The
  framework side of a check (the Jacobian rows, the linearity test) only ever
  evaluates the backward at the recorded input, which is what this replays.

Forward ops are restricted to the registry of modelled ops
(:func:`mtcheck.ops.supported_ops`); backward ops to ATen operators. Loading checks
every name before anything runs. Python control flow on tensor values is stored as
the path taken at the recorded input (the branch is re-read, so the exact engine
sees it, but the other path is not known).

Serialisation: :meth:`Program.to_doc` returns a JSON-able dict plus a dict of
tensors (stored in the case's safetensors sidecar); :meth:`Program.from_doc`
inverts it. Nothing is pickled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

FORMAT = 1
_OP_RE = re.compile(r"^aten\.([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
_BRANCH_OPS = ("aten._local_scalar_dense.default", "aten.item.default")
_PURE_DEAD = ("aten.detach.default", "aten.alias.default")   # autograd's own detaches of saved results
_SPEC_TYPES = (None, "builtins.tuple", "builtins.list", "builtins.dict")


class ProgramError(ValueError):
    """A program that cannot be recorded, loaded or run."""


# ---------------------------------------------------------------------------- values

def _encode(v):
    """A node argument as JSON: refs, exact floats, torch enums; raises ProgramError otherwise."""
    import torch

    from .trace import Ref

    if isinstance(v, Ref):
        return {"ref": [v.kind, int(v.index), int(v.out)]}
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return {"float": float(v).hex()}
    if isinstance(v, list):
        return [_encode(a) for a in v]
    if isinstance(v, tuple):
        return {"tuple": [_encode(a) for a in v]}
    if isinstance(v, dict):
        return {"dict": {str(k): _encode(a) for k, a in v.items()}}
    if isinstance(v, (torch.dtype, torch.layout, torch.memory_format)):
        return {"torch": str(v).replace("torch.", "")}
    if isinstance(v, torch.device):
        return {"device": str(v)}
    raise ProgramError(f"an argument of type {type(v).__name__} cannot be stored ({v!r:.60})")


def _decode(v):
    import torch

    from .trace import Ref

    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):        # a float never comes out of _encode; refuse decimal text
        raise ProgramError("a float argument written as decimal text (floats are stored as hex)")
    if isinstance(v, list):
        return [_decode(a) for a in v]
    if not isinstance(v, dict) or len(v) != 1:
        raise ProgramError(f"malformed argument {v!r:.60}")
    (tag, a), = v.items()
    if tag == "ref":
        kind, index, out = a
        if kind not in ("in", "const", "node") or not all(isinstance(i, int) for i in (index, out)):
            raise ProgramError(f"malformed reference {a!r}")
        return Ref(kind, index, out)
    if tag == "float":
        return float.fromhex(a)
    if tag == "tuple":
        return tuple(_decode(x) for x in a)
    if tag == "dict":
        return {k: _decode(x) for k, x in a.items()}
    if tag == "torch":
        obj = vars(torch).get(a)     # vars(): a name read from a file never triggers a lazy import
        if not isinstance(obj, (torch.dtype, torch.layout, torch.memory_format)):
            raise ProgramError(f"unknown torch constant {a!r}")
        return obj
    if tag == "device":
        return torch.device(str(a))
    raise ProgramError(f"unknown argument tag {tag!r}")


def resolve_op(name: str, allowed=None):
    """``torch.ops.aten.<name>.<overload>`` for ``'aten.<name>.<overload>'``, checked: an ATen
    operator (never anything else), and in ``allowed`` when given."""
    import torch

    m = _OP_RE.match(name) if isinstance(name, str) else None
    if m is None:
        raise ProgramError(f"{name!r} is not the name of an ATen operator")
    if allowed is not None and name not in allowed:
        raise ProgramError(f"{name} has no exact model in this mtcheck (mtcheck.supported_ops())")
    try:
        packet = getattr(torch.ops.aten, m.group(1))
        op = getattr(packet, m.group(2))
    except (AttributeError, RuntimeError):
        raise ProgramError(f"{name} is not an operator of this torch ({torch.__version__})") from None
    if not isinstance(op, torch._ops.OpOverload) or str(op) != name:
        raise ProgramError(f"{name} is not an ATen operator overload")
    return op


# ---------------------------------------------------------------------------- call sites

_CALLERS: dict = {}
_WHERE_RE = re.compile(r"^(.+):(\d+) in ([A-Za-z_][A-Za-z0-9_]*)$")


def _caller(where: str):
    """A one-line function whose code object names the recorded call site (file, line, function),
    so that a replayed op is attributed to the user's source line as in the original trace.
    The recorded file is only a name in a code object; it is never read or run."""
    if where in _CALLERS:
        return _CALLERS[where]
    fn = None
    m = _WHERE_RE.match(where or "")
    if m and 0 < int(m.group(2)) <= 100_000 and "\n" not in where:
        src = "\n" * (int(m.group(2)) - 1) + f"def {m.group(3)}(f, a, k): return f(*a, **k)\n"
        ns: dict = {}
        exec(compile(src, m.group(1), "exec"), ns)      # our own source text; only its file name is recorded data
        fn = ns[m.group(3)]
    _CALLERS[where] = fn
    return fn


# ---------------------------------------------------------------------------- the program

@dataclass
class Graph:
    """Straight-line ATen code: ``nodes`` read ``('in', i)``, ``('const', i)`` and earlier ``('node', i, out)``."""

    inputs: list                     # [{"dtype", "shape"}]
    consts: list                     # torch tensors (with their strides)
    nodes: list                      # [{"op", "args", "kwargs", "where", "grad", "branch"}] (args decoded)
    outputs: list                    # Refs (or None for an output that is None)

    def run(self, inputs, *, grad=True):
        import torch

        from .trace import Ref

        mutable = any(n["func"]._schema.is_mutable for n in self.nodes)
        consts = [c.clone() if mutable else c for c in self.consts]
        env: dict = {}

        def val(v):
            if isinstance(v, Ref):
                if v.kind == "in":
                    return inputs[v.index]
                if v.kind == "const":
                    return consts[v.index]
                return env[(v.index, v.out)]
            if isinstance(v, list):
                return [val(a) for a in v]
            if isinstance(v, tuple):
                return tuple(val(a) for a in v)
            if isinstance(v, dict):
                return {k: val(a) for k, a in v.items()}
            return v

        for i, n in enumerate(self.nodes):
            if n.get("dead"):
                continue
            args, kwargs = val(n["args"]), val(n["kwargs"])
            call = _caller(n.get("where", ""))
            with torch.set_grad_enabled(grad and n.get("grad", True)):
                out = call(n["func"], args, kwargs) if call is not None else n["func"](*args, **kwargs)
            if isinstance(out, (tuple, list)):
                for j, o in enumerate(out):
                    env[(i, j)] = o
            else:
                env[(i, 0)] = out
            if n.get("branch") is not None and isinstance(out, torch.Tensor):
                bool(out)          # re-read as Python control flow did, so the tracer sees the branch
        return [None if r is None else val(r) for r in self.outputs]

    # -- serialisation
    def to_doc(self, prefix: str, tensor_keys) -> tuple[dict, dict]:
        tensors, consts = {}, []
        for i, c in enumerate(self.consts):
            key = tensor_keys(c)
            if key is None:
                key = f"{prefix}/const/{i}"
                tensors[key] = c.detach().contiguous().clone()
            consts.append({"tensor": key, "dtype": str(c.dtype).replace("torch.", ""), "shape": list(c.shape),
                           "stride": list(c.stride())})
        nodes = []
        for n in self.nodes:
            d = {"op": n["op"], "args": _encode(list(n["args"])), "kwargs": _encode(dict(n["kwargs"])),
                 "where": n.get("where", "")}
            if not n.get("grad", True):
                d["grad"] = False
            if n.get("branch") is not None:
                d["branch"] = bool(n["branch"])
            if n.get("dead"):
                d["dead"] = True
            nodes.append(d)
        return ({"inputs": self.inputs, "consts": consts, "nodes": nodes,
                 "outputs": [None if r is None else _encode(r) for r in self.outputs]}, tensors)

    @classmethod
    def from_doc(cls, doc: dict, tensors: dict, allowed) -> "Graph":
        import torch

        from .trace import Ref

        consts = []
        for c in doc["consts"]:
            t = tensors.get(c["tensor"])
            if t is None:
                raise ProgramError(f"constant {c['tensor']} is not in the tensors file")
            if str(t.dtype).replace("torch.", "") != c["dtype"] or list(t.shape) != list(c["shape"]):
                raise ProgramError(f"constant {c['tensor']} is {t.dtype}{list(t.shape)}, expected "
                                   f"{c['dtype']}{c['shape']}")
            stride = c.get("stride")
            if stride and t.numel() and list(stride) != list(t.stride()):
                try:
                    s = torch.empty_strided(t.shape, stride, dtype=t.dtype)
                    s.copy_(t)
                    if torch.equal(s, t):
                        t = s
                except RuntimeError:
                    pass
            consts.append(t)
        nodes = []
        n_in = len(doc["inputs"])
        for i, n in enumerate(doc["nodes"]):
            op = n["op"]
            allow = allowed if op not in _BRANCH_OPS else None
            func = resolve_op(op, allow)
            args, kwargs = _decode(n["args"]), _decode(n["kwargs"])
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ProgramError(f"node {i} ({op}): malformed arguments")
            for r in _refs((args, kwargs)):
                _check_ref(r, i, n_in, len(consts))
            nodes.append({"op": op, "func": func, "args": tuple(args), "kwargs": kwargs,
                          "where": str(n.get("where", "")), "grad": bool(n.get("grad", True)),
                          "branch": n.get("branch"), "dead": bool(n.get("dead", False))})
        outputs = []
        for o in doc["outputs"]:
            r = None if o is None else _decode(o)
            if r is not None:
                if not isinstance(r, Ref):
                    raise ProgramError("an output is not a reference")
                _check_ref(r, len(nodes), n_in, len(consts))
            outputs.append(r)
        return cls(list(doc["inputs"]), consts, nodes, outputs)


def _refs(obj):
    from .trace import Ref

    if isinstance(obj, Ref):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for a in obj:
            yield from _refs(a)
    elif isinstance(obj, dict):
        for a in obj.values():
            yield from _refs(a)


def _check_ref(r, before: int, n_in: int, n_const: int):
    if r.kind == "in" and not 0 <= r.index < n_in:
        raise ProgramError(f"reference {r!r} names no input")
    if r.kind == "const" and not 0 <= r.index < n_const:
        raise ProgramError(f"reference {r!r} names no constant")
    if r.kind == "node" and not 0 <= r.index < before:
        raise ProgramError(f"reference {r!r} names no earlier node")


@dataclass
class Program:
    """A traced program, self-contained. ``forward`` is a :class:`Graph` of the inputs;
    ``backward`` (when ``backward_mode == 'recorded'``) a :class:`Graph` of the incoming
    gradients (one per differentiable output) whose outputs are the gradients of ``wrt``."""

    forward: Graph
    out_spec: str                            # torch.utils._pytree.treespec_dumps of the output
    out_requires_grad: list                  # per flat output
    wrt: list                                # input positions the recorded backward differentiates
    backward_mode: str = "native"            # 'native' | 'recorded'
    backward: Graph | None = None
    notes: list = field(default_factory=list)

    # ------------------------------------------------------------ running
    def function(self):
        """A callable ``fn(*inputs)`` running the program in PyTorch; named ``traced program``."""
        import torch
        import torch.utils._pytree as pytree

        spec = pytree.treespec_loads(self.out_spec)
        prog = self

        if self.backward_mode == "native":
            def fn(*xs):
                return pytree.tree_unflatten(prog.forward.run(list(xs)), spec)
        else:
            class _Recorded(torch.autograd.Function):
                @staticmethod
                def forward(ctx, *xs):
                    outs = prog.forward.run(list(xs), grad=False)
                    res = tuple(o.clone() if any(o is x for x in xs) else o for o in outs)
                    nd = [o for o, rg in zip(res, prog.out_requires_grad)
                          if isinstance(o, torch.Tensor) and not rg]
                    if nd:
                        ctx.mark_non_differentiable(*nd)
                    return res

                @staticmethod
                def backward(ctx, *gs):
                    cots = [g for g, rg in zip(gs, prog.out_requires_grad) if rg]
                    grads = prog.backward.run(cots, grad=False)
                    out = [None] * len(prog.forward.inputs)
                    for i, g in zip(prog.wrt, grads):
                        out[i] = g
                    return tuple(out)

            def fn(*xs):
                res = _Recorded.apply(*xs)
                return pytree.tree_unflatten(list(res), spec)

        fn.__name__ = fn.__qualname__ = "traced_program"
        return fn

    # ------------------------------------------------------------ serialisation
    def to_doc(self, tensor_keys=lambda t: None) -> tuple[dict, dict]:
        """``(json, tensors)``; ``tensor_keys(t)`` may name an already stored tensor equal to ``t``
        (a weight), so that it is not stored twice."""
        fwd, tensors = self.forward.to_doc("program", tensor_keys)
        doc = {"format": FORMAT, "forward": fwd, "out_spec": json.loads(self.out_spec),
               "out_requires_grad": [bool(b) for b in self.out_requires_grad], "wrt": [int(i) for i in self.wrt],
               "backward": self.backward_mode}
        if self.backward is not None:
            bwd, t2 = self.backward.to_doc("program/backward", tensor_keys)
            doc["backward_program"] = bwd
            tensors.update(t2)
        if self.notes:
            doc["notes"] = list(self.notes)
        return doc, tensors

    @classmethod
    def from_doc(cls, doc: dict, tensors: dict) -> "Program":
        """Check and rebuild a stored program; raises :class:`ProgramError`. Runs nothing."""
        from .ops import supported_ops

        if not isinstance(doc, dict):
            raise ProgramError("the traced program is not an object")
        if doc.get("format") != FORMAT:
            raise ProgramError(f"traced program format {doc.get('format')!r} is not {FORMAT} (upgrade mtcheck)")
        try:
            mode = doc.get("backward", "native")
            if mode not in ("native", "recorded"):
                raise ProgramError(f"unknown backward mode {mode!r}")
            spec = doc["out_spec"]
            _check_spec(spec)
            fwd = Graph.from_doc(doc["forward"], tensors, frozenset(supported_ops()))
            bwd = None
            if mode == "recorded":
                bwd = Graph.from_doc(doc["backward_program"], tensors, None)
            return cls(fwd, json.dumps(spec), [bool(b) for b in doc["out_requires_grad"]],
                       [int(i) for i in doc["wrt"]], mode, bwd, list(doc.get("notes") or []))
        except ProgramError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ProgramError(f"malformed traced program ({type(e).__name__}: {e})") from None

    @property
    def ops(self) -> list:
        return [n["op"] for n in self.forward.nodes]

    def __reduce__(self):
        # between processes (campaign workers, Dask): the same data form as on disk
        doc, tensors = self.to_doc()
        return (_from_parts, (json.dumps(doc), tensors))


def _from_parts(doc_json: str, tensors: dict) -> "Program":
    return Program.from_doc(json.loads(doc_json), tensors)


def _check_spec(spec):
    """Only plain containers in the output structure (treespec_loads resolves type names)."""
    if not (isinstance(spec, list) and len(spec) == 2 and isinstance(spec[1], dict)):
        raise ProgramError("malformed output structure")

    def walk(s):
        if not isinstance(s, dict) or s.get("type") not in _SPEC_TYPES:
            raise ProgramError(f"output structure of type {s.get('type') if isinstance(s, dict) else s!r} "
                               "cannot be stored (only tensors, tuples, lists and dicts)")
        for c in s.get("children_spec") or []:
            walk(c)

    walk(spec[1])


# ---------------------------------------------------------------------------- recording

def record(fn, inputs, wrt=None, framework_jacobian=None) -> Program:
    """Trace ``fn`` at ``inputs`` (as :func:`mtcheck.check` does) and keep it as a :class:`Program`.

    When ``fn``'s backward is not the ATen ops' own (a custom ``autograd.Function`` in its
    autograd graph, or a ``framework_jacobian`` that a native replay does not reproduce bit
    for bit), PyTorch's backward at ``inputs`` is recorded too. Raises :class:`ProgramError`
    when the program cannot be stored (an argument or output that is not data)."""
    import torch
    import torch.utils._pytree as pytree

    from .trace import prepare_inputs, trace

    leaves, wrt = prepare_inputs(list(inputs), wrt)
    tr = trace(fn, leaves)
    spec = pytree.treespec_dumps(tr.out_spec)
    _check_spec(json.loads(spec))
    if any(r is None for r in tr.outputs):
        raise ProgramError("the program returns a value that is not a tensor")
    used = set()
    for n in tr.nodes:
        used.update(r.index for r in _refs((n.args, n.kwargs)) if r.kind == "node")
    used.update(r.index for r in tr.outputs if r.kind == "node")
    nodes = []
    for n in tr.nodes:
        dead = n.op in _PURE_DEAD and not n.branch and n.index not in used
        nodes.append({"op": n.op, "func": n.func, "args": n.args, "kwargs": n.kwargs, "where": n.where,
                      "grad": n.grad_enabled, "branch": (dict(tr.branches).get(n.index) if n.branch else None),
                      "dead": dead})
    for n in nodes:                                 # fail now, not at load time, on what cannot be stored
        _encode(list(n["args"]))
        _encode(dict(n["kwargs"]))
    meta = [{"dtype": str(x.dtype).replace("torch.", ""), "shape": list(x.shape)} for x in leaves]
    fwd = Graph(meta, [c.detach().clone() for c in tr.consts], nodes, list(tr.outputs))
    out_rg = [isinstance(t, torch.Tensor) and t.requires_grad for t in tr.out_tensors]
    prog = Program(fwd, spec, out_rg, list(wrt))
    why = _custom_backward(tr.out_tensors)
    if why is None and framework_jacobian is not None:
        if not _same_jacobian(prog, leaves, wrt, framework_jacobian):
            why = "a replay with the ATen ops' own derivatives does not reproduce the framework's Jacobian"
    if why is not None:
        prog.backward_mode = "recorded"
        prog.backward = _record_backward(tr, leaves, wrt)
        prog.notes.append(f"backward recorded at the input: {why}")
    return prog


def _custom_backward(outs):
    """Why the backward is not the ATen ops' own (a custom Function in the graph), or None."""
    import torch

    seen, stack = set(), [o.grad_fn for o in outs if isinstance(o, torch.Tensor)]
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        if isinstance(f, torch.autograd.function.BackwardCFunction):
            return f"the autograd graph has a custom backward ({type(f).__name__})"
        stack.extend(g for g, _ in f.next_functions)
    return None


def _same_jacobian(prog: Program, leaves, wrt, J) -> bool:
    import numpy as np

    try:
        Jr = jacobian(prog.function(), [x.detach() for x in leaves], wrt)
    except Exception:  # noqa: BLE001 - any failure means: record the backward
        return False
    J = np.asarray(J)
    return Jr.shape == J.shape and bool(np.array_equal(Jr, J, equal_nan=True))


def jacobian(fn, inputs, wrt):
    """PyTorch's reverse-mode Jacobian of ``fn`` at ``inputs`` w.r.t. ``wrt``, float64 (m, n), row by row."""
    import numpy as np
    import torch

    from .ops.random_fixed import reseed

    xs = [x.detach().clone().requires_grad_(i in wrt) for i, x in enumerate(inputs)]
    reseed()                     # check(..., torch_seed=s): the trace's draws again
    with torch.enable_grad():
        out = fn(*xs)
    import torch.utils._pytree as pytree

    outs = [o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor) and o.is_floating_point()]
    ins = [xs[i] for i in wrt]
    m = sum(o.numel() for o in outs)
    rows = []
    for k in range(m):
        off, pairs = 0, []
        for o in outs:
            c = torch.zeros(o.numel(), dtype=o.dtype)
            if off <= k < off + o.numel():
                c[k - off] = 1
            off += o.numel()
            if o.requires_grad:
                pairs.append((o, c.reshape(o.shape)))
        if not pairs:
            rows.append(np.zeros(sum(x.numel() for x in ins)))
            continue
        gs = torch.autograd.grad([p[0] for p in pairs], ins, [p[1] for p in pairs], retain_graph=True,
                                 allow_unused=True)
        rows.append(np.concatenate([(g if g is not None else torch.zeros_like(x)).detach().double().reshape(-1)
                                    .numpy() for g, x in zip(gs, ins)]))
    return np.array(rows).reshape(m, sum(x.numel() for x in ins))


def _record_backward(tr, leaves, wrt) -> Graph:
    """PyTorch's backward of ``tr`` at its input, as a Graph of the incoming gradients."""
    import torch

    outs = [o for o in tr.out_tensors if isinstance(o, torch.Tensor) and o.requires_grad]
    cots = [torch.ones_like(o) for o in outs]
    rec = _BackwardRecorder(cots)
    ins = [leaves[i] for i in wrt]
    if outs:
        with rec:
            grads = torch.autograd.grad(outs, ins, cots, retain_graph=True, allow_unused=True)
    else:
        grads = [None] * len(ins)
    outputs = []
    for g in grads:
        if g is None:
            outputs.append(None)
            continue
        r = rec.map.get(id(g))
        if r is None:
            r = rec.const(g)
        outputs.append(r)
    meta = [{"dtype": str(c.dtype).replace("torch.", ""), "shape": list(c.shape)} for c in cots]
    for n in rec.nodes:
        _encode(list(n["args"]))
        _encode(dict(n["kwargs"]))
    return Graph(meta, rec.consts, rec.nodes, outputs)


def _BackwardRecorder(cots):
    import torch
    import torch.utils._pytree as pytree
    from torch.utils._python_dispatch import TorchDispatchMode

    from .trace import Ref

    class Rec(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.map, self.keep, self.consts, self.const_ids, self.nodes = {}, [], [], {}, []
            for j, c in enumerate(cots):
                self.map[id(c)] = Ref("in", j)
                self.keep.append(c)

        def const(self, t):
            i = self.const_ids.get(id(t))
            if i is None:
                i = len(self.consts)
                self.consts.append(t.detach().clone())
                self.const_ids[id(t)] = i
                self.keep.append(t)
            return Ref("const", i)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = str(func)

            def ref_of(v):
                if isinstance(v, torch.Tensor):
                    r = self.map.get(id(v))
                    return r if r is not None else self.const(v)
                return v

            rargs, rkwargs = pytree.tree_map(ref_of, args), pytree.tree_map(ref_of, kwargs)
            dep = any(isinstance(r, Ref) and r.kind != "const" for r in pytree.tree_leaves((rargs, rkwargs)))
            outs = out if isinstance(out, (tuple, list)) else (out,)
            if not dep:
                for o in outs:
                    if isinstance(o, torch.Tensor):
                        self.map[id(o)] = self.const(o)
                        self.keep.append(o)
                return out
            if name in _BRANCH_OPS or not isinstance(out, (torch.Tensor, tuple, list)):
                raise ProgramError("the backward pass reads a value of the incoming gradient into Python "
                                   f"({name}); it cannot be recorded")
            if _OP_RE.match(name) is None:
                raise ProgramError(f"the backward pass runs {name}, which is not an ATen operator")
            idx = len(self.nodes)
            self.nodes.append({"op": name, "func": func, "args": rargs, "kwargs": rkwargs, "where": "",
                               "grad": False, "branch": None})
            for j, o in enumerate(outs):
                if isinstance(o, torch.Tensor):
                    self.map[id(o)] = Ref("node", idx, j)
                    self.keep.append(o)
            return out

    return Rec()


__all__ = ["FORMAT", "Graph", "Program", "ProgramError", "jacobian", "record", "resolve_op"]

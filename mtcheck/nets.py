"""Generated networks: a JSON-serializable, bit-exact description (:class:`NetSpec`).

A ``NetSpec`` is a small directed graph of layers applied to one input tensor.
Every weight is an exact dyadic rational stored as integer numerators and one
power-of-two exponent (``value = num * 2**exp``), so ``to_dict`` / ``from_dict``
round-trip through JSON without any decimal text and ``build`` gives the same
float weights on every machine.

Layer kinds (``Layer.kind``) and their parameters (``Layer.params``):

=====================  =====================================================================
``linear``             ``weight`` (out, in), ``bias`` (out) or None
``conv1d``/``conv2d``  ``weight`` (out, in, *k), ``bias``, ``stride``, ``padding``, ``dilation``
``relu``, ``abs``      none
``leaky_relu``         ``slope`` (a dyadic: ``[num, exp]``)
``hardtanh``/``clamp`` ``lo``, ``hi`` (dyadics); ``relu6`` has none
``max_pool1d/2d``      ``kernel``, ``stride``, ``padding``, ``dilation``, ``ceil_mode``
``adaptive_max_pool1d/2d``  ``output_size``
``amax``/``amin``      ``dim``, ``keepdim``;  ``max``/``min``: ``dim``, ``keepdim`` (values only)
``add``                two sources (a residual connection)
``cat``                two or more sources, ``dim``
``flatten``            ``start_dim``
``custom``             ``name``: an elementwise op registered with :func:`register_op`
``sort``               ``dim``, ``descending`` (values only)
``topk``               ``k``, ``dim``, ``largest`` (values only)
``kthvalue``           ``k``, ``dim``, ``keepdim`` (values only)
``median``             ``dim`` (an int, or None: the median of all entries, as shape (1, 1)), ``keepdim``
``cummax``/``cummin``  ``dim`` (values only)
``vector_norm``        ``ord`` (``"1"``, ``"inf"`` or ``"-inf"``), ``dim``, ``keepdim``
``cdist``              ``p`` (``"1"``/``"inf"``), ``other``: the constant second operand (M, D)
``pdist``              ``p``, ``rows``: constant rows (M, D) stacked under the input's rows (or None);
                       the input's rows are its last dim; output (1, pairs)
``scatter_reduce``     ``reduce`` (amax/amin/sum/mean/prod), ``include_self``, ``index`` (ints, the
                       length of the last dim), ``m``: self is the input's first ``m`` entries of the
                       last dim (``self_src``: ``"slice"``) or zeros (``"zeros"``)
``index_reduce``       ``reduce`` (amax/amin/mean/prod), ``include_self``, ``index``, ``m``: as scatter_reduce
``embedding_bag``      ``mode`` (max/sum/mean), ``width`` D: the input (batch 1) read as a table of rows of
                       width D; ``indices``, ``offsets`` (ints); output (1, bags * D)
``fmax``/``fmin``/``maximum``/``minimum``  two sources (elementwise, same shape)
``clamp_tensor``       sources ``[x, lo]`` or ``[x, lo, hi]``: ``torch.clamp(x, lo, hi)`` with tensor bounds
``prelu``              ``weight`` (one slope, or one per channel): a parameter
=====================  =====================================================================

Every layer reads ``Layer.src``: ``-1`` is the network input, ``i >= 0`` layer ``i``'s output
(``add``/``cat`` read a list). The network's output is the last layer's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["NetSpec", "Layer", "Dyadic", "register_op", "registered_ops", "encode_tensor", "decode_tensor",
           "LAYER_KINDS", "NONSMOOTH_KINDS", "OP_KINDS", "SMOOTH_KINDS"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
           "bfloat16": torch.bfloat16}

ACTIVATIONS = ("relu", "leaky_relu", "hardtanh", "relu6", "clamp", "abs")
POOLS = ("max_pool1d", "max_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d")
REDUCTIONS = ("amax", "amin", "max", "min")
# the ops that compose PyTorch's other modelled nonsmooth primitives (issue 11, part 5)
ORDER_OPS = ("sort", "topk", "kthvalue", "median", "cummax", "cummin")
NORM_OPS = ("vector_norm", "cdist", "pdist")
INDEX_OPS = ("scatter_reduce", "index_reduce", "embedding_bag")
BINARY_OPS = ("fmax", "fmin", "maximum", "minimum", "clamp_tensor")
OP_KINDS = (*ORDER_OPS, *NORM_OPS, *INDEX_OPS, *BINARY_OPS, "prelu")
# smooth layers (issue 10, item 5): elementwise C^1 activations, and softmax / log-softmax over the
# features; their values are irrational, so the engine encloses them (a tie downstream of one is
# decided where it is exact or structural: tanh(0) = 0, sigmoid(0) = 1/2)
SMOOTH_ACTIVATIONS = ("tanh", "sigmoid", "gelu", "silu", "softplus", "elu")
SMOOTH_HEADS = ("softmax", "log_softmax")
SMOOTH_KINDS = (*SMOOTH_ACTIVATIONS, *SMOOTH_HEADS)
LAYER_KINDS = ("linear", "conv1d", "conv2d", *ACTIVATIONS, *POOLS, *REDUCTIONS, "add", "cat", "flatten",
               "custom", *OP_KINDS, *SMOOTH_KINDS)
NONSMOOTH_KINDS = frozenset((*ACTIVATIONS, *POOLS, *REDUCTIONS, "custom", *OP_KINDS))

# name -> callable(tensor) -> tensor; elementwise ops users plant in generated networks
_CUSTOM: dict[str, Callable] = {}


def register_op(name: str, fn: Callable) -> None:
    """Make ``fn`` (an elementwise tensor -> tensor callable) usable as a ``custom`` layer ``name``.

    The NetSpec stores only the name: the same name must be registered where the spec is built.
    """
    _CUSTOM[name] = fn


def registered_ops() -> list:
    return sorted(_CUSTOM)


# ---------------------------------------------------------------- exact dyadic encoding

def _dyadic_parts(v: float):
    """(num, exp) with v == num * 2**exp exactly, num odd or zero."""
    n, d = float(v).as_integer_ratio()
    if n == 0:
        return 0, 0
    e = -(d.bit_length() - 1)       # d is a power of two
    while n % 2 == 0:
        n //= 2
        e += 1
    return n, e


@dataclass(frozen=True)
class Dyadic:
    """An exact dyadic scalar ``num * 2**exp``."""

    num: int
    exp: int = 0

    @classmethod
    def of(cls, v) -> "Dyadic":
        if isinstance(v, Dyadic):
            return v
        if isinstance(v, (list, tuple)):
            return cls(int(v[0]), int(v[1]))
        return cls(*_dyadic_parts(v))

    def __float__(self) -> float:
        return float(self.num * 2.0 ** self.exp) if self.num else 0.0

    def to_json(self):
        return [self.num, self.exp]


def encode_tensor(t) -> dict | None:
    """``{"shape": [...], "num": [ints], "exp": e}`` with ``t == num * 2**exp`` exactly."""
    if t is None:
        return None
    t = torch.as_tensor(t).detach().to(torch.float64).cpu()
    vals = t.reshape(-1).tolist()
    parts = [_dyadic_parts(v) for v in vals]
    nz = [e for n, e in parts if n]
    e0 = min(nz) if nz else 0
    nums = [n << (e - e0) if n else 0 for n, e in parts]
    return {"shape": list(t.shape), "num": nums, "exp": e0}


def decode_tensor(d: dict | None, dtype=torch.float64):
    if d is None:
        return None
    e = int(d["exp"])
    vals = [float(int(n) * 2.0 ** e) if n else 0.0 for n in d["num"]]
    t = torch.tensor(vals, dtype=torch.float64).reshape(tuple(d["shape"]))
    out = t.to(dtype)
    if not torch.equal(out.to(torch.float64), t):
        raise ValueError(f"a weight is not exactly representable in {dtype}")
    return out


# ---------------------------------------------------------------- the spec

@dataclass
class Layer:
    kind: str
    params: dict = field(default_factory=dict)
    src: Any = None          # None: the previous layer (or the input for layer 0)

    def to_dict(self) -> dict:
        d = {"kind": self.kind}
        if self.params:
            d["params"] = self.params
        if self.src is not None:
            d["src"] = self.src
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Layer":
        if d["kind"] not in LAYER_KINDS:
            raise ValueError(f"unknown layer kind {d['kind']!r}; known: {', '.join(LAYER_KINDS)}")
        return cls(d["kind"], dict(d.get("params", {})), d.get("src"))


@dataclass
class NetSpec:
    """A generated network: input shape (batch included), dtype name, layers."""

    input_shape: tuple
    layers: list
    dtype: str = "float64"
    version: int = 1

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype {self.dtype!r} not one of {sorted(_DTYPES)}")
        self.layers = [lay if isinstance(lay, Layer) else Layer.from_dict(lay) for lay in self.layers]

    # -- serialization (JSON-safe: ints, lists, strings, bools only)
    def to_dict(self) -> dict:
        return {"version": self.version, "input_shape": list(self.input_shape), "dtype": self.dtype,
                "layers": [lay.to_dict() for lay in self.layers]}

    @classmethod
    def from_dict(cls, d: dict) -> "NetSpec":
        if int(d.get("version", 1)) != 1:
            raise ValueError(f"NetSpec version {d.get('version')} is newer than this mtcheck understands")
        return cls(tuple(d["input_shape"]), [Layer.from_dict(x) for x in d["layers"]], d.get("dtype", "float64"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str) -> "NetSpec":
        return cls.from_dict(json.loads(s))

    @property
    def torch_dtype(self):
        return _DTYPES[self.dtype]

    def __len__(self) -> int:
        return len(self.layers)

    def sources(self, i: int) -> list:
        s = self.layers[i].src
        if s is None:
            return [i - 1]
        return list(s) if isinstance(s, (list, tuple)) else [int(s)]

    # -- torch
    def build(self, dtype=None) -> nn.Module:
        """The network as an ``nn.Module`` in eval mode, weights exactly as stored."""
        dt = _DTYPES[dtype] if isinstance(dtype, str) else (dtype or self.torch_dtype)
        return GeneratedNet(self, dt).eval()

    def example_input(self, dtype=None) -> torch.Tensor:
        dt = _DTYPES[dtype] if isinstance(dtype, str) else (dtype or self.torch_dtype)
        return torch.zeros(self.input_shape, dtype=dt)

    def shapes(self) -> list:
        """Output shape of every layer (from a forward pass on zeros)."""
        net = self.build(torch.float64)
        with torch.no_grad():
            outs = net.forward_all(self.example_input(torch.float64))
        return [tuple(o.shape) for o in outs]

    def layer_output_shape(self, i: int, in_shapes: list) -> tuple:
        """Output shape of layer ``i`` given its sources' shapes (runs that layer alone on zeros)."""
        net = GeneratedNet(NetSpec(self.input_shape, [], "float64"), torch.float64)
        lay = self.layers[i]
        mod = GeneratedNet._module_for(lay, torch.float64)
        with torch.no_grad():
            y = net._apply(lay, mod, [torch.zeros(s, dtype=torch.float64) for s in in_shapes])
        return tuple(y.shape)

    @property
    def output_shape(self) -> tuple:
        return self.shapes()[-1]

    def n_nonsmooth(self) -> int:
        return sum(lay.kind in NONSMOOTH_KINDS for lay in self.layers)

    def describe(self) -> str:
        """One short line: ``(1, 4) float64: linear 4->3 [dup rows] | relu | max_pool1d k2``."""
        parts = [_describe_layer(lay, i, self) for i, lay in enumerate(self.layers)]
        return f"{self.input_shape} {self.dtype}: " + " | ".join(parts)

    def __repr__(self) -> str:
        return f"NetSpec<{self.describe()}>"


def _describe_layer(lay: Layer, i: int, spec: NetSpec) -> str:
    p = lay.params
    k = lay.kind
    src = "" if lay.src is None else f"<-{lay.src}"
    if k == "linear":
        o, n = p["weight"]["shape"]
        s = f"linear {n}->{o}"
        tags = _weight_tags(p)
        return s + (f" [{','.join(tags)}]" if tags else "") + src
    if k in ("conv1d", "conv2d"):
        o, c, *ks = p["weight"]["shape"]
        s = f"{k} {c}->{o} k{'x'.join(map(str, ks))}"
        if p.get("stride", 1) != 1:
            s += f" s{p['stride']}"
        if p.get("padding", 0):
            s += f" p{p['padding']}"
        if p.get("dilation", 1) != 1:
            s += f" d{p['dilation']}"
        tags = _weight_tags(p)
        return s + (f" [{','.join(tags)}]" if tags else "") + src
    if k in ("max_pool1d", "max_pool2d"):
        s = f"{k} k{p['kernel']}"
        if p.get("stride") not in (None, p["kernel"]):
            s += f" s{p['stride']}"
        if p.get("padding", 0):
            s += f" p{p['padding']}"
        if p.get("dilation", 1) != 1:
            s += f" d{p['dilation']}"
        if p.get("ceil_mode"):
            s += " ceil"
        return s + src
    if k.startswith("adaptive"):
        return f"{k} {p['output_size']}" + src
    if k in REDUCTIONS:
        return f"{k}(dim={p['dim']})" + src
    if k in ("leaky_relu",):
        return f"leaky_relu({float(Dyadic.of(p['slope'])):g})" + src
    if k in ("hardtanh", "clamp"):
        return f"{k}({float(Dyadic.of(p['lo'])):g},{float(Dyadic.of(p['hi'])):g})" + src
    if k == "cat":
        return f"cat{list(lay.src)}(dim={p.get('dim', 1)})"
    if k == "add":
        return f"add{list(lay.src)}"
    if k == "custom":
        return f"{p['name']}" + src
    if k in ("sort", "cummax", "cummin"):
        return f"{k}(dim={p['dim']}{', desc' if p.get('descending') else ''})" + src
    if k == "topk":
        return f"topk(k={p['k']}, dim={p['dim']}{'' if p.get('largest', True) else ', smallest'})" + src
    if k in ("kthvalue", "median"):
        return f"{k}({'k=%s, ' % p['k'] if k == 'kthvalue' else ''}dim={p.get('dim')})" + src
    if k == "vector_norm":
        return f"vector_norm(ord={p['ord']}, dim={p['dim']})" + src
    if k == "cdist":
        return f"cdist(p={p['p']}, const {p['other']['shape'][0]} rows)" + src
    if k == "pdist":
        return f"pdist(p={p['p']}{', +%d const rows' % p['rows']['shape'][0] if p.get('rows') else ''})" + src
    if k in ("scatter_reduce", "index_reduce"):
        return (f"{k}({p['reduce']}, include_self={bool(p.get('include_self', True))}, "
                f"self={p.get('self_src', 'slice')}[:{p['m']}])") + src
    if k == "embedding_bag":
        return f"embedding_bag({p['mode']}, width {p['width']}, {len(p['offsets'])} bags)" + src
    if k in BINARY_OPS:
        return f"{k}{list(lay.src) if lay.src is not None else ''}"
    if k in SMOOTH_HEADS:
        return f"{k}(dim={p.get('dim', 1)})" + src
    if k == "prelu":
        return f"prelu({len(p['weight']['num'])} slope{'s' if len(p['weight']['num']) > 1 else ''})" + src
    return k + src


def _weight_tags(p) -> list:
    w = p["weight"]
    nums = w["num"]
    o = w["shape"][0]
    per = len(nums) // o if o else 0
    rows = [tuple(nums[i * per:(i + 1) * per]) for i in range(o)]
    tags = []
    if any(not any(r) for r in rows):
        tags.append("zero rows")
    if len(set(rows)) < len(rows):
        tags.append("dup rows")
    b = p.get("bias")
    if b is None or not any(b["num"]):
        tags.append("no bias" if b is None else "zero bias")
    return tags


# ---------------------------------------------------------------- the module

def _pair(v, n):
    return tuple(v) if isinstance(v, (list, tuple)) else (int(v),) * n


class _Affine(nn.Module):
    """The weight and bias of a linear or convolution layer (applied functionally by GeneratedNet)."""

    def __init__(self, weight, bias):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)}, bias={self.bias is not None}"


class _Const(nn.Module):
    """A constant operand (cdist's second operand, pdist's extra rows): a buffer, not a parameter,
    and not in the state_dict (the spec holds it exactly)."""

    def __init__(self, value):
        super().__init__()
        if value is not None:
            self.register_buffer("value", value, persistent=False)
        else:
            self.value = None


_P = {"1": 1.0, "2": 2.0, "inf": math.inf, "-inf": -math.inf}


def _p_value(v) -> float:
    """A norm order stored in JSON: ``"1"``, ``"inf"``, ``"-inf"`` (or a number)."""
    return _P[v] if isinstance(v, str) else float(v)


def _index_tensor(idx, like, dim=-1):
    """The stored index (one int per entry of ``like``'s last dim) broadcast to ``like``'s shape."""
    i = torch.tensor([int(v) for v in idx], dtype=torch.long)
    shape = [1] * like.ndim
    shape[dim] = i.numel()
    return i.reshape(shape).expand(like.shape).contiguous()


class GeneratedNet(nn.Module):
    """The module a :class:`NetSpec` builds. Parameters hold the stored dyadic weights."""

    def __init__(self, spec: NetSpec, dtype=torch.float64):
        super().__init__()
        self.spec = spec
        self.mods = nn.ModuleList(self._module_for(lay, dtype) for lay in spec.layers)

    @staticmethod
    def _module_for(lay: Layer, dtype) -> nn.Module:
        p = lay.params
        if lay.kind == "prelu":
            return _Affine(decode_tensor(p["weight"], dtype), None)
        if lay.kind in ("cdist", "pdist"):
            return _Const(decode_tensor(p.get("other" if lay.kind == "cdist" else "rows"), dtype))
        if lay.kind not in ("linear", "conv1d", "conv2d"):
            return nn.Identity()
        return _Affine(decode_tensor(p["weight"], dtype), decode_tensor(p.get("bias"), dtype))

    def _apply(self, lay: Layer, mod: nn.Module, xs: list):
        k, p = lay.kind, lay.params
        x = xs[0]
        if k == "linear":
            return F.linear(x, mod.weight, mod.bias)
        if k in ("conv1d", "conv2d"):
            conv = F.conv1d if k == "conv1d" else F.conv2d
            return conv(x, mod.weight, mod.bias, p.get("stride", 1), p.get("padding", 0), p.get("dilation", 1))
        if k == "relu":
            return torch.relu(x)
        if k == "leaky_relu":
            return F.leaky_relu(x, float(Dyadic.of(p["slope"])))
        if k == "hardtanh":
            return F.hardtanh(x, float(Dyadic.of(p["lo"])), float(Dyadic.of(p["hi"])))
        if k == "relu6":
            return F.relu6(x)
        if k == "clamp":
            return torch.clamp(x, float(Dyadic.of(p["lo"])), float(Dyadic.of(p["hi"])))
        if k == "abs":
            return torch.abs(x)
        if k == "max_pool1d":
            return F.max_pool1d(x, p["kernel"], p.get("stride") or p["kernel"], p.get("padding", 0),
                                p.get("dilation", 1), bool(p.get("ceil_mode", False)))
        if k == "max_pool2d":
            return F.max_pool2d(x, p["kernel"], p.get("stride") or p["kernel"], p.get("padding", 0),
                                p.get("dilation", 1), bool(p.get("ceil_mode", False)))
        if k == "adaptive_max_pool1d":
            return F.adaptive_max_pool1d(x, p["output_size"])
        if k == "adaptive_max_pool2d":
            return F.adaptive_max_pool2d(x, tuple(p["output_size"]) if isinstance(p["output_size"], list)
                                         else p["output_size"])
        if k == "amax":
            return torch.amax(x, dim=p["dim"], keepdim=bool(p.get("keepdim", False)))
        if k == "amin":
            return torch.amin(x, dim=p["dim"], keepdim=bool(p.get("keepdim", False)))
        if k == "max":
            return torch.max(x, dim=p["dim"], keepdim=bool(p.get("keepdim", False))).values
        if k == "min":
            return torch.min(x, dim=p["dim"], keepdim=bool(p.get("keepdim", False))).values
        if k == "add":
            return xs[0] + xs[1]
        if k == "cat":
            return torch.cat(xs, dim=p.get("dim", 1))
        if k == "flatten":
            return torch.flatten(x, p.get("start_dim", 1))
        if k in OP_KINDS:
            return _apply_op(k, p, mod, xs)
        if k in SMOOTH_ACTIVATIONS:
            return getattr(F, k)(x)
        if k in SMOOTH_HEADS:
            return getattr(F, k)(x, dim=p.get("dim", 1))
        if k == "custom":
            fn = _CUSTOM.get(p["name"])
            if fn is None:
                raise KeyError(f"custom op {p['name']!r} is not registered here (mtcheck.nets.register_op)")
            return fn(x)
        raise ValueError(f"unknown layer kind {k!r}")

    def forward_all(self, x) -> list:
        outs: list = []
        for i, (lay, mod) in enumerate(zip(self.spec.layers, self.mods)):
            xs = [x if s < 0 else outs[s] for s in self.spec.sources(i)]
            outs.append(self._apply(lay, mod, xs))
        return outs

    def forward(self, x):
        return self.forward_all(x)[-1] if self.spec.layers else x

    def extra_repr(self) -> str:
        return self.spec.describe()


def _apply_op(k: str, p: dict, mod: nn.Module, xs: list):
    """The layers of :data:`OP_KINDS` (PyTorch's other modelled nonsmooth ops)."""
    x = xs[0]
    if k == "sort":
        return torch.sort(x, dim=p["dim"], descending=bool(p.get("descending", False)))[0]
    if k == "topk":
        return torch.topk(x, int(p["k"]), dim=p["dim"], largest=bool(p.get("largest", True)))[0]
    if k == "kthvalue":
        return torch.kthvalue(x, int(p["k"]), dim=p["dim"], keepdim=bool(p.get("keepdim", True)))[0]
    if k == "median":
        if p.get("dim") is None:
            return torch.median(x).reshape(1, 1)
        return torch.median(x, dim=p["dim"], keepdim=bool(p.get("keepdim", True)))[0]
    if k == "cummax":
        return torch.cummax(x, p["dim"])[0]
    if k == "cummin":
        return torch.cummin(x, p["dim"])[0]
    if k == "vector_norm":
        return torch.linalg.vector_norm(x, _p_value(p["ord"]), dim=p["dim"], keepdim=bool(p.get("keepdim", True)))
    if k == "cdist":
        # x (1, D) or (1, P, D) against the constant rows (M, D): (1, M) or (1, P, M)
        return torch.cdist(x, mod.value if x.ndim == 2 else mod.value.unsqueeze(0), _p_value(p["p"]))
    if k == "pdist":
        rows = x.reshape(-1, x.shape[-1])
        if mod.value is not None:
            rows = torch.cat([rows, mod.value])
        return F.pdist(rows, _p_value(p["p"])).reshape(1, -1)
    if k in ("scatter_reduce", "index_reduce"):
        m = int(p["m"])
        base = x[..., :m] if p.get("self_src", "slice") == "slice" else x.new_zeros(x.shape[:-1] + (m,))
        if k == "scatter_reduce":
            return base.scatter_reduce(-1, _index_tensor(p["index"], x), x, p["reduce"],
                                       include_self=bool(p.get("include_self", True)))
        idx = torch.tensor([int(v) for v in p["index"]], dtype=torch.long)
        return base.index_reduce(x.ndim - 1, idx, x, p["reduce"], include_self=bool(p.get("include_self", True)))
    if k == "embedding_bag":
        D = int(p["width"])
        table = x.reshape(-1, D)
        out = F.embedding_bag(torch.tensor([int(v) for v in p["indices"]], dtype=torch.long), table,
                              torch.tensor([int(v) for v in p["offsets"]], dtype=torch.long), mode=p["mode"])
        return out.reshape(1, -1)
    if k in ("fmax", "fmin", "maximum", "minimum"):
        return getattr(torch, k)(xs[0], xs[1])
    if k == "clamp_tensor":
        return torch.clamp(xs[0], xs[1], xs[2] if len(xs) > 2 else None)
    if k == "prelu":
        return F.prelu(x, mod.weight)
    raise ValueError(f"unknown layer kind {k!r}")

"""The hypothesis strategies behind :mod:`mtcheck.strategies`.

Everything is drawn through hypothesis (sizes, values, the seeds of larger
noise fields), so a failing case shrinks to a short network and a simple input
and replays from hypothesis' seed or database.
"""

from __future__ import annotations


import numpy as np
import torch
from hypothesis import assume, strategies as st

from . import nets as _nets
from ._synth import Program, Target, synthesize
from .coverage import kink_profile, record_events
from .errors import UndecidedError

_DT = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _as_dtype(d):
    if d is None:
        return None
    return _DT[d] if isinstance(d, str) else d


# ---------------------------------------------------------------- programs

class _ProgramRef:
    """A program argument resolved once (lazily): the callable, its input shape and dtype."""

    def __init__(self, program_or_shape, shape=None, dtype=None):
        self.spec = None
        self.fn = None
        dtype = _as_dtype(dtype)
        if isinstance(program_or_shape, _nets.NetSpec):
            self.spec = program_or_shape
            self.shape = tuple(program_or_shape.input_shape)
            self.dtype = dtype or program_or_shape.torch_dtype
        elif isinstance(program_or_shape, (tuple, list, torch.Size)):
            self.shape = tuple(int(s) for s in program_or_shape)
            self.dtype = dtype or torch.float64
        elif isinstance(program_or_shape, int):
            self.shape = (program_or_shape,)
            self.dtype = dtype or torch.float64
        elif callable(program_or_shape):
            if shape is None:
                raise TypeError("give the program's input shape: tie_inputs(model, shape=(1, 16))")
            self.fn = program_or_shape
            self.shape = tuple(shape)
            self.dtype = dtype or _param_dtype(program_or_shape) or torch.float64
        else:
            raise TypeError(f"expected a NetSpec, a program or a shape, got {type(program_or_shape).__name__}")
        if shape is not None and tuple(shape) != self.shape:
            raise ValueError(f"shape {tuple(shape)} does not match the program's input shape {self.shape}")
        self._prog = None

    @property
    def has_program(self) -> bool:
        return self.spec is not None or self.fn is not None

    def program(self) -> Program:
        if self._prog is None:
            fn = self.fn if self.fn is not None else self.spec.build(self.dtype)
            self._prog = Program(fn, torch.zeros(self.shape, dtype=self.dtype))
        return self._prog


def _param_dtype(fn):
    if isinstance(fn, torch.nn.Module):
        for p in fn.parameters():
            return p.dtype
    return None


# ---------------------------------------------------------------- structured inputs

FEATURES = ("noise", "constant_patch", "zeros", "repeat", "dup_channel", "scaled_copy")


@st.composite
def _region(draw, shape):
    """A box over the last one or two dims (all leading indices, or one channel)."""
    nd = len(shape)
    sp = list(range(max(1, nd - 2), nd)) if nd >= 3 else [nd - 1]
    sl = [slice(None)] * nd
    for d in sp:
        a = draw(st.integers(0, shape[d] - 1))
        w = draw(st.integers(1, shape[d] - a))
        sl[d] = slice(a, a + w)
    if nd >= 3 and shape[1] > 1 and draw(st.booleans()):
        c = draw(st.integers(0, shape[1] - 1))
        sl[1] = slice(c, c + 1)
    return tuple(sl)


@st.composite
def _values(draw, n, K):
    """n integers in [-K, K]: drawn one by one when few (they shrink to 0), else from a drawn seed."""
    if n <= 32:
        return np.array(draw(st.lists(st.integers(-K, K), min_size=n, max_size=n)), dtype=np.int64)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    density = draw(st.sampled_from([1.0, 0.5, 0.25]))
    rng = np.random.default_rng(seed)
    v = rng.integers(-K, K + 1, size=n)
    if density < 1:
        v = np.where(rng.random(n) < density, v, 0)
    return v


@st.composite
def structured_inputs(draw, shape, dtype=torch.float64, grid_bits=2, max_abs=2, max_features=4):
    """A tie-heavy tensor of ``shape``: integers on the grid ``2^-grid_bits`` (|x| <= max_abs),
    from a constant background with features (dyadic noise, constant patches, exact zeros,
    repeated regions, duplicated channels, a scaled copy ``t * a`` with t possibly 0)."""
    shape = tuple(shape)
    if not shape:
        # a 0-d input (a scalar parameter t): draw it as a 1-element vector
        return draw(structured_inputs((1,), dtype, grid_bits, max_abs, max_features)).reshape(())
    scale = 1 << grid_bits
    K = int(max_abs * scale)
    x = np.full(shape, draw(st.integers(-K, K)), dtype=np.int64)
    kinds = []
    tmul = 1.0
    # at least one feature (shrinks to a single dense noise field: a simple generic input)
    for i in range(max_features):
        if i and draw(st.integers(0, 2)) == 0:
            break
        kind = draw(st.sampled_from(FEATURES))
        kinds.append(kind)
        if kind == "noise":
            reg = draw(_region(shape)) if draw(st.booleans()) else tuple(slice(None) for _ in shape)
            sub = x[reg]
            x[reg] = draw(_values(sub.size, K)).reshape(sub.shape)
        elif kind == "constant_patch":
            reg = draw(_region(shape))
            x[reg] = draw(st.integers(-K, K))
        elif kind == "zeros":
            seed = draw(st.integers(0, 2 ** 16))
            frac = draw(st.sampled_from([0.25, 0.5]))
            mask = np.random.default_rng(seed).random(shape) < frac
            x[mask] = 0
        elif kind == "repeat":
            # copy a block of the flattened last axis onto another position: repeated values
            L = shape[-1]
            if L >= 2:
                w = draw(st.integers(1, L // 2))
                a = draw(st.integers(0, L - w))
                b = draw(st.integers(0, L - w))
                x[..., b:b + w] = x[..., a:a + w].copy()
        elif kind == "dup_channel":
            ax = 1 if len(shape) >= 3 else len(shape) - 1
            if shape[ax] >= 2:
                i0 = draw(st.integers(0, shape[ax] - 1))
                i1 = draw(st.integers(0, shape[ax] - 1))
                idx_src = [slice(None)] * len(shape)
                idx_dst = [slice(None)] * len(shape)
                idx_src[ax], idx_dst[ax] = i0, i1
                x[tuple(idx_dst)] = x[tuple(idx_src)].copy()
        elif kind == "scaled_copy":
            # the whole input becomes t * a: t = 0 gives the all-zero input
            tmul = draw(st.sampled_from([1.0, 0.0, 0.5, 2.0, -1.0]))
    t = torch.tensor(x.astype(np.float64) * tmul / scale, dtype=torch.float64).to(dtype)
    return t


# ---------------------------------------------------------------- public strategies

def tie_inputs(program_or_shape, *, shape=None, dtype=None, grid_bits: int = 2, max_abs: float = 2,
               deep: bool = True, max_free: int = 48, events: bool = True):
    """Inputs that sit on ties.

    ``program_or_shape`` is a :class:`~mtcheck.nets.NetSpec`, a one-input program (an
    ``nn.Module`` or function; give ``shape=``), or just a shape. The strategy draws a
    structured dyadic input (see :func:`structured_inputs`); for a program and
    ``deep=True`` it then moves the free coordinates so that every nonsmooth layer has
    an exact tie, confirmed in PyTorch's float forward pass (layers where that fails
    keep what the structured input gave). Returns one tensor of the program's dtype.
    """
    ref = _ProgramRef(program_or_shape, shape, dtype)
    return _tie_strategy(ref, grid_bits, max_abs, deep, max_free, events)


@st.composite
def _tie_strategy(draw, ref, grid_bits, max_abs, deep, max_free, events):
    x = draw(structured_inputs(ref.shape, ref.dtype, grid_bits, max_abs))
    prog = None
    if ref.has_program:
        try:
            prog = ref.program()
        except UndecidedError:
            # the exact forward at 0 cannot decide a case (equal irrational values in a max, the
            # tanh of duplicated biases): no synthesis; the structured input is checked as drawn
            prog = None
    if prog is not None:
        if deep and prog.nonsmooth:
            seed = draw(st.integers(0, 255))
            r = synthesize(prog, x, every_layer=True, max_free=max_free, seed=seed)
            x = r.input.reshape(ref.shape) if r.input is not None else x
        if events:
            try:
                record_events(kink_profile(prog.fn, x))
            except UndecidedError:      # a case the enclosures leave open: no kink events for it
                pass
    return x


def deep_ties(program, *, shape=None, dtype=None, depths=None, n_targets: int = 1, grid_bits: int = 2,
              max_abs: float = 2, max_free: int = 48, with_result: bool = False):
    """Inputs with chosen hidden units exactly on a kink.

    Draws a structured seed input, ``n_targets`` distinct nonsmooth layers (``depths``:
    1-based positions among the program's nonsmooth nodes; default all), then solves for
    an input where one element of each chosen layer is tied (a relu pre-activation at 0,
    two entries of a max window equal, a clamp input at its bound), exactly and in the
    framework's float forward pass. Misses are rejected (and counted: see
    :func:`mtcheck._synth.synthesis_stats`). ``with_result=True`` yields
    ``(tensor, TieResult)``.
    """
    ref = _ProgramRef(program, shape, dtype)
    if not ref.has_program:
        raise TypeError("deep_ties needs a program (a NetSpec, or a module with shape=)")
    return _deep_strategy(ref, depths, n_targets, grid_bits, max_abs, max_free, with_result)


@st.composite
def _deep_strategy(draw, ref, depths, n_targets, grid_bits, max_abs, max_free, with_result):
    prog = ref.program()
    if not prog.nonsmooth:
        assume(False)
    allowed = list(depths) if depths else list(range(1, len(prog.nonsmooth) + 1))
    allowed = [d for d in allowed if 1 <= d <= len(prog.nonsmooth)]
    if not allowed:
        raise ValueError(f"depths {depths} outside 1..{len(prog.nonsmooth)}")
    k = min(n_targets, len(allowed))
    chosen = draw(st.lists(st.sampled_from(allowed), min_size=k, max_size=k, unique=True))
    x = draw(structured_inputs(ref.shape, ref.dtype, grid_bits, max_abs))
    seed = draw(st.integers(0, 255))
    r = synthesize(prog, x, [Target(prog.nonsmooth[d - 1]) for d in sorted(chosen)], max_free=max_free,
                   seed=seed)
    _event(f"deep tie at depth {sorted(chosen)}: {'hit' if r.ok else 'miss'}")
    assume(r.ok)
    out = r.input.reshape(ref.shape)
    return (out, r) if with_result else out


def _event(text):
    try:
        from hypothesis import event
        from hypothesis.control import _current_build_context
        if _current_build_context.value is not None:
            event(text)
    except ImportError:  # pragma: no cover
        pass


# ---------------------------------------------------------------- networks

_ACTS = ("relu", "leaky_relu", "hardtanh", "relu6", "clamp", "abs")


def _dy(v):
    return _nets.Dyadic.of(v).to_json()


@st.composite
def _weights(draw, shape, K, exp, degenerate):
    """Exact dyadic weights ``num * 2**exp`` with optional structural degeneracy."""
    out = shape[0]
    per = int(np.prod(shape[1:]))
    mode = draw(st.sampled_from(("plain", "zero_rows", "dup_rows", "stack_identity"))) if degenerate else "plain"
    nums = draw(st.lists(st.integers(-K, K), min_size=out * per, max_size=out * per))
    rows = [nums[i * per:(i + 1) * per] for i in range(out)]
    if mode == "zero_rows" and out >= 1:
        z = draw(st.integers(0, out - 1))
        rows[z] = [0] * per
    elif mode == "dup_rows" and out >= 2:
        a = draw(st.integers(0, out - 1))
        b = draw(st.integers(0, out - 1))
        rows[b] = list(rows[a])
    elif mode == "stack_identity" and len(shape) == 2:
        # the paper's W0 = (1, 1): every output is a copy of an input, twice over
        rows = [[(1 << -exp) if c == (r % per) else 0 for c in range(per)] for r in range(out)]
    return {"shape": list(shape), "num": [v for r in rows for v in r], "exp": exp}


@st.composite
def _bias(draw, n, K, exp):
    mode = draw(st.sampled_from(("zero", "random", "none")))
    if mode == "none":
        return None
    if mode == "zero":
        return {"shape": [n], "num": [0] * n, "exp": exp}
    return {"shape": [n], "num": draw(st.lists(st.integers(-K, K), min_size=n, max_size=n)), "exp": exp}


def _out_shape(spec_so_far: _nets.NetSpec, shapes: list) -> tuple | None:
    i = len(spec_so_far.layers) - 1
    try:
        return spec_so_far.layer_output_shape(i, [shapes[s + 1] for s in spec_so_far.sources(i)])
    except Exception:  # noqa: BLE001 - an invalid combination: the caller drops the layer
        return None


@st.composite
def _activation(draw, acts):
    name = draw(st.sampled_from(acts))
    if name in _ACTS:
        if name == "leaky_relu":
            return _nets.Layer(name, {"slope": _dy(draw(st.sampled_from([0.25, 0.125, 0.5])))})
        if name in ("hardtanh", "clamp"):
            lo = draw(st.sampled_from([-1.0, -0.5, 0.0]))
            hi = draw(st.sampled_from([1.0, 0.5, 2.0]))
            return _nets.Layer(name, {"lo": _dy(lo), "hi": _dy(hi)})
        return _nets.Layer(name)
    return _nets.Layer("custom", {"name": name})


FAMILIES = ("mlp", "cnn1d", "cnn2d", "ops")
# the op layers by what they compute (campaign targets ``generated:<group>``)
OP_GROUPS = {
    "order": _nets.ORDER_OPS,                                        # sort, topk, kthvalue, median, cummax/min
    "norms": _nets.NORM_OPS,                                         # vector_norm, cdist, pdist (p = 1, inf)
    "index": _nets.INDEX_OPS,                                        # scatter_reduce, index_reduce, embedding_bag
    "elementwise": (*_nets.BINARY_OPS, "prelu"),                     # fmax/fmin/maximum/minimum, clamp, prelu
}


def networks(*, families=("mlp", "cnn1d", "cnn2d"), max_layers: int = 6, max_width: int = 8,
             max_channels: int = 3, activations=_ACTS, pools: bool = True, reductions: bool = True,
             residual: bool = True, concat: bool = True, degenerate: bool = True, dtype: str = "float64",
             weight_bits: int = 2, max_outputs: int = 8, ops=False, smooth: bool = False):
    """Random :class:`~mtcheck.nets.NetSpec` networks.

    Compositions of linear / conv1d / conv2d, the relu family (and any op registered with
    :func:`mtcheck.nets.register_op` named in ``activations``), max-pool variants, max/min
    reductions, residual adds, concatenations and flatten; weights are dyadic
    ``k / 2^weight_bits`` with ``|k| <= 2^weight_bits``, and with ``degenerate`` zero rows,
    duplicated rows/filters, the paper's ``W0 = (1, 1)`` stacking and zero biases. Every network
    has at least one nonsmooth layer (an activation is appended when the draws gave none).
    Networks shrink to fewer layers (any layer can be deleted) and to zero weights.

    ``ops=True`` adds the layers of :data:`mtcheck.nets.OP_KINDS` (sort, topk, kthvalue, median,
    cummax/cummin, vector norms and cdist/pdist with p in {1, inf}, scatter_reduce, index_reduce,
    embedding_bag, fmax/fmin/maximum/minimum, clamp with tensor bounds, prelu), with the shapes
    and constants each needs. The family ``"ops"`` (in ``families``) starts every network with
    one of them, fed by the input or by an elementwise activation of it, where the tie-heavy
    inputs (repeated values, zeros, constant patches) put their kinks on ties. ``ops`` may also be
    a collection of kinds (or of the groups of :data:`OP_GROUPS`): only those op layers are drawn.

    ``smooth=True`` adds the smooth layers of :data:`mtcheck.nets.SMOOTH_KINDS` (tanh, sigmoid,
    gelu, silu, softplus, elu between layers; softmax / log-softmax over the features, also as
    the network's head): piecewise C^1 programs whose values the engine encloses in balls. A tie
    after a smooth layer stays exact where the smooth value is (tanh(0) = 0), so structured
    inputs still reach kinks downstream of one.
    """
    for a in activations:
        if a not in _ACTS and a not in _nets.registered_ops():
            raise ValueError(f"activation {a!r} is neither built in ({', '.join(_ACTS)}) nor registered "
                             "with mtcheck.nets.register_op")
    for f in families:
        if f not in FAMILIES:
            raise ValueError(f"unknown family {f!r}; known: {', '.join(FAMILIES)}")
    if "ops" in families and not ops:
        ops = True
    if ops is True:
        ops = _nets.OP_KINDS
    elif ops:
        kinds = []
        for o in ([ops] if isinstance(ops, str) else ops):
            if o in OP_GROUPS:
                kinds += OP_GROUPS[o]
            elif o in _nets.OP_KINDS:
                kinds.append(o)
            else:
                raise ValueError(f"unknown op layer {o!r}; known: {', '.join(_nets.OP_KINDS)} or the groups "
                                 f"{', '.join(OP_GROUPS)}")
        ops = tuple(dict.fromkeys(kinds))
    else:
        ops = ()
    cfg = dict(families=tuple(families), max_layers=max_layers, max_width=max_width, max_channels=max_channels,
               activations=tuple(activations), pools=pools, reductions=reductions, residual=residual,
               concat=concat, degenerate=degenerate, dtype=dtype, K=1 << weight_bits, exp=-weight_bits,
               max_outputs=max_outputs, ops=ops, smooth=bool(smooth))
    return _net_strategy(cfg)


@st.composite
def _net_strategy(draw, cfg):
    families, max_layers, max_width, max_channels = (cfg["families"], cfg["max_layers"], cfg["max_width"],
                                                     cfg["max_channels"])
    activations, dtype, K, exp, max_outputs = (cfg["activations"], cfg["dtype"], cfg["K"], cfg["exp"],
                                               cfg["max_outputs"])
    fam = draw(st.sampled_from(tuple(families)))
    if fam == "mlp":
        shape = (1, draw(st.integers(1, max_width)))
    elif fam == "cnn1d":
        shape = (1, draw(st.integers(1, max_channels)), draw(st.integers(2, 12)))
    elif fam == "ops":
        shape = ((1, draw(st.integers(2, max_width))) if draw(st.integers(0, 2)) else
                 (1, draw(st.integers(1, max_channels)), draw(st.integers(2, 6))))
    else:
        shape = (1, draw(st.integers(1, max_channels)), draw(st.integers(2, 8)), draw(st.integers(2, 8)))
    spec = _nets.NetSpec(shape, [], dtype)
    shapes = [shape]        # shapes[i + 1] = layer i's output; shapes[0] = the input
    if fam == "ops":
        # an op layer on the input, or on an elementwise activation of it (ties stay ties there)
        if draw(st.integers(0, 2)) == 2:          # (shrinks to no activation)
            spec = _nets.NetSpec(shape, [draw(_activation(tuple(activations)))], dtype)
            shapes.append(shape)
        for _ in range(8):
            lay = draw(_op_layer(cfg, shapes[-1], shapes, len(spec.layers)))
            if lay is None:
                continue
            trial = _nets.NetSpec(shape, spec.layers + [lay], dtype)
            out = _out_shape(trial, shapes)
            if out is not None and 0 not in out and int(np.prod(out)) <= 4096:
                spec = trial
                shapes.append(out)
                break
    for i in range(max_layers):
        if (i or fam == "ops") and draw(st.integers(0, 4)) == 0:
            break
        cur = shapes[-1]
        lay = draw(_layer(cfg, cur, shapes, len(spec.layers)))
        if lay is None:
            continue
        trial = _nets.NetSpec(shape, spec.layers + [lay], dtype)
        out = _out_shape(trial, shapes)
        if out is None or 0 in out or int(np.prod(out)) > 4096:
            continue
        spec = trial
        shapes.append(out)
    if not any(lay.kind in _nets.NONSMOOTH_KINDS for lay in spec.layers):
        # a network without a kink has nothing to check at ties: end it with an activation
        spec = _nets.NetSpec(shape, spec.layers + [draw(_activation(tuple(activations)))], dtype)
        shapes.append(shapes[-1])
    if int(np.prod(shapes[-1])) > max_outputs:
        layers = list(spec.layers)
        if len(shapes[-1]) > 2:
            layers.append(_nets.Layer("flatten", {"start_dim": 1}))
        feat = int(np.prod(shapes[-1][1:]))
        o = draw(st.integers(1, min(4, max_outputs)))
        layers.append(_nets.Layer("linear", {"weight": draw(_weights((o, feat), K, exp, False)),
                                             "bias": draw(_bias(o, K, exp))}))
        spec = _nets.NetSpec(shape, layers, dtype)
    if cfg.get("smooth") and draw(st.integers(0, 2)) == 0:
        # a smooth head, as classifiers end: (log-)softmax over the features
        head = draw(st.sampled_from(_nets.SMOOTH_HEADS))
        spec = _nets.NetSpec(shape, spec.layers + [_nets.Layer(head, {"dim": 1})], dtype)
    from hypothesis import assume

    assume(finite_on_zeros(spec))
    return spec


def finite_on_zeros(spec: _nets.NetSpec) -> bool:
    """False for a network whose output is not finite even at 0 (a max-pool window made of
    padding only yields -inf): such a network has no gradient to check."""
    with torch.no_grad():
        return bool(torch.isfinite(spec.build()(spec.example_input())).all())


@st.composite
def _layer(draw, cfg, cur, shapes, index):
    max_width, max_channels, activations = cfg["max_width"], cfg["max_channels"], cfg["activations"]
    pools, reductions, residual, concat, degenerate = (cfg["pools"], cfg["reductions"], cfg["residual"],
                                                       cfg["concat"], cfg["degenerate"])
    K, exp = cfg["K"], cfg["exp"]
    rank = len(cur)
    opts = []
    if rank == 2:
        opts.append("linear")
    elif rank == 3:
        opts.append("conv1d")
    else:
        opts.append("conv2d")
    opts.append("act")
    if pools and rank >= 3 and max(cur[2:]) >= 2:
        opts += ["max_pool", "adaptive_max_pool"]
    red_dims = [d for d in range(1, rank) if cur[d] >= 2]
    if reductions and red_dims:
        opts.append("reduce")
    if rank >= 3:
        opts.append("flatten")
    same = [j for j, s in enumerate(shapes[:-1]) if tuple(s) == tuple(cur)]
    if residual and same:
        opts.append("add")
    cat_ok = [j for j, s in enumerate(shapes[:-1]) if len(s) == rank and tuple(s[2:]) == tuple(cur[2:])
              and s[0] == cur[0] and s[1] + cur[1] <= 2 * max(max_width, max_channels)]
    if concat and cat_ok:
        opts.append("cat")
    if cfg.get("ops") and _op_options(cur, shapes, cfg["ops"]):
        opts.append("op")
    if cfg.get("smooth"):
        opts.append("smooth")
    kind = draw(st.sampled_from(opts))
    if kind == "smooth":
        name = draw(st.sampled_from(_nets.SMOOTH_KINDS))
        return _nets.Layer(name, {"dim": 1} if name in _nets.SMOOTH_HEADS else {})
    if kind == "op":
        return draw(_op_layer(cfg, cur, shapes, index))
    if kind == "linear":
        o = draw(st.integers(1, max_width))
        w = draw(_weights((o, cur[1]), K, exp, degenerate))
        return _nets.Layer("linear", {"weight": w, "bias": draw(_bias(o, K, exp))})
    if kind in ("conv1d", "conv2d"):
        nsp = 1 if kind == "conv1d" else 2
        o = draw(st.integers(1, max_channels))
        k = draw(st.integers(1, min(3, *cur[2:])))
        w = draw(_weights((o, cur[1]) + (k,) * nsp, K, exp, degenerate))
        return _nets.Layer(kind, {"weight": w, "bias": draw(_bias(o, K, exp)),
                                  "stride": draw(st.sampled_from([1, 2])),
                                  "padding": draw(st.integers(0, k // 2)),
                                  "dilation": draw(st.sampled_from([1, 2]))})
    if kind == "act":
        return draw(_activation(tuple(activations)))
    if kind == "max_pool":
        nsp = rank - 2
        k = draw(st.integers(2, max(2, min(3, *cur[2:]))))
        stride = draw(st.sampled_from([None, 1, 2]))
        return _nets.Layer(f"max_pool{nsp}d", {"kernel": k, "stride": stride,
                                              "padding": draw(st.integers(0, k // 2)),
                                              "dilation": draw(st.sampled_from([1, 2])),
                                              "ceil_mode": draw(st.booleans())})
    if kind == "adaptive_max_pool":
        nsp = rank - 2
        sizes = [draw(st.integers(1, s)) for s in cur[2:]]
        return _nets.Layer(f"adaptive_max_pool{nsp}d", {"output_size": sizes[0] if nsp == 1 else sizes})
    if kind == "reduce":
        op = draw(st.sampled_from(("amax", "max", "amin", "min")))
        dim = draw(st.sampled_from(red_dims))
        return _nets.Layer(op, {"dim": dim, "keepdim": True})
    if kind == "flatten":
        return _nets.Layer("flatten", {"start_dim": 1})
    if kind == "add":
        j = draw(st.sampled_from(same))
        return _nets.Layer("add", {}, [j - 1, index - 1])
    if kind == "cat":
        j = draw(st.sampled_from(cat_ok))
        return _nets.Layer("cat", {"dim": 1}, [j - 1, index - 1])
    return None


# ---------------------------------------------------------------- the other modelled ops (nets.OP_KINDS)

_SLOPES = (0.25, 0.5, 0.125, -0.25, 0.0, 1.0)


def _op_options(cur, shapes, allowed=None) -> list:
    """Which op layers (kinds of :data:`mtcheck.nets.OP_KINDS`) fit a tensor of shape ``cur``."""
    rank = len(cur)
    last = cur[-1]
    opts = []
    if rank >= 2 and any(cur[d] >= 2 for d in range(1, rank)):
        opts += [*_nets.ORDER_OPS, "vector_norm"]
    if rank in (2, 3) and last >= 1:
        opts += ["cdist", "pdist"]
    if rank >= 2 and last >= 2:
        opts += ["scatter_reduce", "index_reduce"]
    if rank == 2 and cur[0] == 1 and any(cur[1] % D == 0 and cur[1] // D >= 2 for D in range(1, cur[1])):
        opts.append("embedding_bag")
    opts += [*_nets.BINARY_OPS, "prelu"]
    return [o for o in opts if allowed is None or o in allowed]


def _far_rows(draw, m, D, dtype_exp=0):
    """Constant rows (m, D), each row one value, far from the values of small networks on tie-heavy
    inputs (|x| <= 2, weights <= 1): every difference x - c then has one strict sign, what the exact
    model of an inf-norm needs, and x - c ties where two entries of x tie."""
    vals = []
    used = set()
    for _ in range(m):
        v = draw(st.sampled_from([-64.0, -40.0, 40.0, 64.0]))
        while v in used:
            v = v * 2
        used.add(v)
        vals.append(v)
    return _nets.encode_tensor(torch.tensor([[v] * D for v in vals], dtype=torch.float64))


@st.composite
def _op_layer(draw, cfg, cur, shapes, index):
    """One layer of :data:`mtcheck.nets.OP_KINDS` that fits ``cur`` (None when none does)."""
    opts = _op_options(cur, shapes, cfg.get("ops") or None)
    if not opts:
        return None
    group = draw(st.sampled_from(opts))
    rank = len(cur)
    dims = [d for d in range(1, rank) if cur[d] >= 2] or [rank - 1]
    if group in _nets.ORDER_OPS:
        kind = group
        dim = draw(st.sampled_from(dims))
        n = cur[dim]
        if kind == "sort":
            return _nets.Layer(kind, {"dim": dim, "descending": draw(st.booleans())})
        if kind == "topk":
            return _nets.Layer(kind, {"k": draw(st.integers(1, n)), "dim": dim, "largest": draw(st.booleans())})
        if kind == "kthvalue":
            return _nets.Layer(kind, {"k": draw(st.integers(1, n)), "dim": dim, "keepdim": True})
        if kind == "median":
            return _nets.Layer(kind, {"dim": None if draw(st.integers(0, 3)) == 0 else dim, "keepdim": True})
        return _nets.Layer(kind, {"dim": dim})
    if group == "vector_norm":
        # ord 1 only: the exact model of an inf-norm needs entries of one strict sign, which tie-heavy
        # activations seldom are (it would refuse); inf-norms come through cdist/pdist against far rows
        return _nets.Layer("vector_norm", {"ord": "1",
                                           "dim": draw(st.sampled_from(dims)), "keepdim": True})
    if group == "cdist":
        p = draw(st.sampled_from(["inf", "1"]))
        m = draw(st.integers(1, 3))
        if p == "1" and draw(st.booleans()):
            # p = 1: constants on the inputs' grid, so that differences are exactly 0 (its kink)
            K = 8
            nums = draw(st.lists(st.integers(-K, K), min_size=m * cur[-1], max_size=m * cur[-1]))
            other = {"shape": [m, cur[-1]], "num": nums, "exp": -2}
        else:
            other = _far_rows(draw, m, cur[-1])
        return _nets.Layer("cdist", {"p": p, "other": other})
    if group == "pdist":
        p = draw(st.sampled_from(["inf", "1"]))
        rows_in = int(np.prod(cur[:-1]))
        if p == "inf" and rows_in > 1:
            p = "1"               # the input's own rows differ in both signs: refused by the inf-norm's model
        m = draw(st.integers(1 if rows_in == 1 else 0, 2))
        return _nets.Layer("pdist", {"p": p, "rows": _far_rows(draw, m, cur[-1]) if m else None})
    if group in ("scatter_reduce", "index_reduce"):
        L = cur[-1]
        m = draw(st.integers(1, L - 1))
        reds = ("amax", "amin", "amax", "amin", "sum", "mean", "prod") if group == "scatter_reduce" else \
            ("amax", "amin", "amax", "amin", "mean", "prod")
        idx = draw(st.lists(st.integers(0, m - 1), min_size=L, max_size=L))
        return _nets.Layer(group, {"reduce": draw(st.sampled_from(reds)), "include_self": draw(st.booleans()),
                                   "index": idx, "m": m,
                                   "self_src": draw(st.sampled_from(["slice", "slice", "zeros"]))})
    if group == "embedding_bag":
        F_ = cur[1]
        D = draw(st.sampled_from([d for d in range(1, F_) if F_ % d == 0 and F_ // d >= 2]))
        rows = F_ // D
        n = draw(st.integers(1, 5))
        indices = draw(st.lists(st.integers(0, rows - 1), min_size=n, max_size=n))
        cuts = sorted(set(draw(st.lists(st.integers(1, n), max_size=2))))
        return _nets.Layer("embedding_bag", {"mode": draw(st.sampled_from(["max", "max", "sum", "mean"])),
                                             "width": D, "indices": indices, "offsets": [0] + cuts})
    if group in _nets.BINARY_OPS:
        # the other operand(s): an earlier tensor of the same shape, or the current one itself
        same = [j - 1 for j, s in enumerate(shapes) if tuple(s) == tuple(cur)]
        kind = group
        a = draw(st.sampled_from(same))
        src = [index - 1, a] if draw(st.booleans()) else [a, index - 1]
        if kind == "clamp_tensor" and draw(st.booleans()):
            src.append(draw(st.sampled_from(same)))
        return _nets.Layer(kind, {}, src)
    # prelu: one slope, or one per channel (dim 1)
    n = 1 if rank < 2 or draw(st.booleans()) else cur[1]
    w = [draw(st.sampled_from(_SLOPES)) for _ in range(n)]
    return _nets.Layer("prelu", {"weight": _nets.encode_tensor(torch.tensor(w, dtype=torch.float64))})

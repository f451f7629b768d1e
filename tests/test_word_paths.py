"""The machine-word shortcuts of the exact engine give exactly what FLINT and rationals give:
products of small fixed-point integers in int64/float64, big integers as base-2**16 digits
(a convolution's reverse pass), views of converted constants, and fixed-point directional
tangents that stay fixed point through every rule."""

import flint
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtcheck import _fixed, zoo
from mtcheck._exact import from_tensor
from mtcheck.model import ExactModel
from mtcheck.trace import prepare_inputs, trace


def _exact_model(name):
    prog, inputs = zoo.ZOO[name]()
    leaves, wrt = prepare_inputs(inputs, None)
    m = ExactModel(trace(prog, leaves))
    ev = m.evaluate([from_tensor(t) for t in leaves])
    return m, ev, wrt, sum(leaves[i].numel() for i in wrt)


def _values(fx):
    """Exact values of an Fx as Python Fractions (independent of its exponent)."""
    from fractions import Fraction

    return [Fraction(int(v), 1 << fx.e) for v in fx.view(np.ndarray).ravel().tolist()]


# ---------------------------------------------------------------- a tangent keeps its fixed point

def test_tan_keeps_fixed_point_with_its_exponent():
    """``ops._util.tan`` (every rule's tangent result) used to turn an Fx into a plain object array
    of its integers, dropping the exponent: a directional pass in fixed point then fell back to
    rationals at the first convolution."""
    from mtcheck.ops._util import tan

    a = _fixed.from_floats(np.array([0.375, -2.0 ** -30, 3.0]))
    t = tan(a)
    assert isinstance(t, _fixed.Fx) and t.e == a.e
    assert _values(t) == _values(a)


def test_directional_tangents_of_a_cnn_stay_in_fixed_point():
    m, ev, wrt, n = _exact_model("lenet-f32")
    rng = np.random.default_rng(0)
    t = np.array([flint.fmpq(int(v)) for v in rng.integers(-8, 9, size=n)], dtype=object)
    tans = m._linearize(ev, wrt, _fixed.from_exact(t.reshape(1, -1)), fast=False, directional=True, fixed=True)
    assert isinstance(tans[m.trace.outputs[0]], _fixed.Fx)


@pytest.mark.parametrize("name", sorted(set(zoo.ZOO) - {"vgg11-f32"}))
def test_directional_tangents_in_fixed_point_equal_rationals(name):
    """Every value's one-sided tangent along a direction: the fixed-point pass (which now runs
    through the rules that call ``tan``) and the rational pass agree exactly, node by node."""
    m, ev, wrt, n = _exact_model(name)
    rng = np.random.default_rng(1)
    t = np.array([flint.fmpq(int(v)) for v in rng.integers(-8, 9, size=n)], dtype=object).reshape(1, -1)
    try:
        fixed = m._linearize(ev, wrt, _fixed.from_exact(t), fast=False, directional=True, fixed=True)
    except _fixed.NotDyadic:
        pytest.skip("a rule leaves fixed point (the rational pass is used)")
    rational = m._linearize(ev, wrt, t, fast=False, directional=True)
    assert set(fixed) == set(rational)
    for ref, tan in fixed.items():
        exact = _fixed.to_exact(tan) if isinstance(tan, _fixed.Fx) else np.asarray(tan, dtype=object)
        assert exact.shape == np.shape(rational[ref]) and (exact == np.asarray(rational[ref], dtype=object)).all(), ref


# ---------------------------------------------------------------- digits of big integers

_ints = st.integers(-(1 << 300), 1 << 300)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ints | st.sampled_from([0, 1, -1, 1 << 15, -(1 << 15), (1 << 16) - 1, -(1 << 16)]),
                min_size=0, max_size=40))
def test_digits_round_trip(vals):
    a = np.array([flint.fmpz(v) for v in vals], dtype=object).reshape(len(vals))
    d, nd, bits = _fixed.digits(a)
    assert d.shape == (nd, len(vals)) and d.dtype == np.int64
    assert all(abs(v) < 1 << bits for v in vals)
    assert ((d[:-1] >= 0) & (d[:-1] < 1 << 16)).all() and ((d[-1] >= -(1 << 15)) & (d[-1] < 1 << 15)).all()
    assert _fixed.from_digits(d, bits).tolist() == vals


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_ints, st.integers(-(1 << 40), 1 << 40)), min_size=1, max_size=30))
def test_digit_sums_with_carries(pairs):
    """Sums of digit products (unnormalized digits up to 2**62) come back as the exact integer."""
    vals = [v for v, _ in pairs]
    ws = np.array([w for _, w in pairs], dtype=np.int64)
    d, nd, bits = _fixed.digits(np.array(vals, dtype=object))
    total = sum(v * int(w) for v, w in pairs)
    got = _fixed.from_digits((d * ws[None, :]).sum(axis=1, keepdims=True), bits + 41 + 5)
    assert int(got[0]) == total


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 24), st.integers(1, 40), st.integers(1, 12), st.integers(1, 30), st.data())
def test_word_matmul_is_exact(r, k, c, abits, data):
    t = max(k - 1, 0).bit_length()
    room = 61 - abits - t
    if room < 1:
        return
    bbits = data.draw(st.integers(1, room))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    a = rng.integers(-(1 << abits) + 1, 1 << abits, size=(r, k), dtype=np.int64)
    b = rng.integers(-(1 << bbits) + 1, 1 << bbits, size=(k, c), dtype=np.int64)
    if data.draw(st.booleans()):                      # the extremes of the bound
        a[:] = (1 << abits) - 1
        b[:] = -(1 << bbits) + 1
    got = _fixed.word_matmul(a, abits, b, bbits)
    assert (got.astype(object) == a.astype(object).dot(b.astype(object))).all()


# ---------------------------------------------------------------- products of fixed point

@settings(max_examples=100, deadline=None)
@given(st.integers(1, 12), st.integers(1, 300), st.integers(1, 9), st.integers(0, 70), st.integers(0, 70),
       st.integers(0, 2 ** 32 - 1))
def test_fixed_point_products_in_words_equal_flint(r, k, c, abits, bbits, seed):
    """Whatever the sizes (int64, float64 or FLINT is chosen by the proven bound), the product of
    two Fx is the exact one."""
    rng = np.random.default_rng(seed)

    def rand(shape, bits):
        vals = [int(v) for v in rng.integers(-(1 << 62), 1 << 62, size=int(np.prod(shape)))]
        vals = [v >> max(62 - bits, 0) if bits <= 62 else v << (bits - 62) for v in vals]
        return _fixed.wrap(np.array([flint.fmpz(v) for v in vals], dtype=object).reshape(shape), 3)

    a, b = rand((r, k), abits), rand((k, c), bbits)
    got = _fixed.matmul2d(a, b)
    A = flint.fmpz_mat(r, k, [int(v) for v in a.view(np.ndarray).ravel().tolist()])
    B = flint.fmpz_mat(k, c, [int(v) for v in b.view(np.ndarray).ravel().tolist()])
    assert got.e == 6
    assert [int(v) for v in got.view(np.ndarray).ravel().tolist()] == [int(v) for v in (A * B).entries()]


def test_view_of_a_constant_converts_to_the_same_values():
    w = np.array([flint.fmpq(i - 200, 1 << (i % 7)) for i in range(400)], dtype=object).reshape(20, 20)
    _fixed.constant(w)
    for v in (w.T, w[3:, 5:17], w[::2, 1::3], w.reshape(400)[7:300].reshape(293)):
        fx = _fixed.from_exact(v)
        assert isinstance(fx, _fixed.Fx)
        assert _values(fx) == [
            __import__("fractions").Fraction(int(q.p), int(q.q)) for q in np.asarray(v).ravel().tolist()]


# ---------------------------------------------------------------- a convolution's reverse pass in words

@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 0, 1)])
def test_convolution_vjp_in_words_equals_flint(stride, padding, dilation, monkeypatch):
    """Big cotangents (~200 bits, many zeros) through a convolution with padding, stride and
    dilation: the digit path gives exactly the FLINT path's input cotangent."""
    from mtcheck.ops import linalg

    rng = np.random.default_rng(stride * 7 + padding)
    x = np.array([flint.fmpq(0)] * (2 * 3 * 9 * 9), dtype=object).reshape(2, 3, 9, 9)
    wf = rng.standard_normal((4, 3, 3, 3)).astype(np.float32).astype(np.float64)
    w = np.array([flint.fmpq(*v.as_integer_ratio()) for v in wf.ravel().tolist()], dtype=object).reshape(wf.shape)
    out_sp, flat, S = linalg._conv_windows(x, w, [stride] * 2, [padding] * 2, [dilation] * 2)
    B = 3
    vals = [int(v) << 140 if rng.random() < 0.3 else 0 for v in rng.integers(-(1 << 62), 1 << 62,
                                                                             size=B * 2 * 4 * flat.shape[0])]
    cot = _fixed.wrap(np.array([flint.fmpz(v) for v in vals], dtype=object).reshape((B, 2, 4) + tuple(out_sp)), 170)
    args = (x, w, cot, [stride] * 2, [padding] * 2, [dilation] * 2, 1)
    words = linalg._conv_vjp(*args)[0]
    monkeypatch.setattr(linalg, "_col2im_words", lambda *a: None)
    ref = linalg._conv_vjp(*args)[0]
    assert isinstance(words, _fixed.Fx) and words.shape == ref.shape
    assert _values(words) == _values(ref)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_convolution_vjp_on_residues_is_the_exact_one_modulo_p(stride, padding, dilation):
    """The residue path (windows with all-zero residues skipped, col2im summed in int64 and
    reduced once) gives the exact input cotangent modulo the prime, within its bound."""
    from mtcheck.ops import linalg

    rng = np.random.default_rng(11 * stride + padding)
    x = np.array([flint.fmpq(0)] * (2 * 3 * 9 * 9), dtype=object).reshape(2, 3, 9, 9)
    wf = rng.standard_normal((4, 3, 3, 3)).astype(np.float32).astype(np.float64)
    w = np.array([flint.fmpq(*v.as_integer_ratio()) for v in wf.ravel().tolist()], dtype=object).reshape(wf.shape)
    out_sp, flat, S = linalg._conv_windows(x, w, [stride] * 2, [padding] * 2, [dilation] * 2)
    B = 5
    vals = [int(v) << 90 if rng.random() < 0.2 else 0 for v in rng.integers(-(1 << 62), 1 << 62,
                                                                            size=B * 2 * 4 * flat.shape[0])]
    cot = _fixed.wrap(np.array([flint.fmpz(v) for v in vals], dtype=object).reshape((B, 2, 4) + tuple(out_sp)), 100)
    geo = ([stride] * 2, [padding] * 2, [dilation] * 2, 1)
    exact = linalg._conv_vjp(x, w, cot, *geo)[0]
    ints = [int(v) for v in exact.view(np.ndarray).ravel().tolist()]
    for p in _fixed.MOD_PRIMES[:3]:
        res, e, bits = _fixed.to_mod(cot, p)
        got = linalg._conv_vjp(x, w, _fixed.mod_wrap(res, p, e, bits), *geo)[0]
        assert isinstance(got, _fixed.Mod) and got.e == exact.e
        assert max(abs(v) for v in ints).bit_length() <= got.bits
        assert got.view(np.ndarray).ravel().tolist() == [v % p for v in ints]


def test_add_at_on_residues_with_repeated_columns():
    """``np.add.at(g, (slice(None), cols), w)`` on residues (the reverse pass's discriminant seeds,
    with repeated columns) equals the exact scatter-add reduced modulo p, for add and subtract."""
    rng = np.random.default_rng(5)
    p = _fixed.MOD_PRIMES[0]
    for ufunc in (np.add, np.subtract):
        base = rng.integers(0, p, size=(4, 30))
        g = _fixed.mod_wrap(base.copy(), p, 0, 20)
        cols = rng.integers(-30, 30, size=50)
        w = rng.integers(-(1 << 40), 1 << 40, size=(4, 50))
        ufunc.at(g, (slice(None), cols), _fixed.wrap(w.astype(object), 0))
        ref = base.astype(object)
        sign = 1 if ufunc is np.add else -1
        for j, c in enumerate(cols.tolist()):
            ref[:, c] += sign * w[:, j].astype(object)
        assert g.view(np.ndarray).tolist() == (ref % p).tolist()
        assert g.bits >= 41


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_convolution_in_words_equals_flint(stride, padding, dilation, monkeypatch):
    """A convolution of rationals (the exact forward) and of fixed point (tangents) in machine
    words gives exactly what the FLINT products give."""
    from mtcheck.ops import linalg

    rng = np.random.default_rng(3 * stride + padding)
    wf = rng.standard_normal((4, 3, 3, 3)).astype(np.float32).astype(np.float64)
    w = np.array([flint.fmpq(*v.as_integer_ratio()) for v in wf.ravel().tolist()], dtype=object).reshape(wf.shape)
    xf = rng.standard_normal((2, 3, 9, 9)).astype(np.float32).astype(np.float64) * 2.0 ** 40
    x = np.array([flint.fmpq(*v.as_integer_ratio()) for v in xf.ravel().tolist()], dtype=object).reshape(xf.shape)
    tx = _fixed.wrap(np.array([flint.fmpz(int(v) << 80) for v in rng.integers(-(1 << 40), 1 << 40, size=x.size)],
                              dtype=object).reshape(x.shape), 7)
    geo = ([stride] * 2, [padding] * 2, [dilation] * 2, 1)
    got_x, got_t = linalg._conv(x, w, *geo), linalg._conv(tx, w, *geo)
    monkeypatch.setattr(linalg, "_WINDOW_WORDS", 1)                    # one image at a time
    assert (linalg._conv(x, w, *geo) == got_x).all() and _values(linalg._conv(tx, w, *geo)) == _values(got_t)
    monkeypatch.setattr(linalg, "_conv_words", lambda *a: None)
    ref_x, ref_t = linalg._conv(x, w, *geo), linalg._conv(tx, w, *geo)
    assert type(got_x) is np.ndarray and (got_x == ref_x).all()
    assert isinstance(got_t, _fixed.Fx) and _values(got_t) == _values(ref_t)

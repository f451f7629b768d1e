"""Complex tensors as (re, im) pairs and the FFTs (mtcheck/ops/complex_fft.py).

Programs with real inputs and real outputs (a complex result is returned through
``torch.view_as_real``), complex values in between."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtcheck
from mtcheck.errors import CheckInputError, UnsupportedOpError

pytestmark = [pytest.mark.filterwarnings("ignore:.*ComplexHalf.*"),
              pytest.mark.filterwarnings("ignore:.*discards the imaginary part.*"),
              pytest.mark.filterwarnings("ignore:.*A window was not provided.*")]


def _ints(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-4, 5, shape, generator=g).to(torch.float64)


def _verdict(f, *xs, **kw):
    return mtcheck.check(f, *xs, **kw)


def vr(z):
    return torch.view_as_real(z.resolve_conj())


# ---------------------------------------------------------------- correct PyTorch passes

def test_rfft_smooth_ok():
    rep = _verdict(lambda x: torch.view_as_real(torch.fft.rfft(x)), _ints(3, 6))
    assert str(rep.verdict) == "SMOOTH_OK"


def test_rfft_length_4_is_exact():
    # the DFT matrix of length 4 has entries 0, +-1: no enclosure, exact mode
    rep = _verdict(lambda x: torch.view_as_real(torch.fft.rfft(x)), _ints(2, 4))
    assert str(rep.verdict) == "SMOOTH_OK"
    assert rep.exact_mode


PROGRAMS = {
    "irfft": lambda x: torch.fft.irfft(x),
    "irfft_ortho": lambda x: torch.fft.irfft(x, norm="ortho"),
    "irfft_odd_n": lambda x: torch.fft.irfft(x, n=7),
    "irfft2": lambda x: torch.fft.irfft2(x, norm="forward"),
    "fft_ortho": lambda x: vr(torch.fft.fft(x, norm="ortho")),
    "fft_padded": lambda x: vr(torch.fft.fft(x, n=9)),
    "ifft_ortho": lambda x: vr(torch.fft.ifft(x, norm="ortho")),
    "ifft": lambda x: vr(torch.fft.ifft(x)),
    "hfft_ortho": lambda x: torch.fft.hfft(x, norm="ortho"),
    "hfft2": lambda x: torch.fft.hfft2(x),
    "ihfft2": lambda x: vr(torch.fft.ihfft2(x)),
    "fft2_ortho": lambda x: vr(torch.fft.fft2(x, norm="ortho")),
    "rfftn_ortho": lambda x: vr(torch.fft.rfftn(x, norm="ortho")),
    "fft_of_fft": lambda x: vr(torch.fft.ifft(torch.fft.fft(x), dim=0, norm="forward")),
    "real_part": lambda x: torch.fft.fft(x).real * 2,
    "conj_moved": lambda x: vr(torch.fft.fft(x).conj()[:, 1:4].transpose(0, 1)),
    "padded_complex": lambda x: vr(torch.nn.functional.pad(torch.fft.rfft(x), (1, 2))),
    "complex_to_real_copy": lambda x: torch.fft.fft(x).to(torch.float64),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_fft_family_smooth_ok(name):
    rep = _verdict(PROGRAMS[name], _ints(3, 6, seed=1))
    assert str(rep.verdict) == "SMOOTH_OK", (name, rep.mismatch)


@pytest.mark.parametrize("conv", ["cdouble", "cfloat", "chalf"])
def test_complex_copies(conv):
    rep = _verdict(lambda x: torch.view_as_real(getattr(x, conv)()), _ints(2, 3))
    assert str(rep.verdict) == "SMOOTH_OK"


def test_complex_and_view_as_complex():
    x, y = _ints(2, 3), _ints(2, 3, seed=2)
    assert str(_verdict(lambda a, b: torch.view_as_real(torch.complex(a, 2 * b)), x, y).verdict) == "SMOOTH_OK"
    rep = _verdict(lambda a: torch.view_as_real(torch.view_as_complex(a.reshape(3, 2))), x)
    assert str(rep.verdict) == "SMOOTH_OK" and rep.exact_mode


def test_polar_smooth_ok():
    r, th = _ints(2, 3).abs() + 1, _ints(2, 3, seed=3)
    rep = _verdict(lambda a, b: torch.view_as_real(torch.polar(a, b)), r, th)
    assert str(rep.verdict) == "SMOOTH_OK"


def test_polar_zero_dim():
    r, th = torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    rep = _verdict(lambda a, b: torch.view_as_real(torch.polar(a, b)), r, th)
    assert str(rep.verdict) == "SMOOTH_OK" and rep.exact_mode      # cos 0 = 1, sin 0 = 0: exact


def test_polar_negative_abs_refused():
    with pytest.raises(UnsupportedOpError, match="negative abs"):
        _verdict(lambda a, b: torch.view_as_real(torch.polar(a, b)), -torch.ones(2, dtype=torch.float64),
                 torch.ones(2, dtype=torch.float64))


def test_polar_at_zero_abs_against_torch():
    # d/dr (r e^{i t}) = e^{i t} at r = 0 too; PyTorch's backward goes through sgn(result), which
    # is 0 there: mtcheck's verdict follows what the framework returns (the values r cos t = 0 are
    # exact there, but the derivatives are not: the values stay enclosures, compared with tolerance)
    th = torch.tensor([0.5, 1.0], dtype=torch.float64)
    for r in (torch.tensor([0.0, 1.0], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)):
        r = r.requires_grad_()
        g, = torch.autograd.grad(torch.view_as_real(torch.polar(r, th))[:, 0].sum(), r)
        rep = _verdict(lambda a, b: torch.view_as_real(torch.polar(a, b)), r.detach(), th)
        expected = "SMOOTH_OK" if torch.allclose(g, torch.cos(th)) else "SMOOTH_WRONG"
        assert str(rep.verdict) == expected, rep.mismatch


def test_stft():
    x = _ints(24)
    rep = _verdict(lambda a: torch.view_as_real(torch.stft(a, 8, hop_length=4, return_complex=True)), x)
    assert str(rep.verdict) == "SMOOTH_OK"
    w = torch.hann_window(8, dtype=torch.float64)
    rep = _verdict(lambda a: torch.view_as_real(torch.stft(a, 8, hop_length=4, window=w, return_complex=True)), x)
    assert str(rep.verdict) == "SMOOTH_OK"


def test_complex_constant_in_the_layout():
    w = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    rep = _verdict(lambda a: vr(torch.cat([torch.fft.fft(a), torch.fft.fft(w)])), _ints(3, 6))
    assert str(rep.verdict) == "SMOOTH_OK"


def test_at_a_tie_after_the_fft():
    # relu of the real parts at 0 (x = 0): a tie after an exact FFT of length 4
    rep = _verdict(lambda a: torch.relu(torch.view_as_real(torch.fft.fft(a))), torch.zeros(2, 4, dtype=torch.float64))
    assert str(rep.verdict) == "ASSOCIATED"


# ---------------------------------------------------------------- the exact model itself

def _model_jacobians(f, x):
    """J_S by the rules' forward mode and by their reverse mode (enclosures as midpoint, radius)."""
    from mtcheck._exact import from_tensor
    from mtcheck.model import ExactModel
    from mtcheck.trace import prepare_inputs, trace

    leaves, wrt = prepare_inputs([x])
    model = ExactModel(trace(f, leaves))
    ev = model.evaluate([from_tensor(t) for t in leaves])
    tans = model.linearize(ev, wrt)
    n = x.numel()
    J_f = model.output_jacobian(ev, tans, n)
    seeds, m = model.output_seeds(ev)
    J_r = model.reverse(ev, wrt, seeds, m)
    return J_f, J_r, model.output_values(ev)


def _mid_rad(J):
    from mtcheck._ball import Ball, to_ball

    b = J if isinstance(J, Ball) else to_ball(np.asarray(J, dtype=object))
    return np.asarray(b.mid, dtype=np.float64), np.asarray(b.rad, dtype=np.float64)


@pytest.mark.parametrize("name,f,shape", [
    ("r2c", lambda x: torch.view_as_real(torch.fft.rfft2(x, norm="ortho")), (3, 5)),
    ("r2c_full", lambda x: torch.view_as_real(torch.fft.fft(x, dim=0, norm="ortho")), (3, 4)),
    ("c2c", lambda x: torch.view_as_real(torch.fft.fft2(x, norm="forward")), (3, 5)),
    ("c2r", lambda x: torch.fft.irfft2(x, s=(3, 6)), (3, 4)),
    ("c2r_even", lambda x: torch.fft.hfft(x, n=6, norm="ortho"), (2, 4)),
])
def test_forward_and_reverse_rules_agree_with_torch(name, f, shape):
    x = _ints(*shape, seed=5)
    J_f, J_r, vals = _model_jacobians(f, x)
    fm, fr = _mid_rad(J_f)
    rm, rr = _mid_rad(J_r)          # both (outputs, inputs)
    assert fm.shape == rm.shape
    assert (np.abs(fm - rm) <= fr + rr + 1e-300).all()         # the enclosures overlap
    assert fr.max() < 1e-12 and rr.max() < 1e-12
    # and the values enclose PyTorch's (to its float rounding)
    vm, vrad = _mid_rad(vals)
    ref = f(x).detach().reshape(-1).numpy()
    assert np.allclose(vm, ref, atol=1e-12, rtol=1e-12)
    # and the Jacobian is PyTorch's
    J = torch.autograd.functional.jacobian(f, x).reshape(-1, x.numel()).numpy()
    assert np.allclose(fm, J, atol=1e-12, rtol=1e-12)


def test_c2r_ignores_the_imaginary_parts_of_dc_and_nyquist():
    # irfft(x, n=6) of a half spectrum of 4 bins given by (re, im) = x[:, 0], x[:, 1]: the
    # imaginary parts of bins 0 and 3 have derivative 0
    def f(x):
        return torch.fft.irfft(torch.view_as_complex(x), n=6)

    x = _ints(4, 2, seed=6)
    J_f, J_r, _ = _model_jacobians(f, x)
    fm, _ = _mid_rad(J_f)
    cols = fm.reshape(6, 4, 2)
    assert (cols[:, 0, 1] == 0).all() and (cols[:, 3, 1] == 0).all()
    assert (cols[:, 1, 1] != 0).any()
    assert str(_verdict(f, x).verdict) == "SMOOTH_OK"          # and PyTorch's backward agrees


# ---------------------------------------------------------------- wrong backwards are caught

class _Rfft(torch.autograd.Function):
    """rfft of the last dim with a hand-written backward: ``mode`` picks a correct or a wrong one."""

    @staticmethod
    def forward(ctx, x, mode):
        ctx.n, ctx.mode = x.shape[-1], mode
        return torch.fft.rfft(x)

    @staticmethod
    def backward(ctx, g):
        n, m = ctx.n, g.shape[-1]
        full = torch.zeros(g.shape[:-1] + (n,), dtype=g.dtype)
        full[..., :m] = g
        if ctx.mode == "right":            # Re(sum_k g_k e^{+2 pi i jk/n}): the adjoint of the real map
            return torch.fft.ifft(full, norm="forward").real, None
        if ctx.mode == "no_conj":           # the conjugate dropped: e^{-2 pi i jk/n}
            return torch.fft.fft(full).real, None
        return torch.fft.irfft(g, n=n, norm="forward"), None   # "factor2": the hermitian doubling


@pytest.mark.parametrize("mode,expected", [("right", "SMOOTH_OK"), ("no_conj", "SMOOTH_WRONG"),
                                           ("factor2", "SMOOTH_WRONG")])
def test_planted_rfft_backward(mode, expected):
    rep = _verdict(lambda x: torch.view_as_real(_Rfft.apply(x, mode)), _ints(2, 6, seed=7))
    assert str(rep.verdict) == expected, rep.mismatch


# ---------------------------------------------------------------- refusals

def test_complex_value_reaching_an_unmodelled_op_is_refused():
    with pytest.raises(UnsupportedOpError, match=r"complex values reach aten\.mul\.Tensor") as e:
        _verdict(lambda x: torch.view_as_real(torch.fft.fft(x) * torch.fft.fft(x)), _ints(2, 6))
    assert e.value.op == "aten.mul.Tensor"
    assert "test_complex_fft.py" in e.value.where
    with pytest.raises(UnsupportedOpError, match=r"complex values reach aten\.abs\.default"):
        _verdict(lambda x: torch.fft.fft(x).abs(), _ints(2, 6))


def test_returning_a_complex_tensor_is_an_input_error():
    with pytest.raises(CheckInputError, match=r"view_as_real"):
        _verdict(lambda x: torch.fft.fft(x), _ints(2, 6))


def test_complex_input_is_an_input_error():
    with pytest.raises(CheckInputError, match=r"view_as_real"):
        _verdict(lambda z: torch.view_as_real(z), torch.zeros(3, dtype=torch.complex128))


@pytest.mark.parametrize("f", [
    lambda x: torch.view_as_real(torch.fft.rfft(x[:, 1:], dim=1)),
    lambda x: torch.fft.irfft(x[1:], dim=0),
    lambda x: torch.view_as_real(torch.fft.fft(torch.fft.fft(x[:, :2], dim=1), dim=1)),
])
def test_structural_flags_are_sound(f):
    # a zero flag must be a zero derivative (the FFT's flags over-approximate its dependence)
    from mtcheck._exact import from_tensor
    from mtcheck.model import ExactModel
    from mtcheck.trace import prepare_inputs, trace

    x = _ints(4, 4, seed=8)
    leaves, wrt = prepare_inputs([x])
    model = ExactModel(trace(f, leaves))
    ev = model.evaluate([from_tensor(t) for t in leaves])
    sup = model.support(ev, wrt)
    out = model.trace.outputs[0]
    flags = np.asarray(sup[out].view(np.ndarray)).reshape(-1)      # one direction moving every input
    J = torch.autograd.functional.jacobian(f, x).reshape(-1, x.numel()).numpy()
    assert ((flags != 0) | (np.abs(J).sum(axis=1) == 0)).all()


def test_no_structural_note_at_a_tie():
    rep = _verdict(lambda a: torch.relu(torch.view_as_real(torch.fft.fft(a))), torch.zeros(2, 6, dtype=torch.float64))
    assert not any("structural zeros not computed" in n for n in rep.notes)

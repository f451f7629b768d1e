"""Random ops checked with their draws fixed: mtcheck.check(..., torch_seed=s) (mtcheck/ops/random_fixed.py)."""

import pytest
import torch
import torch.nn.functional as F

import mtcheck
from mtcheck import CheckInputError, OutsideTheoryError, UnsupportedOpError, Verdict

PASS = (Verdict.SMOOTH_OK, Verdict.ASSOCIATED)


def _mlp():
    g = torch.Generator().manual_seed(5)
    l1 = torch.nn.Linear(3, 4).double()
    l2 = torch.nn.Linear(4, 1).double()
    with torch.no_grad():
        for p in (*l1.parameters(), *l2.parameters()):
            p.copy_(torch.randint(-4, 5, p.shape, generator=g).double() / 4)
        l1.bias.zero_()            # x = 0: every hidden unit is at its relu kink (a tie)
    net = torch.nn.Sequential(l1, torch.nn.ReLU(), torch.nn.Dropout(0.5), l2)
    return net.train()


# ----------------------------------------------------------------------------- dropout

def test_dropout_train_without_seed_is_refused_naming_the_keyword():
    with pytest.raises(UnsupportedOpError, match="torch_seed="):
        mtcheck.check(_mlp(), torch.ones(2, 3, dtype=torch.float64))


def test_dropout_train_mlp_smooth_with_seed():
    x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], dtype=torch.float64)
    rep = mtcheck.check(_mlp(), x, torch_seed=0)
    assert rep.verdict in PASS, rep.explain()


def test_dropout_train_mlp_at_a_tie_associated():
    rep = mtcheck.check(_mlp(), torch.zeros(1, 3, dtype=torch.float64), torch_seed=1)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()


def test_dropout_mask_is_the_trace_constant():
    # with the draws fixed the program is x * mask / (1 - p); exact (float64, p = 1/2: scale 2)
    x = torch.tensor([1.0, -2.0, 3.0, 0.5, 4.0, -1.5], dtype=torch.float64)
    rep = mtcheck.check(lambda t: F.dropout(t, 0.5, training=True), x, torch_seed=7)
    assert rep.verdict is Verdict.SMOOTH_OK and rep.exact_mode, rep.explain()
    torch.manual_seed(7)
    mask = F.dropout(torch.ones(6, dtype=torch.float64), 0.5, training=True)
    assert torch.equal(torch.as_tensor(rep.stratum_jacobian), torch.diag(mask))


class _WrongDropout(torch.autograd.Function):
    """Dropout whose backward scales by 1 instead of 1/(1-p) (a planted bug)."""

    @staticmethod
    def forward(ctx, x, p):
        mask = torch.empty_like(x).bernoulli_(1 - p)
        ctx.save_for_backward(mask)
        return x * mask / (1 - p)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask, None


def test_planted_wrong_dropout_backward_is_caught():
    x = torch.tensor([1.0, -2.0, 3.0, 0.5, 4.0, -1.5, 2.5, 0.75], dtype=torch.float64)
    rep = mtcheck.check(lambda t: _WrongDropout.apply(t, 0.5), x, torch_seed=3)
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()
    ok = mtcheck.check(lambda t: F.dropout(t, 0.5, training=True), x, torch_seed=3)
    assert ok.verdict is Verdict.SMOOTH_OK


# ----------------------------------------------------------------------------- rrelu

def test_rrelu_training_at_a_tie():
    # the tie (0.0) is the last element <= 0, so no later slope depends on its sign
    x = torch.tensor([1.0, -2.0, 3.0, -0.5, 0.0, 2.0], dtype=torch.float64)
    rep = mtcheck.check(lambda t: F.rrelu(t, training=True).sum(), x, torch_seed=0)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()
    assert rep.n_inputs == 6


def test_rrelu_training_tie_before_a_draw_is_outside_the_theory():
    # the slope of element 2 is the 1st or 2nd draw as element 0 is <= 0 or > 0: a jump
    x = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    with pytest.raises(OutsideTheoryError, match="rrelu"):
        mtcheck.check(lambda t: F.rrelu(t, training=True), x, torch_seed=0)


def test_rrelu_planted_wrong_backward_caught():
    class WrongRrelu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            noise = torch.empty_like(x)
            y = torch.ops.aten.rrelu_with_noise(x, noise, 0.125, 1 / 3, True)
            ctx.save_for_backward(x, noise)
            return y

        @staticmethod
        def backward(ctx, g):
            x, noise = ctx.saved_tensors
            return g * torch.where(x > 0, 1.0, 0.25)    # the mean slope, not the drawn one

    x = torch.tensor([1.0, -2.0, 3.0, -0.5], dtype=torch.float64)
    rep = mtcheck.check(WrongRrelu.apply, x, torch_seed=0)
    assert rep.verdict is Verdict.SMOOTH_WRONG, rep.explain()


def test_rrelu_eval_mode_needs_no_seed():
    x = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64)
    rep = mtcheck.check(lambda t: F.rrelu(t, training=False).sum(), x)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()


# ----------------------------------------------------------------------------- fractional max-pool

def _kernel_windows(shape, k, out, samples, fn):
    """The windows' last elements as the kernel sees them: an increasing input's argmax."""
    probe = torch.arange(float(torch.tensor(shape).prod()), dtype=samples.dtype).reshape(shape)
    _, idx = fn(probe, k, output_size=out, return_indices=True, _random_samples=samples)
    return idx


@pytest.mark.parametrize("nsp", [2, 3])
def test_fractional_windows_match_the_kernel(nsp):
    from mtcheck._exact import from_tensor
    from mtcheck.ops import Ctx
    from mtcheck.ops.random_fixed import FractionalMaxPool2d, FractionalMaxPool3d

    shape = (2, 3) + (7,) * nsp
    fn = F.fractional_max_pool2d if nsp == 2 else F.fractional_max_pool3d
    rule = FractionalMaxPool2d() if nsp == 2 else FractionalMaxPool3d()
    g = torch.Generator().manual_seed(11)
    for dt in (torch.float64, torch.float32):
        samples = torch.rand(2, 3, nsp, generator=g, dtype=dt)
        idx = _kernel_windows(shape, 2, 3, samples, fn)
        probe = torch.arange(float(torch.tensor(shape).prod()), dtype=dt).reshape(shape)
        y, _ = fn(probe, 2, output_size=3, return_indices=True, _random_samples=samples)
        ctx = Ctx("aten.fractional_max_pool%dd.default" % nsp, dt, None)
        out, sidx = rule.forward(ctx, (from_tensor(probe), [2] * nsp, [3] * nsp, from_tensor(samples)), {})
        assert (sidx == idx.numpy()).all()


def test_fractional_max_pool2d_with_a_tie():
    x = torch.tensor([[1.0, 1.0, 0.5, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0, -1.0], [0.5, 0.5, 0.5, 0.5, 0.5],
                      [4.0, 4.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)[None, None]
    rep = mtcheck.check(lambda t: F.fractional_max_pool2d(t, 2, output_size=3), x, torch_seed=0)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()


def test_fractional_max_pool2d_smooth():
    x = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5).remainder(7) + torch.arange(25).reshape(
        1, 1, 5, 5) / 64
    rep = mtcheck.check(lambda t: F.fractional_max_pool2d(t, 2, output_size=3), x.double(), torch_seed=4)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


# ----------------------------------------------------------------------------- other random ops

def test_randn_like_noise_is_a_constant():
    x = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)
    rep = mtcheck.check(lambda t: torch.relu(t) + 0.125 * torch.randn_like(t), x, torch_seed=2)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()


def test_inplace_random_on_a_clone_is_a_constant():
    x = torch.tensor([0.5, 1.0, -1.0], dtype=torch.float64)
    for f in (lambda t: t.clone().uniform_() * t, lambda t: t.clone().exponential_() + t,
              lambda t: t.clone().cauchy_() * 2, lambda t: t.clone().normal_() - t):
        rep = mtcheck.check(f, x, torch_seed=0)
        assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


def test_step_in_a_hidden_draw_is_refused():
    x = torch.tensor([0.1, -0.3], dtype=torch.float64)
    with pytest.raises(UnsupportedOpError, match="step function"):
        mtcheck.check(lambda t: torch.bernoulli(torch.sigmoid(t)) * t, x, torch_seed=0)
    # with constant probabilities the draw is a constant
    rep = mtcheck.check(lambda t: torch.bernoulli(torch.full_like(t, 0.5)) * t, x, torch_seed=0)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    # so it is with probabilities from an input left out of wrt (held fixed by the check)
    y = torch.tensor([0.2, 0.7], dtype=torch.float64)
    rep = mtcheck.check(lambda a, b: a * torch.bernoulli(torch.sigmoid(b)), x, y, wrt=[0], torch_seed=0)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()
    with pytest.raises(UnsupportedOpError, match="step function"):       # detached, but still a function of b
        mtcheck.check(lambda a, b: a * torch.bernoulli(torch.sigmoid(b).detach()), x, y, torch_seed=0)
    rep = mtcheck.check(lambda a, b: a[torch.multinomial(b, 2)], x, y, wrt=[0], torch_seed=0)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


def test_different_draws_between_evaluations():
    g = torch.Generator().manual_seed(0)        # its own generator: torch.manual_seed does not reset it
    x = torch.tensor([0.5, 1.0], dtype=torch.float64)
    with pytest.raises(CheckInputError, match="random draws differ between evaluations"):
        mtcheck.check(lambda t: t + torch.randn(2, generator=g, dtype=torch.float64), x, torch_seed=0)
    calls = []

    def counter(t):
        calls.append(1)
        return t * len(calls)

    with pytest.raises(CheckInputError, match="random draws differ"):
        mtcheck.check(counter, x, torch_seed=0)


def test_bad_seed():
    with pytest.raises(CheckInputError, match="torch_seed"):
        mtcheck.check(torch.relu, torch.ones(2, dtype=torch.float64), torch_seed="0")


def test_user_rng_state_unchanged():
    net = _mlp()                   # (building it draws the default initialisation)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    mtcheck.check(net, x, torch_seed=9)
    mtcheck.check(lambda t: F.rrelu(t, training=True), torch.tensor([1.0, -2.0], dtype=torch.float64), torch_seed=9)
    assert torch.equal(before, torch.get_rng_state())
    # (without torch_seed the program runs on the caller's generator, as any call of it does)


def test_same_seed_same_check():
    x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], dtype=torch.float64)
    a = mtcheck.check(_mlp(), x, torch_seed=5)
    b = mtcheck.check(_mlp(), x, torch_seed=5)
    assert (a.framework_jacobian == b.framework_jacobian).all()


def test_corpus_round_trip_keeps_the_seed(tmp_path):
    from mtcheck.corpus import case_from_report, load_case, replay_case, save_case

    x = torch.zeros(1, 3, dtype=torch.float64)
    net = _mlp()
    opts = {"torch_seed": 1}
    rep = mtcheck.check(net, x, **opts)
    case = case_from_report(None, [x], rep, program=net, options=opts)
    assert case.options["torch_seed"] == 1
    path = save_case(tmp_path, case)
    back = load_case(path)
    assert back.options["torch_seed"] == 1
    res = replay_case(back)
    assert res.status == "reproduces", res


def test_normal_with_input_mean_is_refused_with_the_reason():
    x = torch.tensor([0.1, -0.3], dtype=torch.float64)
    with pytest.raises(UnsupportedOpError, match="reparameterization"):
        mtcheck.check(lambda t: torch.normal(t, 1.0), x, torch_seed=0)
    # the reparameterized form is checked: mean + std * z, z a constant of the program
    rep = mtcheck.check(lambda t: t + 0.5 * torch.randn_like(t), x, torch_seed=0)
    assert rep.verdict is Verdict.SMOOTH_OK, rep.explain()


def test_replay_line_keeps_the_seed():
    """The replay line printed in a failure reproduces the check: with its torch_seed."""
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    rep = mtcheck.check(lambda t: F.dropout(t, 0.5, training=True), x, torch_seed=7)
    assert "torch_seed=7" in rep.replay, rep.replay
    assert "torch_seed" not in mtcheck.check(lambda t: t * 2, x).replay

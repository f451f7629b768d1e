"""Gradients with respect to parameters (issue 12): wrt="parameters", the loss form, ties in
parameter space, and the beta-family of max-pool backwards."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mtcheck
from mtcheck import CheckInputError, Verdict
from mtcheck.zoo import MaxPool2dAllTies

F64 = torch.float64


# ------------------------------------------------------------------ small programs with ties in parameter space

class TinyCNN(nn.Module):
    """conv 2x2 -> relu -> max-pool 2 -> linear; at PARAMS and X the pool window ties between two
    entries whose patches differ: a tie of the parameters (row p00 - p01 for the filter), not of x."""

    def __init__(self, bad_pool=False):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 2)
        self.fc = nn.Linear(1, 2)
        self.bad_pool = bad_pool

    def forward(self, x):
        h = F.relu(self.conv(x))
        h = MaxPool2dAllTies.apply(h) if self.bad_pool else F.max_pool2d(h, 2)
        return self.fc(h.flatten(1))


def tiny_cnn(bad_pool=False):
    torch.manual_seed(0)
    m = TinyCNN(bad_pool).to(F64).eval()
    with torch.no_grad():
        m.conv.weight.copy_(torch.tensor([[[[0.5, 0.5], [0.25, -0.5]]]], dtype=F64))
        m.conv.bias.fill_(0.25)
        m.fc.weight.copy_(torch.tensor([[0.75], [-1.5]], dtype=F64))
        m.fc.bias.copy_(torch.tensor([0.125, 0.0], dtype=F64))
    x = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]], dtype=F64)
    return m, x


class MLP(nn.Module):
    def __init__(self, sizes=(3, 4, 2)):
        super().__init__()
        self.l1 = nn.Linear(sizes[0], sizes[1])
        self.l2 = nn.Linear(sizes[1], sizes[2])

    def forward(self, x):
        return self.l2(F.relu(self.l1(x)))


def mlp_at_kink():
    """Unit 0 of the hidden layer exactly at relu's kink on sample 0 (its bias set to -W x)."""
    from mtcheck.zoo import dyadic_

    m = dyadic_(MLP(), seed=1, bits=2).to(F64).eval()
    x = torch.tensor([[0.5, -1.0, 0.25], [1.0, 0.5, -0.75]], dtype=F64)
    with torch.no_grad():
        m.l1.bias[0] = -(m.l1.weight[0] @ x[0])
        assert (m.l1.weight[0] @ x[0] + m.l1.bias[0]) == 0
        if m.l1.weight[0].abs().sum() == 0:
            m.l1.weight[0, 0] = 0.5
            m.l1.bias[0] = -0.25
    return m, x


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------ the named wrt forms

def test_wrt_parameters_no_longer_a_raw_type_error():
    m, x = tiny_cnn()
    rep = mtcheck.check(m, x, wrt="parameters")          # raised TypeError: '>=' not supported ... before
    assert rep.verdict in (Verdict.ASSOCIATED, Verdict.SMOOTH_OK)
    assert rep.n_inputs == n_params(m) == 4 + 1 + 2 + 2
    assert [w[0] for w in rep.wrt_names] == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    assert rep.certificate_ok


def test_cnn_maxpool_tie_in_parameter_space_stock_is_associated():
    m, x = tiny_cnn()
    rep = mtcheck.check(m, x, wrt="parameters")
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()
    assert rep.exact_mode
    assert rep.tangent_dim is not None and rep.tangent_dim < rep.n_inputs
    assert rep.certificate_ok
    mtcheck.assert_gradient_ok(m, x, wrt="parameters")


def test_tie_rows_too_large_to_hold_are_unknown_not_a_crash(monkeypatch):
    """Full-width VGG11 w.r.t. its 9.2M parameters met 908 tie rows: 62 GiB of residues, and numpy's
    MemoryError escaped mtcheck.check. Tie rows over the memory budget make the verdict UNKNOWN,
    with the sizes in the reason."""
    from mtcheck import certify

    monkeypatch.setattr(certify, "MAX_TIE_BYTES", 16)
    m, x = tiny_cnn()
    rep = mtcheck.check(m, x, wrt="parameters")
    assert rep.verdict is Verdict.UNKNOWN, rep.explain()
    assert "memory" in rep.reasons["budget"] and f"{rep.n_inputs} inputs" in rep.reasons["budget"]
    assert rep.certificate is None


def test_cnn_maxpool_all_ties_backward_fails_in_parameter_space():
    m, x = tiny_cnn(bad_pool=True)
    rep = mtcheck.check(m, x, wrt="parameters")
    assert not rep.verdict.passed, rep.explain()
    assert rep.verdict is Verdict.NOT_ASSOCIATED
    assert rep.certificate_ok
    assert "conv." in rep.witness.note                   # the witness says which parameters t moves
    with pytest.raises(mtcheck.MtcheckError):
        mtcheck.assert_gradient_ok(m, x, wrt="parameters")


def test_same_tie_is_not_a_tie_of_the_input():
    """The tie of TinyCNN is one of the parameters: w.r.t. the input x the program is still at a
    tie (x's patches tie), and the stock gradient passes there too."""
    m, x = tiny_cnn()
    assert mtcheck.check(m, x).verdict.passed
    assert mtcheck.check(m, x, wrt="inputs").n_inputs == x.numel()


def test_mlp_unit_at_kink_is_associated():
    m, x = mlp_at_kink()
    rep = mtcheck.check(m, x, wrt="parameters")
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()
    assert rep.n_inputs == n_params(m)
    assert rep.certificate_ok


def test_wrt_all_and_names_and_mixed():
    m, x = mlp_at_kink()
    rep = mtcheck.check(m, x, wrt="all")
    assert rep.n_inputs == n_params(m) + x.numel()
    assert rep.wrt_names[0][0] == "input 0"
    rep = mtcheck.check(m, x, wrt=["l1.bias"])
    assert rep.n_inputs == 4 and rep.verdict is Verdict.ASSOCIATED
    rep = mtcheck.check(m, x, wrt="l2.weight")
    assert rep.n_inputs == 8 and rep.verdict.passed       # l2 does not see the kink's direction
    rep = mtcheck.check(m, x, wrt=[0, "l1.weight"])
    assert rep.n_inputs == x.numel() + 12


def test_parameters_not_requiring_grad_are_left_out():
    m, x = mlp_at_kink()
    m.l2.weight.requires_grad_(False)
    rep = mtcheck.check(m, x, wrt="parameters")
    assert rep.n_inputs == n_params(m) - 8
    assert "l2.weight" not in [w[0] for w in rep.wrt_names]


def test_mismatch_text_names_the_parameter():
    class BadRelu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp_min(0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (x > 0) * 2.0           # twice the right slope: wrong everywhere, smooth or not

    class Net(MLP):
        def forward(self, x):
            return self.l2(BadRelu.apply(self.l1(x)))

    m, x = mlp_at_kink()
    bad = Net()
    bad.load_state_dict(m.state_dict())
    bad = bad.to(F64).eval()
    x = x + 4.0                                # away from the kink
    rep = mtcheck.check(bad, x, wrt="parameters")
    assert rep.verdict is Verdict.SMOOTH_WRONG
    assert "= l1.weight[" in rep.mismatch             # "input 6 = l1.weight[2, 0]"


# ------------------------------------------------------------------ bad wrt values

@pytest.mark.parametrize("wrt", ["params", ["nope"], 1.5, [None], [], {"a": 1}, [0, "l1.wieght"], -1, [7], True])
def test_bad_wrt_is_a_clear_error(wrt):
    m, x = mlp_at_kink()
    with pytest.raises(CheckInputError) as e:
        mtcheck.check(m, x, wrt=wrt)
    assert '"parameters"' in str(e.value)           # names the accepted forms


def test_parameters_of_a_plain_function_is_refused():
    with pytest.raises(CheckInputError, match="nn.Module"):
        mtcheck.check(lambda t: torch.relu(t).sum(), torch.zeros(3, dtype=F64), wrt="parameters")


def test_integer_wrt_unchanged():
    m, x = mlp_at_kink()
    assert mtcheck.check(m, x, wrt=0).n_inputs == x.numel()
    assert mtcheck.check(m, x, wrt=[0]).n_inputs == x.numel()


# ------------------------------------------------------------------ losses and batches

def test_mse_loss_on_a_batch():
    m, x = mlp_at_kink()
    y = torch.tensor([[0.5, -0.25], [0.0, 1.0]], dtype=F64)
    rep = mtcheck.check(F.mse_loss, model=m, batch=(x, y), wrt="parameters")
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()
    assert rep.n_outputs == 1 and rep.n_inputs == n_params(m)
    assert mtcheck.check(F.mse_loss, model=m, batch=(x, y)).n_inputs == n_params(m)    # default: parameters
    assert mtcheck.check(F.mse_loss, model=m, batch=(x, y), wrt="inputs").n_inputs == x.numel()


def test_hinge_losses_on_a_batch():
    m, x = mlp_at_kink()
    labels = torch.tensor([0, 1])
    rep = mtcheck.check(F.multi_margin_loss, model=m, batch=(x, labels), wrt="parameters")
    assert rep.verdict.passed, rep.explain()
    sign = torch.tensor([1.0, -1.0], dtype=F64)

    def hinge(out, s):
        return torch.clamp(1 - s * out[:, 0], min=0).mean()

    rep = mtcheck.check(hinge, model=m, batch=(x, sign), wrt="parameters")
    assert rep.verdict.passed, rep.explain()


def test_cross_entropy_wrt_parameters_is_decided():
    # log_softmax and nll_loss are modelled with enclosures (issue 10): the loss form is decided
    m, x = mlp_at_kink()
    rep = mtcheck.check(F.cross_entropy, model=m, batch=(x, torch.tensor([0, 1])), wrt="parameters")
    assert rep.verdict.passed, rep.explain()
    assert rep.certificate_ok


@pytest.mark.parametrize("kwargs", [dict(batch=(torch.zeros(2, 3),)), dict(model=nn.Linear(3, 1)),
                                    dict(model=lambda t: t, batch=(torch.zeros(2, 3),)),
                                    dict(model=nn.Linear(3, 1), batch=[1.0])])
def test_loss_form_bad_input(kwargs):
    with pytest.raises(CheckInputError):
        mtcheck.check(F.mse_loss, **kwargs)


# ------------------------------------------------------------------ the fixture, the corpus, the command line

class TinyCNNBad(TinyCNN):
    """TinyCNN with the all-ties max-pool backward, constructible with no arguments (for replay)."""

    def __init__(self):
        super().__init__(bad_pool=True)


def tiny_cnn_bad():
    m, x = tiny_cnn()
    bad = TinyCNNBad().to(F64)
    bad.load_state_dict(m.state_dict())
    return bad.eval(), x


def test_fixture_fuzz_wrt_parameters(request):
    fx = request.getfixturevalue("mtcheck")
    m, x = tiny_cnn()
    stats = fx.fuzz(m, x, wrt="parameters", max_examples=5)
    assert stats


def test_fixture_fuzz_wrt_parameters_finds_and_saves_a_case(tmp_path):
    from mtcheck import _fuzz
    from mtcheck.corpus import load_case, replay_case

    m, x = tiny_cnn_bad()
    cfg = _fuzz.FuzzConfig(max_examples=3, seed=0, seed_source="test", derandomize=True, shrink_seconds=5.0,
                           corpus=tmp_path, nodeid="tests/test_params.py::t")
    fz = _fuzz.Fuzzer(cfg, m, (x,), wrt="parameters", factory="test_params:tiny_cnn_bad")
    with pytest.raises(mtcheck.MtcheckError) as e:
        fz.run(True)
    assert "NOT_ASSOCIATED" in str(e.value) or "SMOOTH_WRONG" in str(e.value)
    cases = sorted(tmp_path.glob("case-*.json"))
    assert len(cases) == 1
    case = load_case(cases[0])
    assert case.options["wrt"] == "parameters"
    res = replay_case(case, trust_imports=True)
    assert res.status == "reproduces", res.message


def test_old_cases_with_integer_wrt_still_load():
    from pathlib import Path

    from mtcheck.corpus import load_case

    loaded = [load_case(p) for p in sorted(Path(__file__).parent.parent.joinpath("corpus").glob("case-*.json"))[:20]]
    assert loaded
    for c in loaded:
        w = c.options.get("wrt")
        assert w is None or all(isinstance(i, int) for i in w)


def test_cli_fuzz_wrt_parameters(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "pmodels.py").write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom test_params import tiny_cnn_bad, tiny_cnn\n" % str(
            __import__("pathlib").Path(__file__).parent))
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mtcheck.cli", *args], capture_output=True, text=True,
                              timeout=200, env=env, cwd=tmp_path)

    bad = cli("fuzz", "--model", "pmodels:tiny_cnn", "--wrt", "params", "--corpus", str(tmp_path / "c0"))
    assert bad.returncode == 2 and "parameters" in bad.stderr
    r = cli("fuzz", "--model", "pmodels:tiny_cnn_bad", "--wrt", "parameters", "--max-time", "60", "-n", "1",
            "--stop-on-failure", "--corpus", str(tmp_path / "c"))
    assert r.returncode == 1, r.stdout + r.stderr
    cases = sorted((tmp_path / "c").glob("case-*.json"))
    assert cases
    import json

    assert json.loads(cases[0].read_text())["options"]["wrt"] == "parameters"


# ------------------------------------------------------------------ ties in parameter space (strategies)

class PoolCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 3, 3, padding=1)
        self.f = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.f(F.max_pool2d(F.relu(self.c(x)), 2).flatten(1))


def test_wrt_one_weight_tensor_decides_differentiability():
    m, x = tiny_cnn()
    rep = mtcheck.check(m, x, wrt="conv.weight")
    assert rep.verdict is Verdict.ASSOCIATED
    assert rep.differentiable is False          # two neighbouring strata with different Jacobians, by z3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parameter_tie_strategies_put_parameters_on_kinks(dtype):
    from hypothesis import given, settings

    from mtcheck.strategies import parameter_ties
    from mtcheck.zoo import digit_image

    torch.manual_seed(0)
    m = PoolCNN().to(dtype).eval()
    x = digit_image((2, 1, 8, 8), dtype=dtype, seed=1)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    seen = {"kink": 0}

    @settings(max_examples=12, deadline=None, database=None, derandomize=True)
    @given(parameter_ties(m, x, kinds=("bias_kink", "pool_bias", "zero_unit")))
    def prop(tie):
        assert tie.model is not m
        rep = mtcheck.check(tie.model, x, wrt="parameters", neighbours=False, forward_mode=False)
        assert rep.verdict.passed, (tie, rep.explain())        # stock PyTorch passes at every such kink
        if tie.layer == "c" and tie.exact:
            assert rep.verdict is Verdict.ASSOCIATED, tie       # a relu kink of the conv, a real tie of the parameters
            seen["kink"] += 1

    prop()
    assert seen["kink"] > 0
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())    # the original is untouched


def test_bias_kink_exact_on_the_first_layer():
    from hypothesis import given, settings

    from mtcheck.strategies import relu_kink_biases

    m, x = mlp_at_kink()
    x = x + 0.125

    @settings(max_examples=8, deadline=None, database=None, derandomize=True)
    @given(relu_kink_biases(m, x))
    def prop(tie):
        if tie.layer != "l1":
            return
        with torch.no_grad():
            pre = tie.model.l1(x)[tie.sample, tie.unit]
        assert pre == 0
        assert mtcheck.check(tie.model, x, wrt="parameters").verdict is Verdict.ASSOCIATED

    prop()


def test_other_strategies_draw_and_pass():
    from hypothesis import given, settings

    from mtcheck.strategies import equal_weights, zero_biases, zero_units

    m, x = mlp_at_kink()

    @settings(max_examples=6, deadline=None, database=None, derandomize=True)
    @given(zero_units(m), zero_biases(m), equal_weights(m))
    def prop(a, b, c):
        for tie in (a, b, c):
            assert mtcheck.check(tie.model, x, wrt="parameters", neighbours=False).verdict.passed

    prop()


# ------------------------------------------------------------------ Boustany's beta-family of max-pool backwards

def _bench(name):
    """A script of bench/ as a module (bench/ is no package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _beta_pool():
    return _bench("maxpool_beta")


class BetaCNN(TinyCNN):
    def __init__(self, rule):
        super().__init__()
        self.pool = _beta_pool().beta_pool(rule)

    def forward(self, x):
        return self.fc(self.pool.apply(F.relu(self.conv(x))).flatten(1))


def beta_cnn(rule):
    m, x = tiny_cnn()
    b = BetaCNN(rule).to(F64)
    b.load_state_dict(m.state_dict())
    return b.eval(), x


@pytest.mark.parametrize("beta", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_every_beta_is_associated_in_parameter_space(beta):
    m, x = beta_cnn(beta)
    rep = mtcheck.check(m, x, wrt="parameters")
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()
    assert rep.certificate_ok


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_every_beta_is_associated_wrt_the_input(beta):
    mod = _beta_pool()
    torch.manual_seed(0)
    net = mod.VGG(cfg=(4, "M", 4, "M"), side=8).to(F64).eval()
    from mtcheck.zoo import dyadic_

    dyadic_(net, seed=3, scale=0.5)
    x = mod.block_like(1, seed=1, side=8, block=2).to(F64)
    x = torch.round(x * 8) / 8                      # dyadic: exact mode
    rep = mtcheck.check(net.set_beta(beta), x)
    assert rep.verdict is Verdict.ASSOCIATED, rep.explain()


@pytest.mark.parametrize("rule", ["sum2", "all"])
def test_tie_weights_not_summing_to_one_are_not_associated(rule):
    m, x = beta_cnn(rule)
    rep = mtcheck.check(m, x, wrt="parameters")
    assert rep.verdict is Verdict.NOT_ASSOCIATED, rep.explain()
    assert rep.certificate_ok


def test_non_finite_parameter_is_named():
    m, x = mlp_at_kink()
    with torch.no_grad():
        m.l2.bias[1] = float("nan")
    with pytest.raises(mtcheck.NonFiniteError, match="l2.bias"):
        mtcheck.check(m, x, wrt="parameters")


# ------------------------------------------------------------------ Bertoin et al.'s relu'(0) measurement

def test_relu_prime_data_and_the_papers_test():
    """The shipped MNIST digits load without pickle as 8-bit intensities k/255, and the paper's test
    (first-layer weight gradients under relu'(0)=0 and =1) sees a zero put at a relu input."""
    mod = _bench("relu_prime")
    X, Y = mod.load_mnist()
    assert X.shape == (10000, 1, 28, 28) and X.dtype == torch.float32 and Y.shape == (10000,)
    k = X * 255
    assert torch.equal(k, torch.round(k)) and 0 <= int(Y.min()) and int(Y.max()) == 9
    torch.manual_seed(0)
    net0 = mod.MLP(1)
    x, y = X[:4], Y[:4]
    net1 = copy.deepcopy(net0)
    net1.relu_prime_0 = 1
    assert mod.relu_zeros(net0, x) == [] and not mod.differ(net0, net1, x, y)
    with torch.no_grad():                 # unit 0 exactly at the kink on every sample
        for net in (net0, net1):
            net.layers[0].weight[0] = 0
            net.layers[0].bias[0] = 0
    assert (0, 0, 0) in mod.relu_zeros(net0, x) and mod.differ(net0, net1, x, y)

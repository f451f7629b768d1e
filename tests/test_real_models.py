"""Real-weight models as users have them (PyTorch's default init, float32, MNIST/CIFAR shapes):
decided, with certificates the independent checker accepts, and a planted bug caught."""

import pytest

import mtcheck
from mtcheck import zoo
from mtcheck.certificate import verify


@pytest.mark.parametrize("name", ["lenet-f32", "vgg-f32"])
def test_default_init_float32_model_is_decided_with_a_certificate(name):
    model, (x,) = zoo.ZOO[name]()
    rep = mtcheck.check(model, x, neighbours=False)
    assert rep.verdict is mtcheck.Verdict.ASSOCIATED, rep.explain()
    assert rep.pattern.n_ties > 0
    assert rep.certificate_ok is True
    assert verify(rep.certificate).ok


def test_wrong_maxpool_backward_in_a_float32_lenet_is_caught():
    model, (x,) = zoo.ZOO["lenet-f32-bad-maxpool"]()
    rep = mtcheck.check(model, x, neighbours=False)
    assert rep.verdict is mtcheck.Verdict.NOT_ASSOCIATED, rep.explain()
    assert rep.witness is not None
    assert rep.certificate_ok is True
    cert = dict(rep.certificate)
    # the checker rejects the witness once one entry of t is changed
    t = dict(cert["witness"]["t"])
    t["num"] = [t["num"][0] + 1] + t["num"][1:]
    cert["witness"] = {**cert["witness"], "t": t}
    assert not verify(cert).ok

"""Ops mtcheck refuses on purpose, with the reason a user needs."""

from . import reject

# floor, round, sign, fmod, remainder, ... are modelled off their jumps (mtcheck/ops/steps.py); heaviside,
# bucketize and the other step functions too (mtcheck/ops/steps_more.py)
reject("random", "it is random; put the model in eval mode (model.eval()), remove the randomness, or pass "
       "torch_seed=<int> to mtcheck.check to check it with its random draws fixed",
       "aten.native_dropout.default", "aten.bernoulli.default", "aten.bernoulli_.float",
       "aten.rand.default", "aten.randn.default", "aten.rand_like.default", "aten.randn_like.default",
       "aten.randint.default", "aten.uniform_.default", "aten.normal_.default", "aten.rrelu_with_noise.default")

"""Ops mtcheck refuses on purpose, with the reason a user needs."""

from . import reject

# floor, round, sign, fmod, remainder, ... are modelled off their jumps (mtcheck/ops/steps.py)
reject("outside", "it is not Lipschitz (a step function)",
       "aten.heaviside.default", "aten.bucketize.Tensor")
reject("random", "it is random; put the model in eval mode (model.eval()) or remove the randomness",
       "aten.native_dropout.default", "aten.bernoulli.default", "aten.bernoulli_.float",
       "aten.rand.default", "aten.randn.default", "aten.rand_like.default", "aten.randn_like.default",
       "aten.randint.default", "aten.uniform_.default", "aten.normal_.default", "aten.rrelu_with_noise.default")

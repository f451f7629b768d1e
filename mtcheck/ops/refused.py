"""Ops mtcheck refuses on purpose, with the reason a user needs."""

from . import reject

# floor, round, sign, fmod, remainder, ... are modelled off their jumps (mtcheck/ops/steps.py)
reject("outside", "it is not Lipschitz (a step function)",
       "aten.heaviside.default", "aten.bucketize.Tensor")
reject("irrational", "its values are irrational in general, so no exact rational model exists",
       "aten.sin.default", "aten.cos.default", "aten.pow.Tensor_Tensor", "aten.native_layer_norm.default",
       "aten.atan.default", "aten.tan.default")
reject("random", "it is random; put the model in eval mode (model.eval()) or remove the randomness",
       "aten.native_dropout.default", "aten.bernoulli.default", "aten.bernoulli_.float",
       "aten.rand.default", "aten.randn.default", "aten.rand_like.default", "aten.randn_like.default",
       "aten.randint.default", "aten.uniform_.default", "aten.normal_.default", "aten.rrelu_with_noise.default")

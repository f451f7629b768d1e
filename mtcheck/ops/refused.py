"""Ops mtcheck refuses on purpose, with the reason a user needs."""

from . import reject

reject("outside", "it is not Lipschitz (a step function)",
       "aten.floor.default", "aten.ceil.default", "aten.round.default", "aten.round.decimals",
       "aten.trunc.default", "aten.frac.default", "aten.sign.default", "aten.sgn.default",
       "aten.heaviside.default", "aten.floor_divide.default", "aten.remainder.Tensor",
       "aten.remainder.Scalar", "aten.fmod.Tensor", "aten.fmod.Scalar", "aten.bucketize.Tensor",
       "aten.floor_.default", "aten.ceil_.default", "aten.round_.default", "aten.sign_.default",
       "aten.div.Tensor_mode", "aten.div.Scalar_mode")
reject("irrational", "its values are irrational in general, so no exact rational model exists",
       "aten.sin.default", "aten.cos.default", "aten.pow.Tensor_Tensor", "aten.native_layer_norm.default",
       "aten.atan.default", "aten.tan.default")
reject("random", "it is random; put the model in eval mode (model.eval()) or remove the randomness",
       "aten.native_dropout.default", "aten.bernoulli.default", "aten.bernoulli_.float",
       "aten.rand.default", "aten.randn.default", "aten.rand_like.default", "aten.randn_like.default",
       "aten.randint.default", "aten.uniform_.default", "aten.normal_.default", "aten.rrelu_with_noise.default")

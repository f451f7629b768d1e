"""Hypothesis strategies that generate ties: inputs, deep ties, and whole networks.

Use them in your own ``@given`` tests::

    from hypothesis import given, settings
    from mtcheck.strategies import networks, tie_inputs

    @settings(deadline=None, max_examples=25)
    @given(st.data())
    def test_my_relu_net(data):
        spec = data.draw(networks(families=("mlp",)))
        x = data.draw(tie_inputs(spec))
        assert mtcheck.check(spec.build(), x).verdict.passed

See ``docs/strategies.md``.
"""

from ._gen import deep_ties, networks, structured_inputs, tie_inputs
from ._synth import Target, TieResult, reset_synthesis_stats, synthesis_stats
from .coverage import KinkCounter, kink_profile, record_events
from .float_ties import FloatTieResult, LayerTieCounter, both_tie_kinds, float_tie_stats, float_ties, layer_tie_kinds
from ._param_ties import ParamTie, equal_weights, float_param_tie, float_param_ties, parameter_ties, pool_tie_biases, relu_kink, relu_kink_biases, zero_biases, zero_units  # noqa: E501

__all__ = ["tie_inputs", "deep_ties", "networks", "structured_inputs", "Target", "TieResult",
           "synthesis_stats", "reset_synthesis_stats", "kink_profile", "record_events", "KinkCounter",
           "ParamTie", "parameter_ties", "float_param_tie", "float_param_ties", "relu_kink", "relu_kink_biases", "zero_units", "zero_biases", "pool_tie_biases",
           "equal_weights", "float_ties", "FloatTieResult", "both_tie_kinds", "float_tie_stats", "layer_tie_kinds",
           "LayerTieCounter"]

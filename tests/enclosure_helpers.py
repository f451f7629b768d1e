"""Shared by the enclosure tests: does a Ball (or one element of one) contain a true value?"""

import mpmath
import numpy as np

from mtcheck._ball import to_ball


def contains(b, v) -> bool:
    """Whether the enclosure ``b`` (a Ball, one element of one: a complex ``mid + 1j rad``, or an
    exact value) contains the mpmath number ``v``."""
    if isinstance(b, (complex, np.complexfloating)):
        mid, rad = b.real, b.imag
    else:
        b = to_ball(b)
        mid, rad = float(b.mid), float(b.rad)
    return abs(mpmath.mpf(float(mid)) - v) <= mpmath.mpf(float(rad)) * (1 + 1e-12)

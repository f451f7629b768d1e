"""An independent checker for mtcheck's verdict certificates (the de Bruijn criterion).

The engine that finds a verdict is large; this module is small and shares no code with it. It
imports only the Python standard library (no numpy, no FLINT, no torch, nothing from mtcheck), and
re-checks the algebra of a certificate in exact rational arithmetic. The format and the check of
each verdict are documented in ``docs/certificates.md``.

It trusts the tie rows ``A`` and the stratum Jacobian ``J_S`` as data produced by the engine's
exact model, and checks everything else: ``D = J_fw - J_S``, ``R = D - Y A``, ``A t = 0``,
``D t``, the tolerance inequalities, the linearity counterexample of a VJP, the sign flips of a
rounding branch.

Arithmetic works on integer numerators over one common denominator per matrix; ``Fraction`` only
appears for per-row scalars (norms and tolerances), never per entry.

    res = verify(cert)              # a dict, e.g. json.load(...)
    res.ok, res.reason              # True, "ASSOCIATED verified (exact mode): ..."
    res = verify_json("cert.json")  # JSON text, bytes or a path
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Result", "verify", "verify_json", "VERDICTS",
           "encode_rational", "encode_vector", "encode_matrix"]

FORMAT = "mtcheck-certificate"
VERSION = 1
VERDICTS = ("SMOOTH_OK", "SMOOTH_WRONG", "ASSOCIATED", "NOT_ASSOCIATED", "NONLINEAR_VJP",
            "ROUNDING_BRANCH")


@dataclass(frozen=True)
class Result:
    """The outcome of a check: ``ok``, and a ``reason`` saying what was checked or what failed."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


class _Reject(Exception):
    """Raised inside the checker; :func:`verify` turns it into ``Result(False, reason)``."""


def _fail(reason: str):
    raise _Reject(reason)


# --------------------------------------------------------------------------- decoding

_RATIONAL = re.compile(r"-?[0-9]+(?:/[0-9]+)?", re.ASCII)


def _rational(x, what: str) -> Fraction:
    if not isinstance(x, str):
        _fail(f"{what}: a rational must be a string 'p' or 'p/q', got {type(x).__name__}")
    if _RATIONAL.fullmatch(x) is None:
        _fail(f"{what}: {_short(x)!r} is not a rational string 'p' or 'p/q'")
    p, _, q = x.partition("/")
    try:
        num, den = int(p), int(q) if q else 1
    except ValueError as exc:           # e.g. beyond Python's int-string digit limit
        _fail(f"{what}: cannot read {_short(x)!r}: {exc}")
    if den <= 0:
        _fail(f"{what}: denominator of {_short(x)!r} must be positive")
    return Fraction(num, den)


def _int(x, what: str, lo: int | None = None, hi: int | None = None) -> int:
    if type(x) is not int:
        _fail(f"{what} must be an integer, got {_short(x)!r}")
    if lo is not None and x < lo:
        _fail(f"{what} = {x} must be >= {lo}")
    if hi is not None and x > hi:
        _fail(f"{what} = {x} must be <= {hi}")
    return x


def _key(d: dict, key: str, where: str):
    if key not in d:
        _fail(f"{where}: missing key {key!r}")
    return d[key]


def _dict(x, what: str) -> dict:
    if not isinstance(x, dict):
        _fail(f"{what} must be an object, got {type(x).__name__}")
    return x


def _ints(num, what: str, length: int) -> list:
    if not isinstance(num, (list, tuple)):
        _fail(f"{what}.num must be a list of integers, got {type(num).__name__}")
    if len(num) != length:
        _fail(f"{what}.num has {len(num)} entries, expected {length}")
    if not set(map(type, num)) <= {int}:             # (bool is not int here: type(True) is bool)
        j = next(j for j, v in enumerate(num) if type(v) is not int)
        _fail(f"{what}.num[{j}] = {_short(num[j])!r} is not an integer")
    return list(num)


def _den(x: dict, what: str) -> int:
    den = _key(x, "den", what)
    if type(den) is not int or den <= 0:
        _fail(f"{what}.den must be a positive integer, got {_short(den)!r}")
    return den


class _Mat:
    """An r x c matrix ``num / den``, numerators row-major."""

    __slots__ = ("r", "c", "den", "num")

    def __init__(self, r: int, c: int, den: int, num: list):
        self.r, self.c, self.den, self.num = r, c, den, num

    def row(self, i: int) -> list:
        return self.num[i * self.c:(i + 1) * self.c]


class _Vec:
    __slots__ = ("den", "num")

    def __init__(self, den: int, num: list):
        self.den, self.num = den, num


def _matrix(x, what: str, shape: tuple | None = None) -> _Mat:
    x = _dict(x, what)
    sh = _key(x, "shape", what)
    if not isinstance(sh, (list, tuple)) or len(sh) != 2:
        _fail(f"{what}.shape must be [rows, cols], got {_short(sh)!r}")
    r = _int(sh[0], f"{what}.shape[0]", lo=0)
    c = _int(sh[1], f"{what}.shape[1]", lo=0)
    if shape is not None:
        for got, want, name in ((r, shape[0], "rows"), (c, shape[1], "cols")):
            if want is not None and got != want:
                _fail(f"{what} has shape [{r}, {c}]: expected {want} {name}")
    den = _den(x, what)
    return _Mat(r, c, den, _ints(_key(x, "num", what), what, r * c))


def _vector(x, what: str, length: int | None = None) -> _Vec:
    x = _dict(x, what)
    den = _den(x, what)
    num = _key(x, "num", what)
    if not isinstance(num, (list, tuple)):
        _fail(f"{what}.num must be a list of integers, got {type(num).__name__}")
    if length is not None and len(num) != length:
        _fail(f"{what} has length {len(num)}, expected {length}")
    return _Vec(den, _ints(num, what, len(num)))


def _columns(x, n: int, what: str) -> list | None:
    if x is None:
        return None
    if not isinstance(x, (list, tuple)):
        _fail(f"{what} must be null or a list of column indices")
    cols = [_int(c, f"{what}[{j}]", lo=0, hi=n - 1) for j, c in enumerate(x)]
    if len(set(cols)) != len(cols):
        _fail(f"{what} has a repeated column index")
    return cols


def _tolerance(x, what: str):
    """``None`` (exact mode) or ``(rtol, atol)`` as Fractions, both >= 0."""
    if x is None:
        return None
    x = _dict(x, what)
    rtol = _rational(_key(x, "rtol", what), f"{what}.rtol")
    atol = _rational(_key(x, "atol", what), f"{what}.atol")
    if rtol < 0 or atol < 0:
        _fail(f"{what}: rtol and atol must be >= 0")
    return rtol, atol


def _short(x, limit: int = 60) -> str:
    s = x if isinstance(x, str) else repr(x)
    return s if len(s) <= limit else s[:limit] + "..."


def _approx(q: Fraction) -> str:
    """A readable rendering of an exact rational: exact when short, else ``~ float``."""
    s = str(q)
    if len(s) <= 24:
        return s
    try:
        return f"~{float(q):.6g}"
    except OverflowError:
        return f"~{'-' if q < 0 else ''}huge"


# --------------------------------------------------------------------------- arithmetic

def _diff(a: _Mat, b: _Mat):
    """``a - b`` as integer numerators over one denominator: (rows, den)."""
    g = math.gcd(a.den, b.den)
    fa, fb = b.den // g, a.den // g          # lcm = a.den * fa = b.den * fb
    den = a.den * fa
    if fa == 1 and fb == 1:
        num = [x - y for x, y in zip(a.num, b.num)]
    elif fa == 1:
        num = [x - y * fb for x, y in zip(a.num, b.num)]
    elif fb == 1:
        num = [x * fa - y for x, y in zip(a.num, b.num)]
    else:
        num = [x * fa - y * fb for x, y in zip(a.num, b.num)]
    c = a.c
    return [num[i * c:(i + 1) * c] for i in range(a.r)], den


def _row_tols(js: _Mat, tol, radius=None):
    """``tol_i = atol + rtol * ||J_S[i]||_1`` per row (plus ``radius[i]`` for an enclosed J_S:
    the true J_S is within ``radius[i]`` of the given midpoint row in the L1 norm); all zero in
    exact mode."""
    if tol is None:
        return [Fraction(0)] * js.r
    rtol, atol = tol
    tols = [atol + rtol * Fraction(sum(map(abs, js.row(i))), js.den) for i in range(js.r)]
    if radius is not None:
        tols = [t + Fraction(r, radius.den) for t, r in zip(tols, radius.num)]
    return tols


def _radius(cert: dict, m: int, tol):
    """The optional ``J_S_radius``: per-row L1 bounds of an enclosed J_S (irrational values)."""
    x = cert.get("J_S_radius")
    if x is None:
        return None
    rad = _vector(x, "J_S_radius", m)
    if any(v < 0 for v in rad.num):
        _fail("J_S_radius has a negative entry")
    if tol is None:
        _fail("J_S_radius is given in exact mode: an enclosed J_S is compared in tolerance mode only")
    return rad


def _mode(tol) -> str:
    if tol is None:
        return "exact mode"
    return f"tolerance mode, rtol={_approx(tol[0])}, atol={_approx(tol[1])}"


def _first_nonzero(row: list) -> int:
    return next((j for j, v in enumerate(row) if v), -1)


# --------------------------------------------------------------------------- the checks

def _header(cert: dict):
    fmt = _key(cert, "format", "certificate")
    if fmt != FORMAT:
        _fail(f"format is {_short(fmt)!r}, expected {FORMAT!r}")
    version = _key(cert, "version", "certificate")
    if type(version) is not int or version != VERSION:
        _fail(f"version is {_short(version)!r}, this checker reads version {VERSION}")
    verdict = _key(cert, "verdict", "certificate")
    if verdict not in VERDICTS:
        _fail(f"unknown verdict {_short(verdict)!r}; expected one of {', '.join(VERDICTS)}")
    n = _int(_key(cert, "n", "certificate"), "n", lo=0)
    m = _int(_key(cert, "m", "certificate"), "m", lo=0)
    return verdict, n, m


def _jacobians(cert: dict, n: int, m: int):
    tol = _tolerance(_key(cert, "tolerance", "certificate"), "tolerance")
    jfw = _matrix(_key(cert, "J_fw", "certificate"), "J_fw", (m, n))
    js = _matrix(_key(cert, "J_S", "certificate"), "J_S", (m, n))
    d_rows, d_den = _diff(jfw, js)
    return tol, js, d_rows, d_den


def _tie_rows(x, n: int, what: str = "tie_rows", enclosed_ok: bool = False):
    """``None``, or ``(columns, A)`` with A of shape k x len(columns) (k x n when columns null).
    Enclosed rows (``A_radius``) prove only a residual bound: an ASSOCIATED certificate with Y
    may carry them; zero rows and kernel vectors need exact rows."""
    if x is None:
        return None
    x = _dict(x, what)
    if not enclosed_ok and x.get("A_radius") is not None:
        _fail(f"{what}.A_radius is given: enclosed tie rows prove neither that a row is zero nor "
              "that a vector is in their kernel (only an ASSOCIATED residual bound)")
    cols = _columns(_key(x, "columns", what), n, f"{what}.columns")
    width = n if cols is None else len(cols)
    a = _matrix(_key(x, "A", what), f"{what}.A", (None, width))
    return cols, a


def _no_ties(ties) -> str:
    """SMOOTH_*: T(x) = R^n as far as the given tie rows tell. Returns a description."""
    if ties is None:
        return "no tie rows"
    cols, a = ties
    if a.r == 0:
        return "0 tie rows"
    j = _first_nonzero(a.num)
    if j >= 0:
        row, col = divmod(j, a.c)
        col = col if cols is None else cols[col]
        _fail(f"tie row {row} of A is nonzero at column {col}: T(x) != R^n, "
              f"which contradicts a SMOOTH verdict")
    return f"{a.r} tie rows, all zero"


def _check_smooth(cert: dict, verdict: str, n: int, m: int) -> str:
    tol, js, d_rows, d_den = _jacobians(cert, n, m)
    ties = _tie_rows(_key(cert, "tie_rows", "certificate"), n)
    if cert.get("nonzero_tie_row") is not None:
        _fail("nonzero_tie_row is given: it would prove T(x) != R^n, "
              f"which contradicts {verdict}")
    ties_desc = _no_ties(ties)
    tols = _row_tols(js, tol, _radius(cert, m, tol))
    bad = []          # (row, column or None, ||D_i||_1, tol_i)
    for i, row in enumerate(d_rows):
        if tol is None:
            j = _first_nonzero(row)
            if j >= 0:
                bad.append((i, j, None, None))
        else:
            l1 = Fraction(sum(map(abs, row)), d_den)
            if l1 > tols[i]:
                bad.append((i, None, l1, tols[i]))
    mode = _mode(tol)
    if verdict == "SMOOTH_OK":
        if bad:
            i, j, l1, ti = bad[0]
            if j is not None:
                _fail(f"row {i} of D = J_fw - J_S is nonzero at column {j} "
                      f"(D = {_approx(Fraction(d_rows[i][j], d_den))}, {mode})")
            _fail(f"row {i} of D = J_fw - J_S: ||D[{i}]||_1 = {_approx(l1)} exceeds "
                  f"tol_{i} = {_approx(ti)} ({mode})")
        return (f"SMOOTH_OK verified ({mode}): {ties_desc}; J_fw = J_S in all {m} rows"
                + ("" if tol is None else " within the row tolerances"))
    # SMOOTH_WRONG
    if not bad:
        _fail(f"no row of D = J_fw - J_S exceeds its tolerance ({mode}): "
              f"the framework Jacobian is right, not SMOOTH_WRONG")
    i, j, l1, ti = bad[0]
    what = (f"row {i} of D = J_fw - J_S is nonzero at column {j}" if j is not None else
            f"||D[{i}]||_1 = {_approx(l1)} > tol_{i} = {_approx(ti)}")
    extra = ""
    wit = cert.get("witness")
    if wit is not None:
        extra = "; witness: " + _check_witness(wit, ties, n, m, tol, tols, d_rows, d_den)
    return f"SMOOTH_WRONG verified ({mode}): {ties_desc}; {what}{extra}"


def _check_associated(cert: dict, n: int, m: int) -> str:
    tol, js, d_rows, d_den = _jacobians(cert, n, m)
    ties = _tie_rows(_key(cert, "tie_rows", "certificate"), n, enclosed_ok=True)
    ntr = _key(cert, "nonzero_tie_row", "certificate")
    if ntr is None:
        _fail("ASSOCIATED needs nonzero_tie_row (a tie row with a nonzero entry, "
              "proving T(x) != R^n); it is null")
    ntr = _vector(ntr, "nonzero_tie_row", n)
    ntr_rad = cert.get("nonzero_tie_row_radius")
    if ntr_rad is None:
        col = _first_nonzero(ntr.num)
        if col < 0:
            _fail("nonzero_tie_row is all zero: it does not prove T(x) != R^n")
    else:
        # an enclosed row (irrational entries): some entry's enclosure must exclude 0,
        # |mid_j| > rad_j, compared exactly over the two denominators
        ntr_rad = _vector(ntr_rad, "nonzero_tie_row_radius", n)
        if any(v < 0 for v in ntr_rad.num):
            _fail("nonzero_tie_row_radius has a negative entry")
        col = next((j for j in range(n)
                    if abs(ntr.num[j]) * ntr_rad.den > ntr_rad.num[j] * ntr.den), -1)
        if col < 0:
            _fail("no entry of the enclosed nonzero_tie_row excludes 0 (|mid| <= rad everywhere): "
                  "it does not prove T(x) != R^n")
    y = _key(cert, "Y", "certificate")
    if y is None:
        r_rows, r_den, what = d_rows, d_den, "R = D (Y = 0)"
    else:
        if ties is None:
            _fail("Y is given but tie_rows is null: R = D - Y A needs A")
        cols, a = ties
        if cols is not None:
            _fail("ASSOCIATED with Y needs tie_rows.columns = null (A over all n columns)")
        y = _matrix(y, "Y", (m, a.r))
        r_rows, r_den = _residual(d_rows, d_den, y, a)
        what = "R = D - Y A"
        a_rad = _dict(cert["tie_rows"], "tie_rows").get("A_radius")
        if a_rad is not None:
            # enclosed tie rows A in A_mid +- A_radius: the true R lies within
            # |D - Y A_mid| + |Y| A_radius entrywise, so that bound's row sums are compared
            if tol is None:
                _fail("tie_rows.A_radius is given in exact mode: enclosed tie rows prove a residual "
                      "bound, never an exact zero")
            a_rad = _matrix(a_rad, "tie_rows.A_radius", (a.r, a.c))
            if any(v < 0 for v in a_rad.num):
                _fail("tie_rows.A_radius has a negative entry")
            r_rows, r_den = _enclosed_residual(r_rows, r_den, y, a_rad)
            what = "|D - Y A_mid| + |Y| A_radius"
    tols = _row_tols(js, tol, _radius(cert, m, tol))
    mode = _mode(tol)
    for i, row in enumerate(r_rows):
        if tol is None:
            j = _first_nonzero(row)
            if j >= 0:
                _fail(f"row {i} of {what} is nonzero at column {j} "
                      f"(R = {_approx(Fraction(row[j], r_den))}, {mode})")
        else:
            l1 = Fraction(sum(map(abs, row)), r_den)
            if l1 > tols[i]:
                _fail(f"row {i} of {what}: ||R[{i}]||_1 = {_approx(l1)} exceeds "
                      f"tol_{i} = {_approx(tols[i])} ({mode})")
    k = 0 if ties is None else ties[1].r
    return (f"ASSOCIATED verified ({mode}): nonzero_tie_row is nonzero at column {col}, so "
            f"T(x) != R^n; {what} over {k} tie rows is "
            + ("zero" if tol is None else "within the row tolerances") + f" in all {m} rows")


def _residual(d_rows: list, d_den: int, y: _Mat, a: _Mat):
    """``R = D - Y A`` as integer rows over one denominator."""
    ya_den = y.den * a.den
    g = math.gcd(d_den, ya_den)
    fd, fy = ya_den // g, d_den // g           # common denominator d_den * fd = ya_den * fy
    a_rows = [a.row(l) for l in range(a.r)]
    out = []
    for i, drow in enumerate(d_rows):
        acc = None
        for l, coef in enumerate(y.row(i)):
            if coef:
                arow = a_rows[l]
                acc = ([coef * v for v in arow] if acc is None else
                       [s + coef * v for s, v in zip(acc, arow)])
        if acc is None:
            out.append([v * fd for v in drow] if fd != 1 else list(drow))
        elif fd == 1 and fy == 1:
            out.append([x - s for x, s in zip(drow, acc)])
        else:
            out.append([x * fd - s * fy for x, s in zip(drow, acc)])
    return out, d_den * fd


def _enclosed_residual(r_rows: list, r_den: int, y: _Mat, a_rad: _Mat):
    """Rows of ``|R| + |Y| A_radius`` over one denominator (entries are nonnegative)."""
    yr_den = y.den * a_rad.den
    g = math.gcd(r_den, yr_den)
    fr, fy = yr_den // g, r_den // g
    rad_rows = [a_rad.row(l) for l in range(a_rad.r)]
    out = []
    for i, rrow in enumerate(r_rows):
        acc = [abs(v) * fr for v in rrow]
        for l, coef in enumerate(y.row(i)):
            if coef:
                c = abs(coef) * fy
                acc = [s + c * v for s, v in zip(acc, rad_rows[l])]
        out.append(acc)
    return out, r_den * fr


def _check_witness(wit, ties, n: int, m: int, tol, tols, d_rows, d_den) -> str:
    """``A t = 0`` over every given tie row and ``D[i] t`` nonzero (beyond tol_i ||t||_inf)."""
    wit = _dict(wit, "witness")
    i = _int(_key(wit, "output", "witness"), "witness.output", lo=0, hi=m - 1)
    wcols = _columns(_key(wit, "columns", "witness"), n, "witness.columns")
    if ties is not None:
        cols, a = ties
        if wcols != cols:
            _fail("witness.columns differ from tie_rows.columns: t and A must be on the "
                  "same columns")
    else:
        cols, a = wcols, None
    width = n if cols is None else len(cols)
    t = _vector(_key(wit, "t", "witness"), "witness.t", width)
    if a is not None:
        for l in range(a.r):
            s = sum(x * v for x, v in zip(a.row(l), t.num))
            if s:
                _fail(f"tie row {l} of A: A t = {_approx(Fraction(s, a.den * t.den))} != 0, "
                      f"so the witness t is not in T(x)")
    drow = d_rows[i]
    dsel = drow if cols is None else [drow[c] for c in cols]
    s = sum(x * v for x, v in zip(dsel, t.num))
    dt = Fraction(s, d_den * t.den)
    k = 0 if a is None else a.r
    if tol is None:
        if not s:
            _fail(f"witness: D[{i}] t = 0, so t does not separate J_fw from J_S (exact mode)")
        return f"A t = 0 over {k} tie rows and D[{i}] t = {_approx(dt)} != 0"
    tinf = Fraction(max(map(abs, t.num), default=0), t.den)
    bound = tols[i] * tinf
    if not abs(dt) > bound:
        _fail(f"witness: |D[{i}] t| = {_approx(abs(dt))} does not exceed "
              f"tol_{i} * ||t||_inf = {_approx(bound)} ({_mode(tol)})")
    return (f"A t = 0 over {k} tie rows and |D[{i}] t| = {_approx(abs(dt))} > "
            f"tol_{i} * ||t||_inf = {_approx(bound)}")


def _check_not_associated(cert: dict, n: int, m: int) -> str:
    tol, js, d_rows, d_den = _jacobians(cert, n, m)
    raw = _key(cert, "tie_rows", "certificate")
    if raw is None:
        _fail("NOT_ASSOCIATED needs tie_rows (possibly with 0 rows): the witness must be "
              "shown to satisfy A t = 0")
    ties = _tie_rows(raw, n)
    wit = _key(cert, "witness", "certificate")
    if wit is None:
        _fail("NOT_ASSOCIATED needs a witness; it is null")
    tols = _row_tols(js, tol, _radius(cert, m, tol))
    return (f"NOT_ASSOCIATED verified ({_mode(tol)}): "
            + _check_witness(wit, ties, n, m, tol, tols, d_rows, d_den))


def _check_nonlinear(cert: dict, n: int, m: int) -> str:
    lin = _dict(_key(cert, "linearity", "certificate"), "linearity")
    kind = _key(lin, "kind", "linearity")
    if kind not in ("zero", "scale", "additivity"):
        _fail(f"linearity.kind is {_short(kind)!r}; expected 'zero', 'scale' or 'additivity'")
    lhs = _vector(_key(lin, "vjp_lhs", "linearity"), "linearity.vjp_lhs", n)
    if kind == "zero":
        j = _first_nonzero(lhs.num)
        if j < 0:
            _fail("linearity (zero): the VJP of the zero cotangent, vjp_lhs, is all zero")
        return (f"NONLINEAR_VJP verified: the VJP of the zero cotangent is nonzero at input "
                f"{j} ({_approx(Fraction(lhs.num[j], lhs.den))})")
    _vector(_key(lin, "u", "linearity"), "linearity.u", m)
    vu = _vector(_key(lin, "vjp_u", "linearity"), "linearity.vjp_u", n)
    if kind == "scale":
        c = _rational(_key(lin, "c", "linearity"), "linearity.c")
        # lhs/dl != c * vu/du  <=>  lhs * c.den * du != c.num * vu * dl
        fl, fr = c.denominator * vu.den, c.numerator * lhs.den
        for j, (x, v) in enumerate(zip(lhs.num, vu.num)):
            if x * fl != v * fr:
                return (f"NONLINEAR_VJP verified: VJP(c u) != c VJP(u) at input {j} with "
                        f"c = {_approx(c)} ({_approx(Fraction(x, lhs.den))} vs "
                        f"{_approx(c * Fraction(v, vu.den))}, exact)")
        _fail("linearity (scale): vjp_lhs equals c * vjp_u at every entry")
    # additivity
    _vector(_key(lin, "v", "linearity"), "linearity.v", m)
    vv = _vector(_key(lin, "vjp_v", "linearity"), "linearity.vjp_v", n)
    tol = _tolerance(_key(lin, "tolerance", "linearity"), "linearity.tolerance")
    dl, du, dv = lhs.den, vu.den, vv.den
    duv = du * dv
    if tol is None:
        ap, aq, rp, rq = 0, 1, 0, 1
    else:
        rtol, atol = tol
        ap, aq, rp, rq = atol.numerator, atol.denominator, rtol.numerator, rtol.denominator
    # |lhs - s| > atol + rtol |s| with s = S/(du dv), S = U dv + V du, lhs = L/dl, times dl du dv aq rq
    k_abs, k_rel, k_lhs = ap * rq * dl * duv, rp * aq * dl, aq * rq
    for j, (x, a, b) in enumerate(zip(lhs.num, vu.num, vv.num)):
        s = a * dv + b * du
        if abs(x * duv - dl * s) * k_lhs > k_abs + k_rel * abs(s):
            return (f"NONLINEAR_VJP verified ({_mode(tol)}): VJP(u + v) != VJP(u) + VJP(v) at "
                    f"input {j} ({_approx(Fraction(x, dl))} vs {_approx(Fraction(s, duv))})")
    _fail(f"linearity (additivity): vjp_lhs agrees with vjp_u + vjp_v at every entry "
          f"({_mode(tol)})")


def _sign(q: Fraction) -> int:
    return (q > 0) - (q < 0)


def _side(entry: dict, key: str, where: str) -> Fraction:
    """The value ``entry[key]`` (a rational), or, for an irrational one, the endpoint nearest 0 of
    ``entry[key + "_enclosure"]`` ([lo, hi], rationals), which must not contain 0: its sign is
    the value's."""
    if key + "_enclosure" in entry:
        enc = entry[key + "_enclosure"]
        if not isinstance(enc, (list, tuple)) or len(enc) != 2:
            _fail(f"{where}.{key}_enclosure must be [lo, hi]")
        lo = _rational(enc[0], f"{where}.{key}_enclosure[0]")
        hi = _rational(enc[1], f"{where}.{key}_enclosure[1]")
        if lo > hi:
            _fail(f"{where}.{key}_enclosure has lo > hi")
        if lo <= 0 <= hi:
            _fail(f"{where}.{key}_enclosure contains 0: its sign is not decided")
        return lo if lo > 0 else hi
    return _rational(_key(entry, key, where), f"{where}.{key}")


def _check_rounding(cert: dict, n: int, m: int) -> str:
    entries = _key(cert, "rounding", "certificate")
    if not isinstance(entries, (list, tuple)) or not entries:
        _fail("ROUNDING_BRANCH needs rounding: a non-empty list of "
              "{node, exact, framework} entries")
    flips = []
    for e, entry in enumerate(entries):
        where = f"rounding[{e}]"
        entry = _dict(entry, where)
        node = _key(entry, "node", where)
        if not isinstance(node, str):
            _fail(f"{where}.node must be a string")
        exact = _side(entry, "exact", where)
        fw = _side(entry, "framework", where)
        if _sign(exact) != _sign(fw):
            flips.append((node, exact, fw))
    if not flips:
        _fail(f"no rounding entry has exact and framework values of different signs "
              f"({len(entries)} entries checked)")
    node, exact, fw = flips[0]
    return (f"ROUNDING_BRANCH verified: {len(flips)} of {len(entries)} nodes change sign, "
            f"first {node!r} (exact {_approx(exact)}, framework {_approx(fw)})")


_CHECKS = {
    "SMOOTH_OK": lambda c, n, m: _check_smooth(c, "SMOOTH_OK", n, m),
    "SMOOTH_WRONG": lambda c, n, m: _check_smooth(c, "SMOOTH_WRONG", n, m),
    "ASSOCIATED": _check_associated,
    "NOT_ASSOCIATED": _check_not_associated,
    "NONLINEAR_VJP": _check_nonlinear,
    "ROUNDING_BRANCH": _check_rounding,
}


def _check_optional_jacobians(cert: dict, n: int, m: int):
    """NONLINEAR_VJP / ROUNDING_BRANCH do not use J_fw, J_S; when present they must be well formed."""
    for key in ("J_fw", "J_S"):
        if cert.get(key) is not None:
            _matrix(cert[key], key, (m, n))


# --------------------------------------------------------------------------- public API

def verify(cert) -> Result:
    """Re-check a certificate (a dict, as ``json.load`` returns it). Never raises."""
    try:
        cert = _dict(cert, "certificate")
        verdict, n, m = _header(cert)
        if verdict in ("NONLINEAR_VJP", "ROUNDING_BRANCH"):
            _check_optional_jacobians(cert, n, m)
        return Result(True, _CHECKS[verdict](cert, n, m))
    except _Reject as exc:
        return Result(False, f"rejected: {exc}")
    except Exception as exc:  # noqa: BLE001 - a malformed input must never escape as an exception
        return Result(False, f"rejected: malformed certificate ({type(exc).__name__}: "
                             f"{_short(str(exc), 200)})")


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _no_constant(name):
    raise ValueError(f"{name} is not allowed in a certificate")


def verify_json(text_or_path) -> Result:
    """Re-check a certificate given as JSON text, bytes, or a path to a JSON file. Never raises."""
    try:
        if isinstance(text_or_path, (bytes, bytearray)):
            text = bytes(text_or_path).decode("utf-8")
        elif isinstance(text_or_path, str) and text_or_path.lstrip().startswith(("{", "[")):
            text = text_or_path
        elif isinstance(text_or_path, (str, os.PathLike)):
            with open(text_or_path, encoding="utf-8") as fh:
                text = fh.read()
        else:
            return Result(False, f"rejected: expected JSON text or a path, got "
                                 f"{type(text_or_path).__name__}")
        cert = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError) as exc:
        return Result(False, f"rejected: cannot read certificate: {exc}")
    except (ValueError, RecursionError) as exc:
        return Result(False, f"rejected: not valid JSON: {_short(str(exc), 200)}")
    return verify(cert)


# --------------------------------------------------------------------------- encoders (for tests)

def encode_rational(x) -> str:
    """``Fraction``/int (or a float, exactly) -> ``"p"`` or ``"p/q"``."""
    q = Fraction(x)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def encode_vector(values) -> dict:
    """A sequence of rationals -> ``{"den", "num"}`` over their least common denominator."""
    vals = [Fraction(v) for v in values]
    den = math.lcm(1, *(v.denominator for v in vals))
    return {"den": den, "num": [v.numerator * (den // v.denominator) for v in vals]}


def encode_matrix(rows, cols: int | None = None) -> dict:
    """A list of rows of rationals -> ``{"shape", "den", "num"}``; ``cols`` for a 0-row matrix."""
    rows = [list(r) for r in rows]
    c = cols if cols is not None else (len(rows[0]) if rows else 0)
    if any(len(r) != c for r in rows):
        raise ValueError("encode_matrix: rows of unequal length")
    flat = encode_vector([v for r in rows for v in r])
    return {"shape": [len(rows), c], "den": flat["den"], "num": flat["num"]}

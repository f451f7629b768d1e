"""The independent certificate checker (mtcheck/certificate.py, docs/certificates.md).

Certificates are built by hand here, from the paper's examples and small ties; each verifies,
and each corruption of one entry is rejected with a reason naming what failed.
"""

import ast
import copy
import json
import random
import subprocess
import sys
from fractions import Fraction as F
from pathlib import Path

import pytest

from mtcheck.certificate import (Result, encode_matrix, encode_rational, encode_vector, verify,
                                 verify_json)

MODULE = Path(__file__).resolve().parent.parent / "mtcheck" / "certificate.py"


def cert(verdict, n, m, **fields):
    base = {"format": "mtcheck-certificate", "version": 1, "verdict": verdict, "n": n, "m": m,
            "tolerance": None, "J_fw": None, "J_S": None, "tie_rows": None,
            "nonzero_tie_row": None, "Y": None, "witness": None, "linearity": None,
            "rounding": None}
    base.update(fields)
    return base


def tol(rtol, atol):
    return {"rtol": encode_rational(rtol), "atol": encode_rational(atol)}


def ties(rows, columns=None, cols=None):
    return {"columns": columns, "A": encode_matrix(rows, cols)}


def accepted(c):
    res = verify(c)
    assert isinstance(res, Result)
    assert res.ok, res.reason
    assert res.reason.startswith(c["verdict"])
    return res


def rejected(c, *words):
    res = verify(c)
    assert isinstance(res, Result)
    assert not res.ok, f"accepted a corrupted certificate: {res.reason}"
    assert res.reason.startswith("rejected:")
    for w in words:
        assert w in res.reason, f"{w!r} not in reason {res.reason!r}"
    return res


def mutate(c, path, value):
    """A deep copy of ``c`` with the entry at ``path`` (keys and indices) replaced by ``value``
    (or by ``value(old)`` when callable)."""
    c = copy.deepcopy(c)
    obj = c
    for key in path[:-1]:
        obj = obj[key]
    old = obj[path[-1]]
    obj[path[-1]] = value(old) if callable(value) else value
    return c


# ----------------------------------------------------------------------------- the paper

def maxpool_associated():
    # t -> maxpool1d(t, 4t) - maxpool1d(4t, t) at t = 0: PyTorch gives -3 (first index in each
    # window: 1 - 4); the stratum {0} has J_S = 0 (say); tie rows d(t - 4t) = -3, d(4t - t) = 3.
    return cert("ASSOCIATED", 1, 1, J_fw=encode_matrix([[-3]]), J_S=encode_matrix([[0]]),
                tie_rows=ties([[-3], [3]]), nonzero_tie_row=encode_vector([-3]),
                Y=encode_matrix([[1, 0]]))


def max1_associated():
    # t -> max1(t a) - torch.max(t a), a = (1, 2, 3, 4), at t = 0: -1.5; tie rows a_0 - a_j
    a = [1, 2, 3, 4]
    return cert("ASSOCIATED", 1, 1, J_fw=encode_matrix([[F(-3, 2)]]), J_S=encode_matrix([[0]]),
                tie_rows=ties([[a[0] - a[j]] for j in (1, 2, 3)]),
                nonzero_tie_row=encode_vector([-1]), Y=encode_matrix([[0, 0, F(1, 2)]]))


def test_paper_maxpool_is_associated():
    res = accepted(maxpool_associated())
    assert "exact mode" in res.reason


def test_paper_max1_is_associated():
    accepted(max1_associated())


def test_paper_max_x_x_is_smooth_ok():
    # max(x, x): the tie holds on the whole line, its tie row d(x - x) = 0 is zero
    accepted(cert("SMOOTH_OK", 1, 1, J_fw=encode_matrix([[1]]), J_S=encode_matrix([[1]]),
                  tie_rows=ties([[0]])))


def test_associated_with_y_null_and_no_tie_rows():
    # D = 0: Y = 0 works without A, but T(x) != R^n must still be shown
    c = cert("ASSOCIATED", 2, 1, J_fw=encode_matrix([[1, 0]]), J_S=encode_matrix([[1, 0]]),
             nonzero_tie_row=encode_vector([1, -1]))
    accepted(c)
    rejected(mutate(c, ["nonzero_tie_row"], None), "nonzero_tie_row")
    rejected(mutate(c, ["nonzero_tie_row"], encode_vector([0, 0])), "nonzero_tie_row", "all zero")
    rejected(mutate(c, ["J_S", "num", 1], 1), "row 0", "R = D", "column 1")


# ----------------------------------------------------------------------------- relu tie

def relu_tie():
    # relu(x1 - x2) at x1 = x2: PyTorch's relu'(0) = 0 gives J_fw = (0, 0); the stratum's
    # selection ">0" gives J_S = (1, -1); tie row (1, -1); D = (-1, 1) = -1 * A
    return cert("ASSOCIATED", 2, 1, J_fw=encode_matrix([[0, 0]]), J_S=encode_matrix([[1, -1]]),
                tie_rows=ties([[1, -1]]), nonzero_tie_row=encode_vector([1, -1]),
                Y=encode_matrix([[-1]]))


def test_relu_tie_is_associated():
    accepted(relu_tie())


@pytest.mark.parametrize("path,value,words", [
    (["J_S", "num", 1], -2, ["row 0", "R = D - Y A", "column 1"]),
    (["J_fw", "num", 0], 1, ["row 0", "R = D - Y A", "column 0"]),
    (["Y", "num", 0], -2, ["row 0", "R = D - Y A", "column 0"]),
    (["tie_rows", "A", "num", 1], -2, ["row 0", "R = D - Y A", "column 1"]),
    (["J_S", "den"], 2, ["row 0", "R = D - Y A"]),
    (["Y", "den"], 3, ["row 0", "R = D - Y A"]),
    (["J_S", "den"], 0, ["J_S.den", "positive"]),
    (["J_S", "den"], -1, ["J_S.den", "positive"]),
    (["J_S", "num", 0], 1.0, ["J_S.num[0]", "not an integer"]),
    (["J_S", "num", 0], True, ["J_S.num[0]", "not an integer"]),
    (["J_S", "num", 0], "1", ["J_S.num[0]", "not an integer"]),
    (["J_S", "num"], [1], ["J_S.num", "1 entries", "expected 2"]),
    (["J_S", "shape"], [2, 1], ["J_S", "shape [2, 1]"]),
    (["Y", "shape"], [1, 2], ["Y", "shape [1, 2]"]),
    (["tie_rows", "A", "shape"], [1, 1], ["tie_rows.A", "shape"]),
    (["tie_rows", "columns"], [0, 1], ["columns = null"]),
    (["nonzero_tie_row"], {"den": 1, "num": [0, 0]}, ["nonzero_tie_row", "all zero"]),
    (["nonzero_tie_row"], {"den": 1, "num": [1]}, ["nonzero_tie_row", "length 1"]),
    (["tie_rows"], None, ["tie_rows is null"]),
    (["n"], 3, ["J_fw", "expected 3 cols"]),
    (["n"], -1, ["n = -1"]),
    (["m"], "1", ["m must be an integer"]),
])
def test_relu_tie_corruptions_are_rejected(path, value, words):
    rejected(mutate(relu_tie(), path, value), *words)


def test_maxpool_corruptions_are_rejected():
    c = maxpool_associated()
    rejected(mutate(c, ["Y", "num", 0], 2), "row 0 of R = D - Y A is nonzero at column 0")
    # one row of A changed: the same Y no longer explains D
    rejected(mutate(c, ["tie_rows", "A", "num", 0], -1), "R = D - Y A")
    rejected(mutate(c, ["J_fw", "num", 0], -4), "R = D - Y A")


# ----------------------------------------------------------------------------- header / malformed

@pytest.mark.parametrize("key", ["format", "version", "verdict", "n", "m", "tolerance", "J_fw",
                                 "J_S", "tie_rows", "nonzero_tie_row", "Y"])
def test_missing_keys_are_rejected(key):
    c = relu_tie()
    del c[key]
    rejected(c, f"missing key {key!r}")


@pytest.mark.parametrize("path,value,words", [
    (["format"], "something-else", ["format"]),
    (["version"], 2, ["version"]),
    (["version"], 1.0, ["version"]),
    (["verdict"], "PROBABLY_OK", ["unknown verdict", "PROBABLY_OK"]),
    (["verdict"], "UNKNOWN", ["unknown verdict"]),
    (["tolerance"], {"rtol": "1/0", "atol": "0"}, ["tolerance.rtol", "denominator"]),
    (["tolerance"], {"rtol": "1e-9", "atol": "0"}, ["tolerance.rtol", "not a rational"]),
    (["tolerance"], {"rtol": "0.5", "atol": "0"}, ["tolerance.rtol", "not a rational"]),
    (["tolerance"], {"rtol": 0, "atol": "0"}, ["tolerance.rtol", "must be a string"]),
    (["tolerance"], {"rtol": "1/-2", "atol": "0"}, ["tolerance.rtol", "not a rational"]),
    (["tolerance"], {"rtol": " 1", "atol": "0"}, ["tolerance.rtol", "not a rational"]),
    (["tolerance"], {"rtol": "-1/2", "atol": "0"}, ["tolerance", ">= 0"]),
    (["tolerance"], {"atol": "0"}, ["missing key 'rtol'"]),
    (["tolerance"], [0, 0], ["tolerance must be an object"]),
    (["J_fw"], [[0, 0]], ["J_fw must be an object"]),
    (["J_fw"], None, ["J_fw must be an object"]),
])
def test_malformed_fields_are_rejected(path, value, words):
    rejected(mutate(relu_tie(), path, value), *words)


@pytest.mark.parametrize("bad", [None, [], "text", 3, {"format": "mtcheck-certificate"}])
def test_not_a_certificate_is_rejected(bad):
    res = verify(bad)
    assert not res.ok and res.reason.startswith("rejected:")


def test_rational_strings():
    c = relu_tie()
    c["tolerance"] = tol(0, 0)
    for good in ["0", "-0", "7", "6/8", "0/5", "0012/3"]:
        c["tolerance"]["rtol"] = good
        assert verify(c).ok, good
    c["tolerance"]["rtol"] = "-3/4"
    assert ">= 0" in verify(c).reason
    for bad in ["", "/", "1/", "/2", "3/0", "+1", "1.5", "1e3", "1 / 2", "--1", "\u0661", "1/2/3"]:
        c["tolerance"]["rtol"] = bad
        res = verify(c)
        assert not res.ok and "tolerance.rtol" in res.reason, bad


# ----------------------------------------------------------------------------- NOT_ASSOCIATED

def buggy_max():
    # max(x1, x2) at x1 = x2 with a backward that gives each tied input the full gradient:
    # J_fw = (1, 1); the stratum's J_S = (1, 0); tie row (1, -1); t = (1, 1) in T(x), D t = 1
    return cert("NOT_ASSOCIATED", 2, 1, J_fw=encode_matrix([[1, 1]]), J_S=encode_matrix([[1, 0]]),
                tie_rows=ties([[1, -1]]),
                witness={"output": 0, "t": encode_vector([1, 1]), "columns": None})


def test_not_associated_witness():
    res = accepted(buggy_max())
    assert "D[0] t = 1" in res.reason


def test_not_associated_corruptions():
    c = buggy_max()
    rejected(mutate(c, ["witness", "t", "num", 1], 2), "tie row 0 of A", "not in T(x)")
    rejected(mutate(c, ["tie_rows", "A", "num", 1], 1), "tie row 0 of A", "not in T(x)")
    rejected(mutate(c, ["J_fw", "num", 1], 0), "D[0] t = 0")
    rejected(mutate(c, ["witness", "output"], 1), "witness.output = 1")
    rejected(mutate(c, ["witness", "t"], encode_vector([1])), "witness.t", "length 1")
    rejected(mutate(c, ["witness"], None), "needs a witness")
    rejected(mutate(c, ["tie_rows"], None), "needs tie_rows")
    rejected(mutate(c, ["witness", "columns"], [0, 1]), "witness.columns differ")
    rejected(mutate(c, ["witness", "t", "den"], 0), "witness.t.den")


def test_not_associated_zero_tie_rows_allowed():
    c = mutate(buggy_max(), ["tie_rows"], ties([], cols=2))
    accepted(c)


def restricted_witness():
    # n = 4: f = max(x0, x1) + x2 - x3, buggy max as above; the tie rows and the witness live on
    # the support columns [0, 1] only
    return cert("NOT_ASSOCIATED", 4, 1,
                J_fw=encode_matrix([[1, 1, 1, -1]]), J_S=encode_matrix([[1, 0, 1, -1]]),
                tie_rows=ties([[1, -1]], columns=[0, 1]),
                witness={"output": 0, "t": encode_vector([F(1, 2), F(1, 2)]), "columns": [0, 1]})


def test_not_associated_on_support_columns():
    accepted(restricted_witness())
    c = restricted_witness()
    rejected(mutate(c, ["witness", "columns"], [1, 0]), "witness.columns differ")
    both = mutate(c, ["witness", "columns"], [2, 3])
    both["tie_rows"]["columns"] = [2, 3]
    rejected(both, "D[0] t = 0")          # J_fw = J_S on columns 2, 3
    rejected(mutate(c, ["tie_rows", "columns"], [0, 0]), "repeated column")
    rejected(mutate(c, ["tie_rows", "columns"], [0, 4]), "tie_rows.columns[1] = 4")
    rejected(mutate(c, ["tie_rows", "columns"], [0]), "tie_rows.A", "shape")


def test_not_associated_tolerance_mode():
    c = mutate(buggy_max(), ["tolerance"], tol(F(1, 4), 0))
    c["J_fw"] = encode_matrix([[1, F(1, 8)]])   # D = (0, 1/8), D t = 1/8 for t = (1, 1)
    res = verify(c)
    assert not res.ok and "does not exceed" in res.reason and "tol_0" in res.reason
    c["J_fw"] = encode_matrix([[1, F(1, 2)]])   # D t = 1/2 > (1/4)(1)(1) = 1/4
    accepted(c)
    # scaling t scales both sides: still a witness
    accepted(mutate(c, ["witness", "t"], encode_vector([3, 3])))


# ----------------------------------------------------------------------------- tolerance modes

def rounded_smooth():
    # J_S exact thirds; J_fw the float64 roundings of them (exactly, as dyadic rationals)
    js = [[F(1, 3), F(-2, 3), F(5, 7)], [F(1, 10), F(0), F(-9, 11)]]
    jfw = [[F(float(v)) for v in row] for row in js]
    return cert("SMOOTH_OK", 3, 2, tolerance=tol(F(1, 2**50), 0),
                J_fw=encode_matrix(jfw), J_S=encode_matrix(js))


def test_tolerance_mode_smooth_ok():
    c = rounded_smooth()
    res = accepted(c)
    assert "tolerance mode" in res.reason
    # the same data in exact mode is SMOOTH_WRONG: the roundings differ from the thirds
    rejected(mutate(c, ["tolerance"], None), "row 0 of D = J_fw - J_S is nonzero at column 0")
    accepted(mutate(mutate(c, ["tolerance"], None), ["verdict"], "SMOOTH_WRONG"))
    # one numerator of J_fw moved far: ||D[1]||_1 exceeds tol_1
    rejected(mutate(c, ["J_fw", "num", 4], lambda v: v + c["J_fw"]["den"] // 1000),
             "row 1 of D", "exceeds tol_1")
    # an atol alone can cover it
    big = mutate(c, ["J_fw", "num", 4], lambda v: v + c["J_fw"]["den"] // 1000)
    big["tolerance"] = tol(0, F(1, 500))
    accepted(big)


def test_tolerance_mode_smooth_wrong():
    c = mutate(rounded_smooth(), ["verdict"], "SMOOTH_WRONG")
    rejected(c, "no row of D", "not SMOOTH_WRONG")
    wrong = mutate(c, ["J_fw", "num", 0], lambda v: -v)
    res = accepted(wrong)
    assert "||D[0]||_1" in res.reason
    # with a witness: t = e_0, |D[0] t| = 2/3 > tol_0
    wrong["witness"] = {"output": 0, "t": encode_vector([1, 0, 0]), "columns": None}
    assert "witness" in accepted(wrong).reason
    rejected(mutate(wrong, ["witness", "t"], encode_vector([0, 1, 0])), "does not exceed")


def test_smooth_rejects_nonzero_tie_rows():
    c = mutate(rounded_smooth(), ["tie_rows"], ties([[0, 0, 0], [0, 1, 0]]))
    rejected(c, "tie row 1 of A is nonzero at column 1")
    accepted(mutate(c, ["tie_rows"], ties([[0, 0, 0]])))
    accepted(mutate(c, ["tie_rows"], ties([], cols=3)))
    rejected(mutate(rounded_smooth(), ["nonzero_tie_row"], encode_vector([0, 1, 0])),
             "nonzero_tie_row is given")


def associated_tolerance():
    # relu tie with float-rounded J_S: J_S = (1/3, -1/3) exact, J_fw = (0, 0) ... plus rounding
    # noise on the second output's smooth part
    js = [[F(1, 3), F(-1, 3), F(2, 3)], [F(1, 7), F(2, 7), F(3, 7)]]
    jfw = [[F(0), F(0), F(float(F(2, 3)))], [F(float(v)) for v in js[1]]]
    return cert("ASSOCIATED", 3, 2, tolerance=tol(F(1, 2**50), F(0)),
                J_fw=encode_matrix(jfw), J_S=encode_matrix(js),
                tie_rows=ties([[1, -1, 0]]), nonzero_tie_row=encode_vector([1, -1, 0]),
                Y=encode_matrix([[F(-1, 3)], [0]]))


def test_associated_tolerance_mode():
    c = associated_tolerance()
    res = accepted(c)
    assert "tolerance mode" in res.reason
    rejected(mutate(c, ["tolerance"], None), "row 0 of R = D - Y A is nonzero at column 2")
    rejected(mutate(c, ["Y", "num", 0], lambda v: v + 1), "row 0 of R = D - Y A", "exceeds tol_0")
    rejected(mutate(c, ["J_S", "num", 4], lambda v: v + 1), "row 1 of R = D - Y A", "exceeds")


# ----------------------------------------------------------------------------- NONLINEAR_VJP

def lin(kind, **kw):
    base = {"kind": kind, "u": None, "v": None, "c": None, "vjp_u": None, "vjp_v": None,
            "vjp_lhs": None, "tolerance": None}
    base.update(kw)
    return cert("NONLINEAR_VJP", 2, 2, linearity=base)


def test_nonlinear_zero():
    # a custom relu whose backward writes a constant at 0: VJP(0) = (1/2, 0)
    c = lin("zero", u=encode_vector([0, 0]), vjp_lhs=encode_vector([F(1, 2), 0]))
    assert "input 0" in accepted(c).reason
    rejected(mutate(c, ["linearity", "vjp_lhs", "num", 0], 0), "zero cotangent", "all zero")
    rejected(mutate(c, ["linearity", "kind"], "linear"), "linearity.kind")
    rejected(mutate(c, ["linearity", "vjp_lhs"], encode_vector([1])), "vjp_lhs", "length")


def test_nonlinear_scale():
    # VJP(2 u) = (3, 1) but 2 VJP(u) = (2, 1)
    c = lin("scale", u=encode_vector([1, 0]), c="2", vjp_u=encode_vector([1, F(1, 2)]),
            vjp_lhs=encode_vector([3, 1]))
    assert "input 0" in accepted(c).reason
    rejected(mutate(c, ["linearity", "vjp_lhs", "num", 0], 2), "equals c * vjp_u")
    assert "input 1" in accepted(mutate(c, ["linearity", "c"], "3")).reason   # (3, 3/2) vs (3, 1)
    rejected(mutate(c, ["linearity", "c"], 2), "linearity.c", "string")
    rejected(mutate(c, ["linearity", "u"], None), "linearity.u must be an object")


def test_nonlinear_additivity():
    u, v = encode_vector([1, 0]), encode_vector([0, 1])
    vu, vv = encode_vector([F(1, 2), 1]), encode_vector([F(1, 4), 2])
    c = lin("additivity", u=u, v=v, vjp_u=vu, vjp_v=vv, vjp_lhs=encode_vector([F(3, 4), 4]))
    assert "input 1" in accepted(c).reason          # 4 != 1 + 2
    rejected(mutate(c, ["linearity", "vjp_lhs", "num", 1], lambda v: v - 4),   # 4 -> 3
             "agrees with vjp_u + vjp_v")
    # tolerance: |4 - 3| = 1 is within atol 1, beyond atol 1/2
    rejected(mutate(c, ["linearity", "tolerance"], tol(0, 1)), "agrees", "tolerance mode")
    accepted(mutate(c, ["linearity", "tolerance"], tol(0, F(1, 2))))
    # rtol: 1 <= (1/3) * 3 is within, 1 > (1/4) * 3 is beyond
    rejected(mutate(c, ["linearity", "tolerance"], tol(F(1, 3), 0)), "agrees")
    accepted(mutate(c, ["linearity", "tolerance"], tol(F(1, 4), 0)))
    rejected(mutate(c, ["linearity", "vjp_v"], None), "linearity.vjp_v")
    rejected(mutate(c, ["linearity"], None), "linearity must be an object")


# ----------------------------------------------------------------------------- ROUNDING_BRANCH

def rounding():
    return cert("ROUNDING_BRANCH", 1, 1, rounding=[
        {"node": "relu_1", "exact": "1/3", "framework": "3/8"},
        {"node": "maxpool_0", "exact": "0", "framework": "-1/9007199254740992"},
    ])


def test_rounding_branch():
    res = accepted(rounding())
    assert "maxpool_0" in res.reason


def test_rounding_branch_corruptions():
    c = rounding()
    rejected(mutate(c, ["rounding", 1, "framework"], "0"), "different signs")
    rejected(mutate(c, ["rounding", 1, "exact"], "-1"), "different signs")
    accepted(mutate(c, ["rounding", 0, "framework"], "-3/8"))   # the other node flips instead
    rejected(mutate(c, ["rounding", 0, "exact"], "0.3"), "rounding[0].exact")
    rejected(mutate(c, ["rounding", 0, "node"], 3), "rounding[0].node")
    rejected(mutate(c, ["rounding"], []), "non-empty list")
    rejected(mutate(c, ["rounding"], None), "non-empty list")
    rejected(mutate(c, ["J_fw"], {"shape": [1, 2], "den": 1, "num": [0, 0]}), "J_fw", "shape")


# ----------------------------------------------------------------------------- JSON

def test_verify_json_text_bytes_and_path(tmp_path):
    c = relu_tie()
    text = json.dumps(c)
    assert verify_json(text).ok
    assert verify_json(text.encode()).ok
    p = tmp_path / "cert.json"
    p.write_text(text)
    assert verify_json(p).ok
    assert verify_json(str(p)).ok
    res = verify_json(tmp_path / "missing.json")
    assert not res.ok and "cannot read" in res.reason
    assert not verify_json("{not json").ok
    assert not verify_json(3).ok
    dup = text[:-1] + ', "n": 2}'
    res = verify_json(dup)
    assert not res.ok and "duplicate key" in res.reason
    nan = text.replace('"num": [0, 0]', '"num": [NaN, 0]', 1)
    assert nan != text
    assert not verify_json(nan).ok
    assert not verify_json("[" * 100000).ok


def test_big_ints_survive_json():
    js = [[F(random.Random(1).getrandbits(400), 2**400)]]
    c = cert("SMOOTH_OK", 1, 1, J_fw=encode_matrix(js), J_S=encode_matrix(js))
    assert verify_json(json.dumps(c)).ok


# ----------------------------------------------------------------------------- LeNet size

def test_lenet_size_tolerance_mode_y_null():
    rng = random.Random(0)
    m, n, bits = 10, 784, 300
    den = 2**bits
    js = [rng.randrange(-(2**bits), 2**bits) for _ in range(m * n)]
    # J_fw: J_S rounded to 53 significant bits relative to the entry
    jfw = [v + rng.randrange(-(abs(v) >> 53) - 1, (abs(v) >> 53) + 2) for v in js]
    c = cert("SMOOTH_OK", n, m, tolerance=tol(F(1, 2**50), 0),
             J_fw={"shape": [m, n], "den": den, "num": jfw},
             J_S={"shape": [m, n], "den": den * 3, "num": [3 * v for v in js]})
    res = accepted(c)
    assert f"all {m} rows" in res.reason
    # one entry pushed beyond the tolerance of its row
    bad = mutate(c, ["J_fw", "num", 7 * n + 500], lambda v: v + den // 2**40)
    rejected(bad, "row 7 of D", "exceeds tol_7")
    # and as ASSOCIATED with Y = null (R = D) it checks the same inequality
    assoc = mutate(c, ["verdict"], "ASSOCIATED")
    assoc["nonzero_tie_row"] = {"den": 1, "num": [0] * 783 + [1]}
    accepted(assoc)


def test_lenet_size_exact_with_y():
    rng = random.Random(1)
    m, n, k = 10, 784, 4
    a = [[rng.randrange(-(2**60), 2**60) for _ in range(n)] for _ in range(k)]
    y = [[F(rng.randrange(-100, 100), rng.randrange(1, 50)) for _ in range(k)] for _ in range(m)]
    js = [[F(rng.randrange(-(2**300), 2**300), 2**300) for _ in range(n)] for _ in range(m)]
    jfw = [[js[i][j] + sum(y[i][l] * a[l][j] for l in range(k)) for j in range(n)]
           for i in range(m)]
    c = cert("ASSOCIATED", n, m, J_fw=encode_matrix(jfw), J_S=encode_matrix(js),
             tie_rows=ties(a), nonzero_tie_row=encode_vector(a[0]), Y=encode_matrix(y))
    accepted(c)
    rejected(mutate(c, ["Y", "num", 9 * k + 2], lambda v: v + 1), "row 9 of R = D - Y A")


# ----------------------------------------------------------------------------- independence

def test_module_imports_only_the_standard_library():
    tree = ast.parse(MODULE.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            raise AssertionError("dynamic import")
    assert names <= {"__future__", "json", "math", "os", "re", "dataclasses", "fractions"}, names
    assert not names & {"mtcheck", "numpy", "flint", "torch", "z3"}


def test_module_loads_standalone():
    # loaded by path in a fresh interpreter: it pulls in no mtcheck, numpy, flint or torch
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cert', {str(MODULE)!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['cert'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('mtcheck', 'numpy', 'flint', 'torch', 'z3')]\n"
        "assert not bad, bad\n"
        "c = {'format': 'mtcheck-certificate', 'version': 1, 'verdict': 'ROUNDING_BRANCH',\n"
        "     'n': 1, 'm': 1, 'rounding': [{'node': 'r', 'exact': '0', 'framework': '1'}]}\n"
        "assert mod.verify(c).ok\n"
    )
    subprocess.run([sys.executable, "-I", "-c", code], check=True)


def test_rounding_certificate_with_an_enclosed_exact_discriminant():
    """An irrational exact discriminant is certified by its enclosure, which must exclude 0."""
    from mtcheck.certificate import verify

    cert = {"format": "mtcheck-certificate", "version": 1, "verdict": "ROUNDING_BRANCH", "n": 1, "m": 1,
            "rounding": [{"node": "relu#3 at x.py:1", "exact_enclosure": ["-3/1000", "-1/1000"],
                          "framework": "0"}]}
    assert verify(cert).ok
    bad = dict(cert, rounding=[{"node": "relu#3", "exact_enclosure": ["-1/1000", "1/1000"], "framework": "0"}])
    res = verify(bad)
    assert not res.ok and "contains 0" in res.reason

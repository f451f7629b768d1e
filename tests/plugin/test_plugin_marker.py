"""The marker: settings for one test, models= parametrization, unknown arguments rejected."""


def test_models_parametrize(tiny):
    tiny.makepyfile(test_models="""
        import pytest
        import tinymodels

        @pytest.mark.mtcheck(models={"good": tinymodels.make_good, "bad": "tinymodels:make_bad"}, max_examples=3)
        def test_models(mtcheck, mtcheck_model):
            mtcheck.fuzz(*mtcheck_model)
    """)
    res = tiny.runpytest("test_models.py", "-v", "--mtcheck-seed=2")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*test_models.py::test_models[[]good[]] PASSED*",
                              "*test_models.py::test_models[[]bad[]] FAILED*"])
    # the corpus case of the factory-made model records the factory, so a replay rebuilds it
    import json

    (case,) = (tiny.path / "mtcheck-corpus").glob("case-*.json")
    assert json.loads(case.read_text())["program"]["target"] == "tinymodels:make_bad"
    tiny.runpytest("mtcheck-corpus").assert_outcomes(passed=1)


def test_unknown_marker_argument_rejected(tiny):
    tiny.makepyfile(test_u="""
        import pytest
        @pytest.mark.mtcheck(max_exampels=3)
        def test_u(mtcheck):
            pass
    """)
    res = tiny.runpytest("test_u.py")
    assert res.ret != 0
    (res.stdout.str() + res.stderr.str()).index(
        "test_u.py::test_u: @pytest.mark.mtcheck got unknown argument(s) max_exampels; it accepts models, "
        "max_examples, dtype, seed, profile, fail_on")


def test_positional_marker_argument_rejected(tiny):
    tiny.makepyfile(test_p="""
        import pytest
        @pytest.mark.mtcheck(3)
        def test_p(mtcheck):
            pass
    """)
    res = tiny.runpytest("test_p.py")
    assert "@pytest.mark.mtcheck takes keyword arguments only" in res.stdout.str() + res.stderr.str()


def test_models_without_argument_rejected(tiny):
    tiny.makepyfile(test_n="""
        import pytest, tinymodels
        @pytest.mark.mtcheck(models=[tinymodels.make_good])
        def test_n(mtcheck):
            pass
    """)
    res = tiny.runpytest("test_n.py")
    assert "parametrizes the mtcheck_model argument, which this test does not take" in \
        res.stdout.str() + res.stderr.str()


def test_fail_on_and_dtype(tiny):
    tiny.makepyfile(test_f="""
        import pytest, torch, tinymodels

        @pytest.mark.mtcheck(fail_on=["ASSOCIATED"], dtype="float32", max_examples=2)
        def test_f(mtcheck):
            mtcheck.fuzz(tinymodels.GoodNet(), torch.zeros(4, dtype=torch.float64))
    """)
    res = tiny.runpytest("test_f.py")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*mtcheck: ASSOCIATED gradient in GoodNet*", "*case      the example inputs as given*"])

"""Loading the plugin imports neither torch nor z3 (nor Hypothesis): projects that never use mtcheck
pay nothing."""

HEAVY = ("torch", "z3", "hypothesis", "safetensors")


def test_plugin_load_is_light(pytester):
    pytester.makeconftest("""
        import sys
        def pytest_configure(config):
            assert config.pluginmanager.hasplugin("mtcheck")
        def pytest_collection_finish(session):
            heavy = [m for m in %r if m in sys.modules]
            print("HEAVY:", heavy)
    """ % (HEAVY,))
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    res = pytester.runpytest_subprocess("-s", "-p", "no:hypothesispytest", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["mtcheck: seed *", "*HEAVY: []*"])


def test_plugin_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, mtcheck.pytest_plugin; heavy = [m for m in %r if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)" % (HEAVY,))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_markers_documented(pytester):
    res = pytester.runpytest("--markers")
    res.stdout.fnmatch_lines(["@pytest.mark.mtcheck(*, models=None, max_examples=None, dtype=None, seed=None, "
                              "profile=None, fail_on=None)*"])


def test_options_in_one_group(pytester):
    res = pytester.runpytest("--help")
    res.stdout.fnmatch_lines(["mtcheck: exact gradient checks at ties:", "*--mtcheck-seed=N*", "*--mtcheck-profile=NAME*",
                              "*--mtcheck-corpus=DIR*", "*--mtcheck-show-statistics*", "*--mtcheck-update-corpus*"])

"""Two processes writing the same case at once leave one intact file (temp file + os.replace)."""

import subprocess
import sys
import textwrap

from mtcheck.corpus import iter_cases, load_case

WRITER = textwrap.dedent('''
    import sys, torch, mtcheck
    from mtcheck.corpus import case_from_report, save_case
    from mtcheck.zoo import ZOO
    fn, inputs = ZOO["mlp"](sizes=(8, 16, 4))       # weights: a safetensors sidecar too
    rep = mtcheck.check(fn, *inputs, neighbours=False, forward_mode=False)
    case = case_from_report("zoo:mlp", inputs, rep, 0, program=fn, options={"neighbours": False},
                            origin={"writer": sys.argv[2]})
    print("ready", flush=True)
    sys.stdin.readline()                             # start together
    for i in range(int(sys.argv[3])):
        save_case(sys.argv[1], case)
    print("done", flush=True)
''')


def test_two_processes_same_case(tmp_path):
    corpus = tmp_path / "corpus"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(corpus), name, "40"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and "done" in out
    files = sorted(f.name for f in corpus.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".safetensors"), files
    (path, case), = list(iter_cases([corpus]))
    assert not isinstance(case, Exception), case
    assert case.origin["writer"] in ("a", "b") and case.weights
    assert load_case(path).case_id == path.stem[len("case-"):]

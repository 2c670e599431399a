"""Process start of the `ebpf` command: a subcommand imports only its own module, and the
full parser (help, unknown words) still offers every subcommand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires

from ebpf.cli import main
from ebpf.cli.main import NOUNS

# (reported at exit: run as the program, `ebpf load` ends the process itself)
PROBE = """
import atexit, sys
from ebpf.cli import main
def report():
    seen = {"cli": sorted(m for m in sys.modules if m.startswith("ebpf.cli")),
            "logging": "logging" in sys.modules, "signal": "signal" in sys.modules,
            "json": "json" in sys.modules, "argparse": "argparse" in sys.modules,
            "lazy": sorted(m for m in ("ebpf._sys.types_cmd", "ebpf._sys.types_attach",
                                       "ebpf.spec.flags") if m in sys.modules),
            "unused": [m for m in ("ebpf.errors._lazy", "ebpf._sys.btfinfo") if m in sys.modules]}
    import json
    print(json.dumps(seen), file=sys.stderr)
atexit.register(report)
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def obj() -> str:
    return str(compile_bpf("loader_globals"))


def run_fresh(*argv: str) -> dict[str, object]:
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                       timeout=60)
    result: dict[str, object] = json.loads(r.stderr.strip().splitlines()[-1])
    result["rc"] = r.returncode
    return result


@pytest.mark.parametrize("argv", [("load", "/nonexistent.o"), ("-j", "load", "/nonexistent.o")])
def test_a_subcommand_imports_only_its_module(argv: tuple[str, ...]) -> None:
    d = run_fresh(*argv)
    assert d["rc"] == 1  # the object does not exist: one error line, exit status 1
    assert d["cli"] == ["ebpf.cli", "ebpf.cli.load", "ebpf.cli.main"]


@pytest.mark.hostonly  # a process's imports and exit: the same on every kernel
@requires("program_type:SYSCALL", min_kernel="5.14")
def test_loading_imports_no_logging(obj: str) -> None:
    """`ebpf load` of an object that loads cleanly imports neither `logging`, `signal`,
    `json` nor the other subcommands (process start)."""
    d = run_fresh("load", obj)
    assert d["rc"] == 0
    assert d["logging"] is False and d["signal"] is False
    assert d["json"] is False  # the plain-text report needs no json
    assert d["argparse"] is False  # `load OBJECT` is parsed by load.plain_args
    assert d["cli"] == ["ebpf.cli", "ebpf.cli.load", "ebpf.cli.main"]
    # nor makes the Cmd, AttachType (a program without an expected attach type), MapFlags
    # and ProgramFlags enums
    assert d["lazy"] == []
    assert d["unused"] == []  # the error classes and BTF info no load uses


PLAIN = [("load", "x.o"), ("-j", "load", "x.o"), ("--json", "load", "x.o"),
         ("load", "--json", "x.o"), ("load", "x.o", "-j", "--each"),
         ("-j", "--json", "load", "--each", "x.o", "--each"), ("load", "load"), ("load", "")]
ARGPARSE_ONLY = [("load",), ("load", "a.o", "b.o"), ("load", "x.o", "--set", "a=1"),
                 ("load", "x.o", "--btf", "v"), ("load", "x.o", "--btf=v"),
                 ("load", "x.o", "--ea"), ("load", "--", "x.o"), ("load", "-x.o"),
                 ("load", "--help"), ("-h", "load", "x.o"), ("--version", "load", "x.o"),
                 ("prog", "load", "x.o"), ("load", "x.o", "-k")]


@pytest.mark.parametrize("argv", PLAIN)
def test_plain_load_args_are_what_argparse_makes(argv: tuple[str, ...]) -> None:
    from ebpf.cli import load  # the subcommand module under test
    from ebpf.cli.main import build_parser

    plain = load.plain_args(argv)
    assert plain is not None
    assert vars(plain) == vars(build_parser(("load",)).parse_args(argv))


@pytest.mark.parametrize("argv", ARGPARSE_ONLY)
def test_other_load_spellings_go_to_argparse(argv: tuple[str, ...]) -> None:
    from ebpf.cli import load  # the subcommand module under test

    assert load.plain_args(argv) is None


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for noun in NOUNS:
        assert noun in out


def test_an_unknown_subcommand_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["lod", "x.o"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'lod'" in err and "'load'" in err and "'prog'" in err


def test_lazy_names_of_the_package() -> None:
    import ebpf.cli as cli  # the package itself, for its lazily served names

    assert cli.load_object.__module__ == "ebpf.cli.load"
    assert cli.inspect_spec.__module__ == "ebpf.cli.inspect"
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = cli.no_such_name


LOG_PROBE = """
import sys
from ebpf._sys import log
log.debug("quiet %d", 1)
log.info("quiet too")
print("logging" in sys.modules, file=sys.stdout)
log.warning("shown %s", "here")
print("logging" in sys.modules, file=sys.stdout)
"""


def test_the_logger_imports_logging_only_when_a_record_can_be_shown() -> None:
    r = subprocess.run([sys.executable, "-c", LOG_PROBE], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.split() == ["False", "True"]
    assert r.stderr.strip() == "shown here"   # logging's last-resort handler


def test_the_logger_is_the_ebpf_logger(caplog: pytest.LogCaptureFixture) -> None:
    from ebpf._sys import log  # the module under test

    with caplog.at_level("DEBUG", logger="ebpf"):
        log.debug("d %d", 1)
        log.info("i")
        log.warning("w %s", "x")
    got = [(r.name, r.levelname, r.getMessage(), r.funcName) for r in caplog.records]
    assert got == [("ebpf", "DEBUG", "d 1", "test_the_logger_is_the_ebpf_logger"),
                   ("ebpf", "INFO", "i", "test_the_logger_is_the_ebpf_logger"),
                   ("ebpf", "WARNING", "w x", "test_the_logger_is_the_ebpf_logger")]



EXIT_PROBE = """
import atexit, gc, sys
# registered first, so it runs last: after what `ebpf load` registered
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0,
                              "threshold:", gc.get_threshold()[0], file=sys.stderr))
from ebpf.cli import main
rc = main(sys.argv[1:])
print("returned from main", file=sys.stderr)
sys.exit(rc)
"""


# the gc threshold when the subcommand's modules are first imported (a script whose `main`
# is ours: the `ebpf` command)
GC_PROBE = """
import gc, sys
from ebpf.cli import main
class Seen:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name in ("ebpf.cli.common", "ebpf.cli.load", "ebpf.cli.inspect"):
            print(name, gc.get_threshold()[0], file=sys.stderr)
        return None
sys.meta_path.insert(0, Seen)
sys.exit(main(sys.argv[1:]))
"""


def test_load_raises_the_gc_threshold_before_its_imports(tmp_path: Path) -> None:
    """Run as the command, `load` has its gc threshold from the first import of its
    subcommand's modules on (no young collection while they load); another subcommand
    keeps gc's."""
    def seen(*argv: str) -> list[str]:
        r = subprocess.run([sys.executable, "-c", GC_PROBE, *argv], capture_output=True,
                           text=True, timeout=60)
        return [ln for ln in r.stderr.splitlines() if ln.startswith("ebpf.cli.")]

    default = __import__("gc").get_threshold()[0]
    assert seen("load", str(tmp_path / "no.o")) == ["ebpf.cli.load 20000"]
    assert seen("inspect", str(tmp_path / "no.o")) == [f"ebpf.cli.inspect {default}",
                                                       f"ebpf.cli.common {default}"]


@pytest.mark.hostonly  # a process's imports and exit: the same on every kernel
@requires("program_type:RAW_TRACEPOINT", min_kernel="4.17")
def test_load_ends_the_process_after_the_exit_handlers(tmp_path: Path) -> None:
    """`ebpf load` run as the program keeps gc's raised threshold until the end and
    then ends the process itself (no interpreter teardown): its output and status
    are what they were, the atexit handlers ran (the BTF index cache written, the
    objects frozen for an exit that does not end early)."""
    obj = str(compile_bpf("core_fields"))
    cache = tmp_path / "cache"
    env = dict(os.environ, EBPF_BTF_CACHE=str(cache))
    r = subprocess.run([sys.executable, "-c", EXIT_PROBE, "load", obj], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(line.split()[-1] == "ok" for line in lines)
    assert "returned from main" not in r.stderr
    assert "frozen at exit: True threshold: 20000" in r.stderr
    assert any(p.name.endswith(".idx") for p in cache.iterdir())  # the cache writer ran
    bad = subprocess.run([sys.executable, "-c", EXIT_PROBE, "load", str(tmp_path / "no.o")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 1 and "cannot open" in bad.stderr
    assert "returned from main" not in bad.stderr


@requires("program_type:RAW_TRACEPOINT", min_kernel="4.17")
def test_load_called_from_code_leaves_gc_as_it_was(capsys: pytest.CaptureFixture[str]) -> None:
    """`main([...])` from other code (not the process's own command line) puts the gc
    threshold back and freezes nothing."""
    import gc

    obj = str(compile_bpf("core_fields"))
    before = gc.get_threshold()
    assert main(["load", obj]) == 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert "ok" in capsys.readouterr().out

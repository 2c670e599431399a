"""What a user installs: the wheel carries the package's types (py.typed: mypy checks
calls against them), the license, the classifiers and no runtime dependencies; the sdist
carries what its tests need; `ebpf --version` is the package's version."""

from __future__ import annotations

import email
import os
import pathlib
import subprocess
import sys
import tarfile
import venv
import zipfile

import pytest

import ebpf

REPO = pathlib.Path(__file__).resolve().parent.parent


def _build(kind: str, out: pathlib.Path) -> pathlib.Path:
    """Build the wheel (pip wheel, which gets setuptools and wheel for its isolated build
    environment as configured for pip) or the sdist (setuptools' build_sdist) into `out`."""
    if kind == "wheel":
        subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q",
                        "-w", str(out)],
                       check=True, capture_output=True, cwd=out)
        return next(out.glob("ebpf-*.whl"))
    code = ("import sys; from setuptools import build_meta as b; "
            "print(b.build_sdist(sys.argv[1]))")
    r = subprocess.run([sys.executable, "-c", code, str(out)], check=True,
                       capture_output=True, text=True, cwd=REPO)
    return out / r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, pathlib.Path]:
    """(the wheel, a plain venv with mypy installed): mypy is installed while the wheel
    builds. The venv has no pip of its own: this interpreter's pip installs into it."""
    env_dir = tmp_path_factory.mktemp("env") / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = str(env_dir / "bin" / "python")
    mypy = subprocess.Popen([sys.executable, "-m", "pip", "--python", py, "install", "-q",
                             "mypy"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wheel = _build("wheel", tmp_path_factory.mktemp("wheel"))
    finally:
        out, _ = mypy.communicate()
    assert mypy.returncode == 0, out
    return wheel, env_dir


@pytest.fixture(scope="module")
def wheel(built: tuple[pathlib.Path, pathlib.Path]) -> pathlib.Path:
    return built[0]


def test_wheel_metadata(wheel: pathlib.Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(meta_name))
        license_text = next(z.read(n) for n in names if n.endswith("/LICENSE"))
    assert "ebpf/py.typed" in names
    assert b"MIT License" in license_text and b"the ebpf authors" in license_text
    assert meta["Version"] == ebpf.__version__
    assert meta["License"] == "MIT"
    assert meta.get_all("Requires-Dist") is None or all(
        "extra ==" in r for r in meta.get_all("Requires-Dist"))      # no runtime deps
    classifiers = meta.get_all("Classifier")
    for c in ("Operating System :: POSIX :: Linux", "Typing :: Typed",
              "Topic :: System :: Operating System Kernels :: Linux",
              *(f"Programming Language :: Python :: 3.{v}" for v in (10, 11, 12, 13))):
        assert c in classifiers
    assert not any(n.startswith(("tests/", "tools/")) for n in names)


def test_installed_wheel_is_typed(built: tuple[pathlib.Path, pathlib.Path],
                                  tmp_path: pathlib.Path) -> None:
    """mypy, in a plain venv holding only the wheel (and mypy), reports a wrong
    argument to `ebpf.Map` from the package's own annotations."""
    wheel, env_dir = built
    py = str(env_dir / "bin" / "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    user = tmp_path / "user.py"
    user.write_text("import ebpf\n\n"
                    "m = ebpf.Map(\"not a spec\")\n"
                    "n: int = ebpf.Map.from_id(1).name\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    r = subprocess.run([py, "-m", "mypy", "--strict", "--no-incremental", str(user)],
                       capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'Argument 1 to "Map" has incompatible type "str"; expected "MapSpec"' in r.stdout
    assert 'Incompatible types in assignment (expression has type "str", variable has ' \
           'type "int")' in r.stdout
    assert "missing library stubs or py.typed marker" not in r.stdout
    r = subprocess.run([py, "-c", "import ebpf, sys; sys.stdout.write(ebpf.__file__)"],
                       capture_output=True, text=True, cwd=tmp_path, env=clean, check=True)
    assert r.stdout.startswith(str(env_dir))          # the installed copy, not the checkout
    r = subprocess.run([str(env_dir / "bin" / "ebpf"), "--version"], capture_output=True,
                       text=True, env=clean, check=True)
    assert r.stdout == f"ebpf {ebpf.__version__}\n"


def test_sdist_has_what_the_tests_need(tmp_path: pathlib.Path) -> None:
    sdist = _build("sdist", tmp_path)
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for needed in ("LICENSE", "pyproject.toml", "tests/conftest.py", "tests/bpfbuild.py",
                   "tests/bpf/cli_objects.c", "tests/kernelmatrix/__init__.py",
                   "tools/gen_sys.py", "ebpf/py.typed"):
        assert needed in names, needed
    sources = {p.name for p in (REPO / "tests" / "bpf").glob("*.c")}
    assert sources <= {n.removeprefix("tests/bpf/") for n in names}
    assert not any("__pycache__" in n or n.endswith((".pyc", ".o")) for n in names)

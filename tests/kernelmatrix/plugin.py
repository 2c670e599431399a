"""pytest plugin of the kernel matrix: `requires` enforcement and JSON results.

Load it with ``-p kernelmatrix.plugin`` (tests/ on sys.path, as tools/vm does) or
``pytest_plugins = ["kernelmatrix.plugin"]`` in tests/conftest.py.

Options:
  --kmatrix-json PATH     write the run's results as JSON (kernel, per-test outcome and
                          skip/failure reason, counts); PATH.partial gets one JSON line
                          per test as it starts/ends, so a run that crashes the kernel
                          still shows how far it got.
  --kmatrix-allow-skips   do not turn skips of `requires`-declared tests into failures.
"""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import json
import os
import platform
import sys
import time
import typing
from collections.abc import Callable
from typing import Any

import pytest

from . import MARKER, config_enabled, kernel_config, kernel_release, kernel_version
from . import parse_version as _parse_version

_OWNER = "_kmatrix_owner"


def _mine(config: pytest.Config) -> bool:
    # The plugin may be imported under two names (tests.kernelmatrix.plugin and
    # kernelmatrix.plugin); only the first registered copy acts.
    return getattr(config, _OWNER, None) == __name__


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kmatrix", "kernel matrix")
    try:
        group.addoption("--kmatrix-json", metavar="PATH", default=None,
                        help="write per-test results and the kernel's identity as JSON")
        group.addoption("--kmatrix-allow-skips", action="store_true", default=False,
                        help="let tests skip even where their `requires` says the kernel "
                             "must support the feature")
    except ValueError:  # already added by another copy of this plugin
        pass


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config, _OWNER, None) is None:
        setattr(config, _OWNER, __name__)
    if not _mine(config):
        return
    config.addinivalue_line(
        "markers",
        "kernel(feature=, min_kernel=, config=): the outcome depends on the running kernel; "
        "with arguments (kernelmatrix.requires) a skip where it must be supported fails")
    path = config.getoption("kmatrix_json", None)
    if path:
        config.stash[_collector_key] = _Collector(path)


# ---------------------------------------------------------------------------------------
# requires: skip where not expected, fail where a skip contradicts the declaration


def _decls(item: pytest.Item) -> list[dict[str, Any]]:
    # `kernel` markers with requires() arguments; a bare @pytest.mark.kernel has none.
    return [dict(m.kwargs) for m in item.iter_markers(MARKER) if "min_kernel" in m.kwargs]


def _expected(decl: dict[str, Any]) -> tuple[bool, str]:
    """Whether the running kernel must support the declared feature, and why."""
    mk = decl.get("min_kernel")
    if not mk:
        return False, "no min_kernel declared"
    if decl.get("refusable") and not os.environ.get("KMATRIX_GUEST"):
        return False, "kernels outside the matrix may refuse it by policy"
    if kernel_version() < _parse_version(mk):
        return False, f"kernel {kernel_release()} < {mk}"
    for opt in decl.get("config") or ():
        on = config_enabled(opt)
        if on is None:
            return False, f"kernel config unknown (cannot check {opt})"
        if not on:
            return False, f"{opt} is not set"
    return True, f"kernel {kernel_release()} >= {mk}" + (
        f" with {', '.join(decl['config'])}" if decl.get("config") else "")


def resolve_probe(feature: str) -> Callable[[], Any] | None:
    """A probe for a feature string, from ``ebpf.features`` (None if there is none).

    "ringbuf" -> have_ringbuf(); "map_type:RINGBUF" -> have_map_type(MapType.RINGBUF);
    "helper:KPROBE:get_func_ip" -> have_helper(ProgramType.KPROBE, HelperFunc.GET_FUNC_IP);
    "misc:<name>" -> have_misc("<name>"). Arguments are converted with the function's
    annotations (an enum member by its name as given, upper- or lower-cased). Free text with
    spaces is only a label.
    """
    if not feature or " " in feature:
        return None
    try:
        features = importlib.import_module("ebpf.features")
    except ImportError:
        return None
    kind, *names = feature.split(":")
    fn = getattr(features, "have_" + kind.replace("-", "_"), None)
    if not callable(fn):
        return None
    if not names:
        return fn if _no_required_args(fn) else None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    params = list(inspect.signature(fn).parameters.values())
    if len(names) > len(params):
        raise ValueError(f"feature {feature!r}: {fn.__name__} takes {len(params)} arguments")
    args: list[Any] = []
    for name, param in zip(names, params, strict=False):
        t = hints.get(param.name)
        if isinstance(t, type) and issubclass(t, enum.Enum):
            member = next((t[n] for n in (name, name.upper(), name.lower())
                           if n in t.__members__), None)
            if member is None:
                raise ValueError(f"feature {feature!r}: no {t.__name__}.{name}")
            args.append(member)
        else:
            args.append(name)
    return functools.partial(fn, *args)


def _probe(decl: dict[str, Any]) -> tuple[bool, str]:
    """Run the feature probe if there is one: (supported, detail)."""
    probe = decl.get("probe")
    name = decl.get("feature") or ""
    if probe is None:
        probe = resolve_probe(name)
    if probe is None:
        return True, ""
    try:
        ok = probe()
    except Exception as e:  # NotSupportedError: "missing, because"
        from ebpf.errors import NotSupportedError
        if isinstance(e, NotSupportedError):
            return False, str(e)
        raise
    what = getattr(probe, "__name__", None) or getattr(getattr(probe, "func", None),
                                                          "__name__", repr(probe))
    return bool(ok), "" if ok else f"{what}() says no"


def _no_required_args(fn: Any) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in sig.parameters.values())


def _describe(decl: dict[str, Any]) -> str:
    parts = [repr(decl["feature"])] if decl.get("feature") else []
    if decl.get("min_kernel"):
        parts.append(f"min_kernel={decl['min_kernel']!r}")
    if decl.get("config"):
        parts.append(f"config={list(decl['config'])!r}")
    return f"requires({', '.join(parts)})"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _mine(item.config):
        return
    for decl in _decls(item):
        what = decl.get("feature") or "this test"
        mk = decl.get("min_kernel")
        if mk and kernel_version() < _parse_version(mk):
            pytest.skip(f"{what} needs kernel >= {mk}, running {kernel_release()}")
        for opt in decl.get("config") or ():
            if config_enabled(opt) is False:
                pytest.skip(f"{what} needs {opt}, which kernel {kernel_release()} lacks")
        ok, detail = _probe(decl)
        if not ok:
            pytest.skip(f"kernel {kernel_release()} lacks {what}: {detail}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    if not _mine(item.config):
        return
    rep: pytest.TestReport = outcome.get_result()
    decls = _decls(item)
    if not decls:
        return
    rep.user_properties.append(("kmatrix_requires", [_describe(d) for d in decls]))
    if not rep.skipped or hasattr(rep, "wasxfail"):
        return
    if item.config.getoption("kmatrix_allow_skips", False):
        return
    # The test needs every declared feature: the kernel must run it only when it must
    # support all of them (one feature the kernel may lack allows the skip).
    verdicts = [(decl, *_expected(decl)) for decl in decls]
    if not all(must for _, must, _ in verdicts):
        return
    decl, _, why = verdicts[0]
    reason = _skip_reason(rep)
    rep.outcome = "failed"
    rep.longrepr = (
        f"{_describe(decl)}: this kernel must support it ({why}), "
        f"but the test skipped: {reason}")
    rep.user_properties.append(("kmatrix_unexpected_skip", reason))


def _skip_reason(rep: pytest.TestReport) -> str:
    lr = rep.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2]).removeprefix("Skipped: ")
    return str(lr)


# ---------------------------------------------------------------------------------------
# JSON results


class _Collector:
    def __init__(self, path: str) -> None:
        self.path = path
        self.start = time.time()
        self.tests: dict[str, dict[str, Any]] = {}
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self.partial = open(path + ".partial", "w", buffering=1)

    def event(self, **kw: Any) -> None:
        try:
            self.partial.write(json.dumps(kw) + "\n")
            self.partial.flush()
        except (OSError, ValueError):
            pass

    def report(self, rep: pytest.TestReport) -> None:
        t = self.tests.setdefault(rep.nodeid, {"nodeid": rep.nodeid, "outcome": "passed",
                                               "duration": 0.0})
        t["duration"] = round(t["duration"] + rep.duration, 4)
        for k, v in rep.user_properties:
            if k == "kmatrix_requires":
                t["requires"] = v
        if rep.when == "call":
            if hasattr(rep, "wasxfail"):
                t["outcome"] = "xfailed" if rep.skipped else "xpassed"
                t["reason"] = rep.wasxfail
            elif rep.failed:
                t["outcome"] = "failed"
                t["reason"] = _short(rep)
            elif rep.skipped:
                t["outcome"] = "skipped"
                t["reason"] = _skip_reason(rep)
        elif rep.skipped and rep.when == "setup":
            t["outcome"] = "skipped"
            t["reason"] = _skip_reason(rep)
        elif rep.failed:
            # A failed setup/teardown is an error; a converted skip in setup is a failure.
            unexpected = any(k == "kmatrix_unexpected_skip" for k, _ in rep.user_properties)
            if t["outcome"] != "failed":
                t["outcome"] = "failed" if unexpected else "error"
                t["reason"] = _short(rep)
            if rep.when == "teardown":
                t["teardown"] = "error"

    def finish(self, exitstatus: int) -> None:
        counts: dict[str, int] = {}
        for t in self.tests.values():
            counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
        result = {
            "kernel": {
                "release": kernel_release(),
                "version": _read("/proc/version"),
                "machine": platform.machine(),
                "config_known": kernel_config() is not None,
                "guest": bool(os.environ.get("KMATRIX_GUEST")),
            },
            "python": sys.version.split()[0],
            "started": self.start,
            "duration": round(time.time() - self.start, 3),
            "exitstatus": int(exitstatus),
            "summary": counts,
            "tests": list(self.tests.values()),
        }
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.path)
        self.event(event="finished", exitstatus=int(exitstatus))
        self.partial.close()


def _short(rep: pytest.TestReport, limit: int = 2000) -> str:
    text = rep.longreprtext or ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # The last "E   ..." lines carry the assertion/exception; keep them and the location.
    err = [ln for ln in lines if ln.startswith("E ")]
    out = "\n".join(err[-15:]) if err else "\n".join(lines[-15:])
    return out[:limit]


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


_collector_key = pytest.StashKey[_Collector]()


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    c = _collector()
    if c:
        c.event(event="start", nodeid=nodeid, t=round(time.time() - c.start, 3))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    c = _collector()
    if c:
        c.report(report)
        if report.when == "teardown":
            t = c.tests.get(report.nodeid, {})
            c.event(event="end", nodeid=report.nodeid, outcome=t.get("outcome"))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    c = _collector()
    if c and report.failed:
        c.tests[report.nodeid or "<collection>"] = {
            "nodeid": report.nodeid or "<collection>", "outcome": "error",
            "reason": (report.longreprtext or "")[-2000:], "duration": 0.0}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    c = _collector()
    if c:
        c.finish(exitstatus)


_config: list[pytest.Config] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _config[:] = [session.config]


def _collector() -> _Collector | None:
    if not _config or not _mine(_config[0]):
        return None
    return _config[0].stash.get(_collector_key, None)

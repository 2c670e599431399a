"""Rules of the suite itself: a test skips only when the kernel lacks a feature; a missing
tool (clang, bpftool, gcc, llvm-objdump, ...) that tools/setup.sh installs fails the test
through the one helper `conftest.need_tool`, naming the tool and the setup command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import SETUP, need_tool

TESTS = Path(__file__).parent

# a skip whose condition or reason is about a tool rather than the kernel
_TOOL_SKIP = re.compile(
    r"(skipif\([^)]*shutil\.which|skip\([^)]*(bpftool|gcc|objdump|clang|readelf|"
    r"compiler|installed|tools?\b|sdt\.h|libbpf\.so|cpio|qemu|busybox))", re.IGNORECASE | re.DOTALL)


def test_missing_tool_fails_naming_it_and_the_setup_command() -> None:
    with pytest.raises(pytest.fail.Exception) as ei:
        need_tool("no-such-tool-ebpf")
    assert str(ei.value) == ("no-such-tool-ebpf is missing: install the test tools with "
                             f"`{SETUP}` (only a kernel that lacks a feature may skip a test)")
    assert SETUP == "sh tools/setup.sh"


def test_present_tools_and_files() -> None:
    assert need_tool("sh").endswith("/sh")
    assert need_tool("<a header>", present=True) == "<a header>"
    with pytest.raises(pytest.fail.Exception, match=r"^<a header> is missing"):
        need_tool("<a header>", present=False)


def test_no_test_skips_because_a_tool_is_missing() -> None:
    offenders = []
    for path in sorted(TESTS.glob("**/*.py")):
        if path.name in ("test_suite_rules.py",) or ".hypothesis" in path.parts:
            continue
        text = path.read_text()
        for m in _TOOL_SKIP.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            offenders.append(f"{path.relative_to(TESTS)}:{line}: {m.group(0)[:60]!r}")
    assert offenders == [], "use conftest.need_tool instead of skipping:\n" + "\n".join(offenders)

"""vbg imports on Windows and macOS as far as Python goes: no platform-only module at the top.

Two checks: a scan of the source (what each module imports when it is imported), and a fresh
interpreter that imports every vbg module while vbg's own modules are refused the Unix-only ones.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vbg
from vbg import stats

PACKAGE = Path(vbg.__file__).resolve().parent

# Standard-library modules that exist on Unix only (absent from Windows' Python).
UNIX_ONLY = frozenset(
    {
        "_posixshmem",
        "_posixsubprocess",
        "crypt",
        "curses",
        "fcntl",
        "grp",
        "nis",
        "ossaudiodev",
        "posix",
        "pty",
        "pwd",
        "readline",
        "resource",
        "spwd",
        "syslog",
        "termios",
        "tty",
    }
)
# And the other way round: these exist on Windows only.
WINDOWS_ONLY = frozenset({"_winapi", "msvcrt", "nt", "winreg", "winsound"})
PLATFORM_ONLY = UNIX_ONLY | WINDOWS_ONLY


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports_run_at_import_time(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every absolute import executed when the module is imported: those at
    the top, in module-level ``if``/``try``/``with`` blocks and in class bodies; not those inside
    functions, which run only when called."""
    found: list[tuple[int, str]] = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        else:
            pending.extend(ast.iter_child_nodes(node))
    return found


def test_the_scan_sees_what_it_should() -> None:
    source = textwrap.dedent(
        """
        import os, resource
        from fcntl import flock
        from . import sibling
        if os.name == "posix":
            import termios
        class Lock:
            import pwd
        def later():
            import grp
        """
    )
    names = {name for _, name in _imports_run_at_import_time(ast.parse(source))}
    assert names == {"os", "resource", "fcntl", "termios", "pwd"}


def test_no_platform_only_module_imported_at_the_top() -> None:
    modules = _modules()
    assert len(modules) > 10, f"found only {modules} under {PACKAGE}"
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in modules
        for line, name in _imports_run_at_import_time(ast.parse(path.read_text(encoding="utf-8")))
        if name.partition(".")[0] in PLATFORM_ONLY
    ]
    assert not offenders, (
        "platform-only modules imported when vbg is imported (import them inside the function "
        "that needs them, and say what happens where they are missing): " + "; ".join(offenders)
    )


# Run in a fresh interpreter: vbg's own import statements are refused the Unix-only modules (as
# on Windows) through builtins.__import__, which sees who imports. Third-party libraries (torch,
# numpy, cv2) may use some of them on Linux and are let through; a module already loaded by one
# of them is still refused to vbg, since the check is on the importer, not on sys.modules.
_IMPORT_ALL = textwrap.dedent(
    """
    import builtins, importlib, pkgutil, sys

    BLOCKED = set(sys.argv[1].split(","))
    real_import = builtins.__import__

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__") or ""
        if level == 0 and name.partition(".")[0] in BLOCKED and importer.partition(".")[0] == "vbg":
            raise ModuleNotFoundError(f"No module named {name!r} (as on Windows)", name=name)
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = guarded_import
    try:  # the guard itself must work, or the check below proves nothing
        exec("import resource", {"__name__": "vbg.probe"})
    except ModuleNotFoundError:
        pass
    else:
        sys.exit("the import guard let vbg import resource")
    exec("import resource", {"__name__": "numpy.probe"})  # third parties go through

    import vbg

    def failed(name):
        raise SystemExit(f"cannot import {name}: {sys.exc_info()[1]!r}")

    names = ["vbg"]
    for info in pkgutil.walk_packages(vbg.__path__, "vbg.", onerror=failed):
        if info.name.endswith(".__main__"):  # runs the program when imported
            continue
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            raise SystemExit(f"cannot import {info.name}: {exc!r}") from exc
    print(" ".join(names))
    """
)


def test_every_module_imports_without_unix_only_modules() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, ",".join(sorted(UNIX_ONLY))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PACKAGE.parent,
    )
    assert done.returncode == 0, "\n".join(done.stderr.strip().splitlines()[-5:])
    imported = set(done.stdout.split())
    expected = {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in _modules()
        if path.name != "__main__.py"
    }
    assert expected <= imported, f"not imported: {sorted(expected - imported)}"


def test_peak_rss_on_unix() -> None:
    if sys.platform == "win32":
        pytest.skip("Unix figure")
    assert stats.peak_rss_mb() > 10  # a Python with numpy loaded: tens of MiB at least


def test_peak_rss_without_resource_is_zero_meaning_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform == "win32":
        pytest.skip("Windows asks the system, not resource")
    monkeypatch.setitem(sys.modules, "resource", None)  # import resource raises ImportError
    assert stats.peak_rss_mb() == 0.0
    assert stats.Stats().to_dict()["peak_rss_mb"] == 0.0

"""Atomic writes for everything another session reads (issue 13, item 4).

A session starting beside a live one deletes registry records it cannot parse, xdist workers read
each other's outcomes, CI viewers reload the report, a filler child polls its status file: a
reader that meets half a file either crashes or, worse, throws away a live session's record so
its processes are never reaped. So every such file is written by ``datafile.write_atomic``
(temporary file in the same folder, then ``os.replace``). The source scan below lists every
place that writes a file: a new one fails the test until it uses the helper or is listed here
with the reason it needs none.
"""

from __future__ import annotations

import ast
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_ktinterf import datafile
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system import registry
from tests.source_scan import calls, dotted, package_modules

WRITES = {".write_text", ".write_bytes", "os.replace", "os.rename", ".rename", "shutil.copyfile",
          "shutil.copy", "shutil.copy2", "shutil.move", "os.open", ".touch", ".dump"}  # fmt: skip
# Every call in the package that writes, copies or renames a file itself (module, function, call),
# and why it need not go through datafile.write_atomic: a new one fails the test until it is
# looked at, and so does a shared file's writer turned back into a plain write.
NOT_SHARED = {
    ("datafile.py", "write_atomic", ".write_text"): "the helper itself",
    ("datafile.py", "write_atomic", "os.replace"): "the helper itself",
    ("datafile.py", "copy_atomic", "shutil.copy2"): "the helper for binaries",
    ("datafile.py", "copy_atomic", "os.replace"): "the helper for binaries",
    ("actors/filler_child.py", "main", ".write_text"): "/proc/self/oom_score_adj, a kernel file",
    ("system/cgroups.py", "_write", "open"): "cgroup control files, kernel files",
    ("system/processes.py", "_child_setup", "open"): "cgroup.procs, a kernel file",
    ("system/assets.py", "_locked", "open"): "the fetch lock: flocked, never written",
    ("system/assets.py", "download", "open"): "streamed to .part, checked, then renamed",
    ("system/assets.py", "download", ".replace"): "streamed to .part, checked, then renamed",
    ("system/assets.py", "fetch_model", "open"): "streamed to .part, checked, then renamed",
    ("system/assets.py", "fetch_model", ".replace"): "streamed to .part, checked, then renamed",
    ("system/assets.py", "_run_logged", "open"): "the build log, appended",
    ("system/assets.py", "build_llama_server", ".write_text"): "the build log, truncated at start",
    ("system/processes.py", "spawn", "open"): "a child's log, appended",
    ("system/docker_engine.py", "LogPump._run", "open"): "a container's log, appended",
    ("system/docker_engine.py", "start_local_daemon", "open"): "dockerd's log, appended",
    ("system/image.py", "_rootfs_tar", ".open"): "a tar archive in memory",
    ("system/lock.py", "hold", "open"): "the machine lock: flocked, never written",
    ("server/embedded.py", "embedded_server", "shutil.copyfile"): "the session's private weights copy",
    ("server/docker.py", "docker_server", "shutil.copyfile"): "the session's private weights copy",
}
SHARED_WRITERS = {  # each must call write_atomic
    ("system/registry.py", "write_record"),
    ("report/record.py", "write_record"),
    ("report/markdown.py", "write_markdown"),
    ("report/plots.py", "write_plots"),
    ("baseline/store.py", "BaselineFile.save"),
    ("experiment/outcomes.py", "write"),
    ("actors/filler_child.py", "_status"),
    ("actors/gpu_child.py", "write_ready"),
    ("actors/memory.py", "RamFiller._left_as_asked"),
    ("actors/memory.py", "RamFiller._extra_args"),
    ("actors/overflow.py", "HostOverflow._established"),
    ("system/assets.py", "build_llama_server"),  # the build stamp, the binary
}


def _file_writers() -> tuple[set[tuple[str, str, str]], set[tuple[str, str]]]:
    """(calls that write or rename files themselves, functions that call the atomic helpers)."""
    raw: set[tuple[str, str, str]] = set()
    atomic: set[tuple[str, str]] = set()
    for module, tree in package_modules().items():
        for where, call in calls(tree):
            name = dotted(call.func)
            if name in ("write_atomic", "copy_atomic"):
                atomic.add((module, where))
            mode = [a for a in [*call.args[1:2], *(k.value for k in call.keywords if k.arg == "mode")]]
            writes_open = name in ("open", ".open") and any(
                isinstance(m, ast.Constant) and set(str(m.value)) & set("wax+") for m in mode
            )
            renames = name == ".replace" and len(call.args) == 1 and not call.keywords  # not str.replace
            if name in WRITES or writes_open or renames:
                raw.add((module, where, name))
    return raw, atomic


def test_every_file_writer_is_known_and_shared_files_are_written_atomically():
    raw, atomic = _file_writers()
    assert sorted(raw - set(NOT_SHARED)) == []  # write through datafile.write_atomic, or list it
    assert sorted(set(NOT_SHARED) - raw) == []  # a listed writer that is gone: drop it from the list
    assert sorted(SHARED_WRITERS - atomic) == []


def test_write_atomic_never_shows_a_reader_half_a_file(tmp_path):
    path = tmp_path / "shared.json"
    texts = ["a" * 2**20, "b" * 2**20]
    datafile.write_atomic(path, texts[0])
    seen: set[int] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            text = path.read_text()
            seen.add(len(text))
            assert text in texts

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(60):
            datafile.write_atomic(path, texts[n % 2])
    finally:
        done.set()
        reader.join()
    assert seen == {2**20}
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]  # no temporary file left


def test_a_write_that_fails_half_way_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    datafile.write_atomic(path, "old")

    def broken(self: Path, text: str, **_: Any) -> int:
        with open(self, "w") as handle:
            handle.write(text[:2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", broken)
    with pytest.raises(OSError, match="No space"):
        datafile.write_atomic(path, "new content")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_starting_session_never_drops_a_live_sessions_record(tmp_path, monkeypatch):
    """The reaper deletes records it cannot parse; a record being rewritten must always parse."""
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(tmp_path))
    record = registry.write_record("live", {"pid": 1, "name": "server"})
    done = threading.Event()

    def rewrite() -> None:
        while not done.is_set():
            registry.write_record("live", {"pid": 1, "name": "server", "argv": ["x"] * 2000})

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(300):
            registry.orphaned_records()  # deletes unreadable records; ours is live (our pid)
            assert record.exists()
    finally:
        done.set()
        writer.join()


def test_a_state_folder_another_user_may_write_is_refused(tmp_path, monkeypatch):
    """Registry records are orders to kill: only this user may be able to write them."""
    state = tmp_path / "state"
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(state))
    assert registry.registry_dir() == state / "live"
    state.chmod(0o777)  # what a folder someone else made in /tmp may look like
    with pytest.raises(KtInterfError, match="not private to this user"):
        registry.registry_dir()
    state.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(state)
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(link))
    assert registry.registry_dir() == link / "live"  # our own link to our own folder is fine
    if os.geteuid() == 0:
        os.chown(state / "live", 65534, 65534)  # nobody's
        with pytest.raises(KtInterfError, match="owner uid 65534"):
            registry.registry_dir()


def test_a_session_with_a_foreign_state_folder_stops_with_one_line(pytester, tmp_path, monkeypatch):
    state = tmp_path / "shared-state"
    (state / "live").mkdir(parents=True)
    state.chmod(0o777)
    pytester.makepyfile("def test_nothing(kt_log_dir):\n    pass\n")
    monkeypatch.setenv("KTINTERF_STATE_DIR", str(state))
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*ktinterf: the state folder * is not private to this user*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_writer_killed_mid_write_leaves_nothing_after_the_cleanup(tmp_path):
    """Actors delete their status files with what a killed child's half-write left beside them."""
    status = tmp_path / "ram-filler.status"
    datafile.write_atomic(status, "ready 1")
    (tmp_path / ".ram-filler.status.4242.1.tmp").write_text("rea")  # SIGKILL mid-write
    (tmp_path / "other.log").write_text("kept")
    datafile.remove_with_temporaries(status)
    assert [p.name for p in tmp_path.iterdir()] == ["other.log"]

"""``python -m pytest_ktinterf``: set-up commands (fetch, docker), preset help, reaping by hand,
and the offline baseline comparison (compare)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from pytest_ktinterf.baseline import cli as baseline_cli
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system import assets
from pytest_ktinterf.system.reap import reap_leftovers


def _docker(cache: Path | None) -> None:
    """An engine that answers (started here if need be) and the tools image on it."""
    from pytest_ktinterf.system import docker_engine, image

    client = docker_engine.start_local_daemon(assets.cache_dir() / "dockerd.log")
    llama_server = assets.llama_server_path(cache)
    if not llama_server.is_file():
        raise KtInterfError(
            f"llama-server is not built yet ({llama_server})", "run python -m pytest_ktinterf fetch first"
        )
    stress_ng = image.which_stress_ng()
    if stress_ng is None:
        print("note: stress-ng is not installed, so the image has no actors (apt-get install stress-ng)")
    tag = image.build(client, llama_server, stress_ng)
    print(f"image: {tag} (also {image.default_tag()})")


def _presets(name: str | None) -> None:
    from pytest_ktinterf.server import presets

    for key in [name] if name else sorted(presets.PRESETS):
        print(presets.describe(key))
        print()


def _record_baseline(sessions: int, pytest_args: list[str]) -> int:
    """Several sessions, because one session cannot know how much sessions differ (baseline/gate.py).

    Each is a separate pytest process, as a CI job would be: a fresh server, fresh caches. A
    session whose tests failed (a hard claim) still measured, so it counts; an error or an
    interrupt stops the recording.
    """
    args = [a for a in pytest_args if a != "--"] or ["-m", "interference"]
    if sessions < 1:
        print("error: --sessions must be at least 1", file=sys.stderr)
        return 2
    for n in range(sessions):
        flag = "--kt-baseline-update" if n == 0 else "--kt-baseline-save"
        argv = [sys.executable, "-m", "pytest", flag, "--kt-baseline-sessions", str(sessions), *args]
        print(f"baseline session {n + 1}/{sessions}: pytest {' '.join(argv[3:])}", flush=True)
        code = subprocess.call(argv)
        if code not in (0, 1):
            print(f"error: session {n + 1} ended with exit code {code}; the baseline holds {n} of them",
                  file=sys.stderr)  # fmt: skip
            return code
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_ktinterf")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download the model and build llama-server into the cache")
    fetch.add_argument("--cache-dir", type=Path, default=None, help="default: $KTINTERF_CACHE or XDG cache")
    docker = sub.add_parser(
        "docker",
        help="make sure a Docker engine answers (as root, start dockerd --bridge=none --iptables=false "
        "if none does) and import the pytest-ktinterf/tools image (llama-server, stress-ng) into it",
    )
    docker.add_argument("--cache-dir", type=Path, default=None, help="where fetch put llama-server")
    show = sub.add_parser("presets", help="the KT server presets, their parameters and sources")
    show.add_argument("name", nargs="?", default=None)
    sub.add_parser("reap", help="kill processes and remove containers left by a crashed session")
    sub.add_parser(
        "leftovers",
        help="list what sessions that died left here (processes, cgroups, containers, weights copies, "
        "temporary files; run in the pytest rootdir), touching nothing; exit 1 when anything is left",
    )
    compare = sub.add_parser(
        "compare",
        help="judge a session (a report record or a baseline's newest) against a baseline file; "
        "exit 1 when it regressed",
    )
    baseline_cli.add_arguments(compare)
    record = sub.add_parser(
        "baseline",
        help="record this machine's baseline: N pytest sessions back to back, the first starting the "
        "file over (--kt-baseline-update), the others appending (--kt-baseline-save); pytest's "
        "arguments follow '--' (default: -m interference)",
    )
    record.add_argument("--sessions", type=int, default=3, help="how many sessions (default 3)")
    record.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "baseline":
        return _record_baseline(args.sessions, args.pytest_args)
    if args.command == "compare":
        return baseline_cli.run(args)  # reports its own errors, as "error: <cause>; <fix>"
    if args.command == "leftovers":
        from pytest_ktinterf.system.leftovers import list_leftovers

        found = list_leftovers(Path.cwd())
        for line in found:
            print(line)
        return 1 if found else 0
    try:
        if args.command == "fetch":
            server, model = assets.fetch(args.cache_dir)
            print(f"llama-server: {server}\nmodel:        {model}")
        elif args.command == "docker":
            _docker(args.cache_dir)
        elif args.command == "presets":
            _presets(args.name)
        else:
            from pytest_ktinterf.system.docker_engine import reap_containers

            for line in reap_leftovers() + reap_containers():
                print(f"reaped {line}")
    except KtInterfError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a server preset is, and how the ``key=value`` items of ``--kt-preset-args`` are checked.

The presets themselves (KT's documented command lines, their sources and defaults) are in
:mod:`pytest_ktinterf.server.presets`; this module holds what every preset shares: the
:class:`Preset` record, resolving a user's values against its parameters, the ``key=value`` parser,
the checks the command-line builders apply to single values, and the CPU-thread refusal.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_ktinterf.errors import KtInterfError

LOOPBACK = "127.0.0.1"
ARGS_OPTION = "--kt-preset-args"  # the option that carries 'key=value ...' items


@dataclass(frozen=True)
class PresetParam:
    """One value a user may (or, with ``default=None``, must) give as ``key=value``."""

    name: str
    help: str
    default: str | None  # None = required


Build = Callable[[Mapping[str, str], int, int], list[str]]


@dataclass(frozen=True)
class Preset:
    """A documented server command line with named holes, and how to run and await it."""

    name: str
    description: str
    image: str
    doc: str
    params: tuple[PresetParam, ...]
    shm_size: str | None
    needs_gpu: bool
    readiness: str  # "health" or "models"
    workdir: str | None  # the container's working directory (relative paths in the command)
    threads_param: str  # the parameter that sets KT's CPU threads ...
    threads_flag: str  # ... and the server flag it becomes
    build: Build = field(repr=False, compare=False)

    def param(self, key: str) -> PresetParam | None:
        return next((p for p in self.params if p.name == key), None)

    def resolve(self, values: Mapping[str, str]) -> dict[str, str]:
        """The user's values over the defaults; unknown keys and missing required ones refused."""
        names = [p.name for p in self.params]
        unknown = [key for key in values if key not in names]
        if unknown:
            listed = ", ".join(repr(key) for key in unknown)
            raise KtInterfError(
                f"{ARGS_OPTION}: {listed} not a parameter of preset {self.name}",
                f"use one of: {', '.join(names)}",
            )
        resolved = {p.name: p.default for p in self.params}
        resolved.update(values)
        missing = [p for p in self.params if resolved[p.name] is None]
        if missing:
            needs = "; ".join(f"{p.name}=... ({p.help})" for p in missing)
            example = " ".join(f"{p.name}=VALUE" for p in missing)
            raise KtInterfError(
                f"preset {self.name} needs {ARGS_OPTION} {needs}",
                f"pass {ARGS_OPTION} '{example}'",
            )
        return {key: value for key, value in resolved.items() if value is not None}

    def argv(
        self, values: Mapping[str, str], *, port: int, max_tokens: int, cores: int | None = None
    ) -> list[str]:
        """The server's command line for ``values`` (see :func:`preset_command`)."""
        if not 0 < port < 65536:
            raise KtInterfError(f"port {port} is not a TCP port", "use a port between 1 and 65535")
        if max_tokens < 1:
            raise KtInterfError(f"--kt-max-tokens {max_tokens} is below 1", "give --kt-max-tokens >= 1")
        argv = self.build(self.resolve(values), port, max_tokens)
        self._check_threads(argv, cores)
        return argv

    def _check_threads(self, argv: list[str], cores: int | None) -> None:
        """KT's CPU threads busy-wait: more of them than the server's cores collapses throughput
        (KT #726: 30 threads gave < 0.1 tok/s where 18 gave 2.86). Refused, not measured."""
        threads = int(argv[argv.index(self.threads_flag) + 1])
        if cores is not None and threads > cores:
            raise KtInterfError(
                f"preset {self.name}: {self.threads_param}={threads} CPU threads on the {cores} "
                f"core{'s' if cores != 1 else ''} the server is pinned to (--kt-server-cpus; the "
                "default is the last core): KT's threads busy-wait, and more threads than cores "
                "collapses throughput (KT issue #726)",
                f"pin the server to at least {threads} cores with --kt-server-cpus, or lower "
                f"{self.threads_param} in {ARGS_OPTION}",
            )


def parse_preset_args(pairs: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` to a dict; the value may be empty or hold ``=`` and spaces."""
    values: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key or any(ch.isspace() for ch in key):
            raise KtInterfError(
                f"{ARGS_OPTION} item {item!r} is not key=value",
                f"write each item as key=value, e.g. {ARGS_OPTION} 'model_path=/models/DeepSeek-R1'",
            )
        if key in values:
            raise KtInterfError(
                f"{ARGS_OPTION} gives {key!r} twice ({values[key]!r} and {value!r})",
                f"keep one {key}=... item",
            )
        values[key] = value
    return values


def whole_number(preset: str, values: Mapping[str, str], key: str, minimum: int) -> int:
    text = values[key]
    try:
        number = int(text)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise KtInterfError(
            f"{ARGS_OPTION} {key}={text!r} (preset {preset}) is not a whole number >= {minimum}",
            f"give {key} as a whole number >= {minimum}",
        )
    return number


def fraction(preset: str, values: Mapping[str, str], key: str) -> str:
    text = values[key]
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not 0.0 < number <= 1.0:
        raise KtInterfError(
            f"{ARGS_OPTION} {key}={text!r} (preset {preset}) is not a fraction in (0, 1]",
            f"give {key} as a number such as 0.92",
        )
    return text  # as given, so the command reads like the doc's


def switch(preset: str, values: Mapping[str, str], key: str) -> bool:
    text = values[key].strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise KtInterfError(
        f"{ARGS_OPTION} {key}={values[key]!r} (preset {preset}) is not true or false",
        f"give {key}=true or {key}=false",
    )


def extra_flags(preset: str, values: Mapping[str, str], owned: Sequence[str]) -> list[str]:
    """More flags appended verbatim; those the plugin must own (host, port, ...) refused."""
    try:
        words = shlex.split(values["extra"])
    except ValueError as exc:
        raise KtInterfError(
            f"{ARGS_OPTION} extra={values['extra']!r} (preset {preset}) cannot be parsed ({exc})",
            "check its quoting",
        ) from exc
    for word in words:
        flag = word.split("=", 1)[0]
        if flag in owned:
            raise KtInterfError(
                f"{ARGS_OPTION} extra sets {flag} (preset {preset}), which the plugin sets itself",
                f"drop {flag} from extra ({', '.join(owned)} are fixed: loopback host, the "
                "plugin's port, --kt-max-tokens)",
            )
    return words

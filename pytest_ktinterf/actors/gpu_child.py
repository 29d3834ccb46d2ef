"""The program a GPU actor runs: hold device memory, or keep the GPU busy at a duty cycle.

Why a separate process: the GPU work must be a different CUDA context from pytest's (which never
touches CUDA), so killing its process group is enough to give every byte and every SM back, and a
crash or a driver error in it cannot take the test session down. Why a program of our own rather
than a stress tool: it needs nothing but PyTorch or CuPy, which a machine serving an LLM usually
has, and it allocates with *plain* device allocations (the frameworks' ``cudaMalloc`` allocators),
never managed/unified memory, which could oversubscribe the card and hang it rather than fail.

Protocol with the parent (:mod:`pytest_ktinterf.actors.gpu`): the parent passes ``--ready-file``;
once the pressure has been set up (memory allocated and written, or the matrix products warmed up
and calibrated) the child writes a JSON record there atomically (write then rename) and keeps the
pressure until it is killed or ``--max-seconds`` pass. Failures are one line on stderr (the
actor's log) and a non-zero exit code. Torch and CuPy are imported only inside the functions that
need them, so this module imports (and its pure functions run in tests) without either.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_ktinterf.datafile import write_atomic

EXIT_NO_BACKEND = 3
EXIT_GPU_FAILURE = 4
DEFAULT_PERIOD_S = 0.1
BATCH_TARGET_S = 0.005  # enqueue about this much work between synchronisations


class ChildError(Exception):
    """A failure that ends the child with ``code`` and one line on stderr."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- pure logic (tested without a GPU) -------------------------------------------------------


def busy_seconds(duty_percent: int, period_s: float) -> float:
    """How long to compute in each period for ``duty_percent`` (1..100)."""
    if not 1 <= duty_percent <= 100:
        raise ValueError(f"duty_percent must be in 1..100, got {duty_percent}")
    return period_s * duty_percent / 100


def batch_for(seconds_per_step: float, busy_s: float, target_s: float = BATCH_TARGET_S) -> int:
    """How many matrix products to enqueue between synchronisations.

    Enough that synchronising is cheap next to the work, few enough that one batch overshoots the
    busy part of a period by a small fraction of it (at most a quarter of it).
    """
    if seconds_per_step <= 0:
        return 1000
    budget = min(target_s, busy_s / 4)
    return max(1, min(1000, int(budget / seconds_per_step)))


def duty_cycle(
    work: Callable[[], None],
    *,
    duty_percent: int,
    period_s: float,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run ``work`` (one synchronised batch) for ``duty_percent`` of every period until ``deadline``.

    ``work`` must return only when the device has finished what it enqueued, so the clock measures
    real GPU time and not the time to enqueue.
    """
    busy = busy_seconds(duty_percent, period_s)
    while True:
        start = clock()
        if start >= deadline:
            return
        while clock() - start < busy:
            work()
        rest = period_s - (clock() - start)
        if rest > 0:
            sleep(rest)


def write_ready(path: Path, record: dict[str, Any]) -> None:
    """Write the readiness record atomically: the parent sees it whole or not at all."""
    write_atomic(path, json.dumps(record))


# --- backends ----------------------------------------------------------------------------------


class Backend:
    """What the child needs from a GPU framework; subclasses wrap torch or CuPy."""

    name = "none"

    def identity(self) -> dict[str, str]:
        """How the parent can check that NVML and the framework mean the same GPU."""
        return {}

    def hold(self, nbytes: int) -> object:
        """Allocate ``nbytes`` of plain device memory, write every byte, and return the buffer."""
        raise NotImplementedError

    def matmul(self, size: int, dtype: str) -> Callable[[], None]:
        """Set up two ``size`` x ``size`` operands and return a function that enqueues a product."""
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, index: int) -> None:
        import torch

        if not torch.cuda.is_available():
            raise ChildError(
                f"PyTorch {torch.__version__} sees no CUDA device (CPU-only build, or no driver)",
                EXIT_NO_BACKEND,
            )
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise ChildError(
                f"PyTorch sees {count} CUDA device(s); cuda:{index} does not exist", EXIT_GPU_FAILURE
            )
        self.torch = torch
        self.device = torch.device(f"cuda:{index}")
        torch.cuda.set_device(self.device)
        self.props = torch.cuda.get_device_properties(self.device)

    def identity(self) -> dict[str, str]:
        uuid = getattr(self.props, "uuid", None)
        return {"uuid": str(uuid)} if uuid is not None else {}

    def hold(self, nbytes: int) -> object:
        buf = self.torch.empty(nbytes, dtype=self.torch.uint8, device=self.device)
        buf.fill_(0xA5)  # touch every page: an untouched allocation may not be resident
        self.synchronize()
        return buf

    def matmul(self, size: int, dtype: str) -> Callable[[], None]:
        torch = self.torch
        kind = getattr(torch, dtype)
        a = torch.randn(size, size, device=self.device, dtype=kind)
        b = torch.randn(size, size, device=self.device, dtype=kind)
        out = torch.empty(size, size, device=self.device, dtype=kind)

        def step() -> None:
            torch.matmul(a, b, out=out)

        return step

    def synchronize(self) -> None:
        self.torch.cuda.synchronize(self.device)


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, index: int) -> None:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        if not 0 <= index < count:
            raise ChildError(
                f"CuPy sees {count} CUDA device(s); device {index} does not exist", EXIT_GPU_FAILURE
            )
        self.cupy = cupy
        self.device = cupy.cuda.Device(index)
        self.device.use()

    def identity(self) -> dict[str, str]:
        return {"pci": str(self.device.pci_bus_id)}

    def hold(self, nbytes: int) -> object:
        # The default CuPy pool allocates with cudaMalloc: plain device memory, never managed.
        buf = self.cupy.empty(nbytes, dtype=self.cupy.uint8)
        buf.fill(0xA5)
        self.synchronize()
        return buf

    def matmul(self, size: int, dtype: str) -> Callable[[], None]:
        cupy = self.cupy
        a = cupy.random.standard_normal((size, size), dtype=cupy.float32).astype(dtype)
        b = cupy.random.standard_normal((size, size), dtype=cupy.float32).astype(dtype)
        out = cupy.empty((size, size), dtype=dtype)

        def step() -> None:
            cupy.matmul(a, b, out=out)

        return step

    def synchronize(self) -> None:
        self.device.synchronize()


BACKENDS: dict[str, type[Backend]] = {"torch": TorchBackend, "cupy": CupyBackend}


def load_backend(preferred: str, index: int) -> Backend:
    """The first of torch, CuPy (or only ``preferred``) that imports and sees device ``index``."""
    names = list(BACKENDS) if preferred == "auto" else [preferred]
    failures: list[str] = []
    for name in names:
        try:
            return BACKENDS[name](index)
        except ImportError as exc:
            failures.append(f"{name}: not importable ({exc})")
        except ChildError as exc:
            if exc.code != EXIT_NO_BACKEND:
                raise
            failures.append(f"{name}: {exc}")
        except Exception as exc:  # a broken CUDA install raises anything from either framework
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    raise ChildError("no usable GPU framework -- " + "; ".join(failures), EXIT_NO_BACKEND)


# --- the two programs --------------------------------------------------------------------------


def _hold_until(deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(1.0, left))


def run_memory(args: argparse.Namespace) -> None:
    backend = load_backend(args.backend, args.device)
    print(f"gpu_child: {backend.name} on cuda:{args.device} {backend.identity()}", flush=True)
    try:
        buf = backend.hold(args.bytes)
    except Exception as exc:  # torch.cuda.OutOfMemoryError, cupy OutOfMemoryError, driver errors
        raise ChildError(
            f"allocating {args.bytes} bytes on cuda:{args.device} failed: {type(exc).__name__}: {exc}",
            EXIT_GPU_FAILURE,
        ) from exc
    print(f"gpu_child: holding {args.bytes} bytes", flush=True)
    write_ready(
        args.ready_file,
        {"pid": os.getpid(), "backend": backend.name, "bytes": args.bytes, **backend.identity()},
    )
    _hold_until(time.monotonic() + args.max_seconds)
    del buf


def run_compute(args: argparse.Namespace) -> None:
    backend = load_backend(args.backend, args.device)
    print(f"gpu_child: {backend.name} on cuda:{args.device} {backend.identity()}", flush=True)
    try:
        step = backend.matmul(args.size, args.dtype)
        for _ in range(3):  # warm-up: library handles, kernel selection
            step()
        backend.synchronize()
        timed = 10
        t0 = time.monotonic()
        for _ in range(timed):
            step()
        backend.synchronize()
        per_step = (time.monotonic() - t0) / timed
    except Exception as exc:
        raise ChildError(
            f"matrix products of size {args.size} ({args.dtype}) on cuda:{args.device} failed: "
            f"{type(exc).__name__}: {exc}",
            EXIT_GPU_FAILURE,
        ) from exc
    period_s = args.period_ms / 1000
    batch = batch_for(per_step, busy_seconds(args.duty, period_s))
    print(
        f"gpu_child: {per_step * 1e3:.3f} ms per product, batches of {batch}, "
        f"duty {args.duty}% of {args.period_ms:g} ms",
        flush=True,
    )

    def work() -> None:
        for _ in range(batch):
            step()
        backend.synchronize()

    write_ready(
        args.ready_file,
        {
            "pid": os.getpid(),
            "backend": backend.name,
            "seconds_per_product": per_step,
            "batch": batch,
            **backend.identity(),
        },
    )
    duty_cycle(work, duty_percent=args.duty, period_s=period_s, deadline=time.monotonic() + args.max_seconds)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m pytest_ktinterf.actors.gpu_child")
    sub = top.add_subparsers(dest="program", required=True)
    for name in ("memory", "compute"):
        p = sub.add_parser(name)
        p.add_argument("--device", type=int, default=0, help="CUDA device index")
        p.add_argument("--ready-file", type=Path, required=True)
        p.add_argument("--backend", choices=["auto", *BACKENDS], default="auto")
        p.add_argument(
            "--max-seconds",
            type=float,
            default=3600.0,
            help="end on its own after this long, should every reaper miss it",
        )
        if name == "memory":
            p.add_argument("--bytes", type=int, required=True)
        else:
            p.add_argument("--duty", type=int, default=100, choices=range(1, 101), metavar="1..100")
            p.add_argument("--size", type=int, default=4096)
            p.add_argument("--dtype", choices=["float16", "float32"], default="float16")
            p.add_argument("--period-ms", type=float, default=DEFAULT_PERIOD_S * 1000)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    # NVML numbers GPUs by PCI bus id; make CUDA agree so --device means the GPU the parent measures.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    args = parser().parse_args(argv)
    try:
        if args.program == "memory":
            run_memory(args)
        else:
            run_compute(args)
    except ChildError as exc:
        print(f"gpu_child: {exc}", file=sys.stderr, flush=True)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())

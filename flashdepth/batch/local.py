"""The local engine: worker processes on this machine, each holding the model.

The driver hands one input at a time to each idle worker over its pipe, so it always knows which
input a worker holds. A worker that dies (killed, out of memory) is seen through its process
sentinel: its input is recorded as failed and queued again while ``job.retries`` allows, and a
new worker takes its place; the other workers go on undisturbed. (``ProcessPoolExecutor`` cannot
do this: one dead worker breaks the whole pool and every input in flight with it.)
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from collections import deque
from dataclasses import replace
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable, Optional

from ..errors import WorkerStartError
from ..utils import first_line
from .folders import left_attempts
from .job import BatchJob, Task
from .manifest import Record

_STOP_WAIT_S = 10.0


def worker_slots(job: BatchJob, inputs: int) -> list[tuple[str, Optional[int]]]:
    """(device, CPU threads) of each worker: one per GPU by default, else one per 4 CPU cores; no
    more workers than ``inputs``. Workers on the CPU share its cores (as many threads each)."""
    import torch

    from ..device import resolve_device

    requested = job.session.device or "auto"
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        return [(f"cuda:{i % gpus}", None) for i in range(min(job.workers or gpus, inputs))]
    device = resolve_device(requested)  # an unavailable device fails here, before any worker starts
    if device.type != "cpu":
        return [(str(device), None)] * min(job.workers or 1, inputs)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(job.workers or max(1, cores // 4), inputs)
    return [("cpu", max(1, cores // workers))] * workers


def _serve(conn, job: BatchJob, device: str, threads: Optional[int]) -> None:
    """A worker process: load the model, then process the tasks the driver sends until None."""
    from .worker import BatchWorker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the driver stops us
    conn.send(("started",))  # this far, the process started: what happens next is loading the model
    try:
        worker = BatchWorker(job, device=device, threads=threads)
    except Exception as e:
        conn.send(("start-failed", f"{type(e).__name__}: {first_line(e)}"))
        return
    conn.send(("ready",))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if task is None:
            return
        conn.send(("record", worker.process(task)))


class _Process:
    """The driver's side of one worker process."""

    def __init__(self, context, job: BatchJob, device: str, threads: Optional[int]):
        self.device, self.threads = device, threads
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, job, device, threads), daemon=True,
                                       name="flashdepth-batch-worker")
        self.process.start()
        child.close()
        self.started = self.ready = False
        self.task: Optional[Task] = None

    def receive(self) -> Optional[tuple]:
        """The worker's next message; None once it is gone; ("nothing",) when it has said nothing."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            return None
        return ("nothing",) if self.process.is_alive() else None

    def how_it_ended(self) -> str:
        self.process.join(timeout=_STOP_WAIT_S)
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def stop(self, now: bool) -> None:
        if not now and self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=_STOP_WAIT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def run(job: BatchJob, tasks: list[Task], report: Callable[[Record, bool], None]) -> None:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or CUDA state
    queue = deque(tasks)
    slots = worker_slots(job, len(tasks))
    workers = [_Process(context, job, device, threads) for device, threads in slots]
    stopped_cleanly = False
    try:
        while queue or any(w.task is not None for w in workers):
            for w in workers:
                if w.ready and w.task is None and queue:
                    w.task = queue.popleft()
                    try:
                        w.conn.send(w.task)
                    except OSError:  # it just died: its sentinel says so below, and its task is retried
                        pass
            wait([w.conn for w in workers] + [w.process.sentinel for w in workers])
            for i, w in enumerate(list(workers)):
                message = w.receive()
                if message is None:
                    workers[i] = _replace_dead(w, job, queue, report, context)
                elif message[0] == "started":
                    w.started = True
                elif message[0] == "ready":
                    w.ready = True
                elif message[0] == "record":
                    report(message[1], True)
                    w.task = None
                elif message[0] == "start-failed":
                    raise WorkerStartError(f"a batch worker on {w.device} could not load the model: {message[1]}")
            workers = [w for w in workers if w is not None]
        stopped_cleanly = True
    finally:
        for w in workers:
            if w is not None:
                w.stop(now=not stopped_cleanly or not w.ready)  # one still loading has nothing to finish


def _replace_dead(dead: _Process, job: BatchJob, queue: deque, report, context) -> Optional[_Process]:
    """Record the input a dead worker held, queue it again if retries are left; a new worker if needed."""
    ending = dead.how_it_ended()
    dead.conn.close()
    if not dead.started:
        raise WorkerStartError(f"a batch worker process on {dead.device} ended before it started ({ending}); workers "
                               "are started with spawn, which imports the main script again: in a script, call "
                               "run_batch under `if __name__ == \"__main__\":`")
    if not dead.ready:
        raise WorkerStartError(f"a batch worker on {dead.device} died while loading the model ({ending})")
    task = dead.task
    if task is not None:
        again = task.attempt <= job.retries
        died = f"the worker process died ({ending}) while processing this input"
        worker = f"{socket.gethostname()}:{dead.process.pid}"
        frames = max((n for who, n in left_attempts(Path(job.outroot), task.output) if who == worker), default=0)
        report(Record(task.input, task.output, "failed", frames=frames, worker=worker, attempt=task.attempt,
                      error=died), not again)
        if again:
            queue.append(replace(task, attempt=task.attempt + 1))
    return _Process(context, job, dead.device, dead.threads) if queue else None

"""The Ray engine: actors that hold the model, on a Ray instance started here or on a cluster.

Scheduling is Ray's :class:`ray.util.ActorPool`; a worker that dies is restarted by Ray
(``max_restarts``) and its input run again (``max_task_retries = job.retries``). Every input is
paired with a small zero-CPU task that waits for its result, so an input whose retries are spent
comes back as a failed record of that input rather than as an error nobody can place. Records
come back to the driver, which alone writes the manifest. Inputs and the output root must be on
paths every worker sees.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Optional

from ..errors import WorkerStartError
from ..utils import first_line
from .folders import left_attempts
from .job import BatchJob, Task
from .manifest import Record


class RayWorker:
    """The actor: a :class:`BatchWorker` that reports a failed start instead of dying in a restart loop."""

    def __init__(self, job: BatchJob, device: Optional[str], threads: Optional[int]):
        from .worker import BatchWorker

        self.worker, self.error = None, None
        try:
            self.worker = BatchWorker(job, device=device, threads=threads)
        except Exception as e:
            self.error = f"{type(e).__name__}: {first_line(e)}"

    def start_error(self) -> Optional[str]:
        return self.error

    def process(self, task: Task) -> Record:
        # Ray reruns a task whose actor died; such an attempt left its partial folder behind.
        earlier = len(left_attempts(Path(self.worker.job.outroot), task.output))
        return self.worker.process(Task(task.input, task.output, max(task.attempt, 1 + earlier)))


def settle(refs: list, task: Task, retries: int) -> Record:
    """The record of ``refs[0]`` (an actor's ``process``), or a failed one if Ray gave up on it."""
    import ray

    try:
        return ray.get(refs[0])
    except ray.exceptions.RayError as e:
        return Record(task.input, task.output, "failed", attempt=retries + 1,
                      error=f"the Ray worker died while processing this input, {retries} retries spent "
                            f"({type(e).__name__})")


def _connect(job: BatchJob) -> bool:
    """Use the Ray instance this process has, else join ``job.ray_address``, else start one here.
    Returns whether this call connected (and so should disconnect)."""
    import ray

    if ray.is_initialized():
        return False
    if job.ray_address:
        ray.init(address=job.ray_address, logging_level=logging.WARNING)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        ray.init(num_cpus=cores, include_dashboard=False, logging_level=logging.WARNING)
    return True


def _sizes(job: BatchJob, gpus: float, inputs: int) -> tuple[int, int]:
    """(workers, CPUs each): by default one worker per ``gpus`` GPUs, or one per 4 CPU cores; no more
    workers than ``inputs``."""
    import ray

    if gpus > 0:
        return min(job.workers or max(1, int(ray.cluster_resources().get("GPU", 0) // gpus)), inputs), 1
    total = int(ray.cluster_resources().get("CPU", 1))
    biggest = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=1)
    workers = min(job.workers or max(1, total // 4), inputs)
    return workers, max(1, min(total // workers, biggest))  # a worker's CPUs must fit on one node


def run(job: BatchJob, tasks: list[Task], report: Callable[[Record, bool], None]) -> None:
    import ray
    from ray.util import ActorPool

    connected = _connect(job)
    actors = []
    try:
        gpus = job.gpus_per_worker
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        workers, cpus = _sizes(job, gpus, len(tasks))
        device = job.session.device or "auto"
        if gpus == 0 and device == "auto":
            device = "cpu"  # a worker that reserved no GPU uses none
        worker = ray.remote(RayWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=-1,
                                               max_task_retries=job.retries)
        actors = [worker.remote(job, device, cpus if gpus == 0 else None) for _ in range(workers)]
        for error in ray.get([a.start_error.remote() for a in actors]):
            if error:
                raise WorkerStartError(f"a Ray batch worker could not load the model: {error}")
        settler = ray.remote(num_cpus=0)(settle)
        pool = ActorPool(actors)
        for task in tasks:
            pool.submit(lambda actor, t: settler.remote([actor.process.remote(t)], t, job.retries), task)
        while pool.has_next():
            record = pool.get_next_unordered()
            left = left_attempts(Path(job.outroot), record.output)  # what each killed attempt wrote, and who
            for attempt in range(1, record.attempt):  # attempts Ray ran again after their worker died
                worker, frames = left[attempt - 1] if attempt - 1 < len(left) else ("", 0)
                report(Record(record.input, record.output, "failed", attempt=attempt, frames=frames, worker=worker,
                              error="the Ray worker died while processing this input; Ray ran it again"), False)
            report(record, True)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if connected:
            ray.shutdown()

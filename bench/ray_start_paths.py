"""How fast a trainer starts on Ray, by the three ways the Ray executor could start one.

One Ray head on loopback (with its job server). Interleaved, --pairs times each:
- job:   `JobSubmissionClient.submit_job` of a trainer's warm-up (RayTrainer().ready(): torch, the
         engine, the first optimizer) until the job has SUCCEEDED — a Ray Job per run, before any
         training;
- actor: a new RayTrainer actor (app/executors/ray_trainer.py) until its `ready()` has returned —
         a cold actor per run: worker process, torch, the engine, the first optimizer;
- warm:  a call on a standby actor that is already ready — the hand-off the Ray executor does.

    .venv/bin/python bench/ray_start_paths.py [--pairs 3] [--timeout 600]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from ray_executor import LOOPBACK_ENV, RayHead  # noqa: E402

# What a trainer does before its run, in a job as in an actor's ready().
WARM_UP = "from app.executors.ray_trainer import RayTrainer; RayTrainer().ready()"


def main() -> int:
    args = harness.parser(__doc__, timeout=600).parse_args()
    harness.header("Ray: a Ray Job vs a cold actor vs a warm standby actor, to a ready trainer", args.threads)
    with harness.Watchdog(args.timeout) as watchdog:
        return run(args, watchdog)


def run(args, watchdog: harness.Watchdog) -> int:
    head = RayHead(cpus=2, watchdog=watchdog, dashboard=True)
    try:
        print(f"head started in {head.start():.1f} s; quiet after {head.wait_quiet():.1f} s more", flush=True)
        os.environ.update(LOOPBACK_ENV)  # this driver, like the head, takes 127.0.0.1 as its node's address
        import ray
        from ray.job_submission import JobStatus, JobSubmissionClient

        from app.executors.ray_trainer import RayTrainer

        ray.init(address=head.address, logging_level="ERROR", log_to_driver=False)
        trainer = ray.remote(RayTrainer).options(num_cpus=1, max_concurrency=4)
        jobs = JobSubmissionClient(head.dashboard_url)
        times: dict[str, list[float]] = {"job": [], "actor": [], "warm": []}

        def job() -> float:
            started = time.perf_counter()
            job_id = jobs.submit_job(entrypoint=f"{sys.executable} -c '{WARM_UP}'")
            while (status := jobs.get_job_status(job_id)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                                   JobStatus.STOPPED):
                time.sleep(0.02)
            if status != JobStatus.SUCCEEDED:
                raise RuntimeError(f"the job ended {status}: {jobs.get_job_logs(job_id)[-2000:]}")
            return time.perf_counter() - started

        def actor() -> float:
            started = time.perf_counter()
            handle = trainer.remote()
            ray.get(handle.ready.remote())
            elapsed = time.perf_counter() - started
            ray.kill(handle)
            return elapsed

        def warm() -> float:
            handle = trainer.remote()
            ray.get(handle.ready.remote())  # warmed up beforehand, as the standby is
            started = time.perf_counter()
            ray.get(handle.run_id.remote())
            elapsed = time.perf_counter() - started
            ray.kill(handle)
            return elapsed

        for _ in range(args.pairs):
            for name, measure in (("job", job), ("actor", actor), ("warm", warm)):
                head.wait_quiet()
                times[name].append(measure())
                print(f"  {name:5s} {times[name][-1]:7.3f} s", flush=True)
        print()
        print(f"{'start path':28s} {'min':>8s} {'median':>8s}   (seconds, {args.pairs} each, interleaved)")
        labels = {"job": "Ray Job (submit → SUCCEEDED)", "actor": "cold actor (→ ready)",
                  "warm": "warm standby (call)"}
        for name, values in times.items():
            print(f"{labels[name]:28s} {min(values):8.3f} {statistics.median(values):8.3f}")
        return 0
    finally:
        head.stop()


if __name__ == "__main__":
    sys.exit(main())

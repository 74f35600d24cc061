"""The processes of an environment: Celery workers and their machines, task pods, a task's supervisor and runner, signals."""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass

log = logging.getLogger("airflow_resilience.testing")


@dataclass(frozen=True)
class TaskProcesses:
    """The processes of a running task instance: the supervisor and the task runner it forked."""

    runner: int
    supervisor: int
    #: process create times (psutil), so that a later signal never hits a recycled PID
    runner_created: float | None = None
    supervisor_created: float | None = None



class ProcessControl:
    """Workers, nodes, pods and task processes of an environment (a mixin of AirflowEnvironment)."""

    # ------------------------------------------------------------------ Celery workers ("nodes")
    def wait_worker_ready(self, name: str, timeout: float = 120) -> None:
        """Wait until a Celery worker said it is ready (and consumes the environment's queue)."""
        deadline = time.monotonic() + timeout
        marker = f"{name}@"
        path = self.home / f"{name}.log"
        while time.monotonic() < deadline:
            with open(path, "rb") as fh:  # only what this start of the worker wrote
                fh.seek(self._log_offsets.get(name, 0))
                text = fh.read().decode(errors="replace")
            if f"{marker}" in text and " ready." in text.split(marker, 1)[-1]:
                return
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.component_log(name)}")
            time.sleep(0.3)
        raise TimeoutError(f"celery {name} not ready in {timeout}s:\n{self.component_log(name)}")

    def node_processes(self, name: str) -> list:
        """Every process of a worker "node": its main process and all descendants (psutil processes)."""
        import psutil

        proc = self._procs.get(name)
        if proc is None:
            return []
        try:
            main = psutil.Process(proc.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def worker_of(self, pid: int) -> str | None:
        """The worker whose process tree contains ``pid``."""
        for name in self.workers:
            if pid in {p.pid for p in self.node_processes(name)}:
                return name
        return None

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL a whole worker node (main process, pool processes, supervisors, task runners)."""
        pids = [p.pid for p in self.node_processes(name)]
        self.stop_component(name, sig=signal.SIGKILL, timeout=10)
        return pids

    def terminate_worker(self, name: str) -> int:
        """SIGTERM the worker's main process only (what Kubernetes does to a pod's PID 1): a warm shutdown."""
        pid = self._procs[name].pid
        os.kill(pid, signal.SIGTERM)
        return pid

    def _delete_task_pods(self) -> None:
        """Pods of this environment's tasks left in a shared cluster (grace 0)."""
        try:
            for pod in self.task_pods():
                self.kube.delete_pod(pod["metadata"]["name"], grace=0)
            for pod in self.kube.pods(selector="airflow-resilience/workload=true"):  # ResumablePodOperator's
                name = pod["metadata"]["name"]
                self.kube.request("PATCH", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{name}",
                                  {"metadata": {"finalizers": None}}, content_type="application/merge-patch+json")
                self.kube.delete_pod(name, pod["metadata"]["namespace"], grace=0)
        except Exception:
            log.exception("could not delete the task pods")

    # ------------------------------------------------------------------ Kubernetes
    def task_pods(self, dag_id: str | None = None, run_id: str | None = None, task_id: str | None = None) -> list[dict]:
        """This environment's task pods (any phase), oldest first; filtered by annotations."""
        out = []
        for pod in self.kube.pods(selector="kubernetes_executor=True"):
            ann = pod["metadata"].get("annotations") or {}
            if ann.get("airflow-resilience/home") != str(self.home):
                continue
            if (dag_id and ann.get("dag_id") != dag_id) or (run_id and ann.get("run_id") != run_id) or (task_id and ann.get("task_id") != task_id):
                continue
            out.append(pod)
        return sorted(out, key=lambda p: p["metadata"]["creationTimestamp"])

    def wait_for_pod(self, dag_id: str, run_id: str, task_id: str, try_number: int, *, phase: str = "Running", timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pod in self.task_pods(dag_id, run_id, task_id):
                ann = pod["metadata"].get("annotations") or {}
                if ann.get("try_number") == str(try_number) and (pod.get("status") or {}).get("phase") == phase:
                    return pod
            time.sleep(0.25)
        raise TimeoutError(f"no {phase} pod for {dag_id}.{task_id} try {try_number} in {timeout}s:\n{self.component_log('scheduler')}")

    def task_processes(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> TaskProcesses:
        """PIDs of the task runner (``task_instance.pid``) and of its supervisor (the runner's parent)."""
        import psutil

        ti = self.task_instance(dag_id, run_id, task_id, map_index)
        if ti.state != "running" or not ti.pid:
            raise LookupError(f"{dag_id}/{run_id}/{task_id} is {ti.state!r} with pid {ti.pid}: not running")
        runner = psutil.Process(ti.pid)
        supervisor = psutil.Process(runner.ppid())
        return TaskProcesses(
            runner=runner.pid, supervisor=supervisor.pid,
            runner_created=runner.create_time(), supervisor_created=supervisor.create_time(),
        )

    @staticmethod
    def end_grace(procs: TaskProcesses) -> bool:
        """The end of an eviction's grace period: SIGKILL the task's runner and supervisor — but only while
        that runner still lives. Under the LocalExecutor the supervisor is an executor worker process that
        takes the next task once this one has handed back; killing it then hits an unrelated task, or, if
        it is idle inside the executor's queue, leaves the queue's lock held and every other worker stuck.
        Returns whether anything was killed."""
        import psutil

        def same(pid: int, created: float | None) -> psutil.Process | None:
            try:
                proc = psutil.Process(pid)
                if created is not None and abs(proc.create_time() - created) > 0.01:
                    return None  # the PID was recycled
                return proc if proc.status() != psutil.STATUS_ZOMBIE else None
            except psutil.NoSuchProcess:
                return None

        runner = same(procs.runner, procs.runner_created)
        if runner is None:
            return False
        try:
            runner.kill()
            supervisor = same(procs.supervisor, procs.supervisor_created)
            if supervisor is not None:
                supervisor.kill()
        except psutil.NoSuchProcess:
            pass
        return True

    def signal_runner(self, dag_id: str, run_id: str, task_id: str, sig: int, map_index: int = -1) -> int:
        pid = self.task_processes(dag_id, run_id, task_id, map_index).runner
        os.kill(pid, sig)
        return pid

    def signal_supervisor(self, dag_id: str, run_id: str, task_id: str, sig: int, map_index: int = -1) -> int:
        pid = self.task_processes(dag_id, run_id, task_id, map_index).supervisor
        os.kill(pid, sig)
        return pid


def kube_namespace() -> str:
    from airflow_resilience.testing.kube import NAMESPACE

    return NAMESPACE


def _stop_tree(pid: int, sig: int, timeout: float) -> None:
    """Signal ``pid`` and every descendant (found before signalling), then SIGKILL what is left."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)

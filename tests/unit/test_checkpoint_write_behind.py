"""Write-behind checkpoints over a slow, gated in-memory store: what overlaps, what waits, what a kill loses.

The store's document writes block until the test hands out a permit, so every interleaving is chosen by the
test, never by timing: a "hard kill" stops the task body and drops every write that has not landed.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import Any

import pytest

from airflow_resilience import Checkpoint
from airflow_resilience.attempt import HEAD_KEY, AttemptId, doc_key
from airflow_resilience.checkpoint_writer import WriteBehind
from airflow_resilience.errors import (
    CheckpointStoreError,
    CheckpointTooLargeError,
    CheckpointValueError,
    ConfigurationError,
    StaleAttemptError,
)
from airflow_resilience.store import MemoryTaskStore
from airflow_resilience.testing import CheckpointEnvironment

WAIT = 10.0  # seconds a helper waits for a state the test has made certain (a hang fails, never a race)


class Killed(Exception):
    """The process is gone: a write that had not landed never does."""


def wait_until(pred, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.0005)


class GatedStore:
    """A store view whose document writes block until :meth:`allow` gives a permit; heads and deletes
    pass. Records the documents in the order they landed and how many writes were in flight at once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.max_value_bytes = inner.max_value_bytes
        self.permits = threading.Semaphore(0)
        self.killed = False
        self.started = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.landed: list[dict[str, Any]] = []
        self.fail_next: Exception | None = None
        self._lock = threading.Lock()

    def allow(self, n: int = 1) -> None:
        for _ in range(n):
            self.permits.release()

    def kill(self) -> None:
        self.killed = True
        self.allow(100)

    def get(self, key: str) -> Any:
        return self.inner.get(key)

    def set(self, key: str, value: Any) -> None:
        if not key.startswith("resilience:checkpoint:try-"):
            if self.killed:
                raise Killed(key)
            self.inner.set(key, value)
            return
        with self._lock:
            self.started += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if not self.permits.acquire(timeout=WAIT):
                raise AssertionError("a document write waited for a permit that never came")
            if self.killed:
                raise Killed(key)
            if self.fail_next is not None:
                exc, self.fail_next = self.fail_next, None
                raise exc
            self.inner.set(key, value)
            self.landed.append(value)
        finally:
            with self._lock:
                self.in_flight -= 1

    def delete(self, key: str) -> None:
        if self.killed:
            raise Killed(key)
        self.inner.delete(key)


def gated_attempt(backend: MemoryTaskStore, try_number: int, *, write_behind: bool) -> tuple[Checkpoint, GatedStore]:
    store = GatedStore(backend.start_attempt(try_number))
    return Checkpoint(store, AttemptId(try_number=try_number, max_tries=3), write_behind=write_behind), store


class LoopTask:
    """The task body on its own thread: one ``iterate`` loop; each item runs until the test lets it end."""

    def __init__(self, ckpt: Checkpoint, items: int = 20) -> None:
        self.ckpt = ckpt
        self.started: list[int] = []
        self.ended: list[int] = []
        self.item_permits = threading.Semaphore(0)
        self.killed = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(items,), daemon=True)
        self.thread.start()

    def _run(self, items: int) -> None:
        # Held, never closed: a SIGKILLed process runs no finally block (the loop's end-of-loop flush).
        self.iterator = self.ckpt.iterate(range(items), key="items")
        try:
            for i in self.iterator:
                self.started.append(i)
                self.item_permits.acquire(timeout=WAIT)
                if self.killed:
                    raise Killed(i)
                self.ended.append(i)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            self.error = exc

    def finish_item(self) -> None:
        self.item_permits.release()


def landed_jobs(ckpt: Checkpoint) -> int:
    writer = ckpt._writer
    return 0 if writer is None else writer.written


def run_steady(task: LoopTask, store: GatedStore, items: int) -> None:
    """Let ``items`` items finish with every write landing before the next item ends."""
    for _ in range(items):
        k = len(task.started)
        task.finish_item()
        wait_until(lambda: store.started == k, f"write {k} in flight")
        store.allow()
        wait_until(lambda: len(task.started) == k + 1 and len(store.landed) == k
                   and (task.ckpt._writer is None or task.ckpt._writer.idle), f"write {k} landed, item {k} running")


# ---------------------------------------------------------------- the schedules of a hard kill
def kill_while_next_item_runs_and_write_in_flight(task: LoopTask, store: GatedStore) -> None:
    k = len(task.started)  # item k-1 is running
    task.finish_item()
    wait_until(lambda: len(task.started) == k + 1 and store.started == k, "next item running, its write in flight")


def kill_while_next_item_runs_after_write_landed(task: LoopTask, store: GatedStore) -> None:
    k = len(task.started)
    task.finish_item()
    wait_until(lambda: len(task.started) == k + 1 and store.started == k, "next item running")
    store.allow()
    wait_until(lambda: len(store.landed) == k, "its write landed")


def kill_after_two_items_finished_behind_one_write(task: LoopTask, store: GatedStore) -> None:
    k = len(task.started)
    task.finish_item()
    wait_until(lambda: len(task.started) == k + 1 and store.started == k, "write of item k-1 in flight")
    task.finish_item()  # item k ends; its state waits behind the write in flight
    wait_until(lambda: len(task.ended) == k + 1, "item k finished")
    writer = task.ckpt._writer
    wait_until(lambda: writer._has_waiting, "item k's state waiting for the writer")


def kill_sync_during_write(task: LoopTask, store: GatedStore) -> None:
    k = len(task.started)
    task.finish_item()  # the boundary writes synchronously and blocks in the store
    wait_until(lambda: store.started == k, "boundary write in flight")


def kill_sync_while_item_runs(task: LoopTask, store: GatedStore) -> None:
    k = len(task.started)
    task.finish_item()
    wait_until(lambda: store.started == k, "boundary write in flight")
    store.allow()
    wait_until(lambda: len(task.started) == k + 1, "next item running")


@pytest.mark.parametrize(
    ("write_behind", "schedule", "redone", "finished_redone"),
    [
        (True, kill_while_next_item_runs_and_write_in_flight, 2, 1),
        (True, kill_while_next_item_runs_after_write_landed, 1, 0),
        (True, kill_after_two_items_finished_behind_one_write, 2, 2),
        (False, kill_sync_during_write, 1, 1),
        (False, kill_sync_while_item_runs, 1, 0),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_a_hard_kill_redoes_at_most_two_items_with_write_behind(write_behind, schedule, redone, finished_redone):
    backend = MemoryTaskStore()
    ckpt, store = gated_attempt(backend, 1, write_behind=write_behind)
    task = LoopTask(ckpt)
    wait_until(lambda: task.started == [0], "item 0 running")
    run_steady(task, store, 5)
    schedule(task, store)
    # SIGKILL: nothing in flight lands, the body stops where it is
    task.killed = True
    store.kill()
    task.finish_item()
    task.thread.join(WAIT)

    resumed = Checkpoint(backend.start_attempt(2), AttemptId(try_number=2, max_tries=3))
    resume_at = resumed.done_items("items")
    assert set(task.started) & set(range(resume_at)) <= set(task.ended)  # nothing unfinished is skipped
    assert len([i for i in task.started if i >= resume_at]) == redone
    assert len([i for i in task.ended if i >= resume_at]) == finished_redone
    assert store.max_in_flight == 1


def test_next_item_computes_while_the_previous_item_is_written() -> None:
    backend = MemoryTaskStore()
    ckpt, store = gated_attempt(backend, 1, write_behind=True)
    task = LoopTask(ckpt, items=3)
    wait_until(lambda: task.started == [0], "item 0 running")
    task.finish_item()
    # item 1 runs while the write of "item 0 done" is still blocked in the store
    wait_until(lambda: task.started == [0, 1] and store.started == 1, "item 1 running during write 1")
    assert store.landed == []
    store.allow(10)
    task.finish_item()
    task.finish_item()
    task.thread.join(WAIT)
    assert task.error is None
    assert store.landed[-1]["loops"]["items"] == {"done": 3, "complete": True}  # the loop's end waited for it
    assert store.max_in_flight == 1


def test_set_returns_at_once_and_values_set_during_a_write_go_out_as_one() -> None:
    backend = MemoryTaskStore()
    ckpt, store = gated_attempt(backend, 1, write_behind=True)
    ckpt.set("cursor", 1)
    wait_until(lambda: store.started == 1, "write of cursor=1 in flight")
    ckpt.set("cursor", 2)  # no permit was given: these return while the write is blocked
    ckpt.set("cursor", 3)
    flushing = threading.Thread(target=ckpt.flush, daemon=True)
    flushing.start()
    assert flushing.is_alive()  # flush waits: the write in flight cannot land without a permit
    store.allow(2)
    flushing.join(WAIT)
    assert not flushing.is_alive()
    assert [d["values"]["cursor"] for d in store.landed] == [1, 3]  # 2 was replaced while it waited
    assert store.max_in_flight == 1
    assert backend.snapshot()[HEAD_KEY]["try_number"] == 1


def test_flush_waits_for_the_write_in_flight_and_writes_what_waits() -> None:
    backend = MemoryTaskStore()
    ckpt, store = gated_attempt(backend, 1, write_behind=True)
    ckpt.set("a", 1)
    wait_until(lambda: store.started == 1, "first write in flight")
    ckpt.set("b", 2)
    store.allow(2)
    ckpt.flush()
    saved = backend.snapshot()[doc_key(1)]["values"]
    assert saved == {"a": 1, "b": 2}


def test_a_refused_background_write_is_raised_by_the_next_call_and_after() -> None:
    env = CheckpointEnvironment(retries=2)
    old = env.new_checkpoint(write_behind=True)
    old.set("cursor", 1)
    old.flush()
    new = env.new_checkpoint()  # a newer attempt took over
    new.set("cursor", 100)
    old.set("cursor", 2)  # handed to the writer, refused there
    wait_until(lambda: old.fenced, "the refusal is known")
    with pytest.raises(StaleAttemptError, match="superseded by attempt 2"):
        old.set("cursor", 3)
    with pytest.raises(StaleAttemptError, match="superseded by attempt 2"):
        old.flush()
    assert env.saved()[doc_key(2)]["values"]["cursor"] == 100
    assert env.saved()[HEAD_KEY]["try_number"] == 2


def test_a_refused_write_ends_an_iterate_loop_with_the_refusal() -> None:
    env = CheckpointEnvironment(retries=2)
    old = env.new_checkpoint(write_behind=True)
    seen = []
    with pytest.raises(StaleAttemptError, match="superseded"):
        for i in old.iterate(range(50), key="items"):
            seen.append(i)
            if i == 3:
                env.new_checkpoint().set("taken", True)
    assert len(seen) < 50


def test_a_store_failure_is_raised_with_its_message_and_the_state_is_written_again() -> None:
    backend = MemoryTaskStore()
    ckpt, store = gated_attempt(backend, 1, write_behind=True)
    store.fail_next = CheckpointStoreError("write of task state key 'resilience:checkpoint:try-1' failed: 500")
    ckpt.set("cursor", 1)  # handed over; the write waits for a permit
    store.allow(10)
    with pytest.raises(CheckpointStoreError, match="key 'resilience:checkpoint:try-1' failed: 500"):
        ckpt.flush()
    ckpt.flush()  # once: the next write sends the state again, head included
    saved = backend.snapshot()
    assert saved[doc_key(1)]["values"] == {"cursor": 1}
    assert saved[HEAD_KEY]["try_number"] == 1


def test_a_store_failure_surfaces_at_the_next_set() -> None:
    backend = MemoryTaskStore()
    ckpt, store = gated_attempt(backend, 1, write_behind=True)
    store.fail_next = CheckpointStoreError("write of task state key 'resilience:checkpoint:try-1' failed: 503")
    ckpt.set("cursor", 1)
    store.allow()
    wait_until(lambda: ckpt._writer.failed is not None, "the write failed")
    with pytest.raises(CheckpointStoreError, match="failed: 503"):
        ckpt.set("cursor", 2)
    store.allow(10)
    ckpt.flush()
    assert backend.snapshot()[doc_key(1)]["values"] == {"cursor": 2}


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (__import__("datetime").date(2024, 1, 1), CheckpointValueError, "checkpoint key 'v': date at"),
        ("x" * 70000, CheckpointTooLargeError, "checkpoint key 'v': saving it would make"),
    ],
    ids=["non-json", "too-large"],
)
def test_bad_values_are_refused_at_set_time_with_write_behind(value, error, message) -> None:
    env = CheckpointEnvironment()
    ckpt = env.new_checkpoint(write_behind=True)
    ckpt.set("ok", 1)
    with pytest.raises(error, match=message):
        ckpt.set("v", value)
    ckpt.flush()
    assert env.saved()[doc_key(1)]["values"] == {"ok": 1}


def test_after_sigterm_every_write_is_waited_for() -> None:
    backend = MemoryTaskStore()
    ckpt, store = gated_attempt(backend, 1, write_behind=True)
    store.allow(100)
    ckpt.request_flush()
    for i in range(5):
        ckpt.set("cursor", i)
        assert backend.snapshot()[doc_key(1)]["values"]["cursor"] == i  # landed before set returned


def test_resume_and_graceful_ends_are_the_same_with_write_behind() -> None:
    env = CheckpointEnvironment(retries=2)
    calls = []
    with env.attempt(write_behind=True) as ckpt:
        ckpt.step("provision", lambda: calls.append(1) or {"cluster": "c"})
        assert env.saved()[doc_key(1)]["steps"] == {"provision": {"cluster": "c"}}  # step waited for its write
        with pytest.raises(RuntimeError):
            for i in ckpt.iterate(range(10), key="items"):
                if i == 6:
                    raise RuntimeError("boom")
        ckpt.set("last", "set just before the end")
    with env.attempt(write_behind=True) as again:
        assert again.done_items("items") == 6
        assert again.get("last") == "set just before the end"  # written by the end-of-attempt flush
        assert again.step("provision", lambda: calls.append(2)) == {"cluster": "c"}
    assert calls == [1]
    assert {k for k in env.saved() if k.startswith("resilience:checkpoint:")} == {HEAD_KEY, doc_key(2)}


def test_turning_write_behind_off_waits_for_the_writer() -> None:
    backend = MemoryTaskStore()
    ckpt, store = gated_attempt(backend, 1, write_behind=True)
    ckpt.set("a", 1)
    store.allow(10)
    ckpt.write_behind = False
    assert backend.snapshot()[doc_key(1)]["values"] == {"a": 1}
    ckpt.set("a", 2)
    assert backend.snapshot()[doc_key(1)]["values"] == {"a": 2}


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_write_behind_must_be_a_bool(bad) -> None:
    with pytest.raises(ConfigurationError, match="write_behind must be True or False"):
        Checkpoint(MemoryTaskStore().start_attempt(1), AttemptId(try_number=1), write_behind=bad)


def test_writer_thread_ends_when_idle() -> None:
    done = []
    writer: WriteBehind[int] = WriteBehind(done.append, linger=0.01)
    writer.submit(1)
    writer.wait_idle()
    thread = writer._thread
    if thread is not None:
        thread.join(WAIT)
        assert not thread.is_alive()
    writer.submit(2)  # a new thread for the next job
    writer.wait_idle()
    assert done == [1, 2]


def test_the_sdk_serialises_requests_of_two_threads_on_the_supervisor_socket() -> None:
    """The Task SDK's ``CommsDecoder.send`` holds its lock from request to answer: a checkpoint write from
    the writer thread and a request of the main thread never read each other's answers. Checked on the
    installed SDK, over a socket pair with a supervisor that answers every request with its own key."""
    import msgspec

    from airflow.sdk.execution_time.comms import (
        CommsDecoder,
        GetTaskStateStore,
        TaskStateStoreResult,
        _RequestFrame,
        _ResponseFrame,
    )

    task_end, supervisor_end = socket.socketpair()
    decoder = msgspec.msgpack.Decoder(_RequestFrame)

    def recv_exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = supervisor_end.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def supervisor() -> None:
        try:
            while True:
                length = int.from_bytes(recv_exact(4), "big")
                frame = decoder.decode(recv_exact(length))
                answer = TaskStateStoreResult(value=frame.body["key"]).model_dump()
                supervisor_end.sendall(_ResponseFrame(id=frame.id, body=answer).as_bytes())
        except (EOFError, OSError):
            return

    threading.Thread(target=supervisor, daemon=True).start()
    comms = CommsDecoder(socket=task_end)
    ti_id = uuid.uuid4()
    wrong: list[tuple[str, object]] = []

    def client(name: str) -> None:
        for i in range(200):
            key = f"{name}-{i}"
            got = comms.send(GetTaskStateStore(ti_id=ti_id, key=key))
            if getattr(got, "value", None) != key:
                wrong.append((key, got))

    threads = [threading.Thread(target=client, args=(n,)) for n in ("main", "writer")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 3)
    task_end.close()
    supervisor_end.close()
    assert wrong == []

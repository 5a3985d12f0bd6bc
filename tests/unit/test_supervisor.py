"""The local stack's restart policy: exponential backoff, reset after a stable run, a crash loop gives up."""

from __future__ import annotations

import itertools
import signal

import pytest

from tqdev.supervisor import CrashLoop, RestartHistory, RestartPolicy, Supervisor, describe_exit

pytestmark = pytest.mark.unit


def quick_exits(history: RestartHistory, count: int, *, every_s: float = 0.1, start: float = 0.0) -> list[float | None]:
    """Delays for ``count`` exits, each ``every_s`` after the previous start."""
    delays, now = [], start
    for _ in range(count):
        started = now
        now = started + every_s
        delay = history.on_exit(started, now)
        delays.append(delay)
        now += delay or 0
    return delays


def test_the_delay_doubles_from_half_a_second_up_to_ten() -> None:
    history = RestartHistory(RestartPolicy(max_restarts=100))
    assert quick_exits(history, 7, every_s=5) == [0.5, 1, 2, 4, 8, 10, 10]


def test_a_process_that_stayed_up_for_a_while_starts_again_from_the_first_delay() -> None:
    history = RestartHistory(RestartPolicy())
    assert quick_exits(history, 3) == [0.5, 1, 2]
    assert history.on_exit(started_at=100, now=129) == 4  # up 29 s: still backing off
    assert history.on_exit(started_at=200, now=230) == 0.5  # up 30 s: stable, so reset


def test_the_sixth_exit_in_a_row_without_a_stable_run_is_a_crash_loop() -> None:
    history = RestartHistory(RestartPolicy())
    assert quick_exits(history, 5) == [0.5, 1, 2, 4, 8]
    assert history.on_exit(started_at=16, now=16.1) is None


def test_a_service_that_starts_and_fails_slowly_is_still_a_crash_loop() -> None:
    history = RestartHistory(RestartPolicy())
    # Six exits, each 29 s after its start (a loaded machine): no time window would have seen five of them
    assert quick_exits(history, 6, every_s=29) == [0.5, 1, 2, 4, 8, None]


def test_a_process_that_stays_up_thirty_seconds_between_exits_is_never_given_up_on() -> None:
    history = RestartHistory(RestartPolicy())
    assert quick_exits(history, 20, every_s=30) == [0.5] * 20


class FakeProc:
    pids = itertools.count(100)

    def __init__(self, name: str) -> None:
        self.name, self.pid, self.returncode, self.stopped = name, next(self.pids), None, False

    def alive(self) -> bool:
        return self.returncode is None

    def stop(self, timeout_s: float = 15) -> None:
        self.stopped = True


class FakeStack:
    def __init__(self, *names: str) -> None:
        self.procs = [FakeProc(name) for name in names]

    def respawn(self, proc: FakeProc) -> FakeProc:
        new = FakeProc(proc.name)
        self.procs[self.procs.index(proc)] = new
        return new


def test_the_supervisor_restarts_an_exited_process_after_its_delay_and_says_so() -> None:
    now, lines = [0.0], []
    stack = FakeStack("gateway", "executor-1")
    supervisor = Supervisor(stack, clock=lambda: now[0], say=lines.append)  # type: ignore[arg-type]
    supervisor.check()
    gateway, executor = stack.procs
    # When executor-1 is SIGKILLed
    executor.returncode = -signal.SIGKILL
    now[0] = 40.0
    supervisor.check()
    # Then what is left of it is reaped at once, and it is started again only after the first delay
    assert executor.stopped
    assert stack.procs[1] is executor
    now[0] = 40.4
    supervisor.check()
    assert stack.procs[1] is executor
    assert not lines
    now[0] = 40.5
    supervisor.check()
    restarted = stack.procs[1]
    assert restarted is not executor
    assert restarted.name == "executor-1"
    assert stack.procs[0] is gateway
    assert not gateway.stopped
    assert lines == [
        f"tq: executor-1 (pid {executor.pid}) killed by SIGKILL; restarted as pid {restarted.pid} after 0.5 s "
        "(restart 1 of at most 5 in a row)"
    ]


def test_the_supervisor_gives_up_on_a_crash_loop() -> None:
    now, lines = [0.0], []
    stack = FakeStack("scheduler")
    supervisor = Supervisor(stack, clock=lambda: now[0], say=lines.append)  # type: ignore[arg-type]

    def exit_at_once() -> None:
        for _ in range(100):
            stack.procs[0].returncode = 2
            supervisor.check()
            now[0] += 0.5

    gave_up = r"^scheduler exit code 2 again after 5 restarts in a row, none up 30 s: a crash loop, giving up$"
    with pytest.raises(CrashLoop, match=gave_up):
        exit_at_once()
    assert len(lines) == 5
    assert now[0] < 20  # 0.5 + 1 + 2 + 4 + 8 s of backoff


def test_exit_statuses_read_like_a_shell_would_say_them() -> None:
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"

"""Issue 14's listing scenario on a real gunicorn gateway: 200 tasks whose payloads are 256 KiB of ``[{},{},...]``
(about 6 MiB of Python objects each once parsed), listed page by page, within 300 MiB per gateway worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import running_stack
from tqcore.settings import CoreSettings
from tqdev.memory import MIB, gunicorn_workers, hostile_payload, list_every_page, peak_rss_bytes, store_tasks
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

TASKS = 200
PAYLOAD_BYTES = 256 * 1024
#: A Fargate task of 1 GiB runs the gateway; before issue 14 one worker reached ~1.2 GiB on this listing.
PEAK_RSS_BYTES = 300 * MIB


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own with no executors: the stored tasks are scheduled a day ahead, nothing runs."""
    with running_stack(emulator, tmp_path_factory.mktemp("stack"), executors=0) as started:
        yield started


def test_200_tasks_of_hostile_payloads_list_page_by_page_each_once_in_bounded_memory(
    stack: Stack, client: Callable[[str], httpx.Client]
) -> None:
    # Given 200 such tasks, stored straight through the adapter (the gateway would refuse them now: 87,000 nodes)
    settings = CoreSettings(endpoint_url=stack.config.endpoint_url, prefix=stack.config.prefix)
    made = store_tasks(settings, "team-a", TASKS, hostile_payload(PAYLOAD_BYTES))
    master = stack.procs[0].pid  # the gateway: gunicorn's master
    workers = gunicorn_workers(master)
    assert workers
    # When alice lists them 200 at a time, following next_cursor to the end
    api = client("alice")
    api.timeout = httpx.Timeout(120)
    listing = list_every_page(api, "/v1/tasks", {"group": "team-a", "limit": 200})
    # Then every task came exactly once ...
    assert sorted(listing.ids) == sorted(made)
    assert len(listing.ids) == len(set(listing.ids))
    # ... no gateway worker's resident memory ever passed 300 MiB (the same workers throughout: a worker replaced
    # mid-way would take its peak with it) ...
    assert gunicorn_workers(master) == workers
    peaks = {pid: peak_rss_bytes(pid) // MIB for pid in workers}
    assert max(peaks.values()) * MIB < PEAK_RSS_BYTES, f"peak RSS by worker (MiB): {peaks}"
    # ... and pages ended at the byte budget (4 MiB), not at 200 tasks
    assert len(listing.pages) > 1
    assert max(size for _, size, _ in listing.pages) < 5 * MIB

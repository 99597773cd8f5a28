"""The ingest agent's offset guard: the pure expectations, and reading skipped records back from
a real Kafka topic with the group's real committed offset."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.offset_guard import Expected, OffsetGuard, after, gap_start, stranded_range
from tests.harness import unique


def test_within_a_generation_the_next_offset_is_expected():
    assert gap_start(Expected(3, 10), 3, committed=None) == 10
    assert gap_start(Expected(3, 10), 3, committed=4) == 10


def test_a_new_generation_resumes_from_the_committed_offset():
    assert gap_start(Expected(3, 10), 4, committed=7) == 7
    assert gap_start(None, 1, committed=7) == 7
    assert gap_start(None, 1, committed=None) is None


def test_handled_offsets_only_move_the_expectation_forward():
    assert after(None, 1, 5) == Expected(1, 6)
    assert after(Expected(1, 9), 1, 5) == Expected(1, 9)  # a replay of an older record
    assert after(Expected(1, 9), 2, 5) == Expected(2, 6)  # a new generation starts afresh


def test_a_tail_is_stranded_only_when_quiet():
    assert stranded_range(3, end=12, idle_s=60) == (3, 12)
    assert stranded_range(3, end=12, idle_s=1) is None  # the stream may still hold them
    assert stranded_range(3, end=None, idle_s=60) is None  # nothing fetched yet
    assert stranded_range(12, end=12, idle_s=60) is None  # nothing missing
    assert stranded_range(None, end=12, idle_s=60) is None  # no committed offset
    assert stranded_range(0, end=5000, idle_s=60, max_records=500) == (0, 500)


async def topic_with_records(bootstrap: str, topic: str, partitions: int, partition: int,
                             count: int) -> None:
    """A new topic whose ``partition`` holds ``count`` records (offsets 0..count-1)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    for i in range(count):
        await producer.send_and_wait(topic, f"m{i}".encode(), partition=partition)
    await producer.stop()


async def commit_offset(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> None:
    """Commit ``offset`` for ``group``, as a previous owner of the partition would have."""
    committer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                 enable_auto_commit=False)
    await committer.start()
    committer.assign([TopicPartition(topic, partition)])
    await committer.commit({TopicPartition(topic, partition): offset})
    await committer.stop()


@pytest.mark.integration
def test_skipped_records_are_read_back_from_the_committed_offset_and_between_events(kafka_bootstrap):
    topic, group = unique("guard."), unique("guard-group.")

    async def scenario() -> tuple[list[int], list[int], list[int], list[int]]:
        await topic_with_records(kafka_bootstrap, topic, partitions=2, partition=1, count=12)
        await commit_offset(kafka_bootstrap, group, topic, 1, 3)

        guard = OffsetGuard(kafka_bootstrap, group, topic)
        try:
            # first event of generation 5 arrives at offset 6: 3, 4, 5 were skipped
            head = await guard.missed(1, 6, 5)
            guard.handled(1, 6, 5)
            in_order = await guard.missed(1, 7, 5)
            guard.handled(1, 7, 5)
            # the stream jumps from 7 to 11
            middle = await guard.missed(1, 11, 5)
            guard.handled(1, 11, 5)
            replay = await guard.missed(1, 4, 5)  # an older record again: nothing to read back
        finally:
            await guard.close()
        return ([r.offset for r in head], [r.offset for r in in_order],
                [r.offset for r in middle], [r.offset for r in replay])

    head, in_order, middle, replay = asyncio.run(scenario())
    assert head == [3, 4, 5]
    assert in_order == []
    assert middle == [8, 9, 10]
    assert replay == []


@pytest.mark.integration
def test_a_stranded_tail_is_read_back_once(kafka_bootstrap):
    """The last records of a partition that the stream fetched but never delivered: no later
    record reveals them, so the guard reads them back when the partition has gone quiet."""
    topic, group = unique("guard."), unique("guard-group.")

    async def scenario():
        await topic_with_records(kafka_bootstrap, topic, partitions=1, partition=0, count=8)
        guard = OffsetGuard(kafka_bootstrap, group, topic)
        try:
            # a partition new to a generation is only watched from then on (no committed offset
            # here: nothing to compare with)
            fresh = await guard.stranded(0, 1, end=8)
            guard.handled(0, 4, generation=2)  # offsets 0..4 delivered; 5, 6, 7 never come
            busy = await guard.stranded(0, 2, end=8)  # delivered just now
            guard.last_delivery[0] -= 60
            unfetched = await guard.stranded(0, 2, end=None)
            tail = await guard.stranded(0, 2, end=8)
            guard.handled(0, tail[-1].offset, 2, delivered=False)
            again = await guard.stranded(0, 2, end=8)
            redelivered = guard.already_handled(0, 6, 2), guard.already_handled(0, 6, 3)
            # generation 3 takes over at the group's committed offset 6; 6 and 7 never come
            await commit_offset(kafka_bootstrap, group, topic, 0, 6)
            takeover_start = await guard.stranded(0, 3, end=8)
            guard.last_delivery[0] -= 60
            takeover = await guard.stranded(0, 3, end=8)
        finally:
            await guard.close()
        return (fresh, busy, unfetched, [r.offset for r in tail], again, redelivered,
                takeover_start, [r.offset for r in takeover])

    (fresh, busy, unfetched, tail, again, redelivered,
     takeover_start, takeover) = asyncio.run(scenario())
    assert takeover_start == [] and takeover == [6, 7]
    assert fresh == [] and busy == [] and unfetched == []
    assert tail == [5, 6, 7]
    assert again == []
    assert redelivered == (True, False)  # the stream's late copy is passed over, in that generation only

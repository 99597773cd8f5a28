"""The ingest agent's offset guard: the pure expectations, and reading skipped records back from
a real Kafka topic with the group's real committed offset."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.offset_guard import Expected, OffsetGuard, after, gap_start
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


@pytest.mark.integration
def test_skipped_records_are_read_back_from_the_committed_offset_and_between_events(kafka_bootstrap):
    topic, group = unique("guard."), unique("guard-group.")

    async def scenario() -> tuple[list[int], list[int], list[int], list[int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        for i in range(12):
            await producer.send_and_wait(topic, f"m{i}".encode(), partition=1)
        await producer.stop()
        committer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                                     enable_auto_commit=False)
        await committer.start()
        committer.assign([TopicPartition(topic, 1)])
        await committer.commit({TopicPartition(topic, 1): 3})
        await committer.stop()

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

"""Kafka topics of the pipeline, declared on a Faust app with their partition counts.

All data topics share ``INFLUENT_PARTITIONS`` partitions so that partition p of every topic
(writes, accepted, ticks, and the buffers changelog) is owned by the same worker.
"""
from __future__ import annotations

from dataclasses import dataclass

import faust

from influent.config import Settings


@dataclass(frozen=True)
class PipelineTopics:
    writes: faust.TopicT
    accepted: faust.TopicT
    rejected: faust.TopicT
    persisted: faust.TopicT
    ticks: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> PipelineTopics:
    def raw(name: str, **kw) -> faust.TopicT:
        return app.topic(name, partitions=settings.partitions, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", **kw)

    return PipelineTopics(
        writes=raw(settings.writes_topic),
        accepted=raw(settings.accepted_topic),
        rejected=raw(settings.rejected_topic),
        persisted=raw(settings.persisted_topic),
        ticks=raw(settings.ticks_topic),
    )

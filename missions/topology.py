"""Every broker name and routing key, derived from one namespace.

Layout (``ns`` is the namespace, default ``missions``)::

    ns.events        topic exchange every MissionEvent is published to, once
    ns.log           stream queue bound to "#": the durable ordered event log
    ns.dispatch      headers exchange that routes a work message to the work queue of
                     its mission type (header x-missions-mission-type); bound to
                     ns.events with "retrying.0"; the service publishes a CREATED or
                     REDRIVEN here itself, once the log has confirmed it, so no worker
                     event can precede it in the log
    ns.work.<type>   priority queue of the missions of one type ready to run, consumed
                     only by workers that handle the type
    ns.backoff.<ms>  delay queue (fixed TTL of <ms>) bound to "retrying.<ms>"; expired
                     messages dead-letter into ns.dispatch, so into their type's queue
    ns.dead          queue of work messages that could not be read, kept for an
                     operator (dead-lettered missions are in the log, and listed by
                     ListDeadLetters); nothing is bound to it
    ns.decisions     fanout exchange of the service's own decisions (every event it
                     publishes but CREATED: cancelled, redriven, and the reaper's
                     failed, retrying and dead_lettered); bound into ns.events, so
                     they reach the log and the other queues as every event does,
                     and into ns.control
    ns.control       stream queue of those decisions: every worker follows it to skip
                     cancelled work and stop what the service ended
    ns.session.<s>   queue of one worker session: the service's answers to its
                     STARTED events (StartVerdicts)
    ns.workers       fanout exchange for worker heartbeats (transient messages)
    ns.leader        single-active-consumer queue of ticks: its active consumer is the
                     service replica that declares lost workers' attempts

Routing keys are ``<event type>.<detail>``: ``created.<mission type>``,
``retrying.<delay ms>``, ``dead_lettered.<mission type>`` and so on.
"""

from __future__ import annotations

from dataclasses import dataclass

from missions.v1 import events_pb2

__all__ = ["Topology", "event_routing_key"]

# The header that names a message's mission type: the dispatch exchange routes work by it.
MISSION_TYPE_HEADER = "x-missions-mission-type"

# RabbitMQ's limit on the length of an exchange or queue name (an AMQP short string).
MAX_NAME_BYTES = 255

# The work queue's x-max-priority; AMQP priorities are the Priority enum numbers (1..4).
MAX_PRIORITY = 4


@dataclass(frozen=True, slots=True)
class Topology:
    """The names of one namespace's exchange and queues."""

    namespace: str = "missions"

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def log_queue(self) -> str:
        return f"{self.namespace}.log"

    @property
    def dispatch_exchange(self) -> str:
        return f"{self.namespace}.dispatch"

    def work_queue(self, mission_type: str) -> str:
        return f"{self.namespace}.work.{mission_type}"

    @property
    def legacy_work_queue(self) -> str:
        """The one work queue of every type, before work was routed by type (drained by the service)."""
        return f"{self.namespace}.work"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.dead"

    @property
    def control_queue(self) -> str:
        return f"{self.namespace}.control"

    @property
    def decisions_exchange(self) -> str:
        return f"{self.namespace}.decisions"

    def session_queue(self, session: str) -> str:
        """The queue of one worker session: the answers to its STARTED events."""
        return f"{self.namespace}.session.{session}"

    @property
    def workers_exchange(self) -> str:
        return f"{self.namespace}.workers"

    @property
    def leader_queue(self) -> str:
        return f"{self.namespace}.leader"

    def backoff_queue(self, delay_ms: int) -> str:
        return f"{self.namespace}.backoff.{delay_ms}"


def _event_name(event_type: events_pb2.EventType.ValueType) -> str:
    return events_pb2.EventType.Name(event_type).removeprefix("EVENT_TYPE_").lower()


def event_routing_key(event: events_pb2.MissionEvent) -> str:
    """Routing key of an event: what the work, retry and dead-letter bindings match on."""
    name = _event_name(event.type)
    if event.type == events_pb2.EVENT_TYPE_RETRYING:
        return f"{name}.{retry_delay_ms(event)}"
    return f"{name}.{event.mission_type or '_'}"


def retry_delay_ms(event: events_pb2.MissionEvent) -> int:
    """The backoff delay of a RETRYING event in whole milliseconds."""
    delay = event.retrying.delay
    return delay.seconds * 1000 + delay.nanos // 1_000_000


REDRIVEN_BINDING = "redriven.#"
# Bindings of the legacy work queue (ns.work) in earlier versions; the service removes them
# when it starts (mission_service/legacy_work.py), so only its retry queues still feed it.
LEGACY_WORK_BINDINGS = ("created.#", REDRIVEN_BINDING, "retrying.0")
# The dead-letter queue's binding in earlier versions, which copied every DEAD_LETTERED
# there; each process removes it when it declares the topology.
LEGACY_DEAD_LETTER_BINDING = "dead_lettered.#"
# Bindings of the control stream to ns.events in earlier versions, when every worker read
# every STARTED and COMPLETED; each process removes them when it declares the topology.
LEGACY_CONTROL_BINDINGS = (
    "started.#",
    "retrying.#",
    "completed.#",
    LEGACY_DEAD_LETTER_BINDING,
    "cancelled.#",
    REDRIVEN_BINDING,
)


def retry_binding(delay_ms: int) -> str:
    return f"retrying.{delay_ms}"

"""One member of a consumer group, through a real Kafka client, logging what
it is given so the test can check the group from the members' own view.

Each line of LOGFILE is one JSON event, flushed at once (the process may be
killed with SIGKILL at any moment):
  {"ev": "assigned"|"revoked", "t": wall_ms, "partitions": [[topic, p], ...]}
  {"ev": "consumed", "p": partition, "o": offset, "v": value}
  {"ev": "committed", "t": wall_ms, "offsets": [[p, offset], ...]}
  {"ev": "commit_failed", "t": wall_ms, "error": "..."}
Consumes until SIGTERM, committing synchronously after every poll that
returned records, then closes (final commit, LeaveGroup). The client
library's own log (INFO and up) goes to LOGFILE.client, for a failed test
to show; SIGUSR1 dumps every thread's stack to stderr (a hung client).

Usage: group_member.py {confluent,kafka-python} BOOTSTRAP GROUP TOPIC LOGFILE SESSION_MS [ASSIGNOR]
"""

import faulthandler
import json
import logging
import signal
import sys
import time

stopping = False


def on_term(*_):
    global stopping
    stopping = True


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def write(self, **event):
        event.setdefault("t", int(time.time() * 1000))
        self.f.write(json.dumps(event) + "\n")
        self.f.flush()


def tps(partitions):
    return [[tp.topic, tp.partition] for tp in partitions]


def run_confluent(bootstrap, group, topic, log, session_ms, assignor):
    from confluent_kafka import Consumer, KafkaException

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group,
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms, "heartbeat.interval.ms": max(100, session_ms // 5),
        "partition.assignment.strategy": assignor,
    })
    cooperative = assignor == "cooperative-sticky"

    def assigned(c, partitions):
        log.write(ev="assigned", partitions=tps(partitions))
        if cooperative:
            c.incremental_assign(partitions)

    def revoked(c, partitions):
        log.write(ev="revoked", partitions=tps(partitions))
        if cooperative:
            c.incremental_unassign(partitions)

    def lost(c, partitions):
        log.write(ev="revoked", partitions=tps(partitions), lost=True)
        if cooperative:
            c.incremental_unassign(partitions)

    consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=lost)
    while not stopping:
        msgs = consumer.consume(100, 0.2)
        good = [m for m in msgs if m.error() is None]
        for m in good:
            log.write(ev="consumed", p=m.partition(), o=m.offset(), v=m.value().decode())
        if good:
            try:
                done = consumer.commit(asynchronous=False)
                log.write(ev="committed", offsets=[[tp.partition, tp.offset] for tp in done
                                                   if tp.error is None])
            except KafkaException as e:
                log.write(ev="commit_failed", error=str(e))
    consumer.close()


def run_kafka_python(bootstrap, group, topic, log, session_ms, assignor):
    from kafka import KafkaConsumer
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.errors import KafkaError

    assignors = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}

    class Listener(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned):
            log.write(ev="assigned", partitions=tps(assigned))

        def on_partitions_revoked(self, revoked):
            log.write(ev="revoked", partitions=tps(revoked))

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=session_ms,
        heartbeat_interval_ms=max(100, session_ms // 5),
        partition_assignment_strategy=[assignors.get(assignor, RangePartitionAssignor)],
        request_timeout_ms=max(30000, session_ms + 5000))
    consumer.subscribe([topic], listener=Listener())
    while not stopping:
        batches = consumer.poll(timeout_ms=200, max_records=100)
        good = [m for records in batches.values() for m in records]
        for m in good:
            log.write(ev="consumed", p=m.partition, o=m.offset, v=m.value.decode())
        if good:
            last = {}
            for m in good:
                last[m.partition] = m.offset + 1
            try:
                consumer.commit()
                log.write(ev="committed", offsets=[[p, o] for p, o in last.items()])
            except KafkaError as e:
                log.write(ev="commit_failed", error=repr(e))
    consumer.close()


def main():
    client, bootstrap, group, topic, path, session_ms = sys.argv[1:7]
    assignor = sys.argv[7] if len(sys.argv) > 7 else "range"
    signal.signal(signal.SIGTERM, on_term)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(filename=path + ".client", level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = Log(path)
    run = {"confluent": run_confluent, "kafka-python": run_kafka_python}[client]
    run(bootstrap, group, topic, log, int(session_ms), assignor)
    log.write(ev="closed")


if __name__ == "__main__":
    main()

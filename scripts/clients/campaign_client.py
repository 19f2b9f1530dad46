"""The fault-injection campaign's librdkafka workload: a producer or a
consumer-group member through confluent-kafka, writing the operations it saw
as the checker's history (checker/src/history.rs) so librdkafka's behaviour
under faults is judged by the same rules as the Rust clients.

OUTFILE gets one JSON operation a line, flushed at once (the process may be
killed with SIGKILL at any moment; the collector drops a torn last line):
  producer: {"kind":"send",...} per delivery report, outcome ok/fail/unknown
  member:   {"kind":"seek",...} per partition assigned (offset null: it
            starts at the committed offset, which the client does not show),
            {"kind":"poll",...} per partition per consume() batch,
            {"kind":"commit",...} per partition committed (asynchronously;
            written from librdkafka's commit callback),
            {"kind":"assign",...} per ownership interval, written when it ends
Times are wall-clock milliseconds. On SIGTERM each mode stops, records what
is still open and exits 0.

Usage: campaign_client.py producer BOOTSTRAP TOPIC PARTITIONS PROCESS_ID OUTFILE RATE
       campaign_client.py member BOOTSTRAP GROUP TOPIC PROCESS_ID MEMBER_NAME OUTFILE SESSION_MS
"""

import json
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

stopping = False

# Errors after which a record or commit may or may not have taken effect:
# the request may have reached the broker with only the answer lost.
UNKNOWN_CODES = {KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT,
                 KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}

# Find a new leader or coordinator fast after a fault instead of waiting out
# librdkafka's defaults (30 s requests, 5 min metadata refresh).
FAST_FAILOVER = {
    "topic.metadata.refresh.interval.ms": 1000,
    "retry.backoff.ms": 100, "retry.backoff.max.ms": 1000,
    "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 1000,
    "socket.connection.setup.timeout.ms": 3000,
    # Bounds non-produce requests, above all a synchronous commit to a
    # paused coordinator, which would otherwise block for 60 s.
    "socket.timeout.ms": 10000,
    "socket.keepalive.enable": True,
}


def on_term(*_):
    global stopping
    stopping = True


def now_ms():
    return int(time.time() * 1000)


class History:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def write(self, **op):
        self.f.write(json.dumps(op) + "\n")
        self.f.flush()


def is_unknown(err):
    return err.code() in UNKNOWN_CODES or err.retriable()


def run_producer(bootstrap, topic, partitions, process, hist, rate):
    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": "all",
        # Idempotent: each record stored once (claim 8), so the checker
        # counts a duplicate of these sends as an anomaly.
        "enable.idempotence": True,
        # One request in flight per broker: a retry cannot overtake a later
        # record, so per-partition order is what the checker may demand.
        "max.in.flight.requests.per.connection": 1,
        "linger.ms": 0, "message.timeout.ms": 10000,
        # Below message.timeout.ms, so a request stuck on a dead leader is
        # retried (against the new one) before the record gives up.
        "request.timeout.ms": 5000,
        **FAST_FAILOVER,
    })
    pending = {}  # seq -> (t_start, partition, value): sent, no report yet

    def report(seq, err, msg):
        # pop, not get: after SIGTERM the leftovers are written as unknown,
        # and a late report (purge at destroy) must not add a second line.
        entry = pending.pop(seq, None)
        if entry is None:
            return
        t_start, partition, value = entry
        if err is None:
            outcome = {"status": "ok", "offset": msg.offset()}
        elif is_unknown(err):
            outcome = {"status": "unknown"}
        else:
            outcome = {"status": "fail", "error": str(err)}
        hist.write(kind="send", process=process, t_start=t_start, t_end=now_ms(),
                   topic=topic, partition=partition, value=value, outcome=outcome,
                   idempotent=True)

    interval = 1.0 / rate
    next_at = time.monotonic()
    seq = 0
    while not stopping:
        producer.poll(0)
        now = time.monotonic()
        if len(pending) >= 16:
            producer.poll(0.01)
            continue
        if now < next_at:
            producer.poll(min(0.01, next_at - now))
            continue
        # After a stall (16 unacknowledged during a failover) catch up by at
        # most one send rather than bursting the backlog.
        next_at = max(next_at + interval, now)
        partition, value = seq % partitions, f"lk{process}-{seq}"
        while not stopping:
            t_start = now_ms()
            try:
                producer.produce(topic, value=value.encode(), partition=partition,
                                 on_delivery=lambda err, msg, s=seq: report(s, err, msg))
                pending[seq] = (t_start, partition, value)
                break
            except BufferError:
                # Local queue full: nothing was sent, so no op; retry it.
                producer.poll(0.1)
            except KafkaException as e:
                # Refused before sending (e.g. unknown partition): a definite
                # failure, it can never be written.
                hist.write(kind="send", process=process, t_start=t_start, t_end=now_ms(),
                           topic=topic, partition=partition, value=value,
                           outcome={"status": "fail", "error": str(e.args[0])})
                break
        seq += 1
    producer.flush(15)
    for seq in sorted(pending):
        t_start, partition, value = pending.pop(seq)
        hist.write(kind="send", process=process, t_start=t_start, t_end=now_ms(),
                   topic=topic, partition=partition, value=value,
                   outcome={"status": "unknown"})


def run_member(bootstrap, group, topic, process, member, hist, session_ms):
    # Commits are asynchronous: a synchronous commit to a frozen coordinator
    # blocks the loop, and with it the lost callback librdkafka runs inside
    # consume() once the session times out, so the member would report
    # owning partitions long after another member got them.
    pending = []  # (t_start, {(topic, partition): offset}) in commit order

    def committed(err, parts):
        result = {(tp.topic, tp.partition): tp for tp in parts or []}
        offsets = {key: tp.offset for key, tp in result.items()}
        index = next((i for i, (_, o) in enumerate(pending) if o == offsets), None)
        t_start = pending.pop(index)[0] if index is not None else now_ms()
        t_end = now_ms()
        for (t, p), tp in sorted(result.items()):
            error = err or tp.error
            if error is None:
                outcome = {"status": "ok"}
            elif is_unknown(error):
                outcome = {"status": "unknown"}
            else:
                outcome = {"status": "fail", "error": str(error)}
            # librdkafka does not expose the group generation to Python.
            hist.write(kind="commit", process=process, t_start=t_start, t_end=t_end,
                       group=group, topic=t, partition=p, offset=tp.offset, generation=-1,
                       outcome=outcome)

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "client.id": member,
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(100, session_ms // 5),
        "on_commit": committed,
        **FAST_FAILOVER,
    })
    owned = {}  # (topic, partition) -> from_ms

    def assigned(c, parts):
        t = now_ms()
        for tp in parts:
            owned[(tp.topic, tp.partition)] = t
            hist.write(kind="seek", process=process, t_start=t, t_end=t,
                       topic=tp.topic, partition=tp.partition, offset=None)
        c.incremental_assign(parts)

    def released(c, parts):
        # Ownership ends when the revoke begins: written before unassigning,
        # and only for partitions still in `owned`, so the SIGTERM path
        # (which empties it before close()) never yields a second line.
        t = now_ms()
        for tp in parts:
            from_ms = owned.pop((tp.topic, tp.partition), None)
            if from_ms is not None:
                hist.write(kind="assign", group=group, member=member, topic=tp.topic,
                           partition=tp.partition, from_ms=from_ms, to_ms=t)
        c.incremental_unassign(parts)

    consumer.subscribe([topic], on_assign=assigned, on_revoke=released, on_lost=released)
    while not stopping:
        t_start = now_ms()
        msgs = consumer.consume(100, 0.2)
        t_end = now_ms()
        batches = {}  # (topic, partition) -> records, in the order received
        for m in msgs:
            if m.error() is None:
                value = (m.value() or b"").decode("utf-8", "replace")
                batches.setdefault((m.topic(), m.partition()), []).append(
                    {"offset": m.offset(), "value": value})
        for (t, p), records in batches.items():
            # A partition assigned during this consume() was read after its
            # seek: for the checker's ordering the poll starts there.
            start = max(t_start, owned.get((t, p), t_start))
            hist.write(kind="poll", process=process, t_start=start, t_end=max(start, t_end),
                       topic=t, partition=p, records=records)
        if batches:
            offsets = {key: records[-1]["offset"] + 1 for key, records in batches.items()}
            pending.append((now_ms(), offsets))
            try:
                consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                asynchronous=True)
            except KafkaException:
                pending.pop()  # not sent: nothing to record
    t = now_ms()
    for (tp_topic, p), from_ms in sorted(owned.items()):
        hist.write(kind="assign", group=group, member=member, topic=tp_topic,
                   partition=p, from_ms=from_ms, to_ms=t)
    owned.clear()
    consumer.close()


def main():
    signal.signal(signal.SIGTERM, on_term)
    mode, args = (sys.argv + [""])[1], sys.argv[2:]
    if mode == "producer" and len(args) == 6:
        bootstrap, topic, partitions, process, path, rate = args
        run_producer(bootstrap, topic, int(partitions), int(process), History(path),
                     float(rate))
    elif mode == "member" and len(args) == 7:
        bootstrap, group, topic, process, member, path, session_ms = args
        run_member(bootstrap, group, topic, int(process), member, History(path),
                   int(session_ms))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

"""Keep producing and consuming through a real Kafka client while the test
kills the partition's leader, and check that the consumer was given every
acknowledged record at the offset it was acknowledged at, and (the
producers are idempotent: kafka-python's by default, librdkafka's switched
on) that no value was stored twice and acknowledged values are stored in
send order (claim 8). Exit status 0 only if so. Prints "delivered N" and
"consumed M" on success.

Usage: failover.py {confluent,kafka-python} BOOTSTRAP TOPIC SECONDS
"""

import sys
import time


def produce_confluent(bootstrap, topic, seconds):
    from confluent_kafka import Producer

    acked = {}
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "message.timeout.ms": 30000, "linger.ms": 5})

    def report(err, msg):
        if err is None:
            acked[msg.value().decode()] = msg.offset()

    deadline, i = time.time() + seconds, 0
    while time.time() < deadline:
        producer.produce(topic, f"confluent-{i}".encode(), partition=0, on_delivery=report)
        producer.poll(0)
        i += 1
        time.sleep(0.002)
    producer.flush(40)
    return acked


def produce_kafka_python(bootstrap, topic, seconds):
    from kafka import KafkaProducer

    # kafka-python 3's default producer is idempotent (acks=all with it).
    producer = KafkaProducer(bootstrap_servers=bootstrap, retries=100,
                             retry_backoff_ms=50, request_timeout_ms=5000,
                             max_block_ms=30000)
    futures, deadline, i = [], time.time() + seconds, 0
    while time.time() < deadline:
        value = f"kafka-python-{i}"
        futures.append((value, producer.send(topic, value.encode(), partition=0)))
        i += 1
        time.sleep(0.002)
    producer.flush(40)
    acked, failed = {}, []
    for value, future in futures:
        try:
            acked[value] = future.get(timeout=0).offset
        except Exception as e:  # not acknowledged: may or may not be stored
            failed.append(repr(e))
    if failed:
        print(f"kafka-python: {len(failed)} sends failed, first: {failed[0]}", file=sys.stderr)
    return acked


def consume_confluent(bootstrap, topic, stop, out):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "failover-confluent",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    while not stop():
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            out[msg.offset()] = msg.value().decode()
    consumer.close()


def consume_kafka_python(bootstrap, topic, stop, out):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             request_timeout_ms=5000)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    while not stop():
        for records in consumer.poll(timeout_ms=200).values():
            for r in records:
                out[r.offset] = r.value.decode()
    consumer.close()


def high_watermark(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "failover-hw"})
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    consumer.close()
    return high


def client_prefix(client):
    return "confluent-" if client == "confluent" else "kafka-python-"


def check_once_in_order(prefix, acked, consumed):
    """No value of this producer is stored twice, and its acknowledged
    values lie at offsets increasing with their send index."""
    seen = {}
    for offset in sorted(consumed):
        value = consumed[offset]
        if not value.startswith(prefix):
            continue
        if value in seen:
            sys.exit(f"{value} stored twice: at {seen[value]} and {offset}")
        seen[value] = offset
    by_index = sorted(acked.items(), key=lambda kv: int(kv[0][len(prefix):]))
    for (a, a_offset), (b, b_offset) in zip(by_index, by_index[1:]):
        if a_offset >= b_offset:
            sys.exit(f"{a} sent before {b} but stored at {a_offset} >= {b_offset}")


def main():
    import threading

    client, bootstrap, topic, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    produce = produce_confluent if client == "confluent" else produce_kafka_python
    consume = consume_confluent if client == "confluent" else consume_kafka_python
    # The same client consumes while it produces, so both cross the
    # leader change; the consumer then catches up to the high watermark.
    consumed, done = {}, threading.Event()
    reader = threading.Thread(target=consume, args=(bootstrap, topic, done.is_set, consumed))
    reader.start()
    acked = produce(bootstrap, topic, seconds)
    high = high_watermark(bootstrap, topic)
    deadline = time.time() + 60
    while len(consumed) < high and time.time() < deadline:
        time.sleep(0.1)
    done.set()
    reader.join()
    for value, offset in acked.items():
        if consumed.get(offset) != value:
            sys.exit(f"acknowledged {value} at {offset}, consumed {consumed.get(offset)!r}")
    check_once_in_order(client_prefix(client), acked, consumed)
    print(f"delivered {len(acked)}")
    print(f"consumed {len(consumed)}")


if __name__ == "__main__":
    main()

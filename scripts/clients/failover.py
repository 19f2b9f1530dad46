"""Keep producing through a real Kafka client while the test kills the
partition's leader, then consume everything back and check that every
acknowledged record is there, once, at the offset it was acknowledged at.
Exit status 0 only if so. Prints "delivered N" on success.

Usage: failover.py {confluent,kafka-python} BOOTSTRAP TOPIC SECONDS
"""

import sys
import time


def produce_confluent(bootstrap, topic, seconds):
    from confluent_kafka import Producer

    acked = {}
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
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

    # No idempotent producer yet (InitProducerId is not served): plain retries.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=100,
                             enable_idempotence=False,
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


def consume_all(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "failover-check",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    consumer.assign([TopicPartition(topic, 0, 0)])
    records = {}
    deadline = time.time() + 60
    while len(records) < high and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        records[msg.offset()] = msg.value().decode()
    consumer.close()
    return records


def main():
    client, bootstrap, topic, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    produce = produce_confluent if client == "confluent" else produce_kafka_python
    acked = produce(bootstrap, topic, seconds)
    stored = consume_all(bootstrap, topic)
    for value, offset in acked.items():
        if stored.get(offset) != value:
            sys.exit(f"acknowledged {value} at {offset}, found {stored.get(offset)!r}")
    values = list(stored.values())
    if len(set(values)) != len(values):
        print(f"duplicates (at-least-once retries): {len(values) - len(set(values))}")
    print(f"delivered {len(acked)}")


if __name__ == "__main__":
    main()

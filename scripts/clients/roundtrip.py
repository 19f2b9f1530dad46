"""Produce N records with keys and headers through a real Kafka client, consume
them back with the same client, and check the exact round trip: values, keys,
headers, and contiguous offsets from 0. Exit status 0 only if all match.
Every producer is idempotent: kafka-python's by default (3.0+), librdkafka's
and aiokafka's with their `enable.idempotence` switched on.

Usage: roundtrip.py {confluent,kafka-python,aiokafka} BOOTSTRAP TOPIC CODEC COUNT
"""

import asyncio
import sys
import time

TIMEOUT_S = 120


def record(i, codec):
    key = f"key-{i}".encode()
    value = (f"value-{i}-" * (i % 7 + 1)).encode()
    headers = [("index", str(i).encode()), ("codec", codec.encode())]
    return key, value, headers


def check(consumed, count, codec):
    """consumed: list of (offset, key, value, headers as list of (str, bytes))."""
    if len(consumed) != count:
        sys.exit(f"consumed {len(consumed)} records, produced {count}")
    for i, (offset, key, value, headers) in enumerate(consumed):
        want_key, want_value, want_headers = record(i, codec)
        if offset != i:
            sys.exit(f"record {i} at offset {offset}: offsets are not contiguous from 0")
        if (key, value) != (want_key, want_value):
            sys.exit(f"record {i}: got key={key!r} value={value[:40]!r}")
        if list(headers) != want_headers:
            sys.exit(f"record {i}: got headers {headers!r}, want {want_headers!r}")


def confluent(bootstrap, topic, codec, count):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "compression.type": codec,
        "linger.ms": 5,
        "enable.idempotence": True,
    })
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(err)

    for i in range(count):
        key, value, headers = record(i, codec)
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, partition=0, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(TIMEOUT_S) != 0 or failures:
        sys.exit(f"delivery failed: {failures[:3]}")

    # librdkafka's consumer needs a group id even for assign().
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"roundtrip-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumed = []
    deadline = time.time() + TIMEOUT_S
    while len(consumed) < count and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        consumed.append((msg.offset(), msg.key(), msg.value(), msg.headers() or []))
    # Commit and read back the committed offset (the broker keeps it).
    consumer.commit(offsets=[TopicPartition(topic, 0, len(consumed))], asynchronous=False)
    committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    consumer.close()
    if committed != len(consumed):
        sys.exit(f"committed offset reads back as {committed}, not {len(consumed)}")
    return consumed


def kafka_python(bootstrap, topic, codec, count):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
    )
    futures = []
    for i in range(count):
        key, value, headers = record(i, codec)
        futures.append(producer.send(topic, value=value, key=key, headers=headers, partition=0))
    producer.flush(TIMEOUT_S)
    for f in futures:
        f.get(timeout=TIMEOUT_S)
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    consumed = []
    deadline = time.time() + TIMEOUT_S
    while len(consumed) < count and time.time() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            for r in records:
                consumed.append((r.offset, r.key, r.value, list(r.headers)))
    consumer.close()
    return consumed


def aiokafka(bootstrap, topic, codec, count):
    return asyncio.run(aiokafka_async(bootstrap, topic, codec, count))


async def aiokafka_async(bootstrap, topic, codec, count):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
        enable_idempotence=True,
    )
    await producer.start()
    try:
        futures = []
        for i in range(count):
            key, value, headers = record(i, codec)
            futures.append(await producer.send(topic, value=value, key=key, headers=headers, partition=0))
        for f in futures:
            await asyncio.wait_for(f, TIMEOUT_S)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    consumed = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = time.time() + TIMEOUT_S
        while len(consumed) < count and time.time() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for r in records:
                    consumed.append((r.offset, r.key, r.value, list(r.headers)))
    finally:
        await consumer.stop()
    return consumed


def main():
    client, bootstrap, topic, codec, count = sys.argv[1:6]
    count = int(count)
    run = {"confluent": confluent, "kafka-python": kafka_python, "aiokafka": aiokafka}[client]
    consumed = run(bootstrap, topic, codec, count)
    check(consumed, count, codec)
    print(f"{client} {codec}: {count} records round-tripped")


if __name__ == "__main__":
    main()

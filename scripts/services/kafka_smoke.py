"""Smoke test of the real Apache Kafka broker that scripts/services/kafka.sh starts: plain
produce/consume and the transactional guarantees Rheo's exactly-once Kafka sink relies on.

    scripts/with-kafka.sh python scripts/services/kafka_smoke.py     # or: make kafka-smoke

Needs KAFKA_BOOTSTRAP (with-kafka.sh exports it). Topic and group names are unique per run, so it
can run against a broker that already holds data. Prints one line per check and ends with
"N passed, N failed"; exits non-zero when a check fails.
"""

import os
import sys
import time
import traceback
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
RUN = uuid.uuid4().hex[:8]
TIMEOUT = 30.0  # seconds for any single wait on the broker


def name(kind):
    return f"smoke-{RUN}-{kind}"


def create_topic(admin, topic, partitions):
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=TIMEOUT)


def producer(**extra):
    conf = {"bootstrap.servers": BOOTSTRAP, "linger.ms": 0}
    conf.update(extra)
    return Producer(conf)


def txn_producer(txn_id):
    p = producer(**{"transactional.id": txn_id})
    p.init_transactions(TIMEOUT)
    return p


def consumer(isolation, group=None, **extra):
    conf = {
        "bootstrap.servers": BOOTSTRAP,
        "group.id": group or name(f"g-{uuid.uuid4().hex[:6]}"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    }
    conf.update(extra)
    return Consumer(conf)


def produce_values(p, topic, values, partition=None):
    for v in values:
        kwargs = {} if partition is None else {"partition": partition}
        p.produce(topic, value=v.encode(), **kwargs)
    p.flush(TIMEOUT)


def read_until(c, topic, last, partitions=(0,)):
    """Reads `topic` from the start until the record `last` arrives; returns all values read."""
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        seen.append(m.value().decode())
        if seen[-1] == last:
            return seen
    raise AssertionError(f"{last!r} not read within {TIMEOUT} s; read {seen}")


def read_for(c, seconds):
    """Everything an already-assigned consumer reads within `seconds`."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None:
            if m.error():
                raise KafkaException(m.error())
            seen.append(m.value().decode())
    return seen


def check_produce_consume(admin):
    topic = name("plain")
    create_topic(admin, topic, 3)
    p = producer(**{"enable.idempotence": True})
    delivered = []
    for i in range(30):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(),
                  on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())))
    p.flush(TIMEOUT)
    assert len(delivered) == 30 and all(err is None for err, _, _ in delivered), delivered
    assert {part for _, part, _ in delivered} == {0, 1, 2}, "keys should spread over 3 partitions"
    group = name("plain-group")
    c = consumer("read_uncommitted", group)
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 30 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    assert sorted(got) == sorted(f"v{i}" for i in range(30)), got
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, i) for i in range(3)], timeout=TIMEOUT)
    assert sum(tp.offset for tp in committed) == 30, committed
    c.close()


def check_commit_and_abort(admin):
    topic = name("txn")
    create_topic(admin, topic, 1)
    p = txn_producer(name("txn-id"))
    for label, n, commit in (("c1", 3, True), ("a", 3, False), ("c2", 2, True)):
        p.begin_transaction()
        produce_values(p, topic, [f"{label}-{i}" for i in range(n)])
        if commit:
            p.commit_transaction(TIMEOUT)
        else:
            p.abort_transaction(TIMEOUT)
    committed = ["c1-0", "c1-1", "c1-2", "c2-0", "c2-1"]
    everything = ["c1-0", "c1-1", "c1-2", "a-0", "a-1", "a-2", "c2-0", "c2-1"]
    c = consumer("read_committed")
    rc = read_until(c, topic, "c2-1")
    c.close()
    assert rc == committed, f"read_committed saw {rc}, want {committed} (aborted records must not show)"
    c = consumer("read_uncommitted")
    ru = read_until(c, topic, "c2-1")
    c.close()
    # The control: the aborted records are in the log, only filtered for read_committed.
    assert ru == everything, f"read_uncommitted saw {ru}, want {everything}"
    return f"read_committed={len(rc)} records, read_uncommitted={len(ru)}"


def check_open_txn_hides_later(admin):
    topic = name("lso")
    create_topic(admin, topic, 1)
    plain = producer()
    produce_values(plain, topic, ["before"])
    p = txn_producer(name("lso-id"))
    p.begin_transaction()
    produce_values(p, topic, ["open-0", "open-1"])  # offsets 1, 2 (+ no marker yet)
    produce_values(plain, topic, ["after-0", "after-1"])  # offsets 3, 4: behind the open txn
    rc = consumer("read_committed")
    ru = consumer("read_uncommitted")
    # ListOffsets(latest) answers the last stable offset for read_committed: stuck at the open txn.
    _, lso = rc.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT, cached=False)
    _, hw = ru.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT, cached=False)
    assert (lso, hw) == (1, 5), f"while open: LSO={lso} (want 1), high watermark={hw} (want 5)"
    seen = read_until(rc, topic, "before")
    seen += read_for(rc, 2.0)
    assert seen == ["before"], f"read_committed read {seen} while the transaction was open"
    p.commit_transaction(TIMEOUT)
    seen += read_until_more(rc, "after-1")
    assert seen == ["before", "open-0", "open-1", "after-0", "after-1"], seen
    _, lso = rc.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT, cached=False)
    assert lso == 6, f"after commit LSO={lso}, want 6 (5 records + commit marker)"
    rc.close()
    ru.close()
    return "LSO held at 1 while HW=5, then 6 after commit"


def read_until_more(c, last):
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        seen.append(m.value().decode())
        if seen[-1] == last:
            return seen
    raise AssertionError(f"{last!r} not read within {TIMEOUT} s after commit; read {seen}")


FENCED_CODES = {
    KafkaError._FENCED,  # librdkafka's local fatal "producer fenced" state
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
}


def check_zombie_fencing(admin):
    topic = name("fence")
    create_topic(admin, topic, 1)
    txn_id = name("fence-id")
    zombie = txn_producer(txn_id)
    zombie.begin_transaction()
    produce_values(zombie, topic, ["zombie-0"])
    # The successor's InitProducerId bumps the epoch: it aborts the zombie's open transaction and
    # fences the zombie. (Its first tries may be answered CONCURRENT_TRANSACTIONS while the abort
    # completes; librdkafka retries, and logs that.)
    successor = txn_producer(txn_id)
    err = None
    try:
        # The Flink case: a task that lost its lease tries to commit what it pre-committed.
        zombie.commit_transaction(TIMEOUT)
    except KafkaException as e:
        err = e.args[0]
    assert err is not None, "the zombie committed after a producer with its transactional.id was initialised"
    assert err.code() in FENCED_CODES, f"zombie failed, but not as fenced: {err}"
    assert err.fatal(), f"fenced error should be fatal for the zombie: {err}"
    successor.begin_transaction()
    produce_values(successor, topic, ["successor-0"])
    successor.commit_transaction(TIMEOUT)
    c = consumer("read_committed")
    seen = read_until(c, topic, "successor-0")
    c.close()
    assert seen == ["successor-0"], f"read_committed saw {seen}: the zombie's records must not show"
    return f"zombie got {KafkaError(err.code()).name()}: {err.str()}"


def check_send_offsets(admin):
    src, dst = name("ctp-in"), name("ctp-out")
    create_topic(admin, src, 1)
    create_topic(admin, dst, 1)
    produce_values(producer(), src, [f"in-{i}" for i in range(5)])
    group = name("ctp-group")
    c = consumer("read_committed", group)
    c.subscribe([src])
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 5 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    assert got == [f"in-{i}" for i in range(5)], got
    tp = TopicPartition(src, 0)

    def committed():
        return c.committed([tp], timeout=TIMEOUT)[0].offset

    before = committed()
    p = txn_producer(name("ctp-id"))
    # An aborted transaction must not move the group's offsets ...
    p.begin_transaction()
    produce_values(p, dst, [v.replace("in", "out") for v in got])
    p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), TIMEOUT)
    p.abort_transaction(TIMEOUT)
    after_abort = committed()
    # ... a committed one must, atomically with its output.
    p.begin_transaction()
    produce_values(p, dst, [v.replace("in", "out") for v in got])
    p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), TIMEOUT)
    p.commit_transaction(TIMEOUT)
    after_commit = committed()
    c.close()
    assert before < 0, f"group had committed offset {before} before any transaction"
    assert after_abort < 0, f"aborted transaction moved the group offset to {after_abort}"
    assert after_commit == 5, f"group offset after commit is {after_commit}, want 5"
    c2 = consumer("read_committed")
    out = read_until(c2, dst, "out-4")
    c2.close()
    assert out == [f"out-{i}" for i in range(5)], f"output read_committed: {out}"
    # A new member of the group resumes after the transactionally committed offset.
    c3 = consumer("read_committed", group)
    c3.subscribe([src])
    produce_values(producer(), src, ["in-5"])
    m = None
    deadline = time.monotonic() + TIMEOUT
    while m is None and time.monotonic() < deadline:
        m = c3.poll(0.5)
        if m is not None and m.error():
            m = None
    c3.close()
    assert m is not None and m.value() == b"in-5", f"resumed group read {m and m.value()}, want in-5"
    return "group offset: none -> none after abort -> 5 after commit"


CHECKS = [
    ("produce/consume, idempotent producer, group commit", check_produce_consume),
    ("transactional commit visible, aborted hidden (read_committed)", check_commit_and_abort),
    ("open transaction hides later records (LSO) until commit", check_open_txn_hides_later),
    ("zombie fencing (same transactional.id)", check_zombie_fencing),
    ("send_offsets_to_transaction moves group offsets on commit only", check_send_offsets),
]


def main():
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    md = admin.list_topics(timeout=TIMEOUT)
    print(f"kafka_smoke: broker {BOOTSTRAP}, cluster {md.cluster_id}, brokers {sorted(md.brokers)}")
    passed = failed = 0
    t_all = time.monotonic()
    for label, fn in CHECKS:
        t0 = time.monotonic()
        try:
            note = fn(admin)
            passed += 1
            print(f"ok    {label} ({time.monotonic() - t0:.2f} s){': ' + note if note else ''}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next check runs
            failed += 1
            print(f"FAIL  {label} ({time.monotonic() - t0:.2f} s): {e}")
            traceback.print_exc(file=sys.stderr)
        sys.stdout.flush()
    print(f"kafka_smoke: {time.monotonic() - t_all:.2f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

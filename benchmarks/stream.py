"""Streaming benchmark: ``modelport stream`` against a bare consume → produce loop, in one run.

All variants run the same delivery discipline against the same broker and input topic (JSON
records of 5 float features, keyed, over 4 partitions): read up to ``--batch`` messages (500),
produce, wait for every delivery report, commit offsets synchronously. Each runs in its own
process with ``OMP_NUM_THREADS=1`` and is timed from its first message to its last commit:

(a) passthrough: confluent-kafka only, the message bytes forwarded unchanged (no model);
(a') JSON passthrough: the same, but each message is parsed and re-serialized with orjson (one
    field added) — the floor for any JSON-in / JSON-out worker, still without a model;
(b) modelport: ``StreamLoop`` with the Kafka source / sink and a LogisticRegression bundle —
    decode, coerce through the signature, one ``predict_proba`` per batch, encode, produce
    (``--accelerate auto`` by default, as ``modelport stream run``: ONNX Runtime when its
    predictions match). It pipelines: batch N+1 is predicted while batch N is acknowledged,
    still committing each batch only after its acks, with one batch in flight at most; (a) and
    (a') do not;
(b') modelport logging every prediction with all its features to a Delta table (the
    prediction log, as ``stream run --log delta``), timed until the log holds every row.

All variants use the same client settings: producers acks=all, idempotent, linger.ms=1,
delivery reports for failures only; consumers read ahead at most 10 batches per partition
(``queued.min.messages``, checked every 10 ms), as ``modelport stream run`` does. Left to
librdkafka's default the consumer would read the whole input at once and then keep a fetch
waiting at the end of the log, which noida-db serves by busy-polling: a core spent for as long
as a variant runs, which penalizes the slower variant twice. modelport's outputs also carry a
``request-id`` header, part of its output contract.

Reports messages/s for each and the ratios (b)/(a') — the target: at least 90 % of the JSON
passthrough, the floor of any JSON-in/JSON-out worker — and (b)/(a) for reference, with the load
average before and after. The machine may be shared: compare ratios from one run, and use
``--repeat`` to interleave runs and report the median. A noida-db broker is started on a free
port unless ``--bootstrap`` names one; then each variant starts once the broker is idle (it
keeps writing for a few seconds after a run), so no variant pays for the one before it.

    python benchmarks/stream.py                    # 200,000 messages
    python benchmarks/stream.py --messages 50000 --batch 2000 --json results.json
    python benchmarks/stream.py --messages 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

PASSTHROUGH = textwrap.dedent("""
    import json, sys, time
    import orjson
    from confluent_kafka import Consumer, Producer, TopicPartition
    bootstrap, src, dst, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    batch, transform, prefetch = int(sys.argv[6]), sys.argv[7] == "json", int(sys.argv[8])
    # the read-ahead modelport's KafkaSource uses for this batch size (see the module docstring)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": sys.argv[5],
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "queued.min.messages": prefetch,
                         "fetch.queue.backoff.ms": 10})
    failed = []
    def delivered(err, msg):
        if err is not None:
            failed.append(err)
    # the producer settings of modelport's KafkaSink, so only the work per message differs
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1,
                         "enable.idempotence": True, "partitioner": "murmur2_random",
                         "delivery.report.only.error": True, "on_delivery": delivered})
    consumer.subscribe([src])
    done, start = 0, None
    while done < n:
        msgs = consumer.consume(batch, 0.1)
        if not msgs:
            continue
        if start is None:
            start = time.perf_counter()
        top = {}
        for m in msgs:
            value = m.value()
            if transform:  # what any JSON-in/JSON-out service pays, with no model at all
                record = orjson.loads(value)
                record["seen"] = True
                value = orjson.dumps(record)
            producer.produce(dst, value, m.key())
            top[m.partition()] = m.offset()
        assert producer.flush(30) == 0 and not failed
        consumer.commit(offsets=[TopicPartition(src, p, o + 1) for p, o in top.items()],
                        asynchronous=False)
        done += len(msgs)
    seconds = time.perf_counter() - start
    consumer.close()
    print(json.dumps({"messages": done, "seconds": seconds}))
""")

MODELPORT = textwrap.dedent("""
    import gc, json, sys, time
    from modelport.bundle.model import load_bundle
    from modelport.core.runner import Runner, RunnerOptions
    from modelport.stream import StreamLoop, StreamOptions
    from modelport.stream.kafka import KafkaSink, KafkaSource
    bootstrap, src, dst, n, group, bundle, accelerate, batch, prefetch = sys.argv[1:10]
    log_dir = sys.argv[10] if len(sys.argv) > 10 else None
    n = int(n)
    runner = Runner(load_bundle(bundle), RunnerOptions(accelerate=accelerate)).load()
    plog = None
    if log_dir:  # "log every prediction, all features" to a Delta table, as stream run --log
        from modelport.log import LogConfig, PredictionLog
        from modelport.log.delta import DeltaStore
        plog = PredictionLog([DeltaStore(log_dir)], LogConfig()).start()  # as stream run does
        runner.events.subscribe(plog)
    source = KafkaSource(bootstrap, [src], group, prefetch=int(prefetch))
    loop = StreamLoop(runner, source,
                      KafkaSink(bootstrap, dst), dead_letter_topic=src + ".dlq",
                      options=StreamOptions(max_batch=int(batch), max_wait_ms=100,
                                            passthrough=("id",)))
    loop.start()
    gc.freeze()  # as `modelport stream run` does
    start = None
    while loop.totals.messages < n:
        report = loop.run_once()
        if report.messages and start is None:
            start = time.perf_counter() - report.seconds
    loop.finish()  # the last batch may still be in flight: the clock stops at its commit
    if plog is not None:  # and, when logging, once the log holds every prediction
        runner.events.flush()
        plog.close()
    seconds = time.perf_counter() - start
    loop.close()
    print(json.dumps({"messages": loop.totals.messages, "seconds": seconds,
                      "outputs": loop.totals.outputs, "accelerated": runner.accelerated}))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_noida(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    import noida_db

    binary = Path(noida_db.__file__).parent / "noida-db"
    port = _free_port()
    with (root / "broker.log").open("wb") as log:
        proc = subprocess.Popen([str(binary), "start", "--data-dir", str(root / "data"),
                                 "--only", "kafka", "--kafka-port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"127.0.0.1:{port}"
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("noida-db did not start")


def _topic(bootstrap: str, name: str, partitions: int) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)
    return name


def _fill(bootstrap: str, topic: str, n: int) -> None:
    import numpy as np
    import orjson
    from confluent_kafka import Producer

    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(n, 5)), 4).tolist()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "partitioner": "murmur2_random"})
    for i, row in enumerate(x):
        value = orjson.dumps({"id": i, **{f"f{j}": v for j, v in enumerate(row)}})
        while True:
            try:
                producer.produce(topic, value, f"k{i}".encode())
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(120) == 0


def _bundle(root: Path) -> Path:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import modelport

    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(1000, 5)), columns=[f"f{j}" for j in range(5)])
    y = (x["f0"] - x["f2"] > 0).astype(int)
    return modelport.save(LogisticRegression().fit(x, y), root / "bundle", name="bench",
                          example=x.head(20))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_idle(pid: int, timeout_s: float = 30.0) -> float:
    """Wait until process ``pid`` uses under 5% of a core over half a second; return the wait."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        before = _cpu_seconds(pid)
        time.sleep(0.5)
        if _cpu_seconds(pid) - before < 0.025:
            break
    return time.monotonic() - start


def _run(script: str, args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         env=env, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"benchmark variant failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--bootstrap", help="an existing broker (default: start noida-db)")
    parser.add_argument("--batch", type=int, default=500, help="messages per batch (both)")
    parser.add_argument("--accelerate", choices=["auto", "onnx", "off"], default="auto",
                        help="modelport's ONNX acceleration (default auto, as the CLI)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each variant, interleaved; reports the median (default 1)")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mp-stream-bench-") as tmp:
        root = Path(tmp)
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker, bootstrap = _start_noida(root)
        try:
            tag = uuid.uuid4().hex[:6]
            src = _topic(bootstrap, f"bench-in-{tag}", 4)
            _fill(bootstrap, src, args.messages)
            bundle = _bundle(root)
            from modelport.stream.kafka import read_ahead

            prefetch = str(read_ahead(args.batch))  # the same read-ahead for every variant
            results: dict[str, Any] = {"messages": args.messages, "broker": bootstrap,
                                       "batch": args.batch, "repeat": args.repeat,
                                       "load_before": os.getloadavg()}
            variants = (
                ("passthrough", PASSTHROUGH, [str(args.batch), "bytes", prefetch]),
                ("json_passthrough", PASSTHROUGH, [str(args.batch), "json", prefetch]),
                ("modelport", MODELPORT, [str(bundle), args.accelerate, str(args.batch),
                                          prefetch]),
                ("modelport_logged", MODELPORT, [str(bundle), args.accelerate, str(args.batch),
                                                 prefetch, str(root / "log")]),
            )
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
            for round_ in range(args.repeat):  # interleaved, so a busy moment hits all three;
                # each round starts with another variant
                turn = round_ % len(variants)
                for name, script, extra in variants[turn:] + variants[:turn]:
                    dst = _topic(bootstrap, f"bench-{name}-{tag}-{round_}", 4)
                    if broker is not None:
                        _wait_idle(broker.pid)
                    r = _run(script, [bootstrap, src, dst, str(args.messages),
                                      f"g-{name}-{tag}-{round_}", *extra])
                    r["messages_per_s"] = r["messages"] / r["seconds"]
                    runs[name].append(r)
                    print(f"{name:17s} {r['messages']:>8d} messages in {r['seconds']:7.2f} s "
                          f"= {r['messages_per_s']:>9,.0f} msg/s", flush=True)
            for name, rs in runs.items():  # the median run of each variant
                results[name] = sorted(rs, key=lambda r: r["messages_per_s"])[len(rs) // 2]
                results[name]["runs_messages_per_s"] = [r["messages_per_s"] for r in rs]
            results["load_after"] = os.getloadavg()
            ratio = results["modelport"]["messages_per_s"] / results["passthrough"][
                "messages_per_s"]
            results["ratio"] = ratio
            json_ratio = results["modelport"]["messages_per_s"] / results["json_passthrough"][
                "messages_per_s"]
            results["ratio_to_json_passthrough"] = json_ratio
            logged = results["modelport_logged"]["messages_per_s"] / results["modelport"][
                "messages_per_s"]
            results["ratio_logged"] = logged
            label = f"median of {args.repeat} runs: " if args.repeat > 1 else ""
            print(f"{label}modelport logging every prediction / modelport = {logged:.0%} "
                  "(target >= 90%)")
            # the target is the JSON passthrough: a JSON-in/JSON-out worker cannot reach 70 % of
            # a bytes passthrough (which does no JSON at all); 90 % of the JSON floor is the bar
            print(f"{label}modelport / JSON passthrough = {json_ratio:.0%} (target >= 90%); "
                  f"modelport / bytes passthrough = {ratio:.0%} (for reference); load average "
                  f"{results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after")
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2))
        finally:
            if broker is not None:  # stopped before its data directory is removed
                broker.send_signal(signal.SIGTERM)
                try:
                    broker.wait(30)
                except subprocess.TimeoutExpired:
                    broker.kill()
                    broker.wait(10)


if __name__ == "__main__":
    main()

"""A consumer that reacts to every message: counts per topic, written to a stats file."""

import json
import os
import threading
import time

from moksha.hub.api import Consumer

STATS_FILE = os.environ.get("CRUST_MOKSHA_STATS", "/run/crust-moksha/stats.json")


class CountingConsumer(Consumer):
    # "/topic/#": every message on RabbitMQ's amq.topic exchange, whatever its routing key.
    topic = "/topic/#"
    config_key = "crust.counting_consumer"
    jsonify = True

    def __init__(self, hub):
        self.counts = {}
        self.lock = threading.Lock()
        self.started = time.time()
        super().__init__(hub)
        self.write()

    def consume(self, message):
        topic = message.get("topic") or "?"
        topic = topic.rsplit("/", 1)[-1]
        with self.lock:
            self.counts[topic] = self.counts.get(topic, 0) + 1
            self.write()

    def write(self):
        data = {"counts": self.counts, "total": sum(self.counts.values()), "since": self.started, "updated": time.time()}
        tmp = f"{STATS_FILE}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, STATS_FILE)

"""A producer that publishes this machine's live metrics on a timer (topic "metrics")."""

import datetime
import os
import time

from moksha.hub.api import PollingProducer


def read_metrics():
    with open("/proc/loadavg", encoding="ascii") as fh:
        load1 = float(fh.read().split()[0])
    meminfo = {}
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            key, value = line.split(":", 1)
            meminfo[key] = int(value.split()[0])
    used = 100.0 * (1 - meminfo["MemAvailable"] / meminfo["MemTotal"])
    return {"time": time.time(), "load1": load1, "mem_used_pct": round(used, 1), "cpus": os.cpu_count()}


class MetricsProducer(PollingProducer):
    frequency = datetime.timedelta(seconds=float(os.environ.get("CRUST_MOKSHA_METRICS_SECONDS", "2")))
    config_key = "crust.metrics_producer"

    def poll(self):
        self.send_message("/topic/metrics", read_metrics())

"""python -m crust_moksha_demo.hub: run the Moksha hub over RabbitMQ's STOMP.

The broker credentials come from the environment (written at first boot); the consumers
and producers are the installed "moksha.consumer" / "moksha.producer" entry points.
"""

import os

import moksha.hub


def config_from_env(env=os.environ):
    return {
        "stomp_broker": env.get("CRUST_MOKSHA_STOMP_HOST", "127.0.0.1"),
        "stomp_port": int(env.get("CRUST_MOKSHA_STOMP_PORT", "61613")),
        "stomp_vhost": env.get("CRUST_MOKSHA_VHOST", "/"),
        "stomp_user": env["CRUST_MOKSHA_USER"],
        "stomp_pass": env["CRUST_MOKSHA_PASSWORD"],
        "stomp_heartbeat": 0,
        "zmq_enabled": False,
        "moksha.workers_per_consumer": 1,
        "crust.counting_consumer": True,
        "crust.metrics_producer": True,
    }


def main():
    moksha.hub.main(options=config_from_env(), framework=True)


if __name__ == "__main__":
    main()

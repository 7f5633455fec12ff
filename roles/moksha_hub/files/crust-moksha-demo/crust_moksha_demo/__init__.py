"""Crust's Moksha demo: the pieces of the original Moksha demo, each a small example to copy.

- CountingConsumer (consumers.py): reacts to every message on the broker and counts them per
  topic; the counts are served read-only at /stats.
- MetricsProducer (producers.py): publishes this machine's live metrics on a timer
  (topic "metrics"), drawn by the page's graph.
- The live chat: browsers publish and subscribe to topic "chat" over Web-STOMP; the hub's
  consumer sees those messages too.

Your own consumers and producers are packages with entry points in the groups
"moksha.consumer" and "moksha.producer", installed by the moksha_hub role.
"""

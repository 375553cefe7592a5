"""The daemon's Kafka edge: sources, micro-batches, dead letters, client settings.

* ``fills``: the group consumer of the fill topics (offsets loaded from Redis on assign);
* ``ticks``: an assigned consumer of every ticks partition (no group);
* ``microbatch``: records gathered into a ``RawBatch`` that carries its ``committable``;
* ``dlq``: the dead-letter producer and the reject-ratio guard;
* ``clients``: librdkafka settings and error logging shared by all of them.
"""

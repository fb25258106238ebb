"""The one exception type of rosbag2 I/O.

Why: a bad recording must fail with a message a robot engineer can act on -- which bag, which
topic, which message -- never with a traceback from deep inside rosbags, mcap or sqlite3.
"""

from __future__ import annotations

__all__ = ["BagError"]


class BagError(RuntimeError):
    """A bag cannot be read, written, or converted; names the bag, topic and message index."""

    def __init__(
        self,
        bag: object,
        reason: str,
        *,
        topic: str | None = None,
        index: int | None = None,
        kind: str | None = None,
    ) -> None:
        self.bag = str(bag)
        self.reason = reason
        self.topic = topic
        self.index = index
        self.kind = kind
        where = self.bag
        if topic is not None:
            where += f", topic {topic}"
        if index is not None:
            where += f", message #{index}"
        super().__init__(f"{where}: {reason}")

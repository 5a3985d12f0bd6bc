"""An actor that raised (the store or queue was unreachable) gets its message redelivered, not dropped."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import Broker, MessageProxy


class RedeliverOnError(dramatiq.Middleware):
    """Mark the message failed so the consumer's ``nack`` leaves it to SQS: redelivered after a backoff,
    and moved to the dead-letter queue by the RedrivePolicy once it has failed ``max_receives`` times."""

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is not None:
            message.fail()

"""tq executor: Dramatiq workers on SQS FIFO that claim, run and record task attempts."""

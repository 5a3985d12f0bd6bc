"""tq scheduler: promotes due one-shot, retrying and repeating tasks onto the queues."""

"""The pure domain: the task aggregate, its state machine, events, commands and errors. No I/O here."""

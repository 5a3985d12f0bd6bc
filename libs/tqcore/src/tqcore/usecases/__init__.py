"""The use cases: what users and services do with tasks (submit, execute, schedule, recover, manage), each over
the ports, with the unit of work (``service.mutate``: read, apply, commit, re-apply on a conflict) beside them."""
